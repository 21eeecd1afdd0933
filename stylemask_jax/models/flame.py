"""FLAME as DECA uses it, in pure jnp: blend shapes, skinning, 68 landmarks, DECA's projection.

FLAME has nothing to train, so there is no Linen module: the model is `FlameModel`, a frozen
pytree (flax.struct dataclass) whose leaves are the model arrays and whose static fields are the
kinematic tree and the basis sizes. Pass it to jitted functions as an ordinary argument;
`jax.grad` with respect to the FLAME *parameters* (shape, expression, pose) flows through every
function here except the contour-row choice (an integer gather, piecewise constant in the pose).

Conventions (as the official DECA code):
  - shape (B, 100) identity and exp (B, 50) expression coefficients; pose (B, 6) = global
    axis-angle (3) then jaw axis-angle (3), radians. Neck (B, 3) and eyes (B, 6) default to zero.
  - the full pose has 5 joints: 0 global (root), 1 neck, 2 jaw, 3 and 4 the eyeballs.
  - vertices in metres (y up, face towards +z), float32.
  - landmarks2d: 3-D positions of the 68 points whose jaw line (0..16) follows the head's yaw;
    landmarks3d: the 68 points of the fixed embedding.
  - `decode` projects orthographically with cam = (scale, tx, ty) to DECA's 224x224 image space:
    x -> (s (x + tx)) * 112 + 112, y -> -(s (y + ty)) * 112 + 112, z -> -(s z) * 112 + 112 for the
    3-D outputs (pixels, y down).

Load the converted arrays with `load_flame(dir)` (written by `stylemask convert flame ...`).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from stylemask_jax.weights import load_weights

NUM_JOINTS = 5
NECK = 1
CONTOUR_ROWS = 79    # rows 0..39: yaw 0..39 degrees; rows 40..78: yaw -1..-39 degrees
MAX_YAW_ROW = 39
DECA_IMAGE_SIZE = 224


@struct.dataclass
class FlameModel:
    """The FLAME arrays (V vertices, F faces, K = n_shape + n_exp blend shapes).

    v_template (V, 3); shapedirs (V, 3, K); posedirs (36, 3V) (pose feature -> vertex offsets,
    column 3v + c); J_regressor (5, V); lbs_weights (V, 5); faces (F, 3) int32;
    static_lmk_faces_idx (51,), static_lmk_bary_coords (51, 3);
    dynamic_lmk_faces_idx (79, 17), dynamic_lmk_bary_coords (79, 17, 3);
    full_lmk_faces_idx (68,), full_lmk_bary_coords (68, 3).
    """

    v_template: jax.Array
    shapedirs: jax.Array
    posedirs: jax.Array
    J_regressor: jax.Array
    lbs_weights: jax.Array
    faces: jax.Array
    static_lmk_faces_idx: jax.Array
    static_lmk_bary_coords: jax.Array
    dynamic_lmk_faces_idx: jax.Array
    dynamic_lmk_bary_coords: jax.Array
    full_lmk_faces_idx: jax.Array
    full_lmk_bary_coords: jax.Array
    parents: tuple = struct.field(pytree_node=False, default=(-1, 0, 1, 1, 1))
    n_shape: int = struct.field(pytree_node=False, default=100)
    n_exp: int = struct.field(pytree_node=False, default=50)

    @classmethod
    def from_arrays(cls, arrays: dict, arch: dict) -> "FlameModel":
        """Builds the model from `convert_flame`'s `(arrays, arch)` (float32 / int32 leaves)."""
        leaves = {}
        for name in cls.__dataclass_fields__:
            if name in ("parents", "n_shape", "n_exp"):
                continue
            value = np.asarray(arrays[name])
            dtype = np.int32 if value.dtype.kind in "iu" else np.float32
            leaves[name] = jnp.asarray(value, dtype)
        return cls(**leaves, parents=tuple(int(p) for p in arch["parents"]),
                   n_shape=int(arch["n_shape"]), n_exp=int(arch["n_exp"]))


class FlameOutput(NamedTuple):
    vertices: jax.Array      # (B, V, 3) posed mesh, metres
    landmarks2d: jax.Array   # (B, 68, 3) with the yaw-dependent contour
    landmarks3d: jax.Array   # (B, 68, 3) fixed embedding


class Decoded(NamedTuple):
    landmarks2d: jax.Array   # (B, 68, 2) image pixels (x right, y down)
    landmarks3d: jax.Array   # (B, 68, 3) image pixels, z mapped the same way
    vertices: jax.Array      # (B, V, 3) image pixels, z mapped the same way


def load_flame(weights_dir: str | os.PathLike) -> FlameModel:
    """Loads a directory written by `stylemask convert flame` into a FlameModel."""
    arrays, arch = load_weights(weights_dir, "flame")
    return FlameModel.from_arrays(arrays, arch)


# ---------------------------------------------------------------------------------------------
# rotations and skinning
# ---------------------------------------------------------------------------------------------

