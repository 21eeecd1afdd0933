"""Evaluation metrics of StyleMask on DECA parameters: pose error and expression error.

Pure, batched, jit-compatible functions. The head angles they compare and CSIM (identity)
are face analysis and live in `stylemask_jax.faces`.
"""

from __future__ import annotations

import functools
import importlib.resources

import jax
import jax.numpy as jnp
import numpy as np


# =============================================================================================
# head pose and expression (DECA parameters)
# =============================================================================================

NUM_EXP_METRIC = 20   # expression coefficients the expression error compares
JAW_RANGE_ROW = 3     # ranges_FFHQ.npy row of the jaw opening pose[3]
EXP_RANGE_ROW = 4     # ranges_FFHQ.npy row of expression coefficient 0


@functools.lru_cache(maxsize=1)
def ffhq_ranges() -> np.ndarray:
    """(54, 2) float64 [min, max] per quantity, measured by the authors with DECA on FFHQ
    generator samples: rows 0..2 yaw/pitch/roll (degrees), 3 jaw opening pose[3] (radians),
    4..53 the 50 expression coefficients. Package data (stylemask_jax/data/ranges_FFHQ.npy)."""
    with importlib.resources.files("stylemask_jax").joinpath("data/ranges_FFHQ.npy").open("rb") as f:
        ranges = np.load(f, allow_pickle=False)
    ranges.setflags(write=False)
    return ranges


def pose_error(angles: jax.Array, angles_target: jax.Array) -> jax.Array:
    """(B, 3) and (B, 3) degrees -> (B,) mean over yaw, pitch, roll of the absolute difference."""
    return jnp.mean(jnp.abs(angles - angles_target), axis=-1)


def _expression_features(pose: jax.Array, exp: jax.Array, ranges) -> jax.Array:
    lo = jnp.asarray(ranges[JAW_RANGE_ROW:EXP_RANGE_ROW + NUM_EXP_METRIC, 0], jnp.float32)
    hi = jnp.asarray(ranges[JAW_RANGE_ROW:EXP_RANGE_ROW + NUM_EXP_METRIC, 1], jnp.float32)
    values = jnp.concatenate([pose[:, 3:4], exp[:, :NUM_EXP_METRIC]], axis=-1)       # (B, 21)
    return (values - lo) / (hi - lo)


def expression_error(pose: jax.Array, exp: jax.Array, pose_target: jax.Array,
                     exp_target: jax.Array, ranges=None) -> jax.Array:
    """Normalised expression distance (B,): mean over 21 values of |norm(a) - norm(b)|.

    pose (B, 6) and exp (B, >= 20) DECA parameters of the reenacted face, *_target those of the
    target. Values: the jaw opening pose[:, 3] and exp[:, :20]; norm(v) = (v - min) / (max - min)
    with `ranges` (54, 2) rows 3 and 4..23 (default: `ffhq_ranges()`).
    """
    ranges = ffhq_ranges() if ranges is None else ranges
    a = _expression_features(pose, exp, ranges)
    b = _expression_features(pose_target, exp_target, ranges)
    return jnp.mean(jnp.abs(a - b), axis=-1)
