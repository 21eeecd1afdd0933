"""The pictures of the demo page (uint8 RGB numpy arrays).

    strip = pair_strip(source_crop, target_crop, reenacted)     # (256, 768, 3)
    heat = mask_heatmap(masks)                                  # (rows * 12, 512, 3)
    image = tagged(strip, request_id)                           # PIL, for the page
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

VIEW_SIZE = 256
HEAT_WIDTH = 512
ROW_HEIGHT = 12
ROW_GAP = 2

# an inferno-like ramp: 0 (kept from the source) dark -> 1 (taken from the target) bright
_ANCHORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]],
                    np.float64)


def colormap(values) -> np.ndarray:
    """Floats in [0, 1] (any shape S) -> uint8 (*S, 3) on the ramp above (linear between anchors)."""
    v = np.clip(np.asarray(values, np.float64), 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.minimum(np.floor(v).astype(int), len(_ANCHORS) - 2)
    frac = (v - low)[..., None]
    return np.rint(_ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac).astype(np.uint8)


def to_view(image: np.ndarray, size: int = VIEW_SIZE) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3): box-averaged when larger, bilinear when smaller."""
    if image.shape[:2] == (size, size):
        return image
    pil = Image.fromarray(image)
    method = Image.Resampling.BOX if image.shape[0] > size else Image.Resampling.BILINEAR
    return np.asarray(pil.resize((size, size), method))


def pair_strip(source_crop: np.ndarray, target_crop: np.ndarray, reenacted: np.ndarray,
               size: int = VIEW_SIZE) -> np.ndarray:
    """Three uint8 images -> source | target | reenacted, each resized to size x size."""
    return np.concatenate([to_view(x, size) for x in (source_crop, target_crop, reenacted)], axis=1)


def mask_heatmap(masks: Sequence[np.ndarray], width: int = HEAT_WIDTH,
                 row_height: int = ROW_HEIGHT, gap: int = ROW_GAP) -> np.ndarray:
    """One pair's masks, a list over the controlled layers of (C_l,) in [0, 1] -> uint8 image.

    Row l (top to bottom) is layer l; its C_l channels are stretched over `width` columns
    (nearest), coloured dark (0: the source's style channel kept) to bright (1: the target's
    taken). Rows are separated by `gap` white pixels.
    """
    rows = []
    for layer in masks:
        layer = np.asarray(layer, np.float64).reshape(-1)
        columns = (np.arange(width) * layer.size) // width
        row = np.repeat(colormap(layer[columns])[None], row_height, axis=0)
        rows.append(row)
        rows.append(np.full((gap, width, 3), 255, np.uint8))
    return np.concatenate(rows[:-1], axis=0)


def mask_summary(masks: Sequence[np.ndarray]) -> str:
    """'layer 0: 0.52, layer 1: 0.47, ...': the mean mask (share taken from the target) per layer."""
    return ", ".join(f"{k}: {float(np.mean(m)):.2f}" for k, m in enumerate(masks))


def tagged(image: np.ndarray, tag: str) -> Image.Image:
    """uint8 (H, W, 3) -> PIL image whose PNG carries `tag` as a text chunk.

    Gradio saves an image result to a file named by its PNG bytes, rewriting it in place; two
    requests with equal pixels would share that file, and one's rewrite truncates it under the
    other's download. A tag per request makes the bytes, hence the files, differ."""
    pil = Image.fromarray(np.asarray(image, np.uint8))
    pil.info["stylemask-request"] = tag
    return pil
