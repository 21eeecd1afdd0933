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
    codes.add_argument("--sources", metavar="PHOTO|NPY|DIR", help="source faces: a photo "
                       "(.png/.jpg/.jpeg/.webp: detected, FFHQ-aligned and inverted with --e4e), a "
                       ".npy file of Z (D,)/(B,D), W (B,D) or W+ (B,L,D) codes, or a folder of either "
                       "kind. Rule: a folder must hold only photos or only .npy files (other files "
                       "are ignored); --sources and --targets may be of different kinds")
    codes.add_argument("--targets", metavar="PHOTO|NPY|DIR", help="target faces, same forms as "
                       "--sources")
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
                   "and the codes as .npy under OUT/arrays (for photos: source_codes/target_codes "
                   "are the inverted e4e codes, *_wplus the truncated ones)")
    p.add_argument("--outputs", choices=("all", "reenacted"), default="all",
                   help="all: synthesise source, target and reenacted images (grid.png, matrix.png, "
                        "pairs/); reenacted: only the reenacted images, one generator call per "
                        "batch instead of three, written to pairs/ (no grid.png or matrix.png)")
    photos = p.add_argument_group("photos and videos")
    photos.add_argument("--e4e", metavar="DIR", default=None, help="converted e4e encoder "
                        "(`stylemask convert e4e`): needed for photos and --driving. Photos are "
                        "truncated like the official real-image path (--truncation, row-wise)")
    photos.add_argument("--driving", metavar="CLIP", default=None, help="a driving video: "
                        "reenact the one --sources photo with every frame as the target; writes "
                        "OUT/reenacted.mp4 at the clip's frame rate with its audio (landmarks "
                        "smoothed over time; frames without a face reuse the last alignment)")
    photos.add_argument("--side-by-side", action="store_true", help="with --driving: each frame "
                        "is the driving frame, resized to the output's height (aspect kept), left "
                        "of the reenacted one")
    photos.add_argument("--paste-back", action="store_true", help="put the reenacted face back "
                        "into the source photo (feathered edge): OUT/pasted/ for photos, the "
                        "source photo's size for --driving")
    photos.add_argument("--save-aligned", action="store_true", help="write the aligned 256 crops "
                        "to OUT/aligned/sources/ and OUT/aligned/targets/")
    _add_refine(photos)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")


def _add_refine(group):
    from stylemask_jax.photos.refine import RefineSettings
    d = RefineSettings()
    group.add_argument("--refine-steps", type=int, default=0, help="refine each e4e code by this "
                       "many Adam steps in W+ on the reconstruction of its aligned crop (0: off)")
    group.add_argument("--refine-lr", type=float, default=d.lr, help="Adam step size")
    group.add_argument("--refine-l2", type=float, default=d.l2, help="weight of the mean squared "
                       "error at 256 px (images in [-1, 1])")
    group.add_argument("--refine-l1", type=float, default=d.l1, help="weight of the mean absolute error")
    group.add_argument("--refine-identity", type=float, default=d.identity, help="weight of the "
                       "ArcFace identity term 1 - cos (used only with --irse)")
    group.add_argument("--refine-pull", type=float, default=d.pull, help="weight of the mean "
                       "squared distance to the e4e code")
    group.add_argument("--irse", metavar="DIR", default=None, help="converted ArcFace IR-SE "
                       "(`stylemask convert irse`) for the identity term of the refinement")


def _refine_settings(args):
    from stylemask_jax.photos.refine import RefineSettings
    return RefineSettings(steps=args.refine_steps, lr=args.refine_lr, l2=args.refine_l2,
                          l1=args.refine_l1, identity=args.refine_identity,
                          pull=args.refine_pull).check()


