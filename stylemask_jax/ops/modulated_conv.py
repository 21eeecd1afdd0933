"""StyleGAN2's modulated convolution in its batched form, including the up-sampling variant.

The reference builds one weight per sample, `w_b = scale * W * s_b[in]`, demodulates it by
`d_b[out] = rsqrt(sum_{in,kh,kw} w_b^2 + eps)` and runs a grouped convolution. The same function
is computed here with the *shared* weight:

    y = conv(x * (scale * s)[b, in], W) * d[b, out],
    d[b, out] = rsqrt(sum_in (scale * s[b, in])^2 * sum_{kh,kw} W[kh, kw, in, out]^2 + eps)

so every sample goes through one ordinary convolution (float32 statistics, whatever the
compute dtype).

Up-sampling (the reference: transposed convolution, stride 2, no padding, giving 2H+1, then
a 4x4 FIR blur with padding (1, 1), giving 2H) is computed without inserted zeros: the
transposed convolution splits into four output phases (even/odd row x even/odd column), each a
stride-1 convolution of the input with the 2x2, 2x1, 1x2 or 1x1 sub-kernel of W that reaches
it (the 9 taps once, as the reference's FLOPs; the 1x1 phase as a matrix product, which XLA:CPU
runs ~4x faster than a 1x1 convolution); the blur then filters those phases directly
(`polyphase_fir`, separable) and writes the interleaved 2H x 2W result. No product with an
inserted zero and no depthwise convolution is formed. (Measured on 2-core CPUs: as fast as one
2x2 conv with 4*Cout outputs or two convs with 2*Cout, and faster than folding the blur into a
6x6 kernel, than blurring both axes in one pass, and than XLA's lhs-dilated transposed
convolution followed by a blur: benchmarks/results/speed.md.)

Layout: x (B, H, W, Cin) NHWC; weight (K, K, Cin, Cout) HWIO holding the *raw* (not yet
equalized) parameter; style (B, Cin) the modulation output (about 1 for a trained layer).
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax

from stylemask_jax.ops.upfirdn import fir_taps, polyphase_fir

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def demodulation(weight: jnp.ndarray, style: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
    """d[b, out] = rsqrt(sum_{in,kh,kw} (scale * W * s_b)^2 + eps), float32 (B, Cout).

    weight: raw (K, K, Cin, Cout); style: (B, Cin); scale = 1/sqrt(Cin*K*K) as in the reference.
    """
    k, _, cin, _ = weight.shape
    w = weight.astype(jnp.float32) * (1.0 / np.sqrt(cin * k * k))
    # sum over the taps as K*K slice products: XLA:CPU reduces over leading axes ~30x slower
    w2 = sum(w[i, j] * w[i, j] for i in range(k) for j in range(k))  # (Cin, Cout)
    s = style.astype(jnp.float32)
    return lax.rsqrt(jnp.dot(s * s, w2, precision=lax.Precision.HIGHEST) + eps)


def _transposed_phases(x: jnp.ndarray, weight: jnp.ndarray) -> list[list[jnp.ndarray]]:
    """The stride-2 transposed convolution, split into its four output phases.

    Reference orientation (no flip): T[2i + k] += x[i] W[k] on each axis, T of length 2H + K - 2.
    Phase a (T[2m + a]) only meets the taps k = a, a + 2, ..., so it is the stride-1 correlation
    of x, padded by n_a - 1 on both sides, with the kernel rows W[a + 2(n_a - 1 - i)],
    i = 0 .. n_a - 1 (n_a = number of such taps); its length is H + n_a - 1. Returns
    phases[a][b] (B, H + n_a - 1, W + n_b - 1, Cout): only the K*K real taps are multiplied.
    """
    k = weight.shape[0]
    rows = [[a + 2 * (n - 1 - i) for i in range(n)] for a, n in ((0, (k + 1) // 2), (1, k // 2))]
    phases = []
    for ra in rows:
        phases.append([])
        for rb in rows:
            if not ra or not rb:
                phases[-1].append(None)
                continue
            if len(ra) == len(rb) == 1:
                phases[-1].append(jnp.einsum("bhwi,io->bhwo", x, weight[ra[0], rb[0]]))
                continue
            w = jnp.stack([jnp.stack([weight[i, j] for j in rb]) for i in ra])
            pad = ((len(ra) - 1,) * 2, (len(rb) - 1,) * 2)
            phases[-1].append(lax.conv_general_dilated(x, w, (1, 1), pad,
                                                       dimension_numbers=_DIMENSIONS))
    return phases


def upsample_conv_blur(x: jnp.ndarray, weight: jnp.ndarray,
                       blur_kernel: Sequence[float] = (1, 3, 3, 1)) -> jnp.ndarray:
    """conv_transpose2d(x, W, stride 2) then Blur(blur_kernel * 4, pad) as in the reference.

    x: (B, H, W, Cin) (already modulated); weight: (K, K, Cin, Cout) in x's dtype (already
    scaled). Returns (B, 2H, 2W, Cout) for K = 3 and a 4-tap blur (generally
    2H + K - 2 + pad0 + pad1 - len(blur) + 1 with the reference's pads).
    """
    _, h, w_, _ = x.shape
    k = weight.shape[0]
    phases = _transposed_phases(x, weight)
    # blur padding of the reference ModulatedConv2d(upsample=True)
    taps = fir_taps(blur_kernel, 4.0)
    pb = (len(taps) - 2) - (k - 1)
    pad0, pad1 = (pb + 1) // 2 + 1, pb // 2 + 1
    out_h = 2 * (h - 1) + k + pad0 + pad1 - len(taps) + 1
    out_w = 2 * (w_ - 1) + k + pad0 + pad1 - len(taps) + 1
    cols = [polyphase_fir([phases[0][b], phases[1][b]], taps, pad0, out_h, axis=1)
            for b in (0, 1)]
    return polyphase_fir(cols, taps, pad0, out_w, axis=2)


def modulated_conv2d(x: jnp.ndarray, weight: jnp.ndarray, style: jnp.ndarray, *,
                     demodulate: bool = True, upsample: bool = False,
                     blur_kernel: Sequence[float] = (1, 3, 3, 1), eps: float = 1e-8,
                     dtype=None) -> jnp.ndarray:
    """The reference ModulatedConv2d forward, batched (see the module docstring).

    x: (B, H, W, Cin); weight: raw (K, K, Cin, Cout) float32; style: (B, Cin).
    Returns (B, H, W, Cout) (or (B, 2H, 2W, Cout) with `upsample`) in `dtype` (default x's).
    Padding K // 2 as in the reference. 1x1 kernels (ToRGB) fold the style into a per-sample
    (B, Cin, Cout) weight instead of scaling the activations.
    """
    dtype = x.dtype if dtype is None else dtype
    k, _, cin, _ = weight.shape
    scale = 1.0 / np.sqrt(cin * k * k)
    s = style.astype(jnp.float32) * scale  # (B, Cin), float32
    if k == 1 and not upsample:
        w = (weight[0, 0].astype(jnp.float32)[None] * s[:, :, None]).astype(dtype)
        if demodulate:
            w = w * demodulation(weight, style, eps)[:, None, :].astype(dtype)
        return jnp.einsum("bhwi,bio->bhwo", x.astype(dtype), w)
    x = x.astype(dtype) * s[:, None, None, :].astype(dtype)
    w = weight.astype(dtype)
    if upsample:
        y = upsample_conv_blur(x, w, blur_kernel)
    else:
        pad = k // 2
        y = lax.conv_general_dilated(x, w, (1, 1), ((pad, pad), (pad, pad)),
                                     dimension_numbers=_DIMENSIONS)
    if demodulate:
        y = y * demodulation(weight, style, eps)[:, None, None, :].astype(dtype)
    return y
