"""The e4e inversion encoder (Encoder4Editing inside pSp) in Flax Linen, inference mode.

Maps an aligned face (B, 256, 256, 3) in [-1, 1] to W+ codes (B, n_styles, 512):

  body       the IR-SE body of `models.irse` (IR-SE-50: 3, 4, 14, 3 units), tapped at the end of
             stages 2, 3 and 4: c1 (B, 64, 64, 128), c2 (B, 32, 32, 256), c3 (B, 16, 16, 512)
  style i    GradualStyleBlock: log2(S) x [conv 3x3 stride 2 pad 1 (bias) -> LeakyReLU(0.01)]
             down to 1 x 1, then a dense 512 -> 512 (the equalised linear layer with its
             1/sqrt(512) scale folded into the kernel by the converter). S is the size of the
             map it reads: 16 for codes 0..2 (c3), 32 for codes 3..6 (p2), 64 for codes 7.. (p1)
  pyramid    p2 = upsample(c3 -> 32) + latlayer1(c2);  p1 = upsample(p2 -> 64) + latlayer2(c1)
             with bilinear align_corners=True upsampling and 1x1 lateral convs (bias)
  codes      w_0 = style_0(c3);  w_i = w_0 + style_i(features_i) for i >= 1;  W+ = w + latent_avg

The style blocks that read the same map form a group (`STYLE_GROUPS`: coarse, middle, fine),
computed together by `GradualStyleGroup` with the blocks' parameters stacked: the first
convolutions of a group are one product of all the blocks' kernels with the map's 3x3 windows,
every later level one product batched over the blocks. This is the same arithmetic as the
per-block convolutions (checked against the official code) but much faster on CPU, where XLA's
stride-2 convolutions on small maps cost far more than their arithmetic
(`benchmarks/results/irse.md`). The official checkpoint's per-block layout is converted by
`group_style_blocks`.

`latent_avg` (n_styles, 512) is a float32 parameter (`params['latent_avg']`), taken from the
checkpoint. n_styles = 2 log2(output_size) - 2 (18 for a 1024 generator). `dtype` is the
compute dtype; parameters and the returned codes are float32.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax.compiling import jit
from stylemask_jax.models.irse import UNITS_BY_DEPTH, IRSEBody
from stylemask_jax.ops.matrix_resize import adaptive_avg_pool2d, resize_bilinear_align_corners
from stylemask_jax.weights import load_weights, on_device

COARSE_END = 3  # codes 0..2 read c3 (16 x 16)
MIDDLE_END = 7  # codes 3..6 read p2 (32 x 32); codes 7.. read p1 (64 x 64)
E4E_INPUT_SIZE = 256


def n_styles_for(output_size: int) -> int:
    """Number of W+ codes of a generator of `output_size` (1024 -> 18, 256 -> 14, 64 -> 10)."""
    log = int(round(math.log2(output_size)))
    if 2 ** log != output_size or log < 2:
        raise ValueError(f"output_size must be a power of two >= 4, got {output_size}")
    return 2 * log - 2


def style_block_convs(index: int) -> int:
    """How many stride-2 convolutions style block `index` has (log2 of the map it reads)."""
    return 4 if index < COARSE_END else 5 if index < MIDDLE_END else 6


STYLE_GROUPS = (("styles_coarse", 0, COARSE_END), ("styles_middle", COARSE_END, MIDDLE_END),
                ("styles_fine", MIDDLE_END, None))


def style_groups(n_styles: int) -> list[tuple[str, int, int]]:
    """The non-empty groups of an encoder with `n_styles` codes: [(name, first code, end code)]."""
    groups = [(name, first, n_styles if end is None else min(end, n_styles))
              for name, first, end in STYLE_GROUPS]
    return [g for g in groups if g[2] > g[1]]


def _stride2_windows(x: jax.Array, h_axis: int, c_axis: int) -> jax.Array:
    """The 3x3 windows of a stride-2, pad-1 convolution over axes (h_axis, h_axis + 1) of x,
    stacked into the channel axis `c_axis` in (dy, dx, channel) order: C channels become 9C
    and H, W become ceil(H/2), ceil(W/2), so that a product with a (C_out, 3, 3, C) kernel
    reshaped to (C_out, 9C) is the convolution.

    Cut by two gathers (rows, then columns: one index list (output, tap) each) and one
    transpose rather than nine strided slices and a concatenation: on CPU the windows of 11
    maps of 32 x 32 at batch 8 take 168 instead of 305 ms (13% off with the product), and there
    are fewer ops to compile."""
    h, w = x.shape[h_axis], x.shape[h_axis + 1]
    ho, wo = (h + 1) // 2, (w + 1) // 2
    pad = [(0, 0)] * x.ndim
    pad[h_axis] = pad[h_axis + 1] = (1, 1)
    padded = jnp.pad(x, pad)
    pick = [slice(None)] * x.ndim
    pick[h_axis] = (2 * np.arange(ho)[:, None] + np.arange(3)).reshape(-1)
    rows = padded[tuple(pick)]  # H -> (ho, dy) flattened
    pick[h_axis] = slice(None)
    pick[h_axis + 1] = (2 * np.arange(wo)[:, None] + np.arange(3)).reshape(-1)
    cut = rows[tuple(pick)]  # W -> (wo, dx) flattened
    cut = cut.reshape(*x.shape[:h_axis], ho, 3, wo, 3, *x.shape[h_axis + 2:])
    # move the tap axes (dy, dx) to just before the channel axis, then merge them into it
    taps = (h_axis + 1, h_axis + 3)
    rest = [a for a in range(cut.ndim) if a not in taps]
    at = rest.index(c_axis if c_axis < h_axis else c_axis + 2)
    shape = list(x.shape)
    shape[h_axis], shape[h_axis + 1], shape[c_axis] = ho, wo, 9 * shape[c_axis]
    return jnp.transpose(cut, rest[:at] + list(taps) + rest[at:]).reshape(shape)


class _StackedWeights(nn.Module):
    """A kernel of `shape` = (blocks, ..., fan-in axis `in_axis`, ...) and a (blocks, width)
    bias, initialised LeCun normal per block (as nn.Conv / nn.Dense)."""

    shape: tuple
    in_axis: int
    out_axis: int

    @nn.compact
    def __call__(self):
        init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=self.in_axis,
                                                out_axis=self.out_axis, batch_axis=(0,))
        kernel = self.param("kernel", init, self.shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.shape[0], self.shape[self.out_axis]),
                          jnp.float32)
        return kernel, bias


class GradualStyleGroup(nn.Module):
    """`count` GradualStyleBlocks reading the same (B, S, S, C_in) map -> (B, count, width).

    Parameters, the blocks' own stacked on a leading axis (n = count, C = width = 512):
      conv_k/kernel (n, C, 3, 3, C_in), conv_k/bias (n, C) for k = 0 .. num_convs - 1
          (output channels first: OHWI; C_in = C past the first)
      linear/kernel (n, C, C) (input, output), linear/bias (n, C)

    Every level is one product: the first of all blocks' kernels, as an (n C, 9 C_in) matrix,
    with the map's 3x3 windows; later ones batched over the blocks, each block's (C, 9C)
    kernel with its own windows. The maps between levels are held as (n, C, B, h, w): with the
    kernels on the left, XLA:CPU's products on the small maps run 1.4-2x faster than with the
    windows on the left (measured for 11 blocks: 16 x 16 -> 8 x 8 at batch 1, 25 -> 16 ms).
    """

    count: int
    num_convs: int
    width: int = 512
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        n, c, dt = self.count, self.width, self.dtype
        batch, _, _, c_in = x.shape
        y = None
        for k in range(self.num_convs):
            kernel, bias = _StackedWeights((n, c, 3, 3, c_in if k == 0 else c), -1, 1,
                                           name=f"conv_{k}")()
            if k == 0:  # (B, S/2, S/2, 9 C_in) windows of the shared map, all blocks at once
                y = jnp.einsum("ok,bhwk->obhw", kernel.reshape(n * c, 9 * c_in).astype(dt),
                               _stride2_windows(x.astype(dt), 1, 3))
                y = y.reshape(n, c, *y.shape[1:])
            else:
                y = jnp.einsum("nok,nkbhw->nobhw", kernel.reshape(n, c, 9 * c).astype(dt),
                               _stride2_windows(y, 3, 1))
            y = nn.leaky_relu(y + bias[:, :, None, None, None].astype(dt), negative_slope=0.01)
        if y.shape[3:] != (1, 1):
            raise ValueError(f"GradualStyleGroup: {self.num_convs} convs leave a "
                             f"{y.shape[3]}x{y.shape[4]} map, expected 1x1")
        kernel, bias = _StackedWeights((n, c, c), 1, 2, name="linear")()
        return jnp.einsum("nkb,nkc->bnc", y.reshape(n, c, batch), kernel.astype(dt)) + bias.astype(dt)


def group_style_blocks(params: dict, n_styles: int) -> dict:
    """Per-block style parameters, `styles_{i}/conv_{k}/{kernel (3, 3, C, C) HWIO, bias}` and
    `styles_{i}/linear` (the official checkpoint's layout, and that of directories converted
    before the groups) -> the stacked `GradualStyleGroup` layout, `styles_coarse/...` etc.
    Other entries are kept; the input is not modified."""
    out = {k: v for k, v in params.items() if not re.fullmatch(r"styles_\d+", k)}
    for name, first, end in style_groups(n_styles):
        blocks = [params[f"styles_{i}"] for i in range(first, end)]
        group = {}
        for layer in blocks[0]:
            # conv kernels HWIO -> OHWI; the linear's (input, output) kernel as it is
            order = (0, 1) if layer == "linear" else (3, 0, 1, 2)
            group[layer] = {
                "kernel": np.stack([np.transpose(np.asarray(b[layer]["kernel"]), order) for b in blocks]),
                "bias": np.stack([np.asarray(b[layer]["bias"]) for b in blocks])}
        out[name] = group
    return out


class Encoder4Editing(nn.Module):
    """e4e: x (B, 256, 256, 3) in [-1, 1] -> W+ codes (B, n_styles, 512) float32, latent_avg added."""

    n_styles: int = 18
    units: Sequence[int] = UNITS_BY_DEPTH[50]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        dt = self.dtype
        if x.ndim != 4 or x.shape[1:] != (E4E_INPUT_SIZE, E4E_INPUT_SIZE, 3):
            raise ValueError(f"Encoder4Editing: expected (B, 256, 256, 3) images, got {x.shape}")
        _, c1, c2, c3 = IRSEBody(self.units, dt, name="body")(x)
        laterals = {COARSE_END: ("latlayer1", c2), MIDDLE_END: ("latlayer2", c1)}
        features, codes = c3, []
        for name, first, end in style_groups(self.n_styles):
            if first in laterals:  # the pyramid level this group reads: p2, then p1
                lateral_name, lateral_in = laterals[first]
                lateral = nn.Conv(512, (1, 1), dtype=dt, name=lateral_name)(lateral_in)
                features = resize_bilinear_align_corners(features, lateral.shape[1:3]) + lateral
            group = GradualStyleGroup(end - first, style_block_convs(first), dtype=dt, name=name)
            codes.append(group(features).astype(jnp.float32))
        codes = jnp.concatenate(codes, axis=1)  # (B, n_styles, 512): style_i(features_i)
        w = codes.at[:, 0].set(0.0) + codes[:, :1]
        latent_avg = self.param("latent_avg", nn.initializers.zeros, (self.n_styles, 512), jnp.float32)
        return w + latent_avg[None]


def e4e_input(images: jax.Array) -> jax.Array:
    """(B, S, S, 3) in [-1, 1] with S a multiple of 256 -> (B, 256, 256, 3) by S/256 box averaging."""
    size = images.shape[1]
    if images.ndim != 4 or images.shape[2] != size or size % E4E_INPUT_SIZE:
        raise ValueError(f"e4e_input: expected square (B, S, S, 3) images with S a multiple of 256, "
                         f"got {images.shape}")
    if size == E4E_INPUT_SIZE:
        return images
    return adaptive_avg_pool2d(images, E4E_INPUT_SIZE)


def e4e_from_arch(arch: dict, dtype=jnp.float32) -> Encoder4Editing:
    """Builds the module described by a converted directory's `arch` dict."""
    return Encoder4Editing(n_styles=int(arch["n_styles"]), units=tuple(arch["units"]), dtype=dtype)