def _run_reenact(args):
    from stylemask_jax.inference import reenact_to_folder
    print(reenact_to_folder(
        args.out, generator_dir=args.generator, mask_net_dir=args.mask_net, config=args.config,
        sources=args.sources, targets=args.targets, num_pairs=args.num_pairs,
        code_type=args.code_type, seed=args.seed, truncation=args.truncation,
        mean_latent=args.mean_latent, pairs=args.pairs, batch_size=args.batch_size,
        resize_256=args.resize_256, save_arrays=args.save_arrays, outputs=args.outputs,
        e4e_dir=args.e4e, driving=args.driving, save_aligned=args.save_aligned,
        paste_back=args.paste_back, side_by_side=args.side_by_side,
        refine=_refine_settings(args), irse_dir=args.irse))


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
                   "newest checkpoint that restores are used)")
    p.add_argument("--step", type=int, default=None, help="evaluate this checkpoint step")
    real = p.add_argument_group("real pairs (a dataset inverted with `stylemask invert --dataset`)")
    real.add_argument("--dataset", metavar="DATA_DIR", default=None,
                      help="evaluate on real pairs of this dataset instead of generated ones")
    real.add_argument("--protocol", choices=("self", "cross"), default="self",
                      help="self: source and target frames of the same video; cross: different "
                           "identities")
    real.add_argument("--num-pairs", type=int, default=1000, help="pairs to draw")
    real.add_argument("--seed", type=int, default=0, help="seed of the pair draw")
    real.add_argument("--pairs", metavar="FILE", default=None,
                      help="a pairs_*.json written by an earlier run (overrides the draw)")
    real.add_argument("--batch-size", type=int, default=8, help="pairs per jitted batch")
    p.set_defaults(accepts_overrides=True)
    p.epilog = ("Config fields may be overridden as in train, e.g. --config.eval_pairs=20. With "
                "--dataset, the pairs and metrics are written to WORKDIR/eval_dataset/.")


def _run_evaluate(args):
    if args.dataset is not None:
        from stylemask_jax.datasets.evaluate import evaluate_dataset_workdir
        print(_json_line(evaluate_dataset_workdir(
            args.workdir, args.dataset, protocol=args.protocol, num_pairs=args.num_pairs,
            seed=args.seed, pairs_file=args.pairs, batch_size=args.batch_size,
            overrides=args.overrides)))
        return
    from stylemask_jax.training.evaluation import evaluate_workdir
    print(_json_line(evaluate_workdir(args.workdir, args.overrides, args.step)))


def _add_export(p):
    p.add_argument("--workdir", required=True, help="a training workdir")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="mask-net weights directory for `stylemask reenact --mask-net DIR`")
    p.add_argument("--torch", metavar="FILE.pt", default=None,
                   help="also write the official PyTorch checkpoint layout "
                        "{'step', 'mask_net', 'num_layers_control'} (written without torch)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--step", type=int, default=None, help="export this checkpoint step "
                   "(default: the newest that restores)")


def _run_export(args):
    from stylemask_jax.training.export import export_workdir
    step = export_workdir(args.workdir, args.out, args.torch, args.overwrite,
                          args.step)
    print(f"exported step {step} to {args.out}" + (f" and {args.torch}" if args.torch else ""))


# ---------------------------------------------------------------------------------------------
# invert
# ---------------------------------------------------------------------------------------------

_INVERT_HELP = """Takes ordinary photos: the largest face is found with dlib's 68 landmarks and
FFHQ-aligned to 256 as the official StyleMask script does (OUT/aligned/NAME.png). With --aligned,
the images are ready FFHQ-aligned crops: square, 256x256 or larger (1024 is box-averaged to 256,
sizes that are not multiples of 256 are resized bilinearly). Writes OUT/wplus.npy (N, L, 512) with
OUT/wplus.txt (the input order), OUT/codes/NAME.npy (1, L, 512) per image (both readable by
`stylemask reenact --sources/--targets`), and with --generator OUT/reconstructions/NAME.png."""


def _add_invert(p):
    p.description = ("Invert face photos into StyleGAN2 W+ codes with the e4e encoder. "
                     + _INVERT_HELP)
    p.add_argument("images", nargs="*", metavar="IMAGE", help="face photos (PNG, JPEG, WebP, ...)")
    p.add_argument("--dataset", metavar="DATA_DIR", default=None,
                   help="instead of IMAGES: invert every example of a `stylemask dataset build` "
                        "dataset; each process (of a multi-host run) inverts its own contiguous "
                        "block, sharded over its devices, into DATA_DIR/.../codes/")
    p.add_argument("--aligned", action="store_true", help="the images are FFHQ-aligned crops "
                   "already: skip detection and alignment")
    p.add_argument("--e4e", required=True, metavar="DIR", help="converted e4e encoder "
                   "(`stylemask convert e4e`)")
    p.add_argument("--out", metavar="DIR", help="output folder (with IMAGES)")
    p.add_argument("--generator", metavar="DIR", default=None, help="converted StyleGAN2 generator "
                   "(`stylemask convert stylegan2`, or e4e's own via `convert e4e --generator-out`)"
                   ": also write the reconstructions")
    p.add_argument("--batch-size", type=int, default=8, help="images per jitted call")
    _add_refine(p.add_argument_group("refinement (needs --generator)"))


