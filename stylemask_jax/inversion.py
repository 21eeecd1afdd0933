"""Aligned face photos -> W+ codes with e4e (and reconstructions), behind `stylemask invert`.

    encoder, variables = load_e4e(e4e_dir)
    for batch in invert_files(paths, encoder, variables, batch_size=8):
        batch.paths, batch.codes            # (b, n_styles, 512) float32 W+ codes
        batch.images                        # (b, S, S, 3) reconstructions in about [-1, 1] when a
                                            # generator is given, else None

Inputs must already be FFHQ-aligned square crops of at least 256 px (the e4e/FFHQ alignment
from 68 landmarks is not part of this module); sides that are multiples of 256 are box-averaged
to 256, other sizes resized bilinearly (`images.load_image`). Images are
read batch by batch, so memory does not grow with the number of files. The encoder (and the
generator) run in jit-compiled functions compiled once: the last partial batch is padded.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from stylemask_jax.errors import UserInputError
from stylemask_jax.models.e4e import E4E_INPUT_SIZE, Encoder4Editing

CODES_DIR = "codes"                 # one (1, n_styles, 512) .npy per image
RECONSTRUCTIONS_DIR = "reconstructions"
ALL_CODES = "wplus.npy"             # (N, n_styles, 512), in input order
ALL_CODES_INDEX = "wplus.txt"       # the input paths, one per line, in the same order


@dataclasses.dataclass
class InvertedBatch:
    paths: list[str]
    codes: np.ndarray                # (b, n_styles, 512) float32
    images: np.ndarray | None        # (b, S, S, 3) float32 reconstructions, or None


def output_names(paths: Sequence[str]) -> list[str]:
    """File stems for the outputs; two inputs with the same stem are an error."""
    seen: dict[str, str] = {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in seen:
            raise UserInputError(f"{path}: has the same name as {seen[stem]}; outputs are named "
                                 "after the input file, so names must be unique")
        seen[stem] = path
    return list(seen)


def check_generator(encoder: Encoder4Editing, generator) -> None:
    """The generator must take the encoder's codes: n_latent == n_styles, style_dim == 512."""
    if generator.n_latent != encoder.n_styles or generator.style_dim != 512:
        raise UserInputError(f"--generator: a {generator.size}px generator with style_dim "
                             f"{generator.style_dim} takes ({generator.n_latent}, "
                             f"{generator.style_dim}) W+ codes; the encoder gives "
                             f"({encoder.n_styles}, 512)")


def check_face_image(path: str) -> None:
    """Aligned crops are square and at least 256 px; reads only the file header."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            w, h = img.size
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError) as err:
        raise UserInputError(f"{path}: cannot read image ({err})") from None
    if w != h or w < E4E_INPUT_SIZE:
        raise UserInputError(f"{path}: {w}x{h} image; expected a square FFHQ-aligned face crop of "
                             f"at least {E4E_INPUT_SIZE}x{E4E_INPUT_SIZE} (e.g. 256 or 1024)")


def _padded(batch: np.ndarray, size: int) -> np.ndarray:
    if len(batch) == size:
        return batch
    return np.concatenate([batch, np.repeat(batch[-1:], size - len(batch), axis=0)])


def invert_files(paths: Sequence[str], encoder: Encoder4Editing, variables, batch_size: int = 8,
                 generator=None, generator_variables=None,
                 progress: bool = True) -> Iterator[InvertedBatch]:
    """Yields the W+ codes (and reconstructions) of `paths`, one batch at a time, in order.

    paths: aligned square face images (PNG/JPEG, ...) of side >= 256 (256, 1024, ...).
    generator: a `Generator` taking (n_styles, 512) W+ codes, with its variables, or None.
    """
    from stylemask_jax.images import load_image
    if batch_size < 1:
        raise UserInputError(f"--batch-size must be at least 1, got {batch_size}")
    if not paths:
        raise UserInputError("no input images given")
    encode = jax.jit(encoder.apply)
    render = None
    if generator is not None:
        check_generator(encoder, generator)
        render = jax.jit(lambda v, codes: generator.apply(v, codes, input_type="wplus"))
    bar = tqdm(total=len(paths), desc="invert", unit="image", disable=not progress)
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start:start + batch_size])
        for path in chunk:
            check_face_image(path)
        images = np.stack([load_image(p, E4E_INPUT_SIZE) for p in chunk])
        codes = jax.device_get(encode(variables, _padded(images, batch_size)))
        recon = None
        if render is not None:
            recon = np.asarray(jax.device_get(render(generator_variables, codes)))[:len(chunk)]
        yield InvertedBatch(chunk, np.asarray(codes)[:len(chunk)], recon)
        bar.update(len(chunk))
    bar.close()
