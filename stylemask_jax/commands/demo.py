"""`stylemask demo`: a local web page to reenact uploaded photos and driving videos.

    stylemask demo --generator weights/stylegan2 --mask-net weights/mask_net --e4e weights/e4e
    stylemask demo --config tiny        # random networks that fit together, no files needed

Every jitted function is compiled once at start-up (for batch 1 and --batch-size, and each
--refine-steps count); then the page is served on --host:--port until interrupted. Requests
beyond --queue-size waiting ones are refused at once (busy), not left hanging.
"""

from __future__ import annotations

from stylemask_jax.commands import library
from stylemask_jax.commands.args import above, at_least, named_config, naming
from stylemask_jax.commands.models import load_irse, load_models
from stylemask_jax.errors import UserInputError

app = library("stylemask_jax.demo.app")
e4e = library("stylemask_jax.models.e4e")
engine = library("stylemask_jax.demo.engine")
inversion = library("stylemask_jax.inversion")
tiny = library("stylemask_jax.demo.tiny")

TINY_TITLE = "Random networks (--config tiny): the images are coloured noise, not faces."


def add_arguments(p) -> None:
    models = p.add_argument_group("models (converted weights, or --config tiny for random ones)")
    models.add_argument("--generator", metavar="DIR", help="converted StyleGAN2 directory")
    models.add_argument("--mask-net", metavar="DIR", help="converted mask network directory")
    models.add_argument("--e4e", metavar="DIR", help="converted e4e encoder directory")
    models.add_argument("--irse", metavar="DIR", default=None, help="converted ArcFace IR-SE "
                        "for the identity term of the refinement (optional)")
    models.add_argument("--config", default=None, help="'tiny': random networks that fit "
                        "together, no files needed (the images are noise, not faces)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (127.0.0.1: this "
                   "machine only)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on")
    p.add_argument("--batch-size", type=int, default=4, action=at_least(1),
                   help="the largest batch: photo requests arriving together are reenacted in "
                        "one call of up to this many pairs; video frames go in batches of this "
                        "size (compiled for 1 and this size at start-up)")
    p.add_argument("--refine-steps", default="0", help="the refinement step counts the page "
                   "offers, comma-separated (each compiled at start-up), e.g. '0,20'")
    p.add_argument("--max-video-seconds", type=float, default=20.0, action=above(0),
                   help="longer driving videos are refused")
    p.add_argument("--queue-size", type=int, default=64, action=at_least(1),
                   help="Run requests that may wait behind the running ones (max(4, "
                        "--batch-size) run at once); beyond that a request is refused right "
                        "away with Gradio's message that the app is busy, try again")


def parse_steps(text: str) -> tuple[int, ...]:
    """'0,20' -> (0, 20): the --refine-steps choices."""
    try:
        steps = tuple(sorted({int(part) for part in str(text).split(",") if part.strip()}))
    except ValueError:
        raise UserInputError(f"--refine-steps: cannot parse {text!r}; expected step counts "
                             "like '0' or '0,20'") from None
    if not steps or steps[0] < 0:
        raise UserInputError(f"--refine-steps: expected step counts >= 0, got {text!r}")
    return steps


def load_networks(args):
    """(inference.Models, e4e module, e4e variables, (IR-SE module, variables) or None)."""
    if args.config is not None:
        if args.generator or args.mask_net or args.e4e or args.irse:
            raise UserInputError("--config gives random networks; do not combine it with "
                                 "--generator/--mask-net/--e4e/--irse")
        return (*tiny.tiny_photo_models(named_config(args.config)), None)
    if not (args.generator and args.mask_net and args.e4e):
        raise UserInputError("give --generator DIR, --mask-net DIR and --e4e DIR (converted "
                             "weights), or --config tiny for random networks")
    models = load_models(args.generator, args.mask_net)
    with naming("--e4e"):
        encoder, evars = e4e.load_e4e(args.e4e)
    with naming("--generator:"):
        inversion.check_generator(encoder, models.generator)
    return models, encoder, evars, load_irse(args)


def run(args) -> None:
    settings = engine.DemoSettings(batch_size=args.batch_size,
                                   refine_steps=parse_steps(args.refine_steps),
                                   max_video_seconds=args.max_video_seconds)
    models, encoder, evars, identity = load_networks(args)
    demo = engine.make_engine(models, encoder, evars, settings, identity)
    app.launch(demo, args.host, args.port, title=TINY_TITLE if args.config else "",
               queue_size=args.queue_size)
