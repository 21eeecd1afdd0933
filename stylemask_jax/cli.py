"""`stylemask` command line: argument parsing and dispatch only.

Each sub-command is one row of COMMANDS: (name, help, add_arguments(parser), run(args)), where
`run` calls one library function and prints its summary. Bad input raises an error of the
`stylemask_jax.errors` family, printed by `guard.run_guarded` as one line
`stylemask: error: ...` with exit code 2. A new sub-command is one more row.
"""

from __future__ import annotations

import argparse
import sys

from stylemask_jax.guard import run_guarded

_TRUNCATION_HELP = ("psi of the truncation trick w' = mean + psi * (w - mean); 1.0 disables it; "
                    "mean = the generator checkpoint's latent_avg, else the mean of 4096 mapped Z "
                    "drawn from seed 0")


def _json_line(values: dict) -> str:
    import json
    return json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in values.items()})


# ---------------------------------------------------------------------------------------------
# convert
# ---------------------------------------------------------------------------------------------

def _add_convert(p):
    from convert_weights.__main__ import add_subparsers
    add_subparsers(p)


def _run_convert(args):
    return args.convert_fn(args)


# ---------------------------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------------------------

def _add_generate(p):
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--generator", metavar="DIR", help="converted StyleGAN2 directory "
                     "(`stylemask convert stylegan2`)")
    src.add_argument("--config", help="'tiny' (or a configs/*.py file): the config's generator "
                     "with random weights from a fixed key; the images are noise, not faces")
    p.add_argument("--seeds", default="0-7", help="seeds, e.g. '0-7' or '1,5,9'; seed s draws "
                   "z = jax.random.normal(jax.random.key(s), (1, style_dim))")
    p.add_argument("--truncation", type=float, default=0.7, help=_TRUNCATION_HELP)
    p.add_argument("--batch-size", type=int, default=4, help="images per jitted batch")
    p.add_argument("--resize-256", action="store_true",
                   help="average-pool the images to 256x256 (StyleMask's face_pool)")
    p.add_argument("--save-arrays", action="store_true",
                   help="also write each image as float32 (H, W, 3) in [-1, 1] to seedNNNN.npy")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (seedNNNN.png)")


def _run_generate(args):
    from stylemask_jax.generate import generate_to_folder
    print(generate_to_folder(args.out, args.seeds, generator_dir=args.generator, config=args.config,
                             truncation=args.truncation, batch_size=args.batch_size,
                             resize_256=args.resize_256, save_arrays=args.save_arrays))


# ---------------------------------------------------------------------------------------------
# reenact
# ---------------------------------------------------------------------------------------------

def _add_reenact(p):
    models = p.add_argument_group("models (converted weights, or --config tiny for random weights)")
    models.add_argument("--generator", metavar="DIR", help="converted StyleGAN2 directory "
                        "(`stylemask convert stylegan2`)")
    models.add_argument("--mask-net", metavar="DIR", help="converted mask network directory "
                        "(`stylemask convert mask-net`)")
    models.add_argument("--config", default=None, help="'tiny': random weights, no files needed "
                        "(the images are noise, not faces)")
    codes = p.add_argument_group("sources and targets")
    codes.add_argument("--sources", metavar="NPY|DIR", help="source codes: a .npy file or a folder "
                       "of .npy files holding Z (D,)/(B,D), W (B,D) or W+ (B,L,D) codes")
    codes.add_argument("--targets", metavar="NPY|DIR", help="target codes, same forms as --sources")
    codes.add_argument("--num-pairs", type=int, default=4, help="random Z sources/targets to draw "
                       "from --seed when --sources/--targets are not given")
    codes.add_argument("--code-type", choices=("auto", "z", "w", "wplus"), default="auto",
                       help="how to read code files: auto = 3-D arrays are W+, 1-D/2-D are Z")
    codes.add_argument("--seed", type=int, default=0, help="seed of the random codes")
    p.add_argument("--truncation", type=float, default=0.7,
                   help=_TRUNCATION_HELP + "; applied to Z/W codes after mapping and row-wise to W+ "
                        "codes (as the official real-image path does for inverted codes)")
    p.add_argument("--mean-latent", metavar="NPY", default=None,
                   help="mean W for truncation (overrides the default mean)")
    p.add_argument("--pairs", choices=("zip", "all"), default="zip",
                   help="zip: source i with target i; all: every source with every target (a matrix)")
    p.add_argument("--batch-size", type=int, default=8, help="pairs per jitted batch")
    p.add_argument("--resize-256", action="store_true", help="average-pool images to 256x256 "
                   "(as StyleMask does before its losses)")
    p.add_argument("--save-arrays", action="store_true", help="also write float32 images (NHWC) "
                   "and the codes as .npy under OUT/arrays")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")


def _run_reenact(args):
    from stylemask_jax.inference import reenact_to_folder
    print(reenact_to_folder(
        args.out, generator_dir=args.generator, mask_net_dir=args.mask_net, config=args.config,
        sources=args.sources, targets=args.targets, num_pairs=args.num_pairs,
        code_type=args.code_type, seed=args.seed, truncation=args.truncation,
        mean_latent=args.mean_latent, pairs=args.pairs, batch_size=args.batch_size,
        resize_256=args.resize_256, save_arrays=args.save_arrays))


# ---------------------------------------------------------------------------------------------
# train, evaluate, export
# ---------------------------------------------------------------------------------------------

