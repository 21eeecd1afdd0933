"""Command-line overrides of a ConfigDict: `--config.batch_size=4 --config.weights.deca=DIR`."""

from __future__ import annotations

import ast

from stylemask_jax.errors import UserInputError

PREFIX = "--config."


def _parse_value(text: str):
    if text in ("None", "none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        return float(text)  # also 'inf' and 'nan'
    except ValueError:
        return text  # a bare string such as a path


def apply_overrides(config, args: list[str]):
    """Applies every `--config.path.to.key=value` in `args` to `config` (in place, returned).

    Values are Python literals (numbers, booleans, lists, None) or bare strings. Unknown keys and
    type mismatches raise UserInputError naming the argument.
    """
    for arg in args:
        if not arg.startswith(PREFIX) or "=" not in arg:
            raise UserInputError(f"unrecognised argument {arg!r}; overrides look like "
                                 f"--config.batch_size=4")
        path, text = arg[len(PREFIX):].split("=", 1)
        *parents, leaf = path.split(".")
        node = config
        try:
            for name in parents:
                node = node[name]
            if leaf not in node:
                raise KeyError(leaf)
            value = _parse_value(text)
            current = node[leaf]
            if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if isinstance(current, str) and not isinstance(value, str) and value is not None:
                value = text
            node[leaf] = value
        except KeyError:
            raise UserInputError(f"{arg}: the config has no field '{path}'") from None
        except (TypeError, ValueError) as err:
            raise UserInputError(f"{arg}: {err}") from None
    return config

