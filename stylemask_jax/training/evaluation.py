"""Evaluation on fixed validation pairs: CSIM, pose error, expression error, and a grid image.

The pairs are the official 100 validation pairs (`random_latent_codes_100.npy`, rows 0..99
sources, 100..199 targets, Z codes) when the generator's style_dim is 512, otherwise Gaussian
codes drawn from `config.seed` (the tiny config). Metrics as the reference computes them:
CSIM = cosine of ArcFace embeddings of reenacted and source; pose error = mean |angle
difference| over yaw, pitch, roll (degrees) between reenacted and target; expression error =
mean normalised |difference| of the jaw opening and the first 20 expression coefficients.
"""

from __future__ import annotations

import importlib.resources
import os

import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax import faces
from stylemask_jax import images as images_lib
from stylemask_jax import metrics as metrics_lib
from stylemask_jax import reenact as method
from stylemask_jax.batching import iter_batches
from stylemask_jax.compiling import jit
from stylemask_jax.models.stylegan2 import face_pool

VALIDATION_FILE = "random_latent_codes_100.npy"


def validation_codes(style_dim: int, num_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(sources, targets), each (num_pairs, style_dim) Z codes."""
    if style_dim == 512:
        with importlib.resources.files("stylemask_jax.data").joinpath(VALIDATION_FILE).open("rb") as f:
            codes = np.load(f)
        half = len(codes) // 2
        num_pairs = min(num_pairs, half)
        return codes[:num_pairs], codes[half: half + num_pairs]
    z = np.asarray(jax.random.normal(jax.random.key(seed + 7919), (2 * num_pairs, style_dim)))
    return z[:num_pairs], z[num_pairs:]


def evaluate_batch(mask_params, frozen, z_source, z_target, nets, config) -> dict:
    """Per-pair metrics and the three image batches (256x256) for one batch of pairs."""
    gen, gvars = nets.generator, frozen["generator"]
    mean = frozen["truncation_latent"]
    w_src = method.encode_wplus(gen, gvars, z_source, "z", config.truncation, mean)
    w_tgt = method.encode_wplus(gen, gvars, z_target, "z", config.truncation, mean)
    out = method.reenact(gen, gvars, nets.mask_net, {"params": mask_params}, w_src, w_tgt)
    images = face_pool(jnp.concatenate([out["source"], out["target"], out["reenacted"]]))
    img_src, img_tgt, img_reen = jnp.split(images, 3)
    return {**image_metrics(nets, frozen, config, img_src, img_tgt, img_reen),
            "images": (img_src, img_tgt, img_reen)}


def image_metrics(nets, frozen, config, source, target, reenacted) -> dict:
    """Per-pair CSIM (reenacted vs source), pose and expression error (reenacted vs target).

    source, target, reenacted: (B, 256, 256, 3) in [-1, 1]. Returns (B,) float32 each.
    """
    images = jnp.concatenate([source, target, reenacted])
    params = faces.deca_parameters(nets, frozen, images, config)
    _, tgt, reen = (jax.tree_util.tree_map(lambda x, i=i: jnp.split(x, 3)[i], params) for i in range(3))
    angles_tgt = faces.head_angles_degrees(tgt["pose"][:, :3])
    angles_reen = faces.head_angles_degrees(reen["pose"][:, :3])
    return {
        "csim": faces.csim(nets.irse, frozen["irse"], reenacted, source),
        "pose_error": metrics_lib.pose_error(angles_reen, angles_tgt),
        "expression_error": metrics_lib.expression_error(reen["pose"], reen["exp"], tgt["pose"],
                                                         tgt["exp"]),
    }


def make_evaluator(nets, config, mesh=None):
    """fn(mask_params, frozen, workdir, step) -> {'csim', 'pose_error', 'expression_error'}.

    Writes WORKDIR/eval/step_XXXXXXX.png (source | target | reenacted rows of the first
    `config.eval_grid_pairs` pairs) when `workdir` is given.
    """
    sources, targets = validation_codes(nets.generator.style_dim, config.eval_pairs, config.seed)
    batch = max(1, min(config.eval_batch_size, len(sources)))
    fn = jit(lambda p, f, zs, zt: evaluate_batch(p, f, zs, zt, nets, config))

    def evaluate(mask_params, frozen, workdir=None, step=0):
        sums, count, rows = {}, 0, []
        for _, out in iter_batches(lambda zs, zt: fn(mask_params, frozen, zs, zt),
                                   [sources, targets], batch):
            n = len(out["csim"])
            for name in ("csim", "pose_error", "expression_error"):
                sums[name] = sums.get(name, 0.0) + float(np.sum(out[name]))
            count += n
            for k in range(n):
                if len(rows) < config.eval_grid_pairs:
                    rows.append([im[k] for im in out["images"]])
        results = {name: value / count for name, value in sums.items()}
        if workdir is not None and rows:
            os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
            images_lib.save_grid(os.path.join(workdir, "eval", f"step_{step:07d}.png"), rows)
        return results

    return evaluate
