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
# the table of sub-commands
# ---------------------------------------------------------------------------------------------

COMMANDS = [
    ("convert", "convert an official PyTorch checkpoint (torch-free, no pickled code runs)",
     _add_convert, _run_convert),
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
