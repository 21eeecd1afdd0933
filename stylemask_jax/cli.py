"""`stylemask`: the table of sub-commands, nothing else.

Each row names a module of `stylemask_jax.commands` with `add_arguments(parser)` and `run(args)`.
Parsing happens under `guard.run_guarded`, so a value out of range (checked by the option's
action) and every error of the project's family is one line `stylemask: error: ...`, exit 2.
The command modules import the library only when they run, so `--help` needs no JAX.
A new sub-command is one module and one row.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from stylemask_jax import __version__
from stylemask_jax.commands.args import DefaultsHelpFormatter
from stylemask_jax.guard import run_guarded

COMMANDS = [  # (name, module, what it does)
    ("convert", "stylemask_jax.commands.convert",
     "convert an official PyTorch checkpoint (torch-free, no pickled code runs)"),
    ("generate", "stylemask_jax.commands.generate",
     "sample images from a converted generator (or --config tiny) by seed"),
    ("invert", "stylemask_jax.commands.invert",
     "invert face photos (aligned here, or --aligned crops) into W+ codes with e4e"),
    ("reenact", "stylemask_jax.commands.reenact",
     "reenact source faces with the pose and expression of target faces"),
    ("train", "stylemask_jax.commands.train",
     "train the mask network (one jitted data-parallel step, Orbax checkpoints)"),
    ("evaluate", "stylemask_jax.commands.evaluate",
     "CSIM, pose and expression error of a training run's latest checkpoint"),
    ("export", "stylemask_jax.commands.export",
     "export a trained mask network for `stylemask reenact` (and the PyTorch layout)"),
    ("dataset", "stylemask_jax.commands.dataset",
     "build a dataset of aligned real faces with tensorflow-datasets (no TensorFlow)"),
    ("demo", "stylemask_jax.commands.demo",
     "serve a local web page: upload a source photo and a target photo or driving video, see "
     "the reenactment (needs the [demo] extra)"),
    ("compare", "stylemask_jax.commands.compare",
     "compare the JAX networks with the PyTorch reference on your checkpoints (needs the "
     "[torch] extra)"),
]


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: one sub-parser per row of COMMANDS."""
    parser = argparse.ArgumentParser(
        prog="stylemask",
        description="StyleMask face reenactment in JAX: convert the official weights, generate, "
                    "reenact, invert, train, evaluate and compare with the PyTorch reference.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not use JAX's persistent compilation cache (on by default in "
                             f"{default_cache_dir()}, or the folder in ${CACHE_VARIABLE}; "
                             f"{CACHE_VARIABLE}=off turns it off too)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name, help_text in COMMANDS:
        command = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text,
                           description=help_text[:1].upper() + help_text[1:] + ".",
                           formatter_class=DefaultsHelpFormatter)
        command.add_arguments(p)
        p.set_defaults(command_fn=command.run)
    return parser


CACHE_VARIABLE = "STYLEMASK_COMPILE_CACHE"


def default_cache_dir() -> str:
    """~/.cache/stylemask-jax/jax (or under $XDG_CACHE_HOME)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "stylemask-jax", "jax")


def use_compile_cache(disabled: bool) -> None:
    """Points JAX's persistent compilation cache at our folder (every compilation is kept, so
    a repeated command skips compiling). JAX reads these variables when it is imported, which
    the commands do only after this; a variable the user set wins."""
    folder = os.environ.get(CACHE_VARIABLE) or default_cache_dir()
    if disabled or folder.lower() in ("off", "0", "no"):
        return
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", folder)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def _parse_and_run(argv) -> int | None:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help()              # a bare `stylemask`: what it can do
        return 0
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    use_compile_cache(args.no_compile_cache)
    return args.command_fn(args)


def main(argv=None) -> int:
    return run_guarded(_parse_and_run, argv)


if __name__ == "__main__":
    sys.exit(main())
