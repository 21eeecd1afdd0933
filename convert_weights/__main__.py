"""`python -m convert_weights NETWORK IN... OUT_DIR`: the same as `stylemask convert ...`."""

from __future__ import annotations

import argparse
import sys

from stylemask_jax.commands import convert
from stylemask_jax.guard import run_guarded


def _parse_and_run(argv):
    parser = argparse.ArgumentParser(
        prog="python -m convert_weights",
        description="Convert an official PyTorch checkpoint to a stylemask-jax weights directory "
                    "(Orbax params + model.json). Files are read without torch and without "
                    "executing pickled code.")
    convert.add_arguments(parser)
    return convert.run(parser.parse_args(argv))


def main(argv=None) -> int:
    return run_guarded(_parse_and_run, argv)


if __name__ == "__main__":
    sys.exit(main())
