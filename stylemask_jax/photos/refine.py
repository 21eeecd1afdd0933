"""Refining e4e codes by gradient descent in W+ (`--refine-steps N`): better inversions of real faces.

    refine = make_refine_fn(generator, RefineSettings(steps=50))            # jitted, one compile
    codes, losses = refine(gvars, None, e4e_codes, crops)                   # losses (steps, B)

Per image, the loss of a W+ code w (B, L, D) against its aligned crop x (B, 256, 256, 3) is

    l2 * mean((G(w) - x)^2) + l1 * mean(|G(w) - x|)
      + identity * (1 - cos(ArcFace(G(w)), ArcFace(x)))          (only with IR-SE weights)
      + pull * mean((w - w_e4e)^2)                               (stay near the e4e code)

with G(w) the generator's image of the untruncated code pooled to 256 (StyleMask's face_pool)
and images in [-1, 1]. Optax Adam minimises the sum over the batch: the terms of different
images do not interact and Adam is element-wise, so each image is refined as if alone (padded
rows change nothing). All steps run in one `lax.scan` inside one jitted call; `losses[k]` is the
per-image loss before update k, so `losses[0]` is the e4e code's.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from stylemask_jax.compiling import jit
from stylemask_jax.models.irse import cosine_similarity, face_embeddings
from stylemask_jax.models.stylegan2 import Generator, face_pool
from stylemask_jax.photos.pipeline import crops_to_unit
from stylemask_jax.photos.settings import RefineSettings


def reconstruct(gen: Generator, gvars, wplus: jax.Array) -> jax.Array:
    """W+ (B, L, D), untruncated -> the generator's images pooled to (B, 256, 256, 3)."""
    return face_pool(gen.apply(gvars, wplus, input_type="wplus"))


def per_image_loss(gen: Generator, settings: RefineSettings, irse, gvars, ivars,
                   wplus: jax.Array, start: jax.Array, targets: jax.Array) -> jax.Array:
    """The refinement loss of each image: (B,) float32 (see the module docstring)."""
    recon = reconstruct(gen, gvars, wplus)
    diff = recon - targets
    loss = settings.l2 * jnp.mean(diff ** 2, axis=(1, 2, 3))
    if settings.l1:
        loss = loss + settings.l1 * jnp.mean(jnp.abs(diff), axis=(1, 2, 3))
    if irse is not None and settings.identity:
        target_emb = jax.lax.stop_gradient(face_embeddings(irse, ivars, targets))
        loss = loss + settings.identity * (1.0 - cosine_similarity(
            face_embeddings(irse, ivars, recon), target_emb))
    if settings.pull:
        loss = loss + settings.pull * jnp.mean((wplus - start) ** 2, axis=(1, 2))
    return loss


def make_refine_fn(gen: Generator, settings: RefineSettings, irse=None):
    """jit(gvars, ivars, codes (B, L, D), crops uint8 (B, 256, 256, 3)) ->
    (refined codes (B, L, D), losses (steps, B)). `irse` None: no identity term (ivars unused)."""
    settings = settings.check()
    optimizer = optax.adam(settings.lr)
    loss_fn = functools.partial(per_image_loss, gen, settings, irse)

    @jit
    def refine(gvars, ivars, codes, crops):
        targets = crops_to_unit(crops)
        start = codes.astype(jnp.float32)

        def total(w):
            per_image = loss_fn(gvars, ivars, w, start, targets)
            return jnp.sum(per_image), per_image

        def step(carry, _):
            w, opt_state = carry
            (_, per_image), grad = jax.value_and_grad(total, has_aux=True)(w)
            updates, opt_state = optimizer.update(grad, opt_state, w)
            return (optax.apply_updates(w, updates), opt_state), per_image

        (w, _), losses = jax.lax.scan(step, (start, optimizer.init(start)), None,
                                      length=settings.steps)
        return w, losses
    return refine