def _run_invert(args):
    from stylemask_jax.errors import UserInputError
    if args.dataset is not None:
        if args.images or args.out:
            raise UserInputError("--dataset inverts a dataset into its own folder: give no IMAGES "
                                 "and no --out with it")
        from stylemask_jax.datasets.invert import invert_dataset_e4e
        print(invert_dataset_e4e(args.dataset, args.e4e, batch_size=args.batch_size))
        return
    if not args.images or not args.out:
        raise UserInputError("give IMAGES and --out DIR (or --dataset DATA_DIR)")
    from stylemask_jax.inversion import invert_to_folder
    print(invert_to_folder(args.images, args.e4e, args.out, args.generator, args.batch_size,
                           aligned=args.aligned, refine=_refine_settings(args), irse_dir=args.irse))


# ---------------------------------------------------------------------------------------------
# dataset
# ---------------------------------------------------------------------------------------------

def _add_dataset(p):
    sub = p.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    build = sub.add_parser(
        "build", help="align every face of a folder of photos or videos into a TFDS dataset",
        description="Aligns every face of SRC (the official FFHQ crop from dlib's 68 landmarks) "
                    "into a tensorflow-datasets dataset (array_record files, no TensorFlow "
                    "needed) under --out. Layouts: SRC/PHOTO.png (one identity each), "
                    "SRC/ID/PHOTO.png, SRC/ID/VIDEO.mp4, SRC/ID/VIDEO/FRAME.png. Re-running with "
                    "the same source does nothing; frames without a face are skipped and counted.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    build.add_argument("src", metavar="SRC", help="folder of photos or of videos grouped by identity")
    build.add_argument("--out", required=True, metavar="DATA_DIR", help="TFDS data_dir to write")
    build.add_argument("--frame-stride", type=int, default=1, help="keep every n-th video frame")
    build.add_argument("--max-frames", type=int, default=0,
                       help="at most this many kept frames per video (0: all)")
    build.add_argument("--max-detect-side", type=int, default=None,
                       help="detect faces on a copy of at most this side (faster on large "
                            "frames, landmarks ~1 px less exact); default: the full frame")
    build.add_argument("--overwrite", action="store_true",
                       help="rebuild when the source has changed since the last build")


def _run_dataset(args):
    from stylemask_jax.datasets.build import build_dataset, build_summary
    print(build_summary(build_dataset(args.src, args.out, frame_stride=args.frame_stride,
                                      max_frames=args.max_frames, overwrite=args.overwrite,
                                      max_detect_side=args.max_detect_side)))
# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------

def _add_demo(p):
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
    p.add_argument("--batch-size", type=int, default=4, help="the largest batch: photo requests "
                   "arriving together are reenacted in one call of up to this many pairs; "
                   "video frames go in batches of this size (compiled for 1 and this size at "
                   "start-up)")
    p.add_argument("--refine-steps", default="0", help="the refinement step counts the page "
                   "offers, comma-separated (each compiled at start-up), e.g. '0,20'")
    p.add_argument("--max-video-seconds", type=float, default=20.0,
                   help="longer driving videos are refused")


def _run_demo(args):
    from stylemask_jax.demo.app import launch_demo
    from stylemask_jax.demo.engine import DemoSettings, parse_steps
    settings = DemoSettings(batch_size=args.batch_size, refine_steps=parse_steps(args.refine_steps),
                            max_video_seconds=args.max_video_seconds)
    launch_demo(settings, args.host, args.port, generator_dir=args.generator,
                mask_net_dir=args.mask_net, e4e_dir=args.e4e, irse_dir=args.irse,
                config=args.config)


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
    ("invert", "invert face photos (aligned here, or --aligned crops) into W+ codes with e4e",
     _add_invert, _run_invert),
    ("reenact", "reenact source faces with the pose and expression of target faces",
     _add_reenact, _run_reenact),
    ("train", "train the mask network (one jitted data-parallel step, Orbax checkpoints)",
     _add_train, _run_train),
    ("evaluate", "CSIM, pose and expression error of a training run's latest checkpoint",
     _add_evaluate, _run_evaluate),
    ("export", "export a trained mask network for `stylemask reenact` (and the PyTorch layout)",
     _add_export, _run_export),
    ("dataset", "build a dataset of aligned real faces with tensorflow-datasets (no TensorFlow)",
     _add_dataset, _run_dataset),
    ("demo", "serve a local web page: upload a source photo and a target photo or driving "
     "video, see the reenactment (needs the [demo] extra)", _add_demo, _run_demo),
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
