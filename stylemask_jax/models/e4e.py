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

`latent_avg` (n_styles, 512) is a float32 parameter (`params['latent_avg']`), taken from the
checkpoint. n_styles = 2 log2(output_size) - 2 (18 for a 1024 generator). `dtype` is the
compute dtype; parameters and the returned codes are float32.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax.models.irse import UNITS_BY_DEPTH, IRSEBody
from stylemask_jax.ops.matrix_resize import adaptive_avg_pool2d, resize_bilinear_align_corners

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


def _stride2_patches(x: jax.Array) -> jax.Array:
    """(..., S, S, C) -> (..., S/2, S/2, 9 C): the 3x3 windows of a stride-2, pad-1 convolution.

    The last axis runs over (kernel row, kernel column, channel), the order of an HWIO kernel
    reshaped to (9 C, Cout), so `patches @ kernel.reshape(9 C, Cout)` is the convolution.
    """
    pad = [(0, 0)] * (x.ndim - 3) + [(1, 1), (1, 1), (0, 0)]
    xp = jnp.pad(x, pad)
    n = x.shape[-2] // 2
    return jnp.concatenate([xp[..., i:i + 2 * n - 1:2, j:j + 2 * n - 1:2, :]
                            for i in range(3) for j in range(3)], axis=-1)


class _Weights(nn.Module):
    """The kernel and bias of one conv or dense layer, created as nn.Conv / nn.Dense would."""

    kernel_shape: Sequence[int]

    @nn.compact
    def __call__(self):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), tuple(self.kernel_shape),
                            jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.kernel_shape[-1],), jnp.float32)
        return kernel, bias


class GradualStyleBlock(nn.Module):
    """The parameters of one style block: `num_convs` convs 3x3 (`conv_k`) and a dense (`linear`).

    Calling it returns [(kernel (3, 3, 512, 512), bias (512,)), ..., (kernel (512, 512), bias)];
    the blocks that read the same map are computed together by `style_group`.
    """

    num_convs: int
    width: int = 512

    @nn.compact
    def __call__(self):
        w = self.width
        convs = [_Weights((3, 3, w, w), name=f"conv_{k}")() for k in range(self.num_convs)]
        return convs + [_Weights((w, w), name="linear")()]


def style_group(features: jax.Array, blocks: Sequence[Sequence[tuple]], dtype) -> jax.Array:
    """n style blocks on one map: (B, S, S, 512) -> (n, B, 512) in `dtype`.

    Each block is log2(S) x [conv 3x3 stride 2 pad 1 (bias) -> LeakyReLU(0.01)] down to 1 x 1,
    then a dense. Every convolution is computed as the product of its 3x3 windows
    (`_stride2_patches`) with the kernel reshaped to (9 C, C) (a free reshape of HWIO): the same
    sums as the convolution in another order, and the windows of the shared map are cut once for
    all n blocks. On XLA:CPU this is faster than stride-2 convolutions (the whole e4e 1.17x at
    batch 1 and 1.35x at batch 8 on a 2-core machine), above all on the small maps, where a
    convolution call costs more than its arithmetic. Kernels are used where they lie: stacking
    the n kernels into one product copies them (tens of MB) at every call and was slower.
    """
    size = features.shape[1]
    if 2 ** (len(blocks[0]) - 1) != size:
        raise ValueError(f"style blocks of {len(blocks[0]) - 1} convs cannot reduce a "
                         f"{size}x{size} map to 1x1")

    def conv(windows, kernel, bias):
        y = jnp.dot(windows, kernel.reshape(-1, kernel.shape[-1]).astype(dtype)) + bias.astype(dtype)
        return nn.leaky_relu(y, negative_slope=0.01)

    shared = _stride2_patches(features.astype(dtype))
    styles = []
    for block in blocks:
        x = conv(shared, *block[0])
        for kernel, bias in block[1:-1]:
            x = conv(_stride2_patches(x), kernel, bias)
        kernel, bias = block[-1]
        styles.append(jnp.dot(x[:, 0, 0], kernel.astype(dtype)) + bias.astype(dtype))
    return jnp.stack(styles)


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
        blocks = [GradualStyleBlock(style_block_convs(i), name=f"styles_{i}")()
                  for i in range(self.n_styles)]
        bounds = [0, min(COARSE_END, self.n_styles), min(MIDDLE_END, self.n_styles), self.n_styles]
        features, styles = c3, []
        for g, (lateral_name, tap) in enumerate(((None, None), ("latlayer1", c2), ("latlayer2", c1))):
            if bounds[g] == bounds[g + 1]:
                break
            if lateral_name:
                lateral = nn.Conv(512, (1, 1), dtype=dt, name=lateral_name)(tap)
                features = resize_bilinear_align_corners(features, lateral.shape[1:3]) + lateral
            styles.append(style_group(features, blocks[bounds[g]:bounds[g + 1]], dt))
        styles = jnp.concatenate(styles).astype(jnp.float32)  # (n_styles, B, 512)
        # w_0 = style_0(c3); w_i = w_0 + style_i(features_i) for i >= 1
        w = styles[0][:, None, :] + jnp.moveaxis(styles, 0, 1).at[:, 0].set(0.0)
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

    `variables` = `{'params': ..., 'batch_stats': ...}` (numpy leaves), for
    `module.apply(variables, images)`.
    """
    from stylemask_jax.weights import load_weights
    variables, arch = load_weights(weights_dir, "e4e")
    return e4e_from_arch(arch, dtype), variables


def init_e4e(key: jax.Array, n_styles: int = 18, units: Sequence[int] = UNITS_BY_DEPTH[50],
             dtype=jnp.float32) -> tuple[Encoder4Editing, dict]:
    """Random-weight encoder (for benchmarks and tests): (module, variables)."""
    module = Encoder4Editing(n_styles=n_styles, units=tuple(units), dtype=dtype)
    x = jnp.zeros((1, E4E_INPUT_SIZE, E4E_INPUT_SIZE, 3), jnp.float32)
    variables = jax.jit(module.init)(key, x)
    return module, jax.tree_util.tree_map(np.asarray, variables)
