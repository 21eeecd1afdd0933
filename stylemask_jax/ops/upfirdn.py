"""FIR filtering with zero-insertion up-sampling (upfirdn2d) as separable shifted multiply-adds.

Every filter here is separable: a 1-D tap vector `k` stands for the 2-D kernel `outer(k, k)`.
The reference (rosinality's `upfirdn2d`) correlates with the *flipped* 2-D kernel; the functions
below do the same along each axis, so asymmetric kernels keep their orientation.

Why shifted multiply-adds and polyphase: on XLA:CPU a depthwise convolution
(`feature_group_count=C`) is an order of magnitude slower than a few slices and FMAs, and
zero insertion followed by filtering wastes half of every product on zeros. `polyphase_fir`
works on the input's phases (the zero-free pieces) and writes each output phase directly.

Layout: NHWC; H is axis 1 and W is axis 2. Values are whatever the caller filters
(feature maps or images in [-1, 1]); dtype is preserved.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax


def fir_taps(kernel: Sequence[float], gain: float = 1.0) -> np.ndarray:
    """The 1-D taps of rosinality's `make_kernel(kernel) * gain`, split over the two axes.

    `make_kernel([1, 3, 3, 1])` is `outer(k, k) / sum(outer(k, k))`; times `gain` (the
    up-sampling factor squared) it equals `outer(t, t)` with `t = k / sum(k) * sqrt(gain)`.
    Returns float64 taps (K,), e.g. [0.25, 0.75, 0.75, 0.25] for [1, 3, 3, 1] and gain 4.
    """
    k = np.asarray(kernel, np.float64)
    if k.ndim != 1 or k.size == 0 or k.sum() == 0:
        raise ValueError(f"blur kernel must be a non-empty 1-D list with a non-zero sum, got {kernel}")
    return k / k.sum() * np.sqrt(gain)


def kernel_2d(kernel: Sequence[float], gain: float = 1.0) -> np.ndarray:
    """The reference's stored 2-D kernel buffer `outer(k, k) / sum * gain` (float64): what the
    converter checks the checkpoint's blur buffers against (convert_weights/stylegan2.py)."""
    t = fir_taps(kernel, gain)
    return np.outer(t, t)


def _interleave(parts: Sequence[jnp.ndarray], axis: int) -> jnp.ndarray:
    """[p_0 .. p_{U-1}], each of length M along `axis` -> length U*M with out[U*m + a] = p_a[m]."""
    if len(parts) == 1:
        return parts[0]
    stacked = jnp.stack(parts, axis=axis + 1)
    shape = list(parts[0].shape)
    shape[axis] *= len(parts)
    return stacked.reshape(shape)


def polyphase_fir(phases: Sequence[jnp.ndarray | None], taps: np.ndarray, pad0: int,
                  out_len: int, axis: int) -> jnp.ndarray:
    """Filters a signal given by its phases and returns the result in natural order.

    The virtual input along `axis` is `T[j] = phases[j % U][j // U]` (U = len(phases); a None
    phase is all zeros, e.g. the inserted zeros of an up-sampling; indices outside an array are
    zero). The output is the reference's correlation with the flipped taps,

        out[n] = sum_t taps[K-1-t] * T[n + t - pad0],   n = 0 .. out_len - 1,

    computed phase by phase (n = U*m + a), so no product with an inserted zero is formed.
    U = 1 is a plain FIR; phases [x, None] is zero insertion by 2 followed by the FIR.
    """
    up = len(phases)
    flipped = np.asarray(taps, np.float64)[::-1]
    ref = next(p for p in phases if p is not None)
    m_out = -(-out_len // up)
    outputs = []
    for a in range(up):
        terms = []  # (phase q, offset, coefficient)
        for t, c in enumerate(flipped):
            j = a + t - pad0
            q, off = j % up, j // up
            if phases[q] is not None and c != 0:
                terms.append((q, off, float(c)))
        acc = None
        for q, off, c in terms:
            x = phases[q]
            length = x.shape[axis]
            lo, hi = max(0, -off), max(0, m_out + off - length)
            if lo or hi:
                pad = [(0, 0)] * x.ndim
                pad[axis] = (lo, hi)
                x = jnp.pad(x, pad)
            x = lax.slice_in_dim(x, off + lo, off + lo + m_out, axis=axis)
            acc = c * x if acc is None else acc + c * x
        if acc is None:
            shape = list(ref.shape)
            shape[axis] = m_out
            acc = jnp.zeros(shape, ref.dtype)
        outputs.append(acc.astype(ref.dtype))
    out = _interleave(outputs, axis)
    return lax.slice_in_dim(out, 0, out_len, axis=axis)


def upfirdn2d(x: jnp.ndarray, kernel: Sequence[float], up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0), gain: float | None = None) -> jnp.ndarray:
    """rosinality's `upfirdn2d(x, make_kernel(kernel) * gain, up, down, pad)` on NHWC input.

    x: (B, H, W, C). Zero insertion by `up` (each sample followed by up-1 zeros), padding
    `pad = (before, after)` on both spatial axes (negative values crop), correlation with the
    flipped separable kernel, then keeping every `down`-th sample. `gain` defaults to up**2 as in
    the reference's Upsample/Blur layers. Output (B, H', W', C) with
    H' = (H*up + pad0 + pad1 - K) // down + 1.
    """
    gain = float(up * up) if gain is None else gain
    taps = fir_taps(kernel, gain)
    for axis in (1, 2):
        length = x.shape[axis] * up + pad[0] + pad[1] - len(taps) + 1
        if length <= 0:
            raise ValueError(f"upfirdn2d: output would be empty (input {x.shape}, pad {pad})")
        x = polyphase_fir([x] + [None] * (up - 1), taps, pad[0], length, axis)
        if down > 1:
            x = lax.slice_in_dim(x, 0, length, stride=down, axis=axis)
    return x


def upsample2d(x: jnp.ndarray, kernel: Sequence[float], factor: int = 2) -> jnp.ndarray:
    """The reference `Upsample` layer (the ToRGB skip path): (B, H, W, C) -> (B, fH, fW, C)."""
    p = len(kernel) - factor
    return upfirdn2d(x, kernel, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))
