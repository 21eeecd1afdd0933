"""The full StyleMask training objective of one batch, as one differentiable function.

Per batch of random codes (z_source, z_target, z_cycle), following the official trainer:

  no gradient:  W+ and style codes of the three faces, their images (pooled to 256) and DECA
                parameters (two-pass crop, see `faces.deca_parameters`);
  gradient:     reenacted = G(mix(s_src, s_tgt))                       [mask network]
                cycle:  hat  = G(mix(s_src, s_cyc)),  hat2 = G(mix(mixed, s_cyc))
  losses:       lambda_shape * (shape + eye + mouth) on FLAME(source shape, target exp/pose) vs
                FLAME(reenacted), lambda_identity * (1 - cos ArcFace(reenacted, source)); the
                cycle adds the same terms for hat and hat2 against (source, cycle target).

The gradient-carrying generator, DECA and ArcFace passes of reenacted/hat/hat2 run as one
batch of 3B images; `config.remat` (applied inside the models, per block: see
training/networks.py) recomputes their activations in the backward pass.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from stylemask_jax import reenact as method
from stylemask_jax.faces import deca_parameters, identity_distance
from stylemask_jax.losses import face_losses
from stylemask_jax.models.irse import face_embeddings
from stylemask_jax.models.stylegan2 import face_pool

def _split(tree, parts: int):
    """Splits every leaf's batch axis into `parts` equal consecutive chunks."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    chunks = [jnp.split(leaf, parts, axis=0) for leaf in leaves]
    return [jax.tree_util.tree_unflatten(treedef, [c[i] for c in chunks]) for i in range(parts)]


def _faces(nets, frozen, wplus, styles, config):
    """Images (pooled to 256) and their DECA parameters for one batch of style codes."""
    images = face_pool(method.synthesize(nets.generator, frozen["generator"], styles, wplus))
    return images, deca_parameters(nets, frozen, images, config)


def loss_fn(mask_params, frozen, batch: dict, nets, config, key=None):
    """Total loss and its logged terms for one batch. `key` is unused (noise buffers are fixed)."""
    del key
    gen, gvars = nets.generator, frozen["generator"]
    sg = jax.lax.stop_gradient
    cycle = bool(config.recurrent_cycle)

    # --- frozen part: source, target and cycle target (one 3B generator/DECA batch) ---------
    z = jnp.concatenate([batch["z_source"], batch["z_target"], batch["z_cycle"]], axis=0)
    wplus = method.encode_wplus(gen, gvars, z, "z", config.truncation, frozen["truncation_latent"])
    styles = method.style_codes(gen, gvars, wplus)
    images, params = sg(_faces(nets, frozen, wplus, styles, config))
    (w_src, _, _), (s_src, s_tgt, s_cyc) = _split(wplus, 3), zip(*[_split(s, 3) for s in styles])
    img_src = _split(images, 3)[0]
    p_src, p_tgt, p_cyc = _split(params, 3)

    # --- trained part: reenactments through the mask network ---------------------------------
    mvars = {"params": mask_params}
    mixed, masks = method.reenact_styles(nets.mask_net, mvars, s_src, s_tgt)
    branches = [mixed]
    if cycle:
        branches.append(method.reenact_styles(nets.mask_net, mvars, s_src, s_cyc)[0])
        branches.append(method.reenact_styles(nets.mask_net, mvars, mixed, s_cyc)[0])
    n = len(branches)
    styles_r = [jnp.concatenate(layer, axis=0) for layer in zip(*branches)]
    wplus_r = jnp.concatenate([w_src] * n, axis=0)
    images_r, params_r = _faces(nets, frozen, wplus_r, styles_r, config)
    emb_src = sg(face_embeddings(nets.irse, frozen["irse"], img_src))
    emb_r = face_embeddings(nets.irse, frozen["irse"], images_r)
    identity = identity_distance(emb_r, jnp.concatenate([emb_src] * n, axis=0))

    flame, lam_s, lam_id = frozen["flame"], config.lambda_shape, config.lambda_identity
    reen = _split(params_r, n)
    ids = _split(identity, n)
    main = face_losses(flame, p_src, p_tgt, reen[0], lam_s)
    metrics = {"loss_shape": main.shape, "loss_eye": main.eye, "loss_mouth": main.mouth,
               "loss_identity": lam_id * jnp.mean(ids[0])}
    total = main.shape + main.eye + main.mouth + metrics["loss_identity"]
    if cycle:
        hat = face_losses(flame, p_src, p_cyc, reen[1], lam_s)
        hat2 = face_losses(flame, p_src, p_cyc, reen[2], lam_s)
        metrics.update(loss_shape_cycle=hat.shape + hat2.shape, loss_eye_cycle=hat.eye + hat2.eye,
                       loss_mouth_cycle=hat.mouth + hat2.mouth,
                       loss_identity_cycle=lam_id * (jnp.mean(ids[1]) + jnp.mean(ids[2])))
        total = total + sum(metrics[k] for k in ("loss_shape_cycle", "loss_eye_cycle",
                                                 "loss_mouth_cycle", "loss_identity_cycle"))
    metrics["mask_mean"] = jnp.mean(jnp.concatenate([m.reshape(-1) for m in masks]))
    metrics["crop_fallback"] = 0.5 * (jnp.mean(params["crop_fallback"]) + jnp.mean(params_r["crop_fallback"]))
    return total, metrics
