"""Activation checkpointing ("remat") of the models' blocks, selected by a mode name.

A model with `remat != "none"` wraps each of its blocks in `flax.linen.remat`: the backward pass
keeps only the blocks' inputs and recomputes each block's internals when it needs them, so the
activations alive at once are the block boundaries of the whole network plus the internals of
one block. The blocks: a StyleGAN2 synthesis resolution (up-sampling conv, conv, ToRGB), a DECA
ResNet bottleneck, an IR-SE unit. Parameter trees are unchanged (the lifted transforms add no
scope), and the values are the same functions, so gradients agree with no remat up to float
rounding (tests/test_microbatch.py).

Modes (config.remat):
  "none"         no checkpointing (the default)
  "blocks"       checkpoint every block, save nothing inside it
  "blocks_dots"  checkpoint every block, but save the results of matrix products without batch
                 dimensions inside it (`jax.checkpoint_policies.dots_with_no_batch_dims_saveable`;
                 in these convnets only the small dense layers, e.g. IR-SE's squeeze-excitation)
A forward pass without differentiation is unaffected by the mode.
"""

from __future__ import annotations

import flax.linen as nn
import jax

REMAT_MODES = ("none", "blocks", "blocks_dots")


def check_mode(mode: str) -> str:
    if mode not in REMAT_MODES:
        raise ValueError(f"remat must be one of {', '.join(REMAT_MODES)}, got {mode!r}")
    return mode


def _policy(mode: str):
    return jax.checkpoint_policies.dots_with_no_batch_dims_saveable if mode == "blocks_dots" else None


def remat_module(cls, mode: str):
    """The Module class `cls` itself (mode "none") or its checkpointed version."""
    if check_mode(mode) == "none":
        return cls
    return nn.remat(cls, policy=_policy(mode))


def remat_function(fn, mode: str, static_argnums: tuple[int, ...] = ()):
    """`fn(module, *args)` itself or checkpointed (static_argnums count `module` as 0)."""
    if check_mode(mode) == "none":
        return fn
    return nn.remat(fn, policy=_policy(mode), static_argnums=static_argnums)
