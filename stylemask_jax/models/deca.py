"""DECA's coarse encoder `E_flame`: a ResNet-50 trunk and a two-layer regressor to 236 values.

    images (B, 224, 224, 3) RGB in [0, 1], no mean/std normalisation
      -> trunk: conv 7x7/2 pad 3 -> BN -> ReLU -> max-pool 3x3/2 pad 1
                -> 4 stages of bottleneck blocks (widths 64, 128, 256, 512; x4 expansion)
                -> 7x7 average pool                                     -> (B, 2048)
      -> regressor: Dense 2048->1024 -> ReLU -> Dense 1024->236        -> (B, 236)

The 236 values split (`split_params`) into FLAME shape 100, albedo (tex) 50, expression 50,
pose 6 (global axis-angle 3, jaw axis-angle 3), camera 3 (scale, tx, ty) and SH light (9, 3).

Bottleneck: 1x1 -> BN -> ReLU -> 3x3 (the stage's stride sits here, 2 in stages 2-4, padding
one pixel on every side, unlike 'SAME' for even sizes) -> BN -> ReLU -> 1x1 -> BN, plus the
residual (block 0 of a stage: 1x1 conv with the same stride then BN; later blocks: identity),
then ReLU. BatchNorm is always in inference mode (running statistics, eps 1e-5); the statistics
live in the `batch_stats` collection, so `apply` needs `{'params': ..., 'batch_stats': ...}`.

Variable tree (torch name in brackets):

    trunk/conv1                  [encoder.conv1]         kernel (7, 7, 3, 64)
    trunk/bn1                    [encoder.bn1]
    trunk/layer{L}_{i}/conv1..3, bn1..3                  [encoder.layer{L}.{i}.*]
    trunk/layer{L}_0/downsample_conv, downsample_bn     [encoder.layer{L}.0.downsample.0/1]
    fc1, fc2                     [layers.0], [layers.2]  Dense kernels are (in, out)

BatchNorm entries hold `scale`, `bias` in `params` and `mean`, `var` in `batch_stats`.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylemask_jax.compiling import jit
from stylemask_jax.models.remat import remat_module
from stylemask_jax.weights import WeightsError, load_weights

RESNET50_BLOCKS = (3, 4, 6, 3)
STAGE_WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
FEATURES = 2048
NUM_PARAMS = 236
INPUT_SIZE = 224
BN_EPS = 1e-5

# (name, start, stop) of each group in the 236 outputs, in the reference's order.
PARAM_SPLIT = (("shape", 0, 100), ("tex", 100, 150), ("exp", 150, 200), ("pose", 200, 206),
               ("cam", 206, 209), ("light", 209, 236))


def split_params(params: jax.Array) -> dict[str, jax.Array]:
    """(B, 236) encoder output -> {'shape': (B, 100), 'tex': (B, 50), 'exp': (B, 50),
    'pose': (B, 6), 'cam': (B, 3), 'light': (B, 9, 3)} (light reshaped row-major)."""
    if params.shape[-1] != NUM_PARAMS:
        raise ValueError(f"split_params: expected {NUM_PARAMS} values in the last axis, "
                         f"got shape {params.shape}")
    out = {name: params[..., a:b] for name, a, b in PARAM_SPLIT}
    out["light"] = out["light"].reshape(params.shape[:-1] + (9, 3))
    return out


def _batchnorm(name: str, dtype) -> nn.BatchNorm:
    # Inference mode only; flax normalises in float32 when the statistics are float32.
    return nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=BN_EPS, dtype=dtype,
                        param_dtype=jnp.float32, name=name)


class Bottleneck(nn.Module):
    """One ResNet bottleneck block: (B, H, W, Cin) -> (B, H/stride, W/stride, 4 * planes).

    `downsample` adds the 1x1 conv + BN projection on the residual (block 0 of each stage).
    """

    planes: int
    stride: int = 1
    downsample: bool = False
    dtype: Any = jnp.float32
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = lambda feat, k, stride, pad, name: nn.Conv(  # noqa: E731
            feat, (k, k), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
            use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
            precision=self.precision, name=name)
        out = nn.relu(_batchnorm("bn1", self.dtype)(conv(self.planes, 1, 1, 0, "conv1")(x)))
        out = nn.relu(_batchnorm("bn2", self.dtype)(
            conv(self.planes, 3, self.stride, 1, "conv2")(out)))
        out = _batchnorm("bn3", self.dtype)(conv(self.planes * EXPANSION, 1, 1, 0, "conv3")(out))
        residual = x
        if self.downsample:
            residual = conv(self.planes * EXPANSION, 1, self.stride, 0, "downsample_conv")(x)
            residual = _batchnorm("downsample_bn", self.dtype)(residual)
        return nn.relu(out + residual)


class ResNetTrunk(nn.Module):
    """The ResNet-50 feature extractor: (B, 224, 224, 3) -> (B, 2048) float32.

    `remat` (models/remat.py): "blocks" checkpoints every bottleneck block."""

    blocks: Sequence[int] = RESNET50_BLOCKS
    widths: Sequence[int] = STAGE_WIDTHS
    dtype: Any = jnp.float32
    precision: Any = None
    remat: str = "none"

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        if len(self.blocks) != 4 or min(self.blocks) < 1:
            raise ValueError(f"ResNetTrunk: blocks must be 4 positive counts, got {self.blocks}")
        x = jnp.asarray(images, self.dtype)
        x = nn.Conv(self.widths[0], (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)), use_bias=False,
                    dtype=self.dtype, param_dtype=jnp.float32, precision=self.precision,
                    name="conv1")(x)
        x = nn.relu(_batchnorm("bn1", self.dtype)(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        block = remat_module(Bottleneck, self.remat)
        for stage, (count, planes) in enumerate(zip(self.blocks, self.widths)):
            for i in range(count):
                stride = 2 if (stage > 0 and i == 0) else 1
                x = block(planes, stride=stride, downsample=(i == 0), dtype=self.dtype,
                          precision=self.precision, name=f"layer{stage + 1}_{i}")(x)
        if x.shape[1:3] != (7, 7):
            # The reference pools with a fixed 7x7 window and flattens: only 224 inputs work.
            raise ValueError(f"ResNetTrunk: expected {INPUT_SIZE}x{INPUT_SIZE} inputs (a 7x7 final "
                             f"map), got images of shape {images.shape}")
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


class DecaEncoder(nn.Module):
    """DECA `E_flame`: (B, 224, 224, 3) RGB in [0, 1] -> (B, 236) float32 FLAME/camera/light code.

    Attributes:
      blocks: bottleneck blocks per stage; (3, 4, 6, 3) is the real ResNet-50.
      widths: bottleneck widths per stage, (64, 128, 256, 512) in DECA (the stem has widths[0]);
        narrower random-weight encoders keep tiny CPU training runs fast.
      dtype: compute dtype (e.g. jnp.bfloat16); parameters, BatchNorm statistics, the average
        pool and the outputs stay float32.
      precision: passed to every conv/dense (None = JAX's default for the backend).
      remat: "none", "blocks" or "blocks_dots" (models/remat.py): checkpoint every bottleneck.

    `apply(variables, images)` returns the code; `apply(..., method=DecaEncoder.features)`
    the (B, 2048) trunk features.
    """

    blocks: Sequence[int] = RESNET50_BLOCKS
    widths: Sequence[int] = STAGE_WIDTHS
    dtype: Any = jnp.float32
    precision: Any = None
    remat: str = "none"

    def setup(self):
        self.trunk = ResNetTrunk(tuple(self.blocks), tuple(self.widths), dtype=self.dtype,
                                 precision=self.precision, remat=self.remat)
        dense = lambda n: nn.Dense(n, dtype=self.dtype, param_dtype=jnp.float32,  # noqa: E731
                                   precision=self.precision)
        self.fc1 = dense(1024)
        self.fc2 = dense(NUM_PARAMS)

    def features(self, images: jax.Array) -> jax.Array:
        """(B, 224, 224, 3) in [0, 1] -> (B, 2048) float32."""
        return self.trunk(images)

    def __call__(self, images: jax.Array) -> jax.Array:
        """(B, 224, 224, 3) in [0, 1] -> (B, 236) float32 (split with `split_params`)."""
        hidden = nn.relu(self.fc1(self.features(images).astype(self.dtype)))
        return self.fc2(hidden).astype(jnp.float32)


def init_deca(key: jax.Array, blocks: Sequence[int] = RESNET50_BLOCKS,
              dtype: Any = jnp.float32,
              widths: Sequence[int] = STAGE_WIDTHS) -> tuple[DecaEncoder, dict]:
    """A randomly initialised encoder and its variables {'params', 'batch_stats'}
    (statistics: mean 0, var 1). For tests and benchmarks; real weights come from `load_deca`."""
    model = DecaEncoder(blocks=tuple(blocks), widths=tuple(widths), dtype=dtype)
    dummy = jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    return model, jit(model.init)(key, dummy)


def load_deca(weights_dir, dtype: Any = jnp.float32) -> tuple[DecaEncoder, dict]:
    """Loads a directory written by `stylemask convert deca` -> (DecaEncoder, variables).

    `variables` is {'params': ..., 'batch_stats': ...}, float32 arrays on the default device.
    Raises WeightsError if the directory is missing or holds another network.
    """
    variables, arch = load_weights(weights_dir, "deca")
    blocks = tuple(int(b) for b in arch.get("blocks", ()))
    if len(blocks) != 4 or min(blocks) < 1:
        raise WeightsError(f"{weights_dir}: model.json has blocks {arch.get('blocks')}, "
                           "expected four positive counts")
    return DecaEncoder(blocks=blocks, dtype=dtype), variables
