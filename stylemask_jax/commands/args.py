"""What every command shares: checked numeric options, the flag named in library errors, the
refinement options, the summary line.

    p.add_argument("--batch-size", type=int, default=8, action=at_least(1))
    p.add_argument("--truncation", type=float, default=0.7, action=in_range(0.0, 1.0))
    with naming("--sources"):          # a library error inside says "--sources PATH: ..."
        codes = load_codes(args.sources, ...)

A range is checked when the option is parsed, before anything loads, and a value out of range is
one line `stylemask: error: --batch-size must be at least 1, got 0` (a `UserInputError` raised by
the option's action, reported by `guard.run_guarded`). Library errors name values and paths, never
flags; `naming` adds the flag in front of an error raised inside its block. This module imports
only the standard library and `stylemask_jax.errors`, so that `stylemask SUB --help` stays light.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys

import configs
from stylemask_jax.errors import StylemaskError, UserInputError
from stylemask_jax.outputs import check_output_dir
from stylemask_jax.photos.settings import RefineSettings


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends '(default: X)' to an option's help when it has a default worth showing: not for
    required options, flags that are off, None, or a help text that already says its default."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False
        shown = (not unset and action.default != argparse.SUPPRESS and not action.required
                 and action.option_strings and "default" not in text)
        return text + " (default: %(default)s)" if shown else text


def checked(rule: str, ok) -> type[argparse.Action]:
    """An argparse action that stores a number after `ok(value)`; else '--flag must be RULE'."""

    class Checked(argparse.Action):
        def __call__(self, parser, namespace, value, option_string=None):
            if not (math.isfinite(value) and ok(value)):
                raise UserInputError(f"{option_string} must be {rule}, got {value}")
            setattr(namespace, self.dest, value)

    return Checked


def at_least(low) -> type[argparse.Action]:
    """Action: the number must be >= low."""
    return checked(f"at least {low}", lambda v: v >= low)


def at_least_zero(meaning: str) -> type[argparse.Action]:
    """Action: the number must be >= 0, where 0 has `meaning` (e.g. 'all')."""
    return checked(f"0 ({meaning}) or more", lambda v: v >= 0)


def above(low) -> type[argparse.Action]:
    """Action: the number must be > low."""
    return checked(f"above {low}", lambda v: v > low)


def in_range(low, high) -> type[argparse.Action]:
    """Action: the number must be in [low, high]."""
    return checked(f"in [{low:g}, {high:g}]", lambda v: low <= v <= high)


@contextlib.contextmanager
def naming(flag: str):
    """Errors of the project raised inside the block name `flag` first: '{flag} {message}'
    (an error that already starts with a flag, '--...', is left as it is)."""
    try:
        yield
    except StylemaskError as err:
        if str(err).startswith("--"):
            raise
        raise type(err)(f"{flag} {err}") from None


TRUNCATION_HELP = ("psi of the truncation trick w' = mean + psi * (w - mean); 1.0 disables it; "
                   "mean = the generator checkpoint's latent_avg, else the mean of 4096 mapped Z "
                   "drawn from seed 0")


NOT_NEGATIVE = checked(">= 0", lambda v: v >= 0)


def add_refine_arguments(group) -> None:
    """--refine-steps, its weights and --irse (for `reenact` and `invert`)."""
    d = RefineSettings()
    group.add_argument("--refine-steps", type=int, default=0, action=NOT_NEGATIVE,
                       help="refine each e4e code by this many Adam steps in W+ on the "
                            "reconstruction of its aligned crop (0: off)")
    group.add_argument("--refine-lr", type=float, default=d.lr,
                       action=checked("> 0", lambda v: v > 0), help="Adam step size")
    for name, text in (("l2", "weight of the mean squared error at 256 px (images in [-1, 1])"),
                       ("l1", "weight of the mean absolute error"),
                       ("identity", "weight of the ArcFace identity term 1 - cos (used only "
                                    "with --irse)"),
                       ("pull", "weight of the mean squared distance to the e4e code")):
        group.add_argument(f"--refine-{name}", type=float, default=getattr(d, name),
                           action=NOT_NEGATIVE, help=text)
    group.add_argument("--irse", metavar="DIR", default=None, help="converted ArcFace IR-SE "
                       "(`stylemask convert irse`) for the identity term of the refinement")


def refine_settings(args) -> RefineSettings:
    """The refinement options as `RefineSettings`."""
    return RefineSettings(steps=args.refine_steps, lr=args.refine_lr, l2=args.refine_l2,
                          l1=args.refine_l1, identity=args.refine_identity, pull=args.refine_pull)


def status(message: str) -> None:
    """'stylemask: MESSAGE' on stderr while slow work starts (loading, compiling), for a person at
    a terminal only: piped or captured output stays the command's summary and errors."""
    if sys.stderr.isatty():
        print(f"stylemask: {message}", file=sys.stderr, flush=True)


def json_line(values: dict) -> str:
    """A metrics dictionary as one JSON line, floats rounded to 5 digits."""
    return json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in values.items()})


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """'1 pair', '3 pairs'."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def add_overwrite_argument(p, flag: str = "--out") -> None:
    p.add_argument("--overwrite", action="store_true", help=f"replace {flag} when it exists and "
                   "is not empty (its old files are removed, so two runs never mix)")


def clear_output(path: str, overwrite: bool) -> None:
    """With --overwrite, removes the old output folder; called after every input was checked,
    just before the new outputs are written."""
    if overwrite and os.path.isdir(path):
        shutil.rmtree(path)


def check_new_output(path: str, flag: str, overwrite: bool) -> None:
    """An output folder that a command fills whole: writable, and empty unless --overwrite."""
    check_output_dir(path, flag)
    with naming(flag):
        if not overwrite and os.path.isdir(path) and os.listdir(path):
            raise UserInputError(f"{path}: exists and is not empty (use --overwrite)")


def named_config(name: str):
    """The config of `--config NAME` (a configs/*.py name or a .py file)."""
    with naming("--config:"):
        return configs.load_config(name)
