"""Latent codes from seeds and .npy files, validated with one-line errors.

A code file holds Z (D,) or (B, D), W (B, D), or W+ (B, L, D) / (L, D) float arrays. Z and W
have the same shape, so 1-D/2-D files are read as Z unless `code_type` says 'w'; 3-D files
are W+; a 2-D file is read as one W+ code when `code_type` is 'wplus'.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from stylemask_jax.errors import UserInputError
from stylemask_jax.models.stylegan2 import MEAN_LATENT_SAMPLES, mean_latent

CODE_TYPES = ("auto", "z", "w", "wplus")


def seed_codes(seed: int, count: int, dim: int) -> np.ndarray:
    """`count` Gaussian Z codes (count, dim) from `jax.random.key(seed)`, reproducible."""
    return np.asarray(jax.random.normal(jax.random.key(seed), (count, dim), jax.numpy.float32))


def parse_seeds(text: str) -> list[int]:
    """'0-7' / '1,5,9' / '0-3,10' -> a list of ints."""
    seeds = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else part[1:].split("-", 1)
                lo, hi = int(lo), int(hi)
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise UserInputError(f"cannot parse {text!r}; expected e.g. '0-7' or '1,5,9'") from None
    if not seeds:
        raise UserInputError("no seeds given")
    return seeds


def _npy_files(path: str, what: str) -> list[str]:
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".npy"))
        if not files:
            raise UserInputError(f"{what}: folder {path} holds no .npy files")
        return files
    if not os.path.isfile(path):
        raise UserInputError(f"{what}: no such file or folder: {path}")
    return [path]


def load_code_file(path: str, code_type: str, style_dim: int, n_latent: int) -> tuple[np.ndarray, str]:
    """One .npy -> (codes, 'z' | 'w' | 'wplus') with a batch axis, float32."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise UserInputError(f"{path}: not a readable numeric .npy file ({err})") from None
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise UserInputError(f"{path}: dtype {array.dtype}; expected a float array of latent codes")
    if code_type == "auto":
        code_type = "wplus" if array.ndim == 3 else "z"
    if code_type in ("z", "w"):
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or array.shape[1] != style_dim:
            raise UserInputError(f"{path}: shape {array.shape}; expected ({style_dim},) or "
                                 f"(B, {style_dim}) {code_type.upper()} codes")
    else:
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3 or array.shape[1:] != (n_latent, style_dim):
            raise UserInputError(f"{path}: shape {array.shape}; expected ({n_latent}, {style_dim}) "
                                 f"or (B, {n_latent}, {style_dim}) W+ codes")
    if not np.all(np.isfinite(array)):
        raise UserInputError(f"{path}: contains NaN or Inf")
    return array.astype(np.float32), code_type


def load_codes(path: str, code_type: str, style_dim: int, n_latent: int,
               what: str) -> tuple[np.ndarray, str]:
    """A .npy file or a folder of them -> (stacked codes, type). All files must agree in type."""
    if code_type not in CODE_TYPES:
        raise UserInputError(f"code type must be one of {CODE_TYPES}, got {code_type!r}")
    arrays, kinds = [], set()
    for file in _npy_files(path, what):
        array, kind = load_code_file(file, code_type, style_dim, n_latent)
        arrays.append(array)
        kinds.add(kind)
    if len(kinds) > 1:
        raise UserInputError(f"{what}: {path} mixes code types {sorted(kinds)}; use one kind per input")
    return np.concatenate(arrays, axis=0), kinds.pop()


def load_mean_latent(path: str, dim: int) -> np.ndarray:
    """A mean W file (any shape holding `dim` floats) -> (dim,) float32."""
    try:
        mean = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise UserInputError(f"{path}: cannot read ({err})") from None
    if mean.size != dim or not np.issubdtype(mean.dtype, np.floating):
        raise UserInputError(f"{path}: shape {mean.shape} dtype {mean.dtype}; "
                             f"expected {dim} floats, e.g. ({dim},) or (1, {dim})")
    if not np.all(np.isfinite(mean)):
        raise UserInputError(f"{path}: contains NaN or Inf")
    return mean.reshape(dim).astype(np.float32)


def truncation_mean(gen, variables, latent_avg=None, seed: int = 0) -> np.ndarray:
    """The mean W (style_dim,) float32 to truncate toward: the checkpoint's `latent_avg` when it
    has one, else the mapping mean of MEAN_LATENT_SAMPLES z drawn from key(seed)."""
    dim = gen.style_dim
    if latent_avg is not None:
        return np.asarray(latent_avg, np.float32).reshape(dim)
    return np.asarray(mean_latent(gen, variables, jax.random.key(seed), MEAN_LATENT_SAMPLES),
                      np.float32).reshape(dim)
