"""IR-SE backbone (ArcFace IR-SE-50) in Flax Linen, inference mode.

The face-recognition network behind StyleMask's identity loss and CSIM metric, and the body of
the e4e encoder. Layout (NHWC throughout):

  input stem   conv 3x3 (3 -> 64, no bias) -> BatchNorm -> PReLU
  body         four stages of widths (64, 128, 256, 512); the first unit of each stage has
               stride 2, the others stride 1. IR-SE-50 has (3, 4, 14, 3) units per stage.
  unit         residual: BN -> conv 3x3 -> PReLU -> conv 3x3 (stride s) -> BN -> SE
               shortcut: x[:, ::s, ::s] when C_in == C_out, else conv 1x1 (stride s) -> BN
               output  : residual + shortcut (no activation after the sum)
  SE           mean over H, W -> dense C -> C/16 -> ReLU -> dense C/16 -> C -> sigmoid -> scale
  output layer BN -> flatten (H, W, C) -> dense (7*7*512 -> 512) -> BatchNorm1d -> / L2 norm

Every 3x3 convolution pads one pixel on each side (PyTorch `padding=1`), which for stride 2
on even sizes differs from 'SAME'. BatchNorms are always in inference mode (running statistics
in the `batch_stats` collection, eps 1e-5). The output layer's flatten is channel-last here;
the converter permutes the PyTorch weight (which expects a (C, H, W) flatten) to match.

Parameters stay float32; `dtype` sets the compute dtype of the convolutions and dense layers.
The SE squeeze, the embedding and its L2 normalisation are computed in float32.

Also here: the identity-loss preprocessing (`arcface_input`), `face_embeddings` (preprocess +
network) and `cosine_similarity`, shared by `faces.identity_loss` and `faces.csim`, and the
loader `load_irse(dir)` of a converted weights directory.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax.compiling import jit
from stylemask_jax.models.remat import remat_module
from stylemask_jax.ops.matrix_resize import adaptive_avg_pool2d
from stylemask_jax.weights import load_weights

STAGE_WIDTHS = (64, 128, 256, 512)
UNITS_BY_DEPTH = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
BN_EPS = 1e-5
# The reference crop of a 256 x 256 generator image before pooling to 112 (IDLoss.extract_feats).
ARCFACE_CROP = (35, 223, 32, 220)  # rows 35..222, columns 32..219
ARCFACE_SIZE = 112

_PAD1 = ((1, 1), (1, 1))


def batch_norm(name: str, dtype) -> nn.BatchNorm:
    """An inference-mode BatchNorm with PyTorch's epsilon (params: scale, bias; stats: mean, var)."""
    return nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, dtype=dtype,
                        param_dtype=jnp.float32, name=name)


