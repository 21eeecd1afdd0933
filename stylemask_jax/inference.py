"""Batch reenactment driver behind `stylemask reenact`: models, codes, batches, files.

    models = load_models(generator_dir, mask_net_dir)          # or tiny_models(config)
    wplus = encode_codes(models, codes, 'z', truncation, mean, batch_size)
    result = reenact_codes(models, wplus_src, wplus_tgt, pairs='zip', ...)
    write_reenactment(out, result, ...)                          # grid.png, pairs/, matrix.png
    reenact_to_folder(out, ...)                                  # all of the above (the CLI)

Everything per batch runs in two jit-compiled functions (encode, reenact), compiled once per
batch shape; the last partial batch is padded to the batch size (`batching`).
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax import codes as codes_lib
from stylemask_jax import reenact as method
from stylemask_jax.batching import run_batches
from stylemask_jax.errors import UserInputError
from stylemask_jax.outputs import check_output_dir, removed_on_failure
from stylemask_jax.models.mask_net import MaskNet, init_mask_net
from stylemask_jax.models.stylegan2 import Generator, init_variables, load_generator
from stylemask_jax.sharding import data_mesh, round_to_mesh
from stylemask_jax.weights import load_weights


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
    """The mean W of `models` to truncate toward (`codes.truncation_mean`)."""
    return codes_lib.truncation_mean(models.generator, models.gvars, models.latent_avg,
                                     mean_file, seed)


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
    from stylemask_jax import images
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
    return (f"wrote {len(src_idx)} reenacted pairs to {out} ({'grid.png, ' if grids else ''}pairs/"
            f"{', matrix.png' if grids and pairs == 'all' else ''}"
            f"{', arrays/' if arrays is not None else ''})")


def reenact_to_folder(out: str, *, generator_dir: str | None = None, mask_net_dir: str | None = None,
                      config: str | None = None, sources: str | None = None,
                      targets: str | None = None, num_pairs: int = 4, code_type: str = "auto",
                      seed: int = 0, truncation: float = 0.7, mean_latent: str | None = None,
                      pairs: str = "zip", batch_size: int = 8, resize_256: bool = False,
                      save_arrays: bool = False, outputs: str = "all", e4e_dir: str | None = None,
                      driving: str | None = None, save_aligned: bool = False,
                      paste_back: bool = False, side_by_side: bool = False, refine=None,
                      irse_dir: str | None = None) -> str:
    """`stylemask reenact`: models (converted weights, or a config's random weights), codes
    (files, photos inverted with e4e, or `num_pairs` random Z pairs from `seed`), reenactment and
    the output folder; with `driving`, a source photo driven by a video (`photos.driving`).
    Every input is checked before anything is written; returns the one-line summary."""
    from stylemask_jax.photos import commands as photo_cmd
    if batch_size < 1:
        raise UserInputError(f"--batch-size must be at least 1, got {batch_size}")
    if not 0.0 <= truncation <= 1.0:
        raise UserInputError(f"--truncation must be in [0, 1], got {truncation}")
    kinds = photo_cmd.input_kinds(sources, targets, driving, e4e_dir, paste_back, save_aligned,
                                  side_by_side, refine, irse_dir)
    check_output_dir(out)
    if config is not None:
        if generator_dir or mask_net_dir:
            raise UserInputError("--config gives random weights; do not combine it with "
                                 "--generator/--mask-net")
        from configs import load_config
        models = tiny_models(load_config(config), seed=seed)
    elif generator_dir and mask_net_dir:
        models = load_models(generator_dir, mask_net_dir)
    else:
        raise UserInputError("give --generator DIR and --mask-net DIR (converted weights), "
                             "or --config tiny for random weights")
    gen = models.generator
    inverter = photo_cmd.load_inverter(e4e_dir, gen, refine, irse_dir) if e4e_dir else None
    mean = truncation_mean(models, mean_latent)
    if driving:
        return photo_cmd.video_to_folder(out, models, inverter, kinds["source"][1][0], driving,
                                         truncation, mean, batch_size, paste_back, side_by_side)
    loaded, faces = {}, {}
    for role, path, offset in (("source", sources, 0), ("target", targets, 1)):
        if path and kinds[role][0] == "photos":
            faces[role], codes = photo_cmd.photo_codes(
                kinds[role][1], inverter, models.gvars, batch_size,
                keep_photos=paste_back and role == "source")
            loaded[role] = (codes, "wplus")
        elif path:
            loaded[role] = codes_lib.load_codes(path, code_type, gen.style_dim, gen.n_latent,
                                                f"--{role}s")
        else:
            if num_pairs < 1:
                raise UserInputError(f"--num-pairs must be at least 1, got {num_pairs}")
            z = codes_lib.seed_codes(seed, 2 * num_pairs, gen.style_dim)
            loaded[role] = (z[offset::2], "z")
    pair_indices(len(loaded["source"][0]), len(loaded["target"][0]), pairs)
    wplus = {role: encode_codes(models, codes, kind, truncation, mean, batch_size)
             for role, (codes, kind) in loaded.items()}
    result = reenact_codes(models, wplus["source"], wplus["target"], pairs, batch_size, resize_256,
                           outputs=outputs)
    arrays = None
    if save_arrays:
        arrays = {"source_codes": loaded["source"][0], "target_codes": loaded["target"][0],
                  "source_wplus": wplus["source"], "target_wplus": wplus["target"],
                  "truncation_latent": mean}
    with removed_on_failure(out):
        summary = write_reenactment(out, result, pairs, arrays)
        return summary + photo_cmd.write_photo_outputs(out, faces, result, save_aligned,
                                                       paste_back)
