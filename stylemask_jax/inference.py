"""Batch reenactment driver behind `stylemask reenact`: models, codes, batches, files.

    models = load_models(generator_dir, mask_net_dir)          # or tiny_models(config)
    result = reenact_codes(models, src, src_type, tgt, tgt_type, pairs='zip', ...)

Everything per batch runs in two jit-compiled functions (encode, reenact), compiled once per
batch shape; the last partial batch is padded to the batch size so nothing recompiles.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from stylemask_jax import reenact as method
from stylemask_jax.errors import UserInputError
from stylemask_jax.models.mask_net import MaskNet, init_mask_net
from stylemask_jax.models.stylegan2 import Generator, init_variables, load_generator, mean_latent
from stylemask_jax.weights import load_weights

MEAN_LATENT_SAMPLES = 4096


@dataclasses.dataclass
class Models:
    generator: Generator
    gvars: dict
    mask_net: MaskNet
    mvars: dict
    latent_avg: np.ndarray | None  # the checkpoint's mean W, when it has one


def load_mask_net(mask_dir: str, generator: Generator, dtype=jnp.float32) -> tuple[MaskNet, dict]:
    """Loads a converted mask network and checks its widths against `generator`."""
    variables, arch = load_weights(mask_dir, "mask_net")
    widths = [int(w) for w in arch["widths"]]
    if widths != list(generator.style_dims[: len(widths)]) or len(widths) > generator.num_layers:
        raise UserInputError(
            f"{mask_dir}: mask network widths {widths} do not match the generator's style widths "
            f"{list(generator.style_dims)} (a mask network for another generator?)")
    return MaskNet(tuple(widths), dtype=dtype), variables


def load_models(generator_dir: str, mask_net_dir: str, dtype=jnp.float32) -> Models:
    generator, gvars, latent_avg = load_generator(generator_dir, dtype=dtype)
    mask_net, mvars = load_mask_net(mask_net_dir, generator, dtype)
    return Models(generator, gvars, mask_net, mvars, latent_avg)


def tiny_models(config, seed: int = 0, dtype=jnp.float32) -> Models:
    """Random-weight models of a config (no files): for tests and the no-weights demo."""
    generator = Generator.from_arch(dict(config.generator), dtype=dtype)
    key_g, key_m = jax.random.split(jax.random.key(seed))
    mask_net = MaskNet(tuple(generator.style_dims[: config.num_layers_control]), dtype=dtype)
    return Models(generator, init_variables(generator, key_g), mask_net,
                  init_mask_net(mask_net, key_m), None)


def truncation_mean(models: Models, mean_file: str | None = None, seed: int = 0) -> np.ndarray:
    """The mean W to truncate toward: --mean-latent file, else latent_avg, else 4096 samples."""
    dim = models.generator.style_dim
    if mean_file:
        try:
            mean = np.load(mean_file, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise UserInputError(f"--mean-latent {mean_file}: cannot read ({err})") from None
        if mean.size != dim or not np.issubdtype(mean.dtype, np.floating):
            raise UserInputError(f"--mean-latent {mean_file}: shape {mean.shape} dtype {mean.dtype}; "
                                 f"expected {dim} floats, e.g. ({dim},) or (1, {dim})")
        return mean.reshape(dim).astype(np.float32)
    if models.latent_avg is not None:
        return np.asarray(models.latent_avg, np.float32).reshape(dim)
    return np.asarray(mean_latent(models.generator, models.gvars, jax.random.key(seed),
                                  MEAN_LATENT_SAMPLES)).reshape(dim)


def pair_indices(num_sources: int, num_targets: int, pairs: str) -> tuple[np.ndarray, np.ndarray]:
    """'zip': (i, i); 'all': every source with every target, source-major."""
    if pairs == "zip":
        if num_sources != num_targets:
            raise UserInputError(f"--pairs zip needs as many sources as targets, got {num_sources} "
                                 f"sources and {num_targets} targets (use --pairs all for a matrix)")
        return np.arange(num_sources), np.arange(num_targets)
    if pairs == "all":
        src, tgt = np.meshgrid(np.arange(num_sources), np.arange(num_targets), indexing="ij")
        return src.ravel(), tgt.ravel()
    raise UserInputError(f"--pairs must be 'zip' or 'all', got {pairs!r}")


def _batched(fn, arrays: list[np.ndarray], batch_size: int, desc: str | None, *static):
    """Applies jitted `fn(*static, *batch)` over the leading axis in fixed-size batches."""
    total = arrays[0].shape[0]
    outputs = []
    bar = tqdm(total=total, desc=desc, unit="pair", disable=desc is None)
    for start in range(0, total, batch_size):
        chunk = [a[start: start + batch_size] for a in arrays]
        n = chunk[0].shape[0]
        if n < batch_size:  # pad the last batch so the compiled shape is reused
            chunk = [np.concatenate([c, np.repeat(c[-1:], batch_size - n, axis=0)]) for c in chunk]
        result = jax.device_get(fn(*static, *chunk))
        outputs.append(jax.tree_util.tree_map(lambda x: np.asarray(x)[:n], result))
        bar.update(n)
    bar.close()
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0), *outputs)


def encode_codes(models: Models, codes: np.ndarray, code_type: str, truncation: float,
                 mean: np.ndarray, batch_size: int) -> np.ndarray:
    """Codes (Z, W or W+) -> truncated W+ (N, L, D), batched and jitted."""
    fn = method.make_encode_fn(models.generator, code_type, truncation)
    return _batched(lambda c: fn(models.gvars, c, jnp.asarray(mean)), [codes], batch_size, None)


def data_mesh() -> jax.sharding.Mesh:
    """A 1-D 'data' mesh over all local devices: batches are split across them."""
    return jax.sharding.Mesh(np.array(jax.local_devices()), ("data",))


def reenact_codes(models: Models, wplus_sources: np.ndarray, wplus_targets: np.ndarray,
                  pairs: str = "zip", batch_size: int = 8, resize_256: bool = False,
                  progress: bool = True) -> dict:
    """Reenacts W+ sources (S, L, D) with W+ targets (T, L, D).

    Returns numpy 'source', 'target', 'reenacted' images (N, H, W, 3) in about [-1, 1] and the
    pair indices 'source_index', 'target_index' (N,) ('zip': N = S; 'all': N = S * T).
    Each batch is sharded over every local device (`batch_size` is rounded up to a multiple
    of the device count).
    """
    src_idx, tgt_idx = pair_indices(len(wplus_sources), len(wplus_targets), pairs)
    mesh = data_mesh()
    batch_size = -(-batch_size // mesh.size) * mesh.size  # a multiple of the device count
    fn = method.make_reenact_fn(models.generator, models.mask_net, resize_256, mesh)
    images = _batched(lambda s, t: fn(models.gvars, models.mvars, s, t),
                      [wplus_sources[src_idx], wplus_targets[tgt_idx]], batch_size,
                      "reenact" if progress else None)
    return {"source": images[0], "target": images[1], "reenacted": images[2],
            "source_index": src_idx, "target_index": tgt_idx}


def check_writable_dir(path: str, what: str = "--out") -> None:
    """Raises UserInputError unless `path` exists as a writable folder or can be created."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise UserInputError(f"{what} {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserInputError(f"{what} {path}: {probe} is not writable")
