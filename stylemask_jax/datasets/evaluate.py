"""The official metrics on real pairs of a face dataset: CSIM, pose error, expression error.

    pairs = make_pairs(dataset, "self", num_pairs=1000, seed=0)
    result = evaluate_dataset(dataset, pairs, nets, frozen, mask_params, config)
    result["csim"], result["pose_error"], result["expression_error"]     # means over the pairs
    result["per_pair"]                                                   # (n,) arrays

For each (source, target) pair the source's W+ code (from `invert_dataset`, used unchanged:
no truncation) is reenacted with the target's; the metrics compare the reenacted image with
the real aligned crops of the dataset: CSIM = ArcFace cosine with the source crop, pose and
expression errors = DECA head angles / expression against the target crop (the same functions
as `training.evaluation`, one home in `faces` / `metrics`). Pairs run in fixed-size batches
sharded over a 1-D 'data' mesh of this host's devices (the last batch padded), weights
replicated; the result does not depend on the device count beyond float rounding.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from stylemask_jax import reenact as method
from stylemask_jax.batching import iter_batches
from stylemask_jax.compiling import jit
from stylemask_jax.datasets.build import FaceDataset, load_dataset
from stylemask_jax.datasets.invert import load_codes
from stylemask_jax.errors import UserInputError
from stylemask_jax.images import from_uint8
from stylemask_jax.models.stylegan2 import face_pool
from stylemask_jax.sharding import data_mesh, data_sharding, replicated, round_to_mesh
from stylemask_jax.training.evaluation import image_metrics

METRICS = ("csim", "pose_error", "expression_error")


def pair_metrics(mask_params, frozen, w_source, w_target, source_images, target_images,
                 nets, config) -> dict:
    """Per-pair metrics of one batch: (b,) each.

    w_source, w_target: (b, n_latent, style_dim) W+ codes; *_images: (b, 256, 256, 3) real
    aligned crops in [-1, 1].
    """
    gen, gvars = nets.generator, frozen["generator"]
    s_src = method.style_codes(gen, gvars, w_source)
    s_tgt = method.style_codes(gen, gvars, w_target)
    mixed, _ = method.reenact_styles(nets.mask_net, {"params": mask_params}, s_src, s_tgt)
    reenacted = face_pool(method.synthesize(gen, gvars, mixed, w_source))
    return image_metrics(nets, frozen, config, source_images, target_images, reenacted)


def pair_inputs(dataset: FaceDataset, codes, pairs: np.ndarray) -> list[np.ndarray]:
    """[w_source, w_target, source crops, target crops] of int (b, 2) `pairs`: the rows of
    `codes` (a `load_codes` view reads only these) and the crops in [-1, 1], as `pair_metrics`
    takes them."""
    def crops(indices):
        return from_uint8(np.stack([ex["image"] for ex in dataset.examples(indices)]))
    return [np.asarray(codes[pairs[:, 0]], np.float32), np.asarray(codes[pairs[:, 1]], np.float32),
            crops(pairs[:, 0]), crops(pairs[:, 1])]


def evaluate_dataset(data_dir, pairs, nets, frozen, mask_params, config, *, codes=None,
                     batch_size: int = 8, mesh=None, out: str | None = None,
                     progress: bool = True) -> dict:
    """Means and per-pair values of CSIM, pose error and expression error over `pairs`.

    data_dir: a dataset folder / build out_dir, or a `FaceDataset`.
    pairs: int (n, 2) (source index, target index), e.g. from `make_pairs` / `read_pairs`.
    nets, frozen, mask_params, config: as `training.evaluation` (e.g. `build_networks`).
    codes: (N, n_latent, style_dim) W+ codes of every example, an array or anything indexed
        by example like it (default: `load_codes`, which reads each batch's rows only).
    out: a .json file for the means, the per-pair values and the pairs.
    """
    dataset = data_dir if isinstance(data_dir, FaceDataset) else load_dataset(data_dir)
    codes = load_codes(dataset) if codes is None else codes
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if len(pairs) == 0:
        raise UserInputError("no pairs to evaluate")
    gen = nets.generator
    if tuple(codes.shape[1:]) != (gen.n_latent, gen.style_dim):
        raise UserInputError(f"{dataset.path}: W+ codes of shape {tuple(codes.shape[1:])}; the "
                             f"generator takes ({gen.n_latent}, {gen.style_dim})")
    if batch_size < 1:
        raise UserInputError(f"batch size must be at least 1, got {batch_size}")
    mesh = mesh or data_mesh(local=True)
    batch = round_to_mesh(batch_size, mesh)
    data, same = data_sharding(mesh), replicated(mesh)
    fn = jit(lambda p, f, *xs: pair_metrics(p, f, *xs, nets, config),
             in_shardings=(same, same, data, data, data, data), out_shardings=data)
    params, weights = jax.device_put((mask_params, frozen), same)

    per_pair = {name: [] for name in METRICS}
    for _, result in iter_batches(lambda *xs: fn(params, weights, *xs), [pairs], batch,
                                  load=lambda chunk: pair_inputs(dataset, codes, chunk),
                                  desc="evaluate" if progress else None, unit="pair"):
        for name in METRICS:
            per_pair[name].append(np.asarray(result[name], np.float64))
    per_pair = {name: np.concatenate(values) for name, values in per_pair.items()}
    means = {name: float(np.mean(values)) for name, values in per_pair.items()}
    if out is not None:
        write_metrics(out, means, per_pair, pairs, dataset)
    return {**means, "num_pairs": len(pairs), "per_pair": per_pair}


def write_metrics(path: str, means: dict, per_pair: dict, pairs: np.ndarray,
                  dataset: FaceDataset) -> str:
    """A .json file: the means, then one row per pair (indices and its three values)."""
    rows = [{"source": int(s), "target": int(t),
             **{name: float(per_pair[name][k]) for name in METRICS}}
            for k, (s, t) in enumerate(pairs)]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump({"dataset": dataset.path, "fingerprint": dataset.metadata.get("fingerprint"),
                   "num_pairs": len(rows), **means, "pairs": rows}, f, indent=1)
    os.replace(path + ".tmp", path)
    return path
