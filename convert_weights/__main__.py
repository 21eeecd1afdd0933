"""`python -m convert_weights NETWORK IN... OUT_DIR` (the same as `stylemask convert ...`)."""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import sys

from stylemask_jax.guard import run_guarded

# network name -> module; each module defines DESCRIPTION, add_arguments(parser) and run(args).
NETWORKS = {
    "stylegan2": "convert_weights.stylegan2",
    "mask-net": "convert_weights.mask_net",
    "irse": "convert_weights.irse",
    "e4e": "convert_weights.e4e",
    "deca": "convert_weights.deca",
    "flame": "convert_weights.flame",
}


def available_networks() -> dict:
    return {name: mod for name, mod in NETWORKS.items() if importlib.util.find_spec(mod) is not None}


# argument name -> how errors name it: every output folder a converter may write
OUTPUT_ARGUMENTS = {"out_dir": "OUT_DIR", "generator_out": "--generator-out"}


def checked_outputs(run):
    """`run(args)` after every output folder of `args` is checked (`outputs.check_output_dir`),
    so a path under a file or a non-empty folder without --overwrite fails before conversion."""
    @functools.wraps(run)
    def checked(args):
        from stylemask_jax.outputs import check_output_dir
        for name, what in OUTPUT_ARGUMENTS.items():
            if getattr(args, name, None):
                check_output_dir(getattr(args, name), what, must_be_empty=not args.overwrite)
        return run(args)
    return checked


def add_subparsers(parser: argparse.ArgumentParser) -> None:
    """Adds one sub-command per available converter to `parser`."""
    sub = parser.add_subparsers(dest="network", metavar="NETWORK", required=True)
    for name, module_name in available_networks().items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.DESCRIPTION, description=module.DESCRIPTION)
        module.add_arguments(p)
        p.add_argument("--overwrite", action="store_true",
                       help="replace OUT_DIR if it exists and is not empty")
        p.set_defaults(convert_fn=checked_outputs(module.run))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m convert_weights",
        description="Convert an official PyTorch checkpoint to a stylemask-jax weights directory "
                    "(Orbax params + model.json). Files are read without torch and without "
                    "executing pickled code.")
    add_subparsers(parser)
    args = parser.parse_args(argv)
    return run_guarded(args.convert_fn, args)


if __name__ == "__main__":
    sys.exit(main())
