"""Adaptive average pooling (torch's `AdaptiveAvgPool2d` semantics) on NHWC images."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def _pool_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) averaging weights: output i averages inputs floor(i*in/out) .. ceil((i+1)*in/out)-1."""
    m = np.zeros((out_size, in_size), np.float32)
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = -(-((i + 1) * in_size) // out_size)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool2d(x: jnp.ndarray, out_size: int | tuple[int, int]) -> jnp.ndarray:
    """x: (B, H, W, C) -> (B, oh, ow, C), the same bins as torch's AdaptiveAvgPool2d.

    When H and W are multiples of the output size this is an exact block mean (a reshape and a
    mean; 1024 -> 256 is the 4x4 mean StyleMask applies); otherwise a separable weighted sum with
    the adaptive bins (which for an up-sizing such as 64 -> 256 replicates pixels).
    """
    oh, ow = (out_size, out_size) if isinstance(out_size, int) else out_size
    b, h, w, c = x.shape
    if h % oh == 0 and w % ow == 0:
        fh, fw = h // oh, w // ow
        # block sums as slice adds: XLA:CPU reduces over non-minor axes several times slower
        rows = x.reshape(b, oh, fh, w, c)
        y = sum(rows[:, :, i] for i in range(fh)).reshape(b, oh, ow, fw, c)
        return sum(y[:, :, :, j] for j in range(fw)) / (fh * fw)
    mh = jnp.asarray(_pool_matrix(h, oh), x.dtype)
    mw = jnp.asarray(_pool_matrix(w, ow), x.dtype)
    return jnp.einsum("oh,bhwc,pw->bopc", mh, x, mw)
