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
    ("invert", "invert FFHQ-aligned face photos into W+ codes with e4e (alignment comes later)",
     _add_invert, _run_invert),
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
    args = build_parser().parse_args(argv)
    return run_guarded(args.command_fn, args)


if __name__ == "__main__":
    sys.exit(main())