def batch_rodrigues(rot_vecs: jax.Array) -> jax.Array:
    """Axis-angle (..., 3) -> rotation matrices (..., 3, 3), as DECA's batch_rodrigues.

    The angle is `|r + 1e-8|` (shifted so that it is never zero; a zero vector gives exactly the
    identity and finite gradients).
    """
    angle = jnp.linalg.norm(rot_vecs + 1e-8, axis=-1, keepdims=True)
    rx, ry, rz = jnp.split(rot_vecs / angle, 3, axis=-1)
    zeros = jnp.zeros_like(rx)
    k = jnp.concatenate([zeros, -rz, ry, rz, zeros, -rx, -ry, rx, zeros], axis=-1)
    k = k.reshape(rot_vecs.shape[:-1] + (3, 3))
    sin, cos = jnp.sin(angle)[..., None], jnp.cos(angle)[..., None]
    return jnp.eye(3, dtype=rot_vecs.dtype) + sin * k + (1 - cos) * (k @ k)


def rigid_transform(rot_mats: jax.Array, joints: jax.Array, parents: tuple):
    """Chains per-joint rotations along the kinematic tree.

    rot_mats (B, J, 3, 3), joints (B, J, 3) rest joints. Returns posed joints (B, J, 3) and the
    relative transforms (B, J, 4, 4) that move rest-pose points to posed points.
    """
    parent_idx = np.array([0] + list(parents[1:]))
    rel_joints = joints - jnp.where(np.arange(len(parents))[:, None] > 0, joints[:, parent_idx], 0)
    top = jnp.concatenate([rot_mats, rel_joints[..., None]], axis=-1)               # (B, J, 3, 4)
    bottom = jnp.broadcast_to(jnp.array([0, 0, 0, 1], rot_mats.dtype), top.shape[:-2] + (1, 4))
    local = jnp.concatenate([top, bottom], axis=-2)                                 # (B, J, 4, 4)
    chain = [local[:, 0]]
    for j in range(1, len(parents)):  # static loop over the 5 joints, not over samples
        chain.append(chain[parents[j]] @ local[:, j])
    transforms = jnp.stack(chain, axis=1)
    posed_joints = transforms[..., :3, 3]
    offset = jnp.einsum("bjik,bjk->bji", transforms[..., :3, :3], joints)          # G [J; 0]
    rel = transforms.at[..., :3, 3].add(-offset)
    return posed_joints, rel


def full_pose(pose: jax.Array, neck_pose: jax.Array | None = None,
              eye_pose: jax.Array | None = None) -> jax.Array:
    """DECA pose (B, 6) [global, jaw] -> (B, 5, 3) [global, neck, jaw, eye, eye] axis-angles."""
    batch = pose.shape[0]
    neck = jnp.zeros((batch, 3), pose.dtype) if neck_pose is None else neck_pose
    eyes = jnp.zeros((batch, 6), pose.dtype) if eye_pose is None else eye_pose
    return jnp.concatenate([pose[:, :3], neck, pose[:, 3:], eyes], axis=1).reshape(batch, NUM_JOINTS, 3)


def lbs(model: FlameModel, betas: jax.Array, pose: jax.Array) -> jax.Array:
    """Linear blend skinning: betas (B, K), pose (B, 5, 3) axis-angles -> vertices (B, V, 3)."""
    batch = betas.shape[0]
    v_shaped = model.v_template + jnp.einsum("bk,vck->bvc", betas, model.shapedirs)
    joints = jnp.einsum("jv,bvc->bjc", model.J_regressor, v_shaped)
    rot_mats = batch_rodrigues(pose)                                                # (B, 5, 3, 3)
    pose_feature = (rot_mats[:, 1:] - jnp.eye(3, dtype=rot_mats.dtype)).reshape(batch, -1)
    v_posed = v_shaped + (pose_feature @ model.posedirs).reshape(batch, -1, 3)
    _, rel = rigid_transform(rot_mats, joints, model.parents)
    t = jnp.einsum("vj,bjik->bvik", model.lbs_weights, rel)                         # (B, V, 4, 4)
    return jnp.einsum("bvik,bvk->bvi", t[..., :3, :3], v_posed) + t[..., :3, 3]


# ---------------------------------------------------------------------------------------------
# landmarks
# ---------------------------------------------------------------------------------------------

def vertices_to_landmarks(vertices: jax.Array, faces: jax.Array, face_idx: jax.Array,
                          bary: jax.Array) -> jax.Array:
    """Barycentric points: vertices (B, V, 3), faces (F, 3), face_idx (L,) or (B, L),
    bary (L, 3) or (B, L, 3) -> (B, L, 3)."""
    tri = faces[face_idx]                                                           # (.., L, 3)
    if tri.ndim == 2:
        corners = vertices[:, tri]                                                  # (B, L, 3, 3)
    else:
        corners = jax.vmap(lambda v, t: v[t])(vertices, tri)
    bary = jnp.broadcast_to(bary, corners.shape[:3])
    return jnp.einsum("blfi,blf->bli", corners, bary)


