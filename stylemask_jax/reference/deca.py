"""DECA's coarse encoder E_flame and StyleMask's DECA crop, in PyTorch (NCHW).

Written from the DECA fixture README (tests, and `benchmarks/deca.py --torch`):

  - `TorchDecaEncoder(blocks)`: ResNet trunk (conv 7x7/2, BN, ReLU, max-pool 3x3/2, bottleneck
    stages of widths 64..512 x4, 7x7 average pool) and the regressor 2048 -> 1024 -> 236. Module
    names follow DECA's `E_flame` state dict (`encoder.layer1.0.conv1.weight`, `layers.0.weight`),
    so `build_deca(state_dict)` loads a checkpoint read by the torch-free reader as is.
  - the crop: `(clamp(x) + 1) / (2 + 1e-5) * 255`, box -> similarity (scale 223 / floor(1.25 *
    1.1 * mean side)), kornia 0.4.1's `warp_affine` as pixel normalisation with the (W - 1)
    convention + `affine_grid`/`grid_sample(align_corners=False)`, then / 255. Computed in the
    dtype of the images (the reference warps in float32).
"""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

RESNET50_BLOCKS = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)
CROP_SIZE = 224


class Bottleneck(nn.Module):
    def __init__(self, cin, planes, stride, downsample):
        super().__init__()
        out = planes * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, out, 1, bias=False), nn.BatchNorm2d(out)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                           if downsample else None)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNetTrunk(nn.Module):
    def __init__(self, blocks=RESNET50_BLOCKS):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        cin = 64
        for stage, (count, planes) in enumerate(zip(blocks, WIDTHS)):
            units = []
            for i in range(count):
                units.append(Bottleneck(cin, planes, 2 if stage > 0 and i == 0 else 1, i == 0))
                cin = planes * 4
            setattr(self, f"layer{stage + 1}", nn.Sequential(*units))

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        return F.avg_pool2d(x, 7, 1).flatten(1)


class TorchDecaEncoder(nn.Module):
    """(B, 3, 224, 224) RGB in [0, 1] -> (B, 236). Call `.eval()` (BatchNorm statistics)."""

    def __init__(self, blocks=RESNET50_BLOCKS):
        super().__init__()
        self.encoder = ResNetTrunk(blocks)
        self.layers = nn.Sequential(nn.Linear(2048, 1024), nn.ReLU(), nn.Linear(1024, 236))

    def forward(self, images):
        return self.layers(self.encoder(images))


PARAM_SPLIT = (("shape", 0, 100), ("tex", 100, 150), ("exp", 150, 200), ("pose", 200, 206),
               ("cam", 206, 209), ("light", 209, 236))


def split_params(code: torch.Tensor) -> dict:
    out = {name: code[:, a:b] for name, a, b in PARAM_SPLIT}
    out["light"] = out["light"].reshape(-1, 9, 3)
    return out


def build_deca(state_dict: dict, dtype=torch.float64) -> TorchDecaEncoder:
    """An eval-mode encoder holding an `E_flame` state dict (numpy arrays or tensors); the
    block counts are read from the keys."""
    counts = [0, 0, 0, 0]
    for key in state_dict:
        m = re.match(r"encoder\.layer(\d)\.(\d+)\.", key)
        if m:
            counts[int(m.group(1)) - 1] = max(counts[int(m.group(1)) - 1], int(m.group(2)) + 1)
    model = TorchDecaEncoder(tuple(counts))
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state_dict.items()})
    return model.to(dtype).eval()


# ---------------------------------------------------------------------------------------------
# the crop
# ---------------------------------------------------------------------------------------------

def to_deca_range(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(-1, 1) + 1) / (2 + 1e-5) * 255


def box_transform(box: torch.Tensor, crop_size: int = CROP_SIZE):
    """(B, 4) [left, top, right, bottom] -> ((B, 3, 3) input pixels -> crop pixels, size (B,))."""
    left, top, right, bottom = box.unbind(1)
    old_size = (right - left + bottom - top) / 2 * 1.1
    center = torch.stack([right - (right - left) / 2, bottom - (bottom - top) / 2], 1)
    size = torch.floor(old_size * 1.25)
    scale = (crop_size - 1) / size
    m = torch.zeros(box.shape[0], 3, 3, dtype=box.dtype)
    m[:, 0, 0] = m[:, 1, 1] = scale
    m[:, :2, 2] = -scale[:, None] * (center - size[:, None] / 2)
    m[:, 2, 2] = 1
    return m, size


def kornia041_warp_affine(src: torch.Tensor, matrix: torch.Tensor, out_size: int) -> torch.Tensor:
    """kornia 0.4.1 warp_affine: pixel -> [-1, 1] with the (W - 1) convention on both sides,
    invert, affine_grid + grid_sample (align_corners=False, bilinear, zeros).
    src (B, C, H, W); matrix (B, 2, 3) or (B, 3, 3) from input to output pixels."""
    b, c, h, w = src.shape
    dt = src.dtype

    def normal(hh, ww):
        return torch.tensor([[2.0 / (ww - 1), 0, -1], [0, 2.0 / (hh - 1), -1], [0, 0, 1]], dtype=dt)

    m3 = torch.cat([matrix[:, :2].to(dt), torch.tensor([[[0.0, 0.0, 1.0]]], dtype=dt).expand(b, 1, 3)], 1)
    theta = torch.inverse(normal(out_size, out_size) @ m3 @ torch.inverse(normal(h, w)))[:, :2]
    grid = F.affine_grid(theta, [b, c, out_size, out_size], align_corners=False)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def deca_crop_from_box(images: torch.Tensor, box: torch.Tensor, crop_size: int = CROP_SIZE):
    """(B, 3, N, N) in [-1, 1], (B, 4) box -> ((B, 3, 224, 224) in [0, 1], crop sizes (B,))."""
    matrix, size = box_transform(box.to(images.dtype), crop_size)
    return kornia041_warp_affine(to_deca_range(images), matrix, crop_size) / 255, size


def deca_crop(images: torch.Tensor, landmarks: torch.Tensor, crop_size: int = CROP_SIZE):
    """(B, 3, N, N) in [-1, 1], (B, 68, 2) landmarks -> (crops, sizes): box = landmark extent."""
    box = torch.cat([landmarks.min(1).values, landmarks.max(1).values], 1)
    return deca_crop_from_box(images, box, crop_size)
