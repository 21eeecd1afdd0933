"""Config overrides on the command line: `--config.batch_size=4 --config.weights.deca=DIR`.

    config = apply_overrides(load_config("tiny"), ["--config.batch_size=4"])
    with config_fields():              # library errors about a field name its override flag
        train(config, workdir)

The path is walked and set with ml_collections' own `config_flags.config_path` (dots, and
`[i]` for list items); the value is a Python literal (numbers, booleans, lists, None) or else a
bare string such as a path. We do not use `config_flags.DEFINE_config_file`: it binds the config
to absl's global FLAGS and a file path, while `stylemask` is an argparse command line whose
configs are named (`--config tiny`) and whose overrides follow the sub-command's options.
"""

from __future__ import annotations

import ast
import contextlib

from ml_collections.config_flags import config_path

from stylemask_jax.errors import StylemaskError, UserInputError

PREFIX = "--config."


def parse_value(text: str, current):
    """The command-line text of a value -> a Python value fitting the field's current value."""
    if text in ("None", "none", "null"):
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        try:
            value = float(text)  # also 'inf' and 'nan'
        except ValueError:
            value = text  # a bare string such as a path
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, str) and not isinstance(value, str) and value is not None:
        return text
    return value


def apply_overrides(config, args: list[str]):
    """Applies every `--config.path.to.key=value` of `args` to `config` (in place, returned).
    Unknown fields and type mismatches raise UserInputError naming the argument."""
    for arg in args:
        if not arg.startswith(PREFIX) or "=" not in arg:
            raise UserInputError(f"unrecognised argument {arg!r}; overrides look like "
                                 f"--config.batch_size=4")
        path, text = arg[len(PREFIX):].split("=", 1)
        try:
            current = config_path.get_value(path, config)
        except (KeyError, IndexError, AttributeError, ValueError):
            raise UserInputError(f"{arg}: the config has no field '{path}'") from None
        try:
            config_path.set_value(path, config, parse_value(text, current))
        except (TypeError, ValueError) as err:
            raise UserInputError(f"{arg}: {err}") from None
    return config


@contextlib.contextmanager
def config_fields():
    """Library errors about a config field ('config.batch_size=0: ...') name its override flag."""
    try:
        yield
    except StylemaskError as err:
        if str(err).startswith("config."):
            raise type(err)(f"--{err}") from None
        raise
