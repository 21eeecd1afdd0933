"""FLAME as DECA runs it, in PyTorch: blend shapes, LBS, the yaw-dependent contour, projection.

Written from the conventions in the FLAME fixture README (DECA's loading, `lbs`, the dynamic
contour and `decode`), independently of `stylemask_jax.models.flame`. The model files are read
with the project's torch-free readers (`convert_weights.flame.read_flame_pickle`,
`read_landmark_embedding`) and the DECA-specific preparation is redone here from the raw
arrays, so a mistake in `convert_flame` would not be copied:

    flame = load_flame(pkl_path, embedding_path, dtype=torch.float64)
    vertices, lmk2d, lmk3d = flame(shape (B, 100), exp (B, 50), pose (B, 6))
    lmk2d_px, lmk3d_px, vertices_px = decode(flame, shape, exp, pose, cam (B, 3))  # 224 image

Shapes: vertices (B, V, 3) metres (y up); landmarks (B, 68, 3); projected coordinates in pixels
of the 224 x 224 DECA image (y down).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from convert_weights.flame import read_flame_pickle, read_landmark_embedding

N_SHAPE, N_EXP, EXP_OFFSET = 100, 50, 300
NECK_CHAIN = (1, 0)  # neck, then its ancestors up to the root
IMAGE_SIZE = 224


def rodrigues(rot_vecs: torch.Tensor) -> torch.Tensor:
    """(N, 3) axis-angles -> (N, 3, 3): angle |r + 1e-8|, axis r / angle (DECA's rule)."""
    angle = torch.norm(rot_vecs + 1e-8, dim=1, keepdim=True)
    axis = rot_vecs / angle
    cos, sin = torch.cos(angle)[:, :, None], torch.sin(angle)[:, :, None]
    rx, ry, rz = axis[:, 0], axis[:, 1], axis[:, 2]
    zero = torch.zeros_like(rx)
    k = torch.stack([zero, -rz, ry, rz, zero, -rx, -ry, rx, zero], 1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=rot_vecs.dtype)[None]
    return eye + sin * k + (1 - cos) * torch.bmm(k, k)


def _homogeneous(rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3), (N, 3) -> (N, 4, 4) [R t; 0 0 0 1]."""
    top = torch.cat([rot, trans[:, :, None]], 2)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=rot.dtype).expand(rot.shape[0], 1, 4)
    return torch.cat([top, bottom], 1)


class TorchFlame(nn.Module):
    """The FLAME layer of DECA with float buffers of `dtype` (DECA: float32)."""

    def __init__(self, model: dict, embedding: dict, dtype=torch.float64):
        super().__init__()
        f = lambda a: torch.as_tensor(np.asarray(a, np.float64)).to(dtype)  # noqa: E731
        i = lambda a: torch.as_tensor(np.asarray(a, np.int64))  # noqa: E731
        shapedirs = np.asarray(model["shapedirs"])
        self.register_buffer("v_template", f(model["v_template"]))
        self.register_buffer("shapedirs", f(np.concatenate(
            [shapedirs[..., :N_SHAPE], shapedirs[..., EXP_OFFSET:EXP_OFFSET + N_EXP]], 2)))
        posedirs = np.asarray(model["posedirs"])
        self.register_buffer("posedirs", f(posedirs.reshape(-1, posedirs.shape[-1]).T))
        self.register_buffer("J_regressor", f(model["J_regressor"]))
        self.register_buffer("lbs_weights", f(model["weights"]))
        self.register_buffer("faces", i(np.asarray(model["f"]).astype(np.int64)))
        parents = np.asarray(model["kintree_table"])[0].astype(np.int64)
        parents[0] = -1
        self.parents = [int(p) for p in parents]
        for name in ("static_lmk_faces_idx", "dynamic_lmk_faces_idx"):
            self.register_buffer(name, i(embedding[name]))
        for name in ("static_lmk_bary_coords", "dynamic_lmk_bary_coords"):
            self.register_buffer(name, f(embedding[name]))
        self.register_buffer("full_lmk_faces_idx", i(embedding["full_lmk_faces_idx"])[0])
        self.register_buffer("full_lmk_bary_coords", f(embedding["full_lmk_bary_coords"])[0])

    # -- skinning ----------------------------------------------------------------------------
    def lbs(self, betas: torch.Tensor, full_pose: torch.Tensor) -> torch.Tensor:
        """betas (B, 150), full_pose (B, 15) -> posed vertices (B, V, 3)."""
        b, n_j = betas.shape[0], len(self.parents)
        v_shaped = self.v_template[None] + torch.einsum("bl,vcl->bvc", betas, self.shapedirs)
        joints = torch.einsum("jv,bvc->bjc", self.J_regressor, v_shaped)
        rot = rodrigues(full_pose.reshape(-1, 3)).view(b, n_j, 3, 3)
        feature = (rot[:, 1:] - torch.eye(3, dtype=rot.dtype)).reshape(b, -1)
        v_posed = v_shaped + (feature @ self.posedirs).view(b, -1, 3)
        rel_joints = joints.clone()
        rel_joints[:, 1:] = joints[:, 1:] - joints[:, self.parents[1:]]
        local = _homogeneous(rot.reshape(-1, 3, 3), rel_joints.reshape(-1, 3)).view(b, n_j, 4, 4)
        chain = [local[:, 0]]
        for j in range(1, n_j):
            chain.append(chain[self.parents[j]] @ local[:, j])
        world = torch.stack(chain, 1)                                  # (B, J, 4, 4)
        rest = torch.cat([joints, torch.zeros_like(joints[..., :1])], -1)[..., None]
        shift = torch.cat([torch.zeros_like(world[..., :3]), world @ rest], -1)
        rel = world - shift                                            # A_j = G_j - [0 | G_j [J; 0]]
        per_vertex = (self.lbs_weights @ rel.view(b, n_j, 16)).view(b, -1, 4, 4)
        homog = torch.cat([v_posed, torch.ones_like(v_posed[..., :1])], -1)[..., None]
        return (per_vertex @ homog)[:, :, :3, 0]

    # -- landmarks ---------------------------------------------------------------------------
    def head_yaw_degrees(self, full_pose: torch.Tensor) -> torch.Tensor:
        """(B, 15) -> (B,) yaw of R_root R_neck, atan2(-R20, sqrt(R00^2 + R10^2)) in degrees."""
        b = full_pose.shape[0]
        rot = rodrigues(full_pose.view(b, -1, 3)[:, list(NECK_CHAIN)].reshape(-1, 3)).view(b, -1, 3, 3)
        rel = torch.eye(3, dtype=full_pose.dtype).expand(b, 3, 3)
        for k in range(len(NECK_CHAIN)):
            rel = torch.bmm(rot[:, k], rel)
        sy = torch.sqrt(rel[:, 0, 0] ** 2 + rel[:, 1, 0] ** 2)
        return torch.atan2(-rel[:, 2, 0], sy) * 180.0 / math.pi

    @staticmethod
    def contour_row(yaw_deg: torch.Tensor) -> torch.Tensor:
        a = torch.round(torch.clamp(yaw_deg.detach(), max=39)).long()
        return torch.where(a < 0, torch.where(a < -39, torch.full_like(a, 78), 39 - a), a)

    def _barycentric(self, vertices, face_idx, bary):
        """vertices (B, V, 3), face_idx (B, L), bary (B, L, 3) -> (B, L, 3)."""
        b, v = vertices.shape[:2]
        tri = self.faces[face_idx.reshape(-1)].view(b, -1, 3)
        tri = tri + (torch.arange(b)[:, None, None] * v)
        corners = vertices.reshape(-1, 3)[tri.reshape(-1)].view(b, -1, 3, 3)
        return torch.einsum("blfi,blf->bli", corners, bary)

    def forward(self, shape, exp, pose):
        """shape (B, 100), exp (B, 50), pose (B, 6) -> (vertices, landmarks2d, landmarks3d)."""
        b = shape.shape[0]
        zeros3 = torch.zeros(b, 3, dtype=pose.dtype)
        full_pose = torch.cat([pose[:, :3], zeros3, pose[:, 3:], zeros3, zeros3], 1)
        vertices = self.lbs(torch.cat([shape, exp], 1), full_pose)
        row = self.contour_row(self.head_yaw_degrees(full_pose))
        face_idx = torch.cat([self.dynamic_lmk_faces_idx[row],
                              self.static_lmk_faces_idx.expand(b, -1)], 1)
        bary = torch.cat([self.dynamic_lmk_bary_coords[row],
                          self.static_lmk_bary_coords.expand(b, -1, -1)], 1)
        lmk2d = self._barycentric(vertices, face_idx, bary)
        lmk3d = self._barycentric(vertices, self.full_lmk_faces_idx.expand(b, -1),
                                  self.full_lmk_bary_coords.expand(b, -1, -1))
        return vertices, lmk2d, lmk3d


def orthographic(points: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """(B, N, 3), cam (B, 3) = (s, tx, ty) -> s * (x + tx, y + ty, z)."""
    shifted = torch.cat([points[..., :2] + cam[:, None, 1:], points[..., 2:]], -1)
    return cam[:, None, :1] * shifted


def _to_pixels(points, cam):
    p = orthographic(points, cam)
    p = torch.cat([p[..., :1], -p[..., 1:]], -1)   # y (and z) negated
    return p * (IMAGE_SIZE / 2) + IMAGE_SIZE / 2


def decode(flame: TorchFlame, shape, exp, pose, cam):
    """FLAME + DECA's projection -> (landmarks2d (B, 68, 2), landmarks3d (B, 68, 3),
    vertices (B, V, 3)) in pixels of the 224 image (z mapped like y)."""
    vertices, lmk2d, lmk3d = flame(shape, exp, pose)
    return _to_pixels(lmk2d, cam)[..., :2], _to_pixels(lmk3d, cam), _to_pixels(vertices, cam)


def load_flame(pkl_path, embedding_path, dtype=torch.float64) -> TorchFlame:
    return TorchFlame(read_flame_pickle(pkl_path), read_landmark_embedding(embedding_path), dtype)
