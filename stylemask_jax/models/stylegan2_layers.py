"""The layers of the rosinality StyleGAN2 generator (Flax Linen), used by `stylegan2.Generator`.

Parameters hold the *raw* values of the PyTorch checkpoints (equalized learning rate is applied
at run time, never baked in), in Flax layouts: Dense kernels (in, out), conv weights HWIO.

  EqualLinear    {'kernel': (in, out), 'bias': (out,)}
  MappingNetwork {'dense_0' .. 'dense_{n_mlp-1}': EqualLinear}
  StyledConv     {'modulation': EqualLinear(style_dim -> Cin), 'weight': (3, 3, Cin, Cout),
                  'noise_strength': (), 'bias': (Cout,)}
  ToRGB          {'modulation': EqualLinear(style_dim -> Cin), 'weight': (1, 1, Cin, 3),
                  'bias': (3,)}

Feature maps are NHWC in the compute dtype; styles and demodulation are float32; the RGB skip
path is float32.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax.ops.modulated_conv import modulated_conv2d
from stylemask_jax.ops.upfirdn import upsample2d

SQRT2 = math.sqrt(2.0)


def scaled_leaky_relu(x: jnp.ndarray) -> jnp.ndarray:
    """leaky_relu(x, 0.2) * sqrt(2), the reference's fused activation (after its bias)."""
    return jnp.where(x >= 0, x, x * 0.2) * SQRT2


def pixel_norm(z: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
    """z * rsqrt(mean(z^2 over the last axis) + eps)."""
    return z * jax.lax.rsqrt(jnp.mean(z * z, axis=-1, keepdims=True) + eps)


class EqualLinear(nn.Module):
    """Equalized-lr linear layer: y = x @ (kernel * lr_mul / sqrt(in)) + bias * lr_mul.

    With `activation`, the scaled leaky ReLU is applied after the bias (the reference's
    FusedLeakyReLU). Initialisation as the reference: kernel N(0, 1) / lr_mul, bias `bias_init`.
    x: (..., in) float32 -> (..., features) float32.
    """
    features: int
    lr_mul: float = 1.0
    bias_init: float = 0.0
    activation: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        in_dim = x.shape[-1]
        kernel = self.param(
            "kernel", lambda key, shape: jax.random.normal(key, shape) / self.lr_mul,
            (in_dim, self.features))
        bias = self.param("bias", nn.initializers.constant(self.bias_init), (self.features,))
        x = x.astype(jnp.float32)
        y = jnp.dot(x, kernel * (self.lr_mul / math.sqrt(in_dim)),
                    precision=jax.lax.Precision.HIGHEST)
        y = y + bias * self.lr_mul
        return scaled_leaky_relu(y) if self.activation else y


class MappingNetwork(nn.Module):
    """z (B, D) -> w (B, D): PixelNorm then `n_mlp` EqualLinear + scaled leaky ReLU layers."""
    style_dim: int
    n_mlp: int
    lr_mul: float = 0.01

    @nn.compact
    def __call__(self, z: jnp.ndarray) -> jnp.ndarray:
        x = pixel_norm(z.astype(jnp.float32))
        for i in range(self.n_mlp):
            x = EqualLinear(self.style_dim, lr_mul=self.lr_mul, activation=True,
                            name=f"dense_{i}")(x)
        return x


class StyledConv(nn.Module):
    """Modulated 3x3 conv (optionally up-sampling) + noise + bias + scaled leaky ReLU.

    `style(w)`: w (B, style_dim) -> style code (B, in_channels) (float32).
    `__call__(x, style, noise)`: x (B, H, W, Cin), style (B, Cin), noise broadcastable to
    (B, H', W', 1) -> (B, H', W', Cout) with H' = 2H when `upsample`.
    """
    in_channels: int
    out_channels: int
    upsample: bool = False
    kernel_size: int = 3
    blur_kernel: Sequence[float] = (1, 3, 3, 1)
    dtype: Any = jnp.float32

    def setup(self):
        self.modulation = EqualLinear(self.in_channels, bias_init=1.0)
        k = self.kernel_size
        self.weight = self.param("weight", nn.initializers.normal(1.0),
                                 (k, k, self.in_channels, self.out_channels))
        self.noise_strength = self.param("noise_strength", nn.initializers.zeros, ())
        self.bias = self.param("bias", nn.initializers.zeros, (self.out_channels,))

    def style(self, w: jnp.ndarray) -> jnp.ndarray:
        return self.modulation(w)

    def __call__(self, x: jnp.ndarray, style: jnp.ndarray, noise: jnp.ndarray) -> jnp.ndarray:
        y = modulated_conv2d(x, self.weight, style, demodulate=True, upsample=self.upsample,
                             blur_kernel=self.blur_kernel, dtype=self.dtype)
        y = y + (self.noise_strength * noise).astype(y.dtype)
        return scaled_leaky_relu(y + self.bias.astype(y.dtype))


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation) + bias, plus the up-sampled previous skip.

    `style(w)`: (B, style_dim) -> (B, in_channels). `__call__(x, style, skip)`: x (B, H, W, Cin),
    skip None or (B, H/2, W/2, 3) -> (B, H, W, 3) float32.
    """
    in_channels: int
    upsample: bool = True
    blur_kernel: Sequence[float] = (1, 3, 3, 1)
    dtype: Any = jnp.float32

    def setup(self):
        self.modulation = EqualLinear(self.in_channels, bias_init=1.0)
        self.weight = self.param("weight", nn.initializers.normal(1.0), (1, 1, self.in_channels, 3))
        self.bias = self.param("bias", nn.initializers.zeros, (3,))

    def style(self, w: jnp.ndarray) -> jnp.ndarray:
        return self.modulation(w)

    def __call__(self, x: jnp.ndarray, style: jnp.ndarray,
                 skip: jnp.ndarray | None = None) -> jnp.ndarray:
        rgb = modulated_conv2d(x, self.weight, style, demodulate=False, dtype=self.dtype)
        rgb = rgb.astype(jnp.float32) + self.bias
        if skip is not None:
            if not self.upsample:
                raise ValueError("ToRGB(upsample=False) got a skip input")
            rgb = rgb + upsample2d(skip, self.blur_kernel)
        return rgb


def style_layer_channels(channels: Sequence[int]) -> tuple[tuple[int, int, bool], ...]:
    """(in, out, upsample) of every style conv, for `channels` per resolution 4, 8, ..., size."""
    layers = [(channels[0], channels[0], False)]
    for r in range(1, len(channels)):
        layers.append((channels[r - 1], channels[r], True))
        layers.append((channels[r], channels[r], False))
    return tuple(layers)


def noise_shapes(size: int) -> tuple[tuple[int, int, int, int], ...]:
    """NHWC shapes (1, r, r, 1) of the per-layer noise buffers, r = 2^((i + 5) // 2)."""
    n = 2 * int(np.log2(size)) - 3
    return tuple((1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), 1) for i in range(n))
