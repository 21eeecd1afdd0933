"""The StyleMask method as pure functions: codes -> styles -> masks -> mixed styles -> images.

Shapes: Z and W are (B, D); W+ is (B, L, D) with L = n_latent; style codes S are lists over the
generator's conv layers of (B, C_l); images are NHWC float32, nominally in [-1, 1].

    wplus_src = encode_wplus(gen, gvars, z_src, 'z', psi, mean)
    wplus_tgt = encode_wplus(gen, gvars, z_tgt, 'z', psi, mean)
    out = reenact(gen, gvars, mask_net, mvars, wplus_src, wplus_tgt)   # images + masks + styles

`make_reenact_fn` returns the jit-compiled version used by the CLI, compiled once per batch shape;
`reenact_only` / `outputs='reenacted'` synthesise only the reenacted images (B instead of 3B).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from stylemask_jax.compiling import jit, map_in_chunks
from stylemask_jax.models.mask_net import MaskNet
from stylemask_jax.models.stylegan2 import Generator, face_pool
from stylemask_jax.sharding import data_sharding, replicated

INPUT_TYPES = ("z", "w", "wplus")
CPU_CHUNK = 1            # images synthesised at a time on a CPU (`synthesis_chunk`)
CHUNK_FROM_SIZE = 256    # ... for generators of this size and more
WHOLE_UP_TO = 3          # ... and batches of more images than one full pair (source, target,
                         # reenacted), which ran 5% faster whole (benchmarks/results/chunking.md)


def encode_wplus(gen: Generator, gvars, codes: jax.Array, input_type: str,
                 truncation: float = 1.0, truncation_latent: jax.Array | None = None) -> jax.Array:
    """Z (B, D), W (B, D) or W+ (B, L, D) -> truncated W+ (B, L, D) (`Generator.wplus`).

    Truncation `t + psi * (w - t)` toward `truncation_latent` (D,) applies to every input type
    (row-wise for W+), as the official reenactment path does; psi = 1 leaves codes unchanged.
    """
    return gen.apply(gvars, codes, input_type, truncation, truncation_latent, method=Generator.wplus)


def style_codes(gen: Generator, gvars, wplus: jax.Array) -> list[jax.Array]:
    """W+ (B, L, D) -> the conv layers' style codes, a list of (B, C_l)."""
    return gen.apply(gvars, wplus, method=Generator.style_codes)


def mix_styles(masks: Sequence[jax.Array], source: Sequence[jax.Array],
               target: Sequence[jax.Array]) -> list[jax.Array]:
    """m * s_tgt + (1 - m) * s_src on the len(masks) controlled layers; s_src elsewhere."""
    n = len(masks)
    mixed = [m * t + (1.0 - m) * s for m, s, t in zip(masks, source[:n], target[:n])]
    return mixed + list(source[n:])


def reenact_styles(mask_net: MaskNet, mvars, source: Sequence[jax.Array],
                   target: Sequence[jax.Array]) -> tuple[list[jax.Array], list[jax.Array]]:
    """Style codes of sources and targets -> (mixed style codes, masks)."""
    masks = mask_net.apply(mvars, source, target)
    return mix_styles(masks, source, target), masks


def synthesize(gen: Generator, gvars, styles: Sequence[jax.Array], wplus: jax.Array,
               resize_256: bool = False, chunk: int | None = None) -> jax.Array:
    """Conv-layer styles + W+ (ToRGB rows) -> images (B, H, W, 3), optionally pooled to 256.

    chunk: synthesise this many images at a time (a `lax.map` over the batch) when it divides
    a batch of more than WHOLE_UP_TO images, so that a batch streams through the
    high-resolution layers as a small one does (see `synthesis_chunk`); None: the whole batch at
    once. The images are the same up to float rounding.
    """
    def whole(part):
        images = gen.apply(gvars, *part, method=Generator.synthesize)
        return face_pool(images) if resize_256 else images

    return map_in_chunks(whole, (list(styles), wplus),
                         None if wplus.shape[0] <= WHOLE_UP_TO else chunk)


