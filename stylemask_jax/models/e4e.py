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


class GradualStyleBlock(nn.Module):
    """(B, S, S, 512) -> (B, 512): stride-2 convs with LeakyReLU(0.01) to 1 x 1, then a dense."""

    num_convs: int
    width: int = 512
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        for k in range(self.num_convs):
            x = nn.Conv(self.width, (3, 3), strides=2, padding=((1, 1), (1, 1)), dtype=self.dtype,
                        name=f"conv_{k}")(x)
            x = nn.leaky_relu(x, negative_slope=0.01)
        if x.shape[1:3] != (1, 1):
            raise ValueError(f"GradualStyleBlock: {self.num_convs} convs leave a "
                             f"{x.shape[1]}x{x.shape[2]} map, expected 1x1")
        x = x.reshape(x.shape[0], self.width)
        return nn.Dense(self.width, dtype=self.dtype, name="linear")(x)


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

        def style(i, features):
            return GradualStyleBlock(style_block_convs(i), dtype=dt, name=f"styles_{i}")(features)

        w0 = style(0, c3).astype(jnp.float32)
        deltas = [jnp.zeros_like(w0)]
        features = c3
        for i in range(1, self.n_styles):
            if i == COARSE_END:
                lateral = nn.Conv(512, (1, 1), dtype=dt, name="latlayer1")(c2)
                features = resize_bilinear_align_corners(features, lateral.shape[1:3]) + lateral
            elif i == MIDDLE_END:
                lateral = nn.Conv(512, (1, 1), dtype=dt, name="latlayer2")(c1)
                features = resize_bilinear_align_corners(features, lateral.shape[1:3]) + lateral
            deltas.append(style(i, features).astype(jnp.float32))
        w = w0[:, None, :] + jnp.stack(deltas, axis=1)
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
