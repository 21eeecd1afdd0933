"""`stylemask` command line: thin argument parsing over library calls.

Sub-commands register themselves in COMMANDS below: each is (name, help, add_arguments, run).
`run(args)` returns an exit code; bad input raises UserInputError (or a converter's
CheckpointError), which is printed as one line `stylemask: error: ...` with exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from stylemask_jax.errors import UserInputError

EXIT_BAD_INPUT = 2


def run_guarded(fn, args) -> int:
    """Runs `fn(args)`, turning known input errors into a one-line message and exit code 2."""
    from convert_weights.torch_reader import CheckpointError
    try:
        code = fn(args)
    except (UserInputError, CheckpointError, FileNotFoundError, PermissionError,
            NotADirectoryError, IsADirectoryError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"stylemask: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("stylemask: interrupted", file=sys.stderr)
        return 130
    return 0 if code is None else int(code)


# ---------------------------------------------------------------------------------------------
# convert
# ---------------------------------------------------------------------------------------------

def _add_convert(parser):
    from convert_weights.__main__ import add_subparsers
    add_subparsers(parser)


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
    p.add_argument("--truncation", type=float, default=0.7,
                   help="psi of w' = mean + psi * (w - mean); mean = the checkpoint's latent_avg, "
                        "else the mean of 4096 mapped z from key(0); 1.0 disables it")
    p.add_argument("--batch-size", type=int, default=4, help="images per jitted batch")
    p.add_argument("--resize-256", action="store_true",
                   help="average-pool the images to 256x256 (StyleMask's face_pool)")
    p.add_argument("--save-arrays", action="store_true",
                   help="also write each image as float32 (H, W, 3) in [-1, 1] to seedNNNN.npy")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (seedNNNN.png)")


def _run_generate(args):
    import os
    import numpy as np
    from stylemask_jax import codes as codes_lib
    from stylemask_jax import generate as gen_lib
    from stylemask_jax import images
    from stylemask_jax.models.stylegan2 import load_generator

    seeds = codes_lib.parse_seeds(args.seeds)
    if args.batch_size < 1:
        raise UserInputError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not 0.0 <= args.truncation <= 1.0:
        raise UserInputError(f"--truncation must be in [0, 1], got {args.truncation}")
    if args.config is not None:
        config = load_config(args.config)
        gen, variables, latent_avg = gen_lib.random_generator(config.generator, config.seed)
    else:
        gen, variables, latent_avg = load_generator(args.generator)
    mean = gen_lib.truncation_mean(gen, variables, latent_avg) if args.truncation != 1.0 else None
    os.makedirs(args.out, exist_ok=True)
    z = gen_lib.seed_latents(seeds, gen.style_dim)
    for start, batch in gen_lib.generate(gen, variables, z, args.truncation, mean,
                                         args.batch_size, args.resize_256):
        for seed, image in zip(seeds[start:start + len(batch)], batch):
            images.save_png(os.path.join(args.out, f"seed{seed:04d}.png"), image)
            if args.save_arrays:
                np.save(os.path.join(args.out, f"seed{seed:04d}.npy"), image.astype(np.float32))
    print(f"wrote {len(seeds)} images ({batch.shape[1]}x{batch.shape[2]}) to {args.out}")
    return 0


# ---------------------------------------------------------------------------------------------
# reenact
# ---------------------------------------------------------------------------------------------

_CONFIGS = ("tiny", "ffhq1024")


def load_config(name: str):
    """A config by name ('tiny', 'ffhq1024') or by path to a configs/*.py file."""
    import importlib
    import importlib.util
    import os
    if name in _CONFIGS:
        return importlib.import_module(f"configs.{name}").get_config()
    if name.endswith(".py") and os.path.isfile(name):
        spec = importlib.util.spec_from_file_location("user_config", name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_config()
    raise UserInputError(f"--config: unknown config {name!r}; expected one of {_CONFIGS} or a .py file")


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
                   help="psi of the truncation trick w' = mean + psi * (w - mean), applied to Z/W "
                        "codes after mapping and row-wise to W+ codes (as the official real-image "
                        "path does for inverted codes); 1.0 disables it")
    p.add_argument("--mean-latent", metavar="NPY", default=None,
                   help="mean W for truncation; default: the generator checkpoint's latent_avg, else "
                        "the mean of 4096 mapped Z drawn from seed 0")
    p.add_argument("--pairs", choices=("zip", "all"), default="zip",
                   help="zip: source i with target i; all: every source with every target (a matrix)")
    p.add_argument("--batch-size", type=int, default=8, help="pairs per jitted batch")
    p.add_argument("--resize-256", action="store_true", help="average-pool images to 256x256 "
                   "(as StyleMask does before its losses)")
    p.add_argument("--save-arrays", action="store_true", help="also write float32 images (NHWC) "
                   "and the codes as .npy under OUT/arrays")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")


def _run_reenact(args):
    import os
    import numpy as np
    from stylemask_jax import codes as codes_lib
    from stylemask_jax import images, inference

    if args.batch_size < 1:
        raise UserInputError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not 0.0 <= args.truncation <= 1.0:
        raise UserInputError(f"--truncation must be in [0, 1], got {args.truncation}")
    inference.check_writable_dir(args.out)
    if args.config is not None:
        if args.generator or args.mask_net:
            raise UserInputError("--config gives random weights; do not combine it with "
                                 "--generator/--mask-net")
        models = inference.tiny_models(load_config(args.config), seed=args.seed)
    elif args.generator and args.mask_net:
        models = inference.load_models(args.generator, args.mask_net)
    else:
        raise UserInputError("give --generator DIR and --mask-net DIR (converted weights), "
                             "or --config tiny for random weights")
    gen = models.generator
    loaded = {}
    for role, path, offset in (("source", args.sources, 0), ("target", args.targets, 1)):
        if path:
            loaded[role] = codes_lib.load_codes(path, args.code_type, gen.style_dim, gen.n_latent,
                                                f"--{role}s")
        else:
            if args.num_pairs < 1:
                raise UserInputError(f"--num-pairs must be at least 1, got {args.num_pairs}")
            z = codes_lib.seed_codes(args.seed, 2 * args.num_pairs, gen.style_dim)
            loaded[role] = (z[offset::2], "z")
    inference.pair_indices(len(loaded["source"][0]), len(loaded["target"][0]), args.pairs)
    mean = inference.truncation_mean(models, args.mean_latent)

    wplus = {role: inference.encode_codes(models, codes, kind, args.truncation, mean, args.batch_size)
             for role, (codes, kind) in loaded.items()}
    result = inference.reenact_codes(models, wplus["source"], wplus["target"], args.pairs,
                                     args.batch_size, args.resize_256)

    os.makedirs(os.path.join(args.out, "pairs"), exist_ok=True)
    src_idx, tgt_idx = result["source_index"], result["target_index"]
    for k, (s, t) in enumerate(zip(src_idx, tgt_idx)):
        images.save_png(os.path.join(args.out, "pairs", f"{k:04d}_s{s:03d}_t{t:03d}.png"),
                        result["reenacted"][k])
    rows = [[result["source"][k], result["target"][k], result["reenacted"][k]]
            for k in range(len(src_idx))]
    images.save_grid(os.path.join(args.out, "grid.png"), rows)
    if args.pairs == "all":
        num_t = len(wplus["target"])
        sources = [result["source"][k] for k in range(0, len(src_idx), num_t)]
        targets = [result["target"][k] for k in range(num_t)]
        matrix = [[None] + targets] + [
            [sources[i]] + [result["reenacted"][i * num_t + j] for j in range(num_t)]
            for i in range(len(sources))]
        images.save_grid(os.path.join(args.out, "matrix.png"), matrix)
    if args.save_arrays:
        arrays = os.path.join(args.out, "arrays")
        os.makedirs(arrays, exist_ok=True)
        for name in ("source", "target", "reenacted"):
            np.save(os.path.join(arrays, f"{name}_images.npy"), result[name].astype(np.float32))
        for role in ("source", "target"):
            np.save(os.path.join(arrays, f"{role}_codes.npy"), loaded[role][0])
            np.save(os.path.join(arrays, f"{role}_wplus.npy"), wplus[role])
        np.save(os.path.join(arrays, "pair_indices.npy"), np.stack([src_idx, tgt_idx], axis=1))
        np.save(os.path.join(arrays, "truncation_latent.npy"), mean)
    print(f"wrote {len(src_idx)} reenacted pairs to {args.out} (grid.png, pairs/"
          f"{', matrix.png' if args.pairs == 'all' else ''}{', arrays/' if args.save_arrays else ''})")
    return 0


# ---------------------------------------------------------------------------------------------
# train, evaluate, export
# ---------------------------------------------------------------------------------------------

def _training_config(args):
    from stylemask_jax.training.config_overrides import apply_overrides
    return apply_overrides(load_config(args.config), args.overrides)


def _add_train(p):
    p.add_argument("--config", required=True, help="'tiny', 'ffhq1024' or a configs/*.py file")
    p.add_argument("--workdir", required=True, help="checkpoints, logs and evaluation images go "
                   "here; an existing workdir is resumed from its latest checkpoint")
    p.epilog = ("Override any config field after the options, e.g. --config.batch_size=4 "
                "--config.weights.generator=weights/stylegan2 --config.remat=True.")
    p.set_defaults(accepts_overrides=True)


def _run_train(args):
    import json
    from stylemask_jax.training.loop import train
    metrics = train(_training_config(args), args.workdir)
    print("final: " + json.dumps({k: round(v, 5) for k, v in metrics.items()}))
    return 0


def _workdir_config(workdir, overrides):
    import json
    import os
    import ml_collections
    from stylemask_jax.training.config_overrides import apply_overrides
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise UserInputError(f"--workdir {workdir}: no config.json (not a training workdir)")
    with open(path) as f:
        return apply_overrides(ml_collections.ConfigDict(json.load(f)), overrides)


def _restore_mask_params(workdir, config):
    import jax
    from stylemask_jax.training import checkpoints, loop, state as state_lib
    nets, frozen = loop.networks.build_networks(config)
    mesh = loop.make_mesh()
    optimizer = state_lib.make_optimizer(config.learning_rate, config.weight_decay)
    target = jax.eval_shape(lambda: loop.initial_state(nets, config, optimizer, mesh))
    manager = checkpoints.make_manager(workdir)
    state, step = checkpoints.restore_latest(manager, target)
    manager.close()
    if step is None:
        raise UserInputError(f"--workdir {workdir}: no checkpoint to load")
    return nets, frozen, state.params, step


def _add_evaluate(p):
    p.add_argument("--workdir", required=True, help="a training workdir (its config.json and "
                   "latest checkpoint are used)")
    p.set_defaults(accepts_overrides=True)
    p.epilog = "Config fields may be overridden as in train, e.g. --config.eval_pairs=20."


def _run_evaluate(args):
    import json
    from stylemask_jax.training.evaluation import make_evaluator
    config = _workdir_config(args.workdir, args.overrides)
    nets, frozen, params, step = _restore_mask_params(args.workdir, config)
    results = make_evaluator(nets, config)(params, frozen, args.workdir, step)
    print(json.dumps({"step": step, **{k: round(v, 5) for k, v in results.items()}}))
    return 0


def _add_export(p):
    p.add_argument("--workdir", required=True, help="a training workdir")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="mask-net weights directory for `stylemask reenact --mask-net DIR`")
    p.add_argument("--torch", metavar="FILE.pt", default=None,
                   help="also write the official PyTorch checkpoint layout "
                        "{'step', 'mask_net', 'num_layers_control'} (written without torch)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def _run_export(args):
    from stylemask_jax.training.export import export_mask_net
    config = _workdir_config(args.workdir, [])
    nets, _, params, step = _restore_mask_params(args.workdir, config)
    export_mask_net(params, nets.mask_net.widths, step, args.out, args.torch, args.overwrite)
    print(f"exported step {step} to {args.out}" + (f" and {args.torch}" if args.torch else ""))
    return 0


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
    import os
    import numpy as np
    from stylemask_jax import images, inversion
    from stylemask_jax.models.e4e import load_e4e

    if args.batch_size < 1:
        raise UserInputError(f"--batch-size must be at least 1, got {args.batch_size}")
    for path in args.images:  # fail before loading any model
        inversion.check_face_image(path)
    names = inversion.output_names(args.images)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserInputError(f"--out {args.out}: exists and is not a folder")
    os.makedirs(os.path.join(args.out, inversion.CODES_DIR), exist_ok=True)
    encoder, variables = load_e4e(args.e4e)
    generator = gen_vars = None
    if args.generator:
        from stylemask_jax.models.stylegan2 import load_generator
        generator, gen_vars, _ = load_generator(args.generator)
        inversion.check_generator(encoder, generator)
    if generator is not None:
        os.makedirs(os.path.join(args.out, inversion.RECONSTRUCTIONS_DIR), exist_ok=True)
    all_codes, done = [], 0
    for batch in inversion.invert_files(args.images, encoder, variables, args.batch_size,
                                        generator, gen_vars):
        for k, code in enumerate(batch.codes):
            name = names[done + k]
            np.save(os.path.join(args.out, inversion.CODES_DIR, f"{name}.npy"), code[None])
            if batch.images is not None:
                images.save_png(os.path.join(args.out, inversion.RECONSTRUCTIONS_DIR, f"{name}.png"),
                                batch.images[k])
        all_codes.append(batch.codes)
        done += len(batch.codes)
    np.save(os.path.join(args.out, inversion.ALL_CODES), np.concatenate(all_codes))
    with open(os.path.join(args.out, inversion.ALL_CODES_INDEX), "w") as f:
        f.write("".join(f"{path}\n" for path in args.images))
    print(f"wrote {done} W+ codes {all_codes[0].shape[1:]} to {args.out} "
          f"({inversion.ALL_CODES}, {inversion.CODES_DIR}/"
          f"{', ' + inversion.RECONSTRUCTIONS_DIR + '/' if generator is not None else ''})")
    return 0


# ---------------------------------------------------------------------------------------------
# the table of sub-commands
# ---------------------------------------------------------------------------------------------

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
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylemask",
        description="StyleMask face reenactment in JAX: convert the official weights, generate, "
                    "reenact, invert, train and evaluate.")
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
