"""Evaluation metrics of StyleMask. Pure, batched, jit-compatible functions.

Section "head pose and expression": DECA head angles, pose error, expression error.
(Other sections, e.g. CSIM, live below in their own blocks.)
"""

from __future__ import annotations

import functools
import importlib.resources

import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax.models.irse import IRSE, cosine_similarity, face_embeddings

# =============================================================================================
# head pose and expression (DECA parameters)
# =============================================================================================

# The reference converts radians to degrees with pi rounded to float32.
_PI_F32 = float(np.float32(np.pi))
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


def axis_angle_to_matrix(axis_angle: jax.Array) -> jax.Array:
    """(B, 3) axis-angle -> (B, 3, 3) rotation, via a normalised quaternion as DECA's
    batch_axis2matrix (w = cos(t/2), v = a sin(t/2)/t, with sin(t/2)/t -> 1/2 at t = 0)."""
    theta2 = jnp.sum(axis_angle ** 2, axis=-1, keepdims=True)
    nonzero = theta2 > 0
    theta = jnp.sqrt(jnp.where(nonzero, theta2, 1.0))       # safe: no NaN gradient at t = 0
    half = 0.5 * theta
    k = jnp.where(nonzero, jnp.sin(half) / theta, 0.5)
    w = jnp.where(nonzero, jnp.cos(half), 1.0)
    q = jnp.concatenate([w, axis_angle * k], axis=-1)
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = (q[..., i] for i in range(4))
    w2, x2, y2, z2 = w * w, x * x, y * y, z * z
    rows = [w2 + x2 - y2 - z2, 2 * x * y - 2 * w * z, 2 * w * y + 2 * x * z,
            2 * w * z + 2 * x * y, w2 - x2 + y2 - z2, 2 * y * z - 2 * w * x,
            2 * x * z - 2 * w * y, 2 * w * x + 2 * y * z, w2 - x2 - y2 + z2]
    return jnp.stack(rows, axis=-1).reshape(axis_angle.shape[:-1] + (3, 3))


def matrix_to_euler(rot: jax.Array) -> jax.Array:
    """(B, 3, 3) rotations -> (B, 3) radians [yaw, pitch, roll] as the reference names them:
    asin(R[2,0]), atan2(R[2,1], R[2,2]), atan2(R[1,0], R[0,0]) (each atan2 argument divided by
    cos(yaw) > 0, as the reference). The reference fails for |R[2,0]| > 0.998 (|yaw| above ~86
    degrees); here R[2,0] is clipped to [-1, 1] and cos(yaw) kept >= 1e-12 so the result stays
    finite there."""
    x = jnp.arcsin(jnp.clip(rot[:, 2, 0], -1.0, 1.0))
    c = jnp.maximum(jnp.cos(x), 1e-12)
    y = jnp.arctan2(rot[:, 2, 1] / c, rot[:, 2, 2] / c)
    z = jnp.arctan2(rot[:, 1, 0] / c, rot[:, 0, 0] / c)
    return jnp.stack([x, y, z], axis=-1)


def head_angles_degrees(global_pose: jax.Array) -> jax.Array:
    """DECA global pose (B, 3) axis-angle -> (B, 3) [yaw, pitch, roll] degrees, float32.

    Batched version of the reference converter (which handles one image per call). Note that
    this yaw has the opposite sign of the FLAME contour's head yaw.
    """
    rad = matrix_to_euler(axis_angle_to_matrix(jnp.asarray(global_pose, jnp.float32)))
    return rad * 180.0 / _PI_F32


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


# =============================================================================================
# identity: CSIM (ArcFace cosine similarity)
# =============================================================================================


def csim(irse: IRSE, variables, images_a: jax.Array, images_b: jax.Array) -> jax.Array:
    """Per-pair CSIM: the cosine similarity of the ArcFace (IR-SE) embeddings of two batches.

    images_a, images_b: (B, 256, 256, 3) in [-1, 1] (1024 generator outputs pooled to 256),
    preprocessed as the identity loss does (fixed crop, adaptive pooling to 112).
    Returns (B,) float32 in [-1, 1]; 1 = same direction. Average it for the dataset figure.
    """
    return cosine_similarity(face_embeddings(irse, variables, images_a),
                             face_embeddings(irse, variables, images_b))
