"""Aligned face photos -> W+ codes with e4e (and reconstructions), behind `stylemask invert`.

    encoder, variables = load_e4e(e4e_dir)
    for batch in invert_files(paths, encoder, variables, batch_size=8):
        batch.paths, batch.codes            # (b, n_styles, 512) float32 W+ codes
        batch.images                        # (b, S, S, 3) reconstructions in about [-1, 1] when a
                                            # generator is given, else None

`invert_files` takes FFHQ-aligned square crops of at least 256 px; sides that are multiples of
256 are box-averaged to 256, other sizes resized bilinearly (`images.load_image`).
`invert_to_folder(aligned=False)` first detects and aligns ordinary photos (`photos.pipeline`). Images are
read batch by batch, so memory does not grow with the number of files. The encoder (and the
generator) run in jit-compiled functions compiled once: the last partial batch is padded
(`batching`). `invert_to_folder` is `stylemask invert`: it writes the files below.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator, Sequence

import jax
import numpy as np

from stylemask_jax.batching import iter_batches
from stylemask_jax.errors import UserInputError
from stylemask_jax.models.e4e import E4E_INPUT_SIZE, Encoder4Editing
from stylemask_jax.outputs import check_output_dir, removed_on_failure

CODES_DIR = "codes"                 # one (1, n_styles, 512) .npy per image
RECONSTRUCTIONS_DIR = "reconstructions"
ALL_CODES = "wplus.npy"             # (N, n_styles, 512), in input order
ALL_CODES_INDEX = "wplus.txt"       # the input paths, one per line, in the same order
ALIGNED_DIR = "aligned"             # unaligned inputs: their FFHQ crops, NAME.png


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

    def run(images):
        codes = encode(variables, images)
        return codes, (None if render is None else render(generator_variables, codes))

    def load(chunk):
        for path in chunk:
            check_face_image(path)
        return [np.stack([load_image(p, E4E_INPUT_SIZE) for p in chunk])]

    for start, (codes, recon) in iter_batches(run, [list(paths)], batch_size, load=load,
                                              desc="invert" if progress else None, unit="image"):
        yield InvertedBatch(list(paths[start:start + len(codes)]), codes, recon)


def invert_to_folder(paths: Sequence[str], e4e_dir: str, out: str,
                     generator_dir: str | None = None, batch_size: int = 8, aligned: bool = True,
                     refine=None, irse_dir: str | None = None) -> str:
    """`stylemask invert`: OUT/wplus.npy (N, L, 512), OUT/wplus.txt (the input order),
    OUT/codes/NAME.npy (1, L, 512) per image and, with a generator, OUT/reconstructions/NAME.png.

    aligned=False: the inputs are ordinary photos, detected and FFHQ-aligned first
    (`photos.pipeline.prepare_faces`, as `stylemask reenact` does; OUT/aligned/NAME.png holds the
    crops). refine (a `photos.refine.RefineSettings` with steps > 0, needs the generator): refine
    the codes in W+ (`irse_dir` adds the identity term). Every input is checked before anything
    is written; returns the one-line summary."""
    from stylemask_jax import images
    from stylemask_jax.models.e4e import load_e4e
    if batch_size < 1:
        raise UserInputError(f"--batch-size must be at least 1, got {batch_size}")
    refining = refine is not None and refine.steps > 0
    if refining and not generator_dir:
        raise UserInputError("--refine-steps needs --generator DIR (the codes are refined on its "
                             "reconstructions)")
    if aligned:
        for path in paths:  # fail before loading any model
            check_face_image(path)
    names = output_names(paths)
    check_output_dir(out)
    generator = gen_vars = None
    if generator_dir:
        from stylemask_jax.models.stylegan2 import load_generator
        generator, gen_vars, _ = load_generator(generator_dir)
    if aligned and not refining:
        encoder, variables = load_e4e(e4e_dir)
        if generator is not None:
            check_generator(encoder, generator)
        batches = invert_files(paths, encoder, variables, batch_size, generator, gen_vars)
        crops = None
    else:
        batches, crops = _photo_batches(paths, e4e_dir, generator, gen_vars, batch_size, aligned,
                                        refine, irse_dir)
    all_codes, done = [], 0
    with removed_on_failure(out):  # a failed run leaves no OUT/codes/ (nor OUT, if it was new)
        for batch in batches:
            os.makedirs(os.path.join(out, CODES_DIR), exist_ok=True)
            for k, code in enumerate(batch.codes):
                name = names[done + k]
                np.save(os.path.join(out, CODES_DIR, f"{name}.npy"), code[None])
                if batch.images is not None:  # save_png creates OUT/reconstructions/
                    images.save_png(os.path.join(out, RECONSTRUCTIONS_DIR, f"{name}.png"),
                                    batch.images[k])
            all_codes.append(batch.codes)
            done += len(batch.codes)
        np.save(os.path.join(out, ALL_CODES), np.concatenate(all_codes))
        with open(os.path.join(out, ALL_CODES_INDEX), "w") as f:
            f.write("".join(f"{path}\n" for path in paths))
        if crops is not None and not aligned:
            from PIL import Image
            os.makedirs(os.path.join(out, ALIGNED_DIR), exist_ok=True)
            for name, crop in zip(names, crops):
                Image.fromarray(crop).save(os.path.join(out, ALIGNED_DIR, f"{name}.png"))
    return (f"wrote {done} W+ codes {all_codes[0].shape[1:]} to {out} ({ALL_CODES}, {CODES_DIR}/"
            f"{', ' + RECONSTRUCTIONS_DIR + '/' if generator is not None else ''}"
            f"{', ' + ALIGNED_DIR + '/' if not aligned else ''})"
            f"{f'; refined {refine.steps} steps' if refining else ''}")


def _photo_batches(paths, e4e_dir, generator, gen_vars, batch_size, aligned, refine, irse_dir):
    """Photos (aligned or not) -> ([one InvertedBatch of all], uint8 crops), through the photo
    library path (`photos.pipeline`; refinement with `photos.refine`)."""
    from stylemask_jax import images
    from stylemask_jax.photos.commands import load_inverter
    from stylemask_jax.photos.pipeline import invert_batches, prepare_faces
    if aligned:
        crops = np.stack([images.to_uint8(images.load_image(p, E4E_INPUT_SIZE)) for p in paths])
    else:
        crops = prepare_faces(list(paths)).crops
    if generator is None:
        from stylemask_jax.models.e4e import load_e4e
        from stylemask_jax.photos.pipeline import Inverter
        inverter = Inverter(*load_e4e(e4e_dir))
    else:
        inverter = load_inverter(e4e_dir, generator, refine, irse_dir)
    codes = invert_batches(inverter, gen_vars, crops, batch_size)
    recon = None
    if generator is not None:
        from stylemask_jax.batching import run_batches
        render = jax.jit(lambda v, c: generator.apply(v, c, input_type="wplus"))
        recon = run_batches(lambda c: render(gen_vars, c), [codes], batch_size)
    return [InvertedBatch(list(paths), codes, recon)], crops