def head_yaw_degrees(model: FlameModel, pose5: jax.Array) -> jax.Array:
    """Yaw (B,) in degrees of the neck's rotation relative to the world, as DECA's FLAME computes
    it for the contour: R = R_root ... R_neck, yaw = atan2(-R[2,0], sqrt(R[0,0]^2 + R[1,0]^2))."""
    chain, j = [], NECK
    while j != -1:
        chain.append(j)
        j = model.parents[j]
    rot = jnp.broadcast_to(jnp.eye(3, dtype=pose5.dtype), pose5.shape[:1] + (3, 3))
    for j in chain:  # neck first, root last: rot = R_root @ ... @ R_neck
        rot = batch_rodrigues(pose5[:, j]) @ rot
    sy = jnp.sqrt(rot[:, 0, 0] ** 2 + rot[:, 1, 0] ** 2)
    return jnp.arctan2(-rot[:, 2, 0], sy) * 180.0 / jnp.pi


def contour_row(yaw_deg: jax.Array) -> jax.Array:
    """Yaw (B,) degrees -> row (B,) int32 of the dynamic contour table.

    Clamp from above at 39, round half to even, then a >= 0 -> a, -39 <= a < 0 -> 39 - a,
    a < -39 -> 78. Piecewise constant (no gradient).
    """
    a = jnp.round(jnp.minimum(jax.lax.stop_gradient(yaw_deg), MAX_YAW_ROW)).astype(jnp.int32)
    return jnp.where(a < 0, jnp.where(a < -MAX_YAW_ROW, 2 * MAX_YAW_ROW, MAX_YAW_ROW - a), a)


def flame(model: FlameModel, shape: jax.Array, exp: jax.Array, pose: jax.Array,
          neck_pose: jax.Array | None = None, eye_pose: jax.Array | None = None) -> FlameOutput:
    """FLAME forward: shape (B, n_shape), exp (B, n_exp), pose (B, 6) -> FlameOutput."""
    shape, exp, pose = (jnp.asarray(x, jnp.float32) for x in (shape, exp, pose))
    pose5 = full_pose(pose, neck_pose, eye_pose)
    vertices = lbs(model, jnp.concatenate([shape, exp], axis=1), pose5)
    row = contour_row(head_yaw_degrees(model, pose5))
    face_idx = jnp.concatenate([
        model.dynamic_lmk_faces_idx[row],
        jnp.broadcast_to(model.static_lmk_faces_idx, row.shape + model.static_lmk_faces_idx.shape)], 1)
    bary = jnp.concatenate([
        model.dynamic_lmk_bary_coords[row],
        jnp.broadcast_to(model.static_lmk_bary_coords, row.shape + model.static_lmk_bary_coords.shape)], 1)
    landmarks2d = vertices_to_landmarks(vertices, model.faces, face_idx, bary)
    landmarks3d = vertices_to_landmarks(vertices, model.faces, model.full_lmk_faces_idx,
                                        model.full_lmk_bary_coords)
    return FlameOutput(vertices, landmarks2d, landmarks3d)


# ---------------------------------------------------------------------------------------------
# projection
# ---------------------------------------------------------------------------------------------

def orthographic_projection(points: jax.Array, cam: jax.Array) -> jax.Array:
    """points (B, N, 3), cam (B, 3) = (scale, tx, ty) -> s * (x + tx, y + ty, z), (B, N, 3)."""
    cam = cam[:, None, :]
    shifted = jnp.concatenate([points[..., :2] + cam[..., 1:], points[..., 2:]], axis=-1)
    return cam[..., :1] * shifted


def to_image(points: jax.Array, cam: jax.Array, image_size: int = DECA_IMAGE_SIZE) -> jax.Array:
    """Projects (B, N, 3) with cam (B, 3) to pixels (B, N, 3): y and z negated, then * size/2
    + size/2 on every coordinate (the convention of DECA's vertices and 3-D landmarks)."""
    p = orthographic_projection(points, cam) * jnp.array([1.0, -1.0, -1.0], points.dtype)
    return p * (image_size / 2) + image_size / 2


def decode(model: FlameModel, shape: jax.Array, exp: jax.Array, pose: jax.Array, cam: jax.Array,
           image_size: int = DECA_IMAGE_SIZE) -> Decoded:
    """FLAME + projection, as DECA's decode path that StyleMask's `calculate_shape` calls.

    shape (B, 100), exp (B, 50), pose (B, 6), cam (B, 3) -> Decoded(landmarks2d (B, 68, 2),
    landmarks3d (B, 68, 3), vertices (B, V, 3)) in pixels of the `image_size` DECA image.
    The 2-D landmarks negate only y (their z is dropped, so this equals `to_image`'s x, y).
    """
    out = flame(model, shape, exp, pose)
    cam = jnp.asarray(cam, jnp.float32)
    return Decoded(to_image(out.landmarks2d, cam, image_size)[..., :2],
                   to_image(out.landmarks3d, cam, image_size),
                   to_image(out.vertices, cam, image_size))