def load_e4e(weights_dir: str | os.PathLike, dtype=jnp.float32) -> tuple[Encoder4Editing, dict]:
    """Loads a directory written by `stylemask convert e4e` -> (module, variables).

    `variables` = `{'params': ..., 'batch_stats': ...}` (arrays on the default device), for
    `module.apply(variables, images)`.
    """
    variables, arch = load_weights(weights_dir, "e4e")
    if "styles_0" in variables["params"]:  # converted before the style groups: restack, place again
        variables = on_device(dict(variables, params=group_style_blocks(variables["params"],
                                                                        int(arch["n_styles"]))))
    return e4e_from_arch(arch, dtype), variables


def init_e4e(key: jax.Array, n_styles: int = 18, units: Sequence[int] = UNITS_BY_DEPTH[50],
             dtype=jnp.float32) -> tuple[Encoder4Editing, dict]:
    """Random-weight encoder (for benchmarks and tests): (module, variables)."""
    module = Encoder4Editing(n_styles=n_styles, units=tuple(units), dtype=dtype)
    x = jnp.zeros((1, E4E_INPUT_SIZE, E4E_INPUT_SIZE, 3), jnp.float32)
    variables = jit(module.init)(key, x)
    return module, jax.tree_util.tree_map(np.asarray, variables)