class PReLU(nn.Module):
    """PReLU with one learned slope per channel (param 'alpha', shape (C,), init 0.25)."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        alpha = self.param("alpha", nn.initializers.constant(0.25), (x.shape[-1],), jnp.float32)
        return jnp.where(x >= 0, x, x * alpha.astype(self.dtype))


class SqueezeExcite(nn.Module):
    """Squeeze-excitation with reduction 16; dense layers without bias ('fc1', 'fc2')."""

    reduction: int = 16
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        s = jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # (B, C), float32 reduction
        s = nn.Dense(c // self.reduction, use_bias=False, dtype=self.dtype, name="fc1")(s)
        s = nn.relu(s)
        s = nn.Dense(c, use_bias=False, dtype=self.dtype, name="fc2")(s)
        return x * jax.nn.sigmoid(s).astype(x.dtype)[:, None, None, :]


class IRSEUnit(nn.Module):
    """One bottleneck_IR_SE unit. x: (B, H, W, in_ch) -> (B, H/stride, W/stride, depth)."""

    depth: int
    stride: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        s, d, dt = self.stride, self.depth, self.dtype
        if x.shape[-1] == d:
            shortcut = x[:, ::s, ::s, :]  # MaxPool2d(kernel 1, stride s)
        else:
            shortcut = nn.Conv(d, (1, 1), strides=s, padding="VALID", use_bias=False, dtype=dt,
                               name="shortcut_conv")(x)
            shortcut = batch_norm("shortcut_bn", dt)(shortcut)
        r = batch_norm("bn1", dt)(x)
        r = nn.Conv(d, (3, 3), padding=_PAD1, use_bias=False, dtype=dt, name="conv1")(r)
        r = PReLU(dt, name="prelu")(r)
        r = nn.Conv(d, (3, 3), strides=s, padding=_PAD1, use_bias=False, dtype=dt, name="conv2")(r)
        r = batch_norm("bn2", dt)(r)
        r = SqueezeExcite(dtype=dt, name="se")(r)
        return r + shortcut


class IRSEBody(nn.Module):
    """Input stem and the four stages.

    x: (B, H, W, 3) -> list of the four stage outputs, (B, H/2^k, W/2^k, STAGE_WIDTHS[k-1]) for
    k = 1..4. Units are named `body_{n}`, numbered through all stages as in PyTorch.
    `remat` (models/remat.py): "blocks" checkpoints every unit.
    """

    units: Sequence[int] = UNITS_BY_DEPTH[50]
    dtype: Any = jnp.float32
    remat: str = "none"

    @nn.compact
    def __call__(self, x):
        dt = self.dtype
        x = x.astype(dt)
        x = nn.Conv(STAGE_WIDTHS[0], (3, 3), padding=_PAD1, use_bias=False, dtype=dt,
                    name="input_conv")(x)
        x = batch_norm("input_bn", dt)(x)
        x = PReLU(dt, name="input_prelu")(x)
        outputs, n = [], 0
        unit = remat_module(IRSEUnit, self.remat)
        for width, count in zip(STAGE_WIDTHS, self.units):
            for j in range(count):
                x = unit(width, 2 if j == 0 else 1, dt, name=f"body_{n}")(x)
                n += 1
            outputs.append(x)
        return outputs


class IRSE(nn.Module):
    """The ArcFace embedding network. x: (B, 112, 112, 3) -> (B, 512) float32, unit L2 norm.

    The input is what `arcface_input` produces (values roughly in [-1, 1]). `remat`
    (models/remat.py) checkpoints every unit of the body.
    """

    units: Sequence[int] = UNITS_BY_DEPTH[50]
    embedding_dim: int = 512
    dtype: Any = jnp.float32
    remat: str = "none"

    @nn.compact
    def __call__(self, x):
        dt = self.dtype
        x = IRSEBody(self.units, dt, self.remat, name="body")(x)[-1]
        x = batch_norm("output_bn", dt)(x)
        x = x.reshape(x.shape[0], -1)  # (H, W, C) flatten; the converter permutes the weight
        x = nn.Dense(self.embedding_dim, dtype=dt, name="output_dense")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, dtype=jnp.float32,
                         param_dtype=jnp.float32, name="output_bn1d")(x.astype(jnp.float32))
        return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def arcface_input(images: jax.Array) -> jax.Array:
    """The identity-loss preprocessing of the reference.

    images: (B, 256, 256, 3) in [-1, 1] (a generator image pooled to 256). Crops rows 35..222
    and columns 32..219 (188 x 188) and adaptive-average-pools to (B, 112, 112, 3), PyTorch's
    uneven windows included. No other normalisation.
    """
    if images.ndim != 4 or images.shape[1:3] != (256, 256):
        raise ValueError(f"arcface_input: expected (B, 256, 256, C) images, got {images.shape}")
    r0, r1, c0, c1 = ARCFACE_CROP
    return adaptive_avg_pool2d(images[:, r0:r1, c0:c1, :], ARCFACE_SIZE)


def face_embeddings(model: IRSE, variables, images: jax.Array) -> jax.Array:
    """(B, 256, 256, 3) images in [-1, 1] -> (B, 512) unit-norm float32 ArcFace embeddings."""
    return model.apply(variables, arcface_input(images))


def cosine_similarity(a: jax.Array, b: jax.Array, eps: float = 1e-6) -> jax.Array:
    """`torch.nn.CosineSimilarity(dim=-1, eps)`: (a / max(|a|, eps)) . (b / max(|b|, eps)).

    a, b: (..., D) -> (...) float32.
    """
    a = a.astype(jnp.float32)
    b = b.astype(jnp.float32)
    a = a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), eps)
    b = b / jnp.maximum(jnp.linalg.norm(b, axis=-1, keepdims=True), eps)
    return jnp.sum(a * b, axis=-1)


def init_irse(key: jax.Array, units: Sequence[int] = UNITS_BY_DEPTH[50],
              dtype=jnp.float32) -> tuple[IRSE, dict]:
    """Random-weight network (for benchmarks and tests): (module, variables)."""
    module = IRSE(units=tuple(units), dtype=dtype)
    x = jnp.zeros((1, ARCFACE_SIZE, ARCFACE_SIZE, 3), jnp.float32)
    return module, jax.tree_util.tree_map(np.asarray, jit(module.init)(key, x))


def irse_from_arch(arch: dict, dtype=jnp.float32) -> IRSE:
    """Builds the module described by a converted directory's `arch` dict."""
    return IRSE(units=tuple(arch["units"]), embedding_dim=int(arch.get("embedding_dim", 512)),
                dtype=dtype)


def load_irse(weights_dir: str | os.PathLike, dtype=jnp.float32) -> tuple[IRSE, dict]:
    """Loads a directory written by `stylemask convert irse` -> (module, variables).

    `variables` is `{'params': ..., 'batch_stats': ...}` (arrays on the default device), ready
    for `module.apply(variables, x)` or `face_embeddings(module, variables, images)`.
    """
    variables, arch = load_weights(weights_dir, "irse")
    return irse_from_arch(arch, dtype), variables
