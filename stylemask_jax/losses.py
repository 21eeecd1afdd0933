"""StyleMask's 3-D face supervision: the shape, eye and mouth losses on DECA + FLAME decodes.

Every function is pure, batched and jit-compatible. The identity loss (ArcFace) is face
analysis and lives in `stylemask_jax.faces`, next to CSIM.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax.models.flame import FlameModel, decode

# =============================================================================================
# 3-D face supervision (DECA + FLAME)
# =============================================================================================

# The camera the StyleMask trainer forces before decoding both faces: scale 8, no translation.
SHAPE_LOSS_CAM = (8.0, 0.0, 0.0)
# Landmark pairs (68-point scheme) whose per-coordinate distances the losses compare.
EYE_PAIRS = np.array([(36, 39), (37, 41), (38, 40), (42, 45), (43, 47), (44, 46)])
MOUTH_PAIRS = np.array([(48, 54), (49, 59), (50, 58), (51, 57), (52, 56), (53, 55),
                        (60, 64), (61, 67), (62, 66), (63, 65)])
SHAPE_NORMALIZER = 200.0


def shape_loss(shape_gt: jax.Array, shape_reenacted: jax.Array, normalize: bool = False) -> jax.Array:
    """Mean absolute difference of projected vertices (B, V, 3) in pixels, z included; a scalar.
    `normalize=True` divides both by 200 first (an option of the reference the trainer leaves off)."""
    diff = jnp.abs(shape_gt - shape_reenacted)
    return jnp.mean(diff / SHAPE_NORMALIZER if normalize else diff)


def _pair_distance_loss(landmarks_gt: jax.Array, landmarks_reenacted: jax.Array,
                        pairs: np.ndarray) -> jax.Array:
    """Mean over (B, pairs, coords) of | |a - b|_gt - |a - b|_reenacted |, per-coordinate absolute
    distances (not Euclidean). Equal to the reference's average over pairs of per-pair L1 means."""
    def distances(lmk):
        return jnp.abs(lmk[:, pairs[:, 0]] - lmk[:, pairs[:, 1]])
    return jnp.mean(jnp.abs(distances(landmarks_gt) - distances(landmarks_reenacted)))


def eye_loss(landmarks_gt: jax.Array, landmarks_reenacted: jax.Array) -> jax.Array:
    """Eye-opening loss on projected 2-D landmarks (B, 68, 2) (pixels); a scalar."""
    return _pair_distance_loss(landmarks_gt, landmarks_reenacted, EYE_PAIRS)


def mouth_loss(landmarks_gt: jax.Array, landmarks_reenacted: jax.Array) -> jax.Array:
    """Mouth-opening loss on projected 2-D landmarks (B, 68, 2) (pixels); a scalar."""
    return _pair_distance_loss(landmarks_gt, landmarks_reenacted, MOUTH_PAIRS)


class FaceLosses(NamedTuple):
    shape: jax.Array
    eye: jax.Array
    mouth: jax.Array


def face_losses(flame_model: FlameModel, source: Mapping[str, jax.Array],
                target: Mapping[str, jax.Array], reenacted: Mapping[str, jax.Array],
                weight: float = 1.0) -> FaceLosses:
    """The StyleMask 3-D supervision of one batch (each loss multiplied by `weight`,
    the reference's lambda_shape).

    source, target, reenacted: DECA parameters with keys 'shape' (B, 100), 'exp' (B, 50),
    'pose' (B, 6) (other keys are ignored). The "ground truth" face is FLAME(source shape,
    target expression, target pose); the reenacted face uses all three of `reenacted`. Both are
    decoded with cam (8, 0, 0) to 224-pixel image space; shape = L1 of the projected vertices,
    eye/mouth = landmark-pair distance losses of the projected 2-D landmarks.
    """
    cam = jnp.broadcast_to(jnp.asarray(SHAPE_LOSS_CAM, jnp.float32), (source["shape"].shape[0], 3))
    gt = decode(flame_model, source["shape"], target["exp"], target["pose"], cam)
    re = decode(flame_model, reenacted["shape"], reenacted["exp"], reenacted["pose"], cam)
    return FaceLosses(weight * shape_loss(gt.vertices, re.vertices),
                      weight * eye_loss(gt.landmarks2d, re.landmarks2d),
                      weight * mouth_loss(gt.landmarks2d, re.landmarks2d))