def synthesis_chunk(gen: Generator, mesh=None) -> int | None:
    """The `synthesize` chunk for inference on this backend.

    On a CPU, a batch of large images runs slower per image than a single image: its
    high-resolution activations (8 GiB for 24 images at 1024 px) stream through memory instead
    of the caches. There, generators of CHUNK_FROM_SIZE px and more synthesise CPU_CHUNK images
    at a time (benchmarks/results/chunking.md). Accelerators, and batches sharded over several
    devices, take the whole batch at once.
    """
    if jax.default_backend() != "cpu" or (mesh is not None and mesh.size > 1):
        return None
    return CPU_CHUNK if gen.size >= CHUNK_FROM_SIZE else None


def reenact(gen: Generator, gvars, mask_net: MaskNet, mvars, wplus_source: jax.Array,
            wplus_target: jax.Array, resize_256: bool = False, chunk: int | None = None) -> dict:
    """Reenacts each source (B, L, D) with the pose/expression of the matching target.

    Returns a dict with 'source', 'target', 'reenacted' images (B, H, W, 3) in about [-1, 1],
    'masks' (list of (B, C_l) for the controlled layers) and 'mixed_styles' (list of (B, C_l)).
    The three image batches are synthesized in one generator call (batch 3B; `chunk`: see
    `synthesize`).
    """
    s_src = style_codes(gen, gvars, wplus_source)
    s_tgt = style_codes(gen, gvars, wplus_target)
    mixed, masks = reenact_styles(mask_net, mvars, s_src, s_tgt)
    batch = wplus_source.shape[0]
    styles = [jnp.concatenate(layer, axis=0) for layer in zip(s_src, s_tgt, mixed)]
    wplus = jnp.concatenate([wplus_source, wplus_target, wplus_source], axis=0)
    images = synthesize(gen, gvars, styles, wplus, resize_256, chunk)
    return {"source": images[:batch], "target": images[batch: 2 * batch],
            "reenacted": images[2 * batch:], "masks": masks, "mixed_styles": mixed}


def reenact_only(gen: Generator, gvars, mask_net: MaskNet, mvars, wplus_source: jax.Array,
                 wplus_target: jax.Array, resize_256: bool = False,
                 chunk: int | None = None) -> jax.Array:
    """Only the reenacted images (B, H, W, 3): the same as `reenact(...)['reenacted']`.

    The style codes of sources and targets need only the affine layers of W+ (no synthesis),
    so this is one generator call of B images instead of 3B.
    """
    s_src = style_codes(gen, gvars, wplus_source)
    s_tgt = style_codes(gen, gvars, wplus_target)
    mixed, _ = reenact_styles(mask_net, mvars, s_src, s_tgt)
    return synthesize(gen, gvars, mixed, wplus_source, resize_256, chunk)


def make_encode_fn(gen: Generator, input_type: str, truncation: float):
    """jit(gvars, codes, truncation_latent) -> truncated W+; compiled once per shape."""
    @jit
    def encode(gvars, codes, truncation_latent):
        return encode_wplus(gen, gvars, codes, input_type, truncation, truncation_latent)
    return encode


OUTPUTS = ("all", "reenacted")


def make_reenact_fn(gen: Generator, mask_net: MaskNet, resize_256: bool = False, mesh=None,
                    outputs: str = "all", chunk: int | None | str = "auto"):
    """jit(gvars, mvars, wplus_source, wplus_target) -> images.

    outputs='all': (source, target, reenacted), one generator call of 3B images;
    outputs='reenacted': the reenacted images alone (`reenact_only`), one call of B images.
    With a 1-D `mesh` (axis 'data'), the pairs are sharded over its devices and the weights
    replicated; the batch must then be a multiple of the mesh size.
    chunk: see `synthesize`; "auto": `synthesis_chunk` for this backend.
    """
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {OUTPUTS}, got {outputs!r}")
    chunk = synthesis_chunk(gen, mesh) if chunk == "auto" else chunk

    def run(gvars, mvars, wplus_source, wplus_target):
        if outputs == "reenacted":
            return reenact_only(gen, gvars, mask_net, mvars, wplus_source, wplus_target,
                                resize_256, chunk)
        out = reenact(gen, gvars, mask_net, mvars, wplus_source, wplus_target, resize_256, chunk)
        return out["source"], out["target"], out["reenacted"]
    if mesh is None:
        return jit(run)
    data, weights = data_sharding(mesh), replicated(mesh)
    return jit(run, in_shardings=(weights, weights, data, data),
               out_shardings=data if outputs == "reenacted" else (data, data, data))
