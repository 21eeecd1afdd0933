"""Resizes written as small `(out, in)` matrices applied along H and W of an NHWC batch.

Two PyTorch resizes whose exact index arithmetic matters for parity with the reference code:

- `adaptive_avg_pool2d(x, size)`: `torch.nn.AdaptiveAvgPool2d`. Output index `i` averages input
  indices `floor(n i / m)` .. `ceil(n (i + 1) / m) - 1` (n = input, m = output size), so when m
  does not divide n the windows have uneven lengths and may overlap (188 -> 112 gives windows of
  2 and 3). With n = k m it is plain k x k average pooling, computed as a block mean written as
  slice sums (XLA:CPU reduces over non-minor axes slowly: 1024 -> 256 of 6 images took 36 ms
  this way vs 225 ms as reshape + mean, in one run on the 2-core CPU).
- `resize_bilinear_align_corners(x, size)`: `F.interpolate(..., mode='bilinear',
  align_corners=True)`: output index `i` samples input position `i (n - 1) / (m - 1)`.

The matrices are built in numpy at trace time (sizes are static) and applied with two
einsums at full float32 precision, so both ops are differentiable and jit-compatible. For the
small sizes used here (<= 256) this is as fast as a strided or gather formulation on CPU and
maps onto matrix units on accelerators.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=64)
def adaptive_avg_pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) float64 averaging matrix of PyTorch's 1-d adaptive average pooling."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"adaptive_avg_pool_matrix: sizes must be positive, got {n_in} -> {n_out}")
    m = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        start = (i * n_in) // n_out
        end = -((-(i + 1) * n_in) // n_out)  # ceil((i + 1) n_in / n_out)
        m[i, start:end] = 1.0 / (end - start)
    m.setflags(write=False)
    return m


@functools.lru_cache(maxsize=64)
def bilinear_align_corners_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) float64 linear-interpolation matrix of `align_corners=True` resizing."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"bilinear_align_corners_matrix: sizes must be positive, got {n_in} -> {n_out}")
    m = np.zeros((n_out, n_in), np.float64)
    if n_out == 1 or n_in == 1:
        m[:, 0] = 1.0  # PyTorch samples index 0 when the output (or input) has one pixel
    else:
        pos = np.arange(n_out) * ((n_in - 1) / (n_out - 1))
        lo = np.minimum(np.floor(pos).astype(np.int64), n_in - 2)
        frac = pos - lo
        rows = np.arange(n_out)
        m[rows, lo] += 1.0 - frac
        m[rows, lo + 1] += frac
    m.setflags(write=False)
    return m


def _apply_hw(x: jax.Array, mh: np.ndarray, mw: np.ndarray) -> jax.Array:
    """Applies `mh` along axis 1 and `mw` along axis 2 of an NHWC array, in x's dtype."""
    dtype = x.dtype
    hi = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,bhwc->bowc", jnp.asarray(mh, dtype), x, precision=hi)
    return jnp.einsum("pw,bowc->bopc", jnp.asarray(mw, dtype), x, precision=hi)


def _size2(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def adaptive_avg_pool2d(x: jax.Array, size) -> jax.Array:
    """PyTorch `adaptive_avg_pool2d` on NHWC: the one adaptive pooling of the project
    (face_pool, the loss resolution, ArcFace and e4e inputs, image loading).

    x: (B, H, W, C) float; size: int or (h, w). Returns (B, h, w, C) in x's dtype. An up-sizing
    (e.g. 64 -> 256) replicates pixels, as torch's bins do.
    """
    h, w = _size2(size)
    b, hi, wi, c = x.shape
    if hi % h == 0 and wi % w == 0:  # equal disjoint windows: a block mean (1024 -> 256: 4 x 4)
        fh, fw = hi // h, wi // w
        rows = x.reshape(b, h, fh, wi, c)
        y = sum(rows[:, :, i] for i in range(fh)).reshape(b, h, w, fw, c)
        return sum(y[:, :, :, j] for j in range(fw)) / (fh * fw)
    return _apply_hw(x, adaptive_avg_pool_matrix(hi, h), adaptive_avg_pool_matrix(wi, w))


def resize_bilinear_align_corners(x: jax.Array, size) -> jax.Array:
    """PyTorch `F.interpolate(mode='bilinear', align_corners=True)` on NHWC.

    x: (B, H, W, C) float; size: int or (h, w). Returns (B, h, w, C) in x's dtype.
    """
    h, w = _size2(size)
    return _apply_hw(x, bilinear_align_corners_matrix(x.shape[1], h),
                     bilinear_align_corners_matrix(x.shape[2], w))
