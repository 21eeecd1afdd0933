"""`validate_config(config)`: every numeric field of a training config in its valid range.

Called by `train` and by `evaluate` / `export` (through `checkpoints.workdir_config`), after the
command-line overrides, so `config.eval_pairs=-3` is a one-line error naming the field instead
of a failure deep inside XLA. Fields absent from a config (older workdirs) are skipped.
"""

from __future__ import annotations

import math
import numbers

from stylemask_jax.errors import UserInputError

# field -> (kind, lowest, highest, lowest_inclusive); kind 'int' or 'float'; None = unbounded
RANGES = {
    "batch_size": ("int", 1, None, True),
    "num_steps": ("int", 0, None, True),
    "log_every": ("int", 1, None, True),
    "checkpoint_every": ("int", 0, None, True),
    "keep_checkpoints": ("int", 1, None, True),
    "eval_every": ("int", 0, None, True),
    "eval_pairs": ("int", 1, None, True),
    "eval_batch_size": ("int", 1, None, True),
    "eval_grid_pairs": ("int", 0, None, True),
    "num_layers_control": ("int", 1, None, True),
    "num_devices": ("int", 0, None, True),
    "microbatch": ("int", 0, None, True),
    "seed": ("int", 0, None, True),
    "learning_rate": ("float", 0.0, None, False),
    "weight_decay": ("float", 0.0, None, True),
    "lambda_shape": ("float", 0.0, None, True),
    "lambda_identity": ("float", 0.0, None, True),
    "lambda_perceptual": ("float", 0.0, None, True),
    "truncation": ("float", 0.0, 1.0, False),
    "memory_limit_gib": ("float", 0.0, None, False),
}
# Values a field takes besides its range: microbatch "auto" (training/microbatch.py `choose`);
# memory_limit_gib None (the device's own limit, or a share of the RAM on a CPU).
ALSO = {"microbatch": ("auto",), "memory_limit_gib": (None,)}


def _describe(kind, low, high, inclusive, also=()) -> str:
    what = "an integer" if kind == "int" else "a finite number"
    if high is not None:
        what = f"{what} in {'[' if inclusive else '('}{low}, {high}]"
    else:
        what = f"{what} {'>=' if inclusive else '>'} {low}"
    return " or ".join([what, *(repr(a) for a in also)])


def check_field(name: str, value, kind: str, low, high, inclusive: bool, also=()) -> None:
    """One field against its range (or one of the values `also`); UserInputError naming
    `config.NAME`."""
    if any(value is a or (isinstance(a, str) and value == a) for a in also):
        return
    wanted = _describe(kind, low, high, inclusive, also)
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not is_number or (kind == "int" and not float(value).is_integer()) or not math.isfinite(value):
        raise UserInputError(f"config.{name}={value!r}: expected {wanted}")
    if (low is not None and (value < low or (value == low and not inclusive))) or (
            high is not None and value > high):
        raise UserInputError(f"config.{name}={value!r}: expected {wanted}")


def validate_config(config) -> None:
    """Raises UserInputError for the first numeric field out of its range (see RANGES, ALSO), a
    generator layout that cannot exist, or a DECA box that is empty."""
    for name, spec in RANGES.items():
        if name in config:
            check_field(name, config[name], *spec, also=ALSO.get(name, ()))
    if config.get("lambda_perceptual"):
        raise UserInputError("config.lambda_perceptual: the LPIPS term is not ported; the "
                             "paper trains with 0")
    generator = config.get("generator")
    if generator is not None:
        for name in ("size", "style_dim", "n_mlp"):
            if name in generator:
                check_field(f"generator.{name}", generator[name], "int", 1, None, True)
        if "size" in generator and (generator.size < 4 or generator.size & (generator.size - 1)):
            raise UserInputError(f"config.generator.size={generator.size}: expected a power "
                                 "of two >= 4")
        if "lr_mlp" in generator:
            check_field("generator.lr_mlp", generator.lr_mlp, "float", 0.0, None, False)
    box = config.get("deca_fixed_box")
    if box is not None:
        if len(box) != 4 or not box[0] < box[2] or not box[1] < box[3]:
            raise UserInputError(f"config.deca_fixed_box={list(box)}: expected [x0, y0, x1, y1] "
                                 "with x0 < x1 and y0 < y1")
    size_range = config.get("deca_box_size_range")
    if size_range is not None:
        if len(size_range) != 2 or not 0 < size_range[0] <= size_range[1]:
            raise UserInputError(f"config.deca_box_size_range={list(size_range)}: expected "
                                 "[low, high] with 0 < low <= high")
