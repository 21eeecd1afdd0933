"""Batch reenactment of codes: models, codes, batches and the output folder of `stylemask reenact`.

    models = load_models(generator_dir, mask_net_dir)          # or tiny_models(config)
    wplus = encode_codes(models, codes, 'z', truncation, mean, batch_size)
    result = reenact_codes(models, wplus_src, wplus_tgt, pairs='zip', ...)
    write_reenactment(out, result, ...)                          # grid.png, pairs/, matrix.png
    write_photo_outputs(out, {"source": faces}, result, save_aligned=True, paste_back=True)

Everything per batch runs in two jit-compiled functions (encode, reenact), compiled once per
batch shape; the last partial batch is padded to the batch size (`batching`).
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from stylemask_jax import codes as codes_lib
from stylemask_jax import images
from stylemask_jax import reenact as method
from stylemask_jax.batching import run_batches
from stylemask_jax.errors import UserInputError
from stylemask_jax.inversion import output_names
from stylemask_jax.models.mask_net import MaskNet, init_mask_net
from stylemask_jax.models.stylegan2 import Generator, init_variables, load_generator
from stylemask_jax.photos.align import paste_back
from stylemask_jax.photos.pipeline import Faces
from stylemask_jax.sharding import data_mesh, round_to_mesh
from stylemask_jax.weights import load_weights

ALIGNED_DIR = "aligned"
PASTED_DIR = "pasted"


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
    """The converted generator and mask network (`stylemask convert stylegan2` / `mask-net`)."""
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


def truncation_mean(models: Models, seed: int = 0) -> np.ndarray:
    """The mean W of `models` to truncate toward (`codes.truncation_mean`)."""
    return codes_lib.truncation_mean(models.generator, models.gvars, models.latent_avg, seed)


def pair_indices(num_sources: int, num_targets: int, pairs: str) -> tuple[np.ndarray, np.ndarray]:
    """'zip': (i, i); 'all': every source with every target, source-major."""
    if pairs == "zip":
        if num_sources != num_targets:
            raise UserInputError(f"pairing 'zip' needs as many sources as targets, got "
                                 f"{num_sources} sources and {num_targets} targets")
        return np.arange(num_sources), np.arange(num_targets)
    if pairs == "all":
        src, tgt = np.meshgrid(np.arange(num_sources), np.arange(num_targets), indexing="ij")
        return src.ravel(), tgt.ravel()
    raise UserInputError(f"pairing must be 'zip' or 'all', got {pairs!r}")


def encode_codes(models: Models, codes: np.ndarray, code_type: str, truncation: float,
                 mean: np.ndarray, batch_size: int) -> np.ndarray:
    """Codes (Z, W or W+) -> truncated W+ (N, L, D), batched and jitted."""
    fn = method.make_encode_fn(models.generator, code_type, truncation)
    return run_batches(lambda c: fn(models.gvars, c, jnp.asarray(mean)), [codes], batch_size)


def reenact_codes(models: Models, wplus_sources: np.ndarray, wplus_targets: np.ndarray,
                  pairs: str = "zip", batch_size: int = 8, resize_256: bool = False,
                  progress: bool = True, outputs: str = "all") -> dict:
    """Reenacts W+ sources (S, L, D) with W+ targets (T, L, D).

    Returns numpy 'source', 'target', 'reenacted' images (N, H, W, 3) in about [-1, 1] and the
    pair indices 'source_index', 'target_index' (N,) ('zip': N = S; 'all': N = S * T).
    outputs='reenacted' synthesises only the reenacted images ('source' and 'target' are None).
    Each batch is sharded over every local device (`batch_size` is rounded up to a multiple
    of the device count).
    """
    src_idx, tgt_idx = pair_indices(len(wplus_sources), len(wplus_targets), pairs)
    mesh = data_mesh(local=True)
    batch_size = round_to_mesh(batch_size, mesh)
    fn = method.make_reenact_fn(models.generator, models.mask_net, resize_256, mesh, outputs)
    images = run_batches(lambda s, t: fn(models.gvars, models.mvars, s, t),
                         [wplus_sources[src_idx], wplus_targets[tgt_idx]], batch_size,
                         desc="reenact" if progress else None, unit="pair")
    if outputs == "reenacted":
        images = (None, None, images)
    return {"source": images[0], "target": images[1], "reenacted": images[2],
            "source_index": src_idx, "target_index": tgt_idx}



def write_reenactment(out: str, result: dict, pairs: str = "zip", arrays: dict | None = None) -> str:
    """Writes OUT/grid.png (source | target | reenacted rows), OUT/pairs/KKKK_sSSS_tTTT.png,
    OUT/matrix.png for pairs='all', and with `arrays` ({'source_codes', 'target_codes',
    'source_wplus', 'target_wplus', 'truncation_latent'}) OUT/arrays/*.npy with the float32
    images and pair indices too. A reenacted-only result (source None) writes no grid/matrix.
    Returns a one-line summary."""
    os.makedirs(os.path.join(out, "pairs"), exist_ok=True)
    src_idx, tgt_idx = result["source_index"], result["target_index"]
    for k, (s, t) in enumerate(zip(src_idx, tgt_idx)):
        images.save_png(os.path.join(out, "pairs", f"{k:04d}_s{s:03d}_t{t:03d}.png"),
                        result["reenacted"][k])
    grids = result["source"] is not None
    if grids:
        rows = [[result["source"][k], result["target"][k], result["reenacted"][k]]
                for k in range(len(src_idx))]
        images.save_grid(os.path.join(out, "grid.png"), rows)
    if grids and pairs == "all":
        num_t = int(tgt_idx.max()) + 1
        sources = [result["source"][k] for k in range(0, len(src_idx), num_t)]
        targets = [result["target"][k] for k in range(num_t)]
        matrix = [[None] + targets] + [
            [sources[i]] + [result["reenacted"][i * num_t + j] for j in range(num_t)]
            for i in range(len(sources))]
        images.save_grid(os.path.join(out, "matrix.png"), matrix)
    if arrays is not None:
        folder = os.path.join(out, "arrays")
        os.makedirs(folder, exist_ok=True)
        for name in ("source", "target", "reenacted") if grids else ("reenacted",):
            np.save(os.path.join(folder, f"{name}_images.npy"), result[name].astype(np.float32))
        for name, value in arrays.items():
            np.save(os.path.join(folder, f"{name}.npy"), value)
        np.save(os.path.join(folder, "pair_indices.npy"), np.stack([src_idx, tgt_idx], axis=1))
    count = f"{len(src_idx)} reenacted {'pair' if len(src_idx) == 1 else 'pairs'}"
    return (f"wrote {count} to {out} ({'grid.png, ' if grids else ''}pairs/"
            f"{', matrix.png' if grids and pairs == 'all' else ''}"
            f"{', arrays/' if arrays is not None else ''})")


def save_aligned_crops(out: str, role: str, faces: Faces) -> None:
    """OUT/aligned/ROLE/NAME.png: the uint8 FFHQ crops (names: the photos' stems)."""
    folder = os.path.join(out, ALIGNED_DIR, role)
    os.makedirs(folder, exist_ok=True)
    for stem, crop in zip(output_names(faces.names), faces.crops):
        Image.fromarray(crop).save(os.path.join(folder, f"{stem}.png"))


def save_pasted(out: str, faces: Faces, result: dict, feather: float = 0.1) -> None:
    """OUT/pasted/KKKK_sSSS_tTTT.png: each reenacted face (float [-1, 1]) pasted into its source
    photo (`faces` kept with keep_photos)."""
    folder = os.path.join(out, PASTED_DIR)
    os.makedirs(folder, exist_ok=True)
    pairs = zip(result["reenacted"], result["source_index"], result["target_index"])
    for k, (face, s, t) in enumerate(pairs):
        photo = paste_back(faces.photos[s], face, faces.geometry[s], feather)
        Image.fromarray(photo).save(os.path.join(folder, f"{k:04d}_s{s:03d}_t{t:03d}.png"))


def write_photo_outputs(out: str, faces: dict, result: dict, save_aligned: bool,
                        paste_back_faces: bool) -> str:
    """OUT/aligned/{sources,targets}/ and OUT/pasted/ as asked ({'source': Faces, 'target':
    Faces} of the photo inputs) -> the summary's suffix."""
    written = []
    if save_aligned:
        for role, role_faces in faces.items():
            save_aligned_crops(out, f"{role}s", role_faces)
        written.append(f"{ALIGNED_DIR}/")
    if paste_back_faces:
        save_pasted(out, faces["source"], result)
        written.append(f"{PASTED_DIR}/")
    return f"; also {', '.join(written)}" if written else ""
