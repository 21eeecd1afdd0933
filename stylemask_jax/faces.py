"""Face analysis shared by training, evaluation, the losses, the metrics and the benchmarks.

    images = face_pool(generator_images)     # (B, 256, 256, 3): `models.stylegan2.face_pool`
    params = deca_parameters(nets, frozen, images, config)     # two-pass DECA crop, in the graph
    angles = head_angles_degrees(params['pose'][:, :3])        # (B, 3) yaw, pitch, roll
    identity_loss(irse, ivars, reenacted, source)              # mean(1 - cos), the IDLoss
    csim(irse, ivars, images_a, images_b)                      # (B,) ArcFace cosine

One home for each quantity, so a change here changes training and evaluation alike.
Every function is pure, batched and jit-compatible.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax.models import flame as flame_lib
from stylemask_jax.models.deca import split_params
from stylemask_jax.models.irse import IRSE, cosine_similarity, face_embeddings
from stylemask_jax.ops.deca_crop import (box_center_size, box_transform, deca_crop_from_box,
                                         landmark_box)

# The reference converts radians to degrees with pi rounded to float32.
_PI_F32 = float(np.float32(np.pi))

# =============================================================================================
# DECA parameters (two-pass crop) of images at 256 (`face_pool`)
# =============================================================================================


def deca_parameters(nets, frozen, images: jax.Array, config) -> dict:
    """DECA parameters of (B, 256, 256, 3) images in [-1, 1], inside the jitted graph.

    The reference crops around landmarks from a face-alignment network run outside the graph.
    Here pass 1 crops the fixed box `config.deca_fixed_box` (where an FFHQ-aligned face sits),
    encodes, and projects FLAME's 68 landmarks back to the 256 image; pass 2 crops around those
    landmarks (the reference's crop rule) and encodes again. The landmarks are constants
    (stop_gradient), as detector landmarks are in the reference. A second-pass box whose size is
    outside `config.deca_box_size_range` times the fixed box's (a failed first pass) falls back
    to the fixed box, like the reference's fallback when no face is detected; the returned
    'crop_fallback' (B,) is 1 where that happened.
    """
    box = jnp.asarray(config.deca_fixed_box, jnp.float32)
    code = split_params(nets.deca.apply(frozen["deca"], deca_crop_from_box(images, box)))
    batch = images.shape[0]
    if not config.deca_two_pass:
        return dict(code, crop_fallback=jnp.zeros((batch,), jnp.float32))
    decoded = flame_lib.decode(frozen["flame"], code["shape"], code["exp"], code["pose"], code["cam"])
    matrix = box_transform(box)[0]                       # 256-image pixels -> crop pixels
    landmarks = (decoded.landmarks2d - matrix[:2, 2]) / matrix[0, 0]
    second = jax.lax.stop_gradient(landmark_box(landmarks))
    _, _, fixed_size = box_center_size(box)
    _, _, size = box_center_size(second)
    low, high = config.deca_box_size_range
    ok = (size >= low * fixed_size) & (size <= high * fixed_size)
    boxes = jnp.where(ok[:, None], second, box[None, :])
    code = split_params(nets.deca.apply(frozen["deca"], deca_crop_from_box(images, boxes)))
    return dict(code, crop_fallback=1.0 - ok.astype(jnp.float32))


# =============================================================================================
# head angles (DECA global pose)
# =============================================================================================


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


# =============================================================================================
# identity (ArcFace IR-SE): the identity distance, the identity loss, CSIM
# =============================================================================================


def identity_distance(embeddings: jax.Array, reference: jax.Array) -> jax.Array:
    """(B, 512), (B, 512) ArcFace embeddings -> (B,) 1 - cosine similarity, in [0, 2]."""
    return 1.0 - cosine_similarity(embeddings, reference)


def identity_loss(irse: IRSE, variables, reenacted: jax.Array, source: jax.Array) -> jax.Array:
    """The reference IDLoss: mean over the batch of 1 - cos(emb(reenacted), emb(source)).

    reenacted, source: (B, 256, 256, 3) in [-1, 1] (generator outputs pooled to 256). The
    source embedding is a constant (`stop_gradient`): gradients flow only into `reenacted`.
    Returns an unweighted float32 scalar in [0, 2]; the trainer multiplies it by
    lambda_identity (10 in the paper). `irse` is static: bind it with functools.partial
    before jit.
    """
    target = jax.lax.stop_gradient(face_embeddings(irse, variables, source))
    return jnp.mean(identity_distance(face_embeddings(irse, variables, reenacted), target))


def csim(irse: IRSE, variables, images_a: jax.Array, images_b: jax.Array) -> jax.Array:
    """Per-pair CSIM: the cosine similarity of the ArcFace (IR-SE) embeddings of two batches.

    images_a, images_b: (B, 256, 256, 3) in [-1, 1] (1024 generator outputs pooled to 256),
    preprocessed as the identity loss does (fixed crop, adaptive pooling to 112).
    Returns (B,) float32 in [-1, 1]; 1 = same direction. Average it for the dataset figure.
    """
    return cosine_similarity(face_embeddings(irse, variables, images_a),
                             face_embeddings(irse, variables, images_b))
