"""Image files <-> float arrays: the CLIs' PNG writing, grids and image loading.

Arrays are float HWC (or NHWC) RGB in [-1, 1], the generator's range; files are 8-bit RGB.
The conversion to 8 bits is the usual StyleGAN one: clip to [-1, 1], map to [0, 255], round.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from stylemask_jax.errors import UserInputError
from stylemask_jax.ops.matrix_resize import adaptive_avg_pool2d


def to_uint8(images) -> np.ndarray:
    """float [-1, 1] (..., H, W, 3) -> uint8 [0, 255], same shape (values clipped, rounded)."""
    x = np.asarray(images, np.float32)
    return np.rint((np.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def from_uint8(images) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1] (the inverse of to_uint8 up to rounding)."""
    return np.asarray(images, np.float32) / 127.5 - 1.0


def save_png(path: str | os.PathLike, image) -> str:
    """Writes one float [-1, 1] image (H, W, 3) as an 8-bit RGB PNG; creates the parent dir."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"save_png expects an (H, W, 3) image, got shape {image.shape}")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Image.fromarray(to_uint8(image), "RGB").save(path)
    return path


def grid(rows: Sequence[Sequence], pad: int = 0) -> np.ndarray:
    """Tiles rows of (H, W, 3) float images into one (R*H, C*W, 3) float image.

    Every image must have the same size; a None entry (or a short row) is left white.
    """
    cells = [img for row in rows for img in row if img is not None]
    if not cells:
        raise ValueError("grid: no images")
    h, w, _ = np.asarray(cells[0]).shape
    n_rows, n_cols = len(rows), max(len(row) for row in rows)
    out = np.ones((n_rows * (h + pad) - pad, n_cols * (w + pad) - pad, 3), np.float32)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            if img is None:
                continue
            img = np.asarray(img, np.float32)
            if img.shape != (h, w, 3):
                raise ValueError(f"grid: image ({i}, {j}) has shape {img.shape}, expected {(h, w, 3)}")
            out[i * (h + pad): i * (h + pad) + h, j * (w + pad): j * (w + pad) + w] = img
    return out


def save_grid(path: str | os.PathLike, rows: Sequence[Sequence], pad: int = 0) -> str:
    """save_png of `grid(rows, pad)`: rows of float [-1, 1] (H, W, 3) images (None = blank)."""
    return save_png(path, grid(rows, pad))


def load_image(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """An image file -> float32 (H, W, 3) RGB in [-1, 1].

    With `size`, the image is resized to (size, size) when it differs: an exact block mean when
    the image is square and its side a multiple of `size` (as StyleMask's 4x4 pooling from
    1024 to 256), otherwise PIL's bilinear resize (torchvision's `Resize` on PIL images).
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            w, h = img.size
            if size is not None and (w, h) != (size, size) and not (
                    w == h and w % size == 0):
                img = img.resize((size, size), Image.BILINEAR)
            x = from_uint8(np.asarray(img))
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError) as err:
        raise UserInputError(f"{path}: cannot read image ({err})") from None
    if size is not None and x.shape[0] != size:  # a side that is a multiple of size: block mean
        x = np.asarray(adaptive_avg_pool2d(x[None], size)[0])
    return x
