"""Real photos -> uint8 (H, W, 3) RGB arrays, whatever the file brings.

- EXIF orientation (phone JPEGs) is applied, so the array is upright as a viewer shows it.
- Greyscale (1, L, I;16*, I) is repeated into three channels. 16-bit values are scaled, not
  clipped: round(v / 257) maps 0..65535 onto 0..255; mode "I" (32-bit integer, what PNG
  16-bit greyscale gives in some Pillow versions) is read as 16-bit, values clipped to
  0..65535 first. 16-bit RGB(A) PNGs are decoded by Pillow to their high byte (v >> 8, within
  one level of round(v / 257)).
- Transparency (RGBA, LA, PA, P or L/RGB with a transparent colour) is composited on white:
  cut-out portraits are meant to be seen on a light page, and the colour hidden under
  transparent pixels is arbitrary (often black), which the face detector and the alignment's
  border padding would otherwise pick up.
- CMYK (print JPEGs, Adobe's inverted CMYK included), palette, YCbCr, LAB, HSV: Pillow's
  conversion to RGB (no ICC colour management).
- Sides must lie in [MIN_SIDE, MAX_SIDE] pixels; the size is checked before decoding.

`load_photo` also accepts an already-decoded array (a video frame): uint8 or uint16,
(H, W), (H, W, 1), (H, W, 3) or (H, W, 4), with the same rules.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stylemask_jax.errors import UserInputError

MIN_SIDE = 100
MAX_SIDE = 6000

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _check_size(name: str, width: int, height: int) -> None:
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise UserInputError(f"{name}: photo is {width}x{height} pixels; expected sides between "
                             f"{MIN_SIDE} and {MAX_SIDE} pixels (resize it first)")


def _on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) colour and (H, W) alpha -> uint8 (H, W, 3) composited on white."""
    a = alpha.astype(np.float32)[..., None] / 255.0
    return np.rint(rgb.astype(np.float32) * a + 255.0 * (1.0 - a)).astype(np.uint8)


def _sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    """0..65535 integers -> uint8 round(v / 257)."""
    v = np.clip(values.astype(np.int64), 0, 65535)
    return ((v * 255 + 32767) // 65535).astype(np.uint8)


def _pil_to_rgb(img) -> np.ndarray:
    """A decoded PIL image of any mode -> uint8 (H, W, 3)."""
    mode = img.mode
    if mode in _SIXTEEN_BIT:
        grey = _sixteen_to_eight(np.asarray(img))
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "P" or "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(img.convert("RGBA"))
        return _on_white(rgba[..., :3], rgba[..., 3])
    return np.asarray(img.convert("RGB"))


def _array_to_rgb(array: np.ndarray, name: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise UserInputError(f"{name}: expected an (H, W), (H, W, 3) or (H, W, 4) image array, "
                             f"got shape {array.shape}")
    if array.dtype == np.uint16:
        array = _sixteen_to_eight(array)
    elif array.dtype != np.uint8:
        raise UserInputError(f"{name}: expected a uint8 or uint16 image array, got {array.dtype}")
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    if array.shape[2] == 4:
        return _on_white(array[..., :3], array[..., 3])
    return np.ascontiguousarray(array)


def check_rgb(image, what: str) -> np.ndarray:
    """Returns `image` as a C-contiguous uint8 (H, W, 3) array, or raises naming `what`."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise UserInputError(f"{what}: expected a uint8 (H, W, 3) RGB image, got {image.dtype} "
                             f"{image.shape} (use stylemask_jax.photos.load_photo)")
    return np.ascontiguousarray(image)


def load_photo(source, name: str | None = None) -> np.ndarray:
    """A photo file (path) or a decoded image array -> uint8 (H, W, 3) RGB, upright.

    name: what error messages call the photo (default: the path, or "image array").
    Raises UserInputError (one line naming the file) for a missing file, a file that is not an
    image or is truncated, or sides outside [MIN_SIDE, MAX_SIDE].
    """
    if isinstance(source, np.ndarray):
        name = name or "image array"
        rgb = _array_to_rgb(source, name)
        _check_size(name, rgb.shape[1], rgb.shape[0])
        return rgb


    path = os.fspath(source)
    name = name or path
    if not os.path.isfile(path):
        raise UserInputError(f"{name}: no such file")
    try:
        with Image.open(path) as img:
            _check_size(name, *img.size)  # before decoding: a huge image costs nothing here
            img.load()
            img = ImageOps.exif_transpose(img)
            return _pil_to_rgb(img)
    except UnidentifiedImageError:
        raise UserInputError(f"{name}: not an image file Pillow can read") from None
    except Image.DecompressionBombError as err:
        raise UserInputError(f"{name}: refused by Pillow as too large ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, UserInputError):
            raise
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserInputError(f"{name}: damaged or truncated image ({reason})") from None
