"""The StyleMask mask network: one small MLP per controlled style layer.

For controlled layer l with style width d_l:

    m_l = sigmoid(W2 relu(W1 (s_src_l - s_tgt_l) + b1) + b2),   W1, W2: (d_l, d_l)

Plain dense layers (no equalized-lr scaling), hidden width = layer width. Parameters:

    {'network_00': {'fc1': {'kernel': (d, d), 'bias': (d,)}, 'fc2': {...}}, 'network_01': ...}

Kernels are (in, out), i.e. the transpose of the official torch `masknet.{0,2}.weight`.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

INIT_STD = 0.01  # the official initialisation: normal(0, 0.01) weights, zero biases


def layer_name(index: int) -> str:
    return f"network_{index:02d}"


class LayerMask(nn.Module):
    """One controlled layer's MLP: (B, d) style difference -> (B, d) mask in (0, 1)."""

    width: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, diff: jax.Array) -> jax.Array:
        dense = lambda name: nn.Dense(  # noqa: E731
            self.width, name=name, dtype=self.dtype, param_dtype=jnp.float32,
            kernel_init=nn.initializers.normal(INIT_STD), bias_init=nn.initializers.zeros,
            precision=jax.lax.Precision.HIGHEST)
        hidden = nn.relu(dense("fc1")(diff))
        return nn.sigmoid(dense("fc2")(hidden).astype(jnp.float32))


class MaskNet(nn.Module):
    """Masks for the first `len(widths)` style layers.

    Attributes:
      widths: style width of each controlled layer, e.g. (512,)*10 + (256, 256) at 1024.
      dtype: compute dtype of the dense layers; masks are returned in float32.
    """

    widths: Sequence[int]
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, source_styles: Sequence[jax.Array],
                 target_styles: Sequence[jax.Array]) -> list[jax.Array]:
        """source_styles, target_styles: per-layer (B, C_l) lists (at least len(widths) layers).

        Returns the per-layer masks, a list of len(widths) arrays (B, C_l) in (0, 1);
        1 selects the target's channel.
        """
        if len(source_styles) < len(self.widths) or len(target_styles) < len(self.widths):
            raise ValueError(f"MaskNet controls {len(self.widths)} layers but got "
                             f"{len(source_styles)} source and {len(target_styles)} target style layers")
        return [LayerMask(width, self.dtype, name=layer_name(i))(
                    source_styles[i].astype(jnp.float32) - target_styles[i].astype(jnp.float32))
                for i, width in enumerate(self.widths)]


def init_mask_net(mask_net: MaskNet, key: jax.Array) -> dict:
    """Random initial variables {'params': ...} as the official code initialises them."""
    dummy = [jnp.zeros((1, w), jnp.float32) for w in mask_net.widths]
    return mask_net.init(key, dummy, dummy)
