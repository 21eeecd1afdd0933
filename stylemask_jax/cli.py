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
import sys

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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name, help_text in COMMANDS:
        command = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text,
                           description=help_text[:1].upper() + help_text[1:] + ".",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        command.add_arguments(p)
        p.set_defaults(command_fn=command.run)
    return parser


def _parse_and_run(argv) -> int | None:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    return args.command_fn(args)


def main(argv=None) -> int:
    return run_guarded(_parse_and_run, argv)


if __name__ == "__main__":
    sys.exit(main())