def _add_train(p):
    p.add_argument("--config", required=True, help="a configs/*.py name ('tiny', 'ffhq1024') "
                   "or a path to a .py file with get_config()")
    p.add_argument("--workdir", required=True, help="checkpoints, logs and evaluation images go "
                   "here; an existing workdir is resumed from its latest checkpoint")
    hosts = p.add_argument_group(
        "several processes (default: the environment variables named; with none of the three "
        "and --config.multihost=True the cluster is auto-detected: TPU, Slurm, MPI, Kubernetes)")
    hosts.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                       help="address of process 0's coordinator (JAX_COORDINATOR_ADDRESS)")
    hosts.add_argument("--num-processes", type=int, default=None, metavar="N",
                       help="number of processes (JAX_NUM_PROCESSES)")
    hosts.add_argument("--process-id", type=int, default=None, metavar="I",
                       help="this process, 0 .. N-1 (JAX_PROCESS_ID)")
    p.epilog = ("Override any config field after the options, e.g. --config.batch_size=4 "
                "--config.weights.generator=weights/stylegan2 --config.remat=blocks.")
    p.set_defaults(accepts_overrides=True)


def _run_train(args):
    from configs import load_config
    from stylemask_jax import distributed
    from stylemask_jax.training.config_overrides import apply_overrides
    from stylemask_jax.training.loop import train
    config = apply_overrides(load_config(args.config), args.overrides)
    distributed.start(args.coordinator, args.num_processes, args.process_id,
                      auto=bool(config.get("multihost", False)))
    metrics = train(config, args.workdir)
    print("final: " + _json_line(metrics))


def _add_evaluate(p):
    p.add_argument("--workdir", required=True, help="a training workdir (its config.json and "
                   "latest checkpoint are used)")
    p.set_defaults(accepts_overrides=True)
    p.epilog = "Config fields may be overridden as in train, e.g. --config.eval_pairs=20."


def _run_evaluate(args):
    from stylemask_jax.training.evaluation import evaluate_workdir
    print(_json_line(evaluate_workdir(args.workdir, args.overrides)))


def _add_export(p):
    p.add_argument("--workdir", required=True, help="a training workdir")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="mask-net weights directory for `stylemask reenact --mask-net DIR`")
    p.add_argument("--torch", metavar="FILE.pt", default=None,
                   help="also write the official PyTorch checkpoint layout "
                        "{'step', 'mask_net', 'num_layers_control'} (written without torch)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def _run_export(args):
    from stylemask_jax.training.export import export_workdir
    step = export_workdir(args.workdir, args.out, args.torch, args.overwrite)
    print(f"exported step {step} to {args.out}" + (f" and {args.torch}" if args.torch else ""))


# ---------------------------------------------------------------------------------------------
# invert
# ---------------------------------------------------------------------------------------------

_INVERT_HELP = """Expects FFHQ-aligned face crops, as the e4e encoder was trained on: square, 256x256
or larger (1024 is box-averaged to 256, sizes that are not multiples of 256 are resized
bilinearly); aligning unaligned photos from facial landmarks is not implemented yet. Writes OUT/wplus.npy (N, L, 512) with OUT/wplus.txt (the
input order), OUT/codes/NAME.npy (1, L, 512) per image (both readable by
`stylemask reenact --sources/--targets`), and with --generator OUT/reconstructions/NAME.png."""


def _add_invert(p):
    p.description = ("Invert aligned face photos into StyleGAN2 W+ codes with the e4e encoder. "
                     + _INVERT_HELP)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="aligned face crops (PNG, JPEG, ...)")
    p.add_argument("--e4e", required=True, metavar="DIR", help="converted e4e encoder "
                   "(`stylemask convert e4e`)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--generator", metavar="DIR", default=None, help="converted StyleGAN2 generator "
                   "(`stylemask convert stylegan2`, or e4e's own via `convert e4e --generator-out`)"
                   ": also write the reconstructions")
    p.add_argument("--batch-size", type=int, default=8, help="images per jitted call")


def _run_invert(args):
    from stylemask_jax.inversion import invert_to_folder
    print(invert_to_folder(args.images, args.e4e, args.out, args.generator, args.batch_size))


# ---------------------------------------------------------------------------------------------
# the table of sub-commands
# ---------------------------------------------------------------------------------------------

def _add_compare(p):
    from stylemask_jax.reference.compare import add_arguments
    add_arguments(p)


def _run_compare(args):
    from stylemask_jax.reference.compare import run
    return run(args)


COMMANDS = [
    ("convert", "convert an official PyTorch checkpoint (torch-free, no pickled code runs)",
     _add_convert, _run_convert),
    ("generate", "sample images from a converted generator (or --config tiny) by seed",
     _add_generate, _run_generate),
    ("invert", "invert FFHQ-aligned face photos into W+ codes with e4e (alignment comes later)",
     _add_invert, _run_invert),
    ("reenact", "reenact source faces with the pose and expression of target faces",
     _add_reenact, _run_reenact),
    ("train", "train the mask network (one jitted data-parallel step, Orbax checkpoints)",
     _add_train, _run_train),
    ("evaluate", "CSIM, pose and expression error of a training run's latest checkpoint",
     _add_evaluate, _run_evaluate),
    ("export", "export a trained mask network for `stylemask reenact` (and the PyTorch layout)",
     _add_export, _run_export),
    ("compare", "compare the JAX networks with the PyTorch reference on your checkpoints "
     "(needs the [torch] extra)", _add_compare, _run_compare),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylemask",
        description="StyleMask face reenactment in JAX: convert the official weights, generate, "
                    "reenact, invert, train, evaluate and compare with the PyTorch reference.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text, add_arguments, run in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        add_arguments(p)
        p.set_defaults(command_fn=run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    return run_guarded(args.command_fn, args)


if __name__ == "__main__":
    sys.exit(main())
