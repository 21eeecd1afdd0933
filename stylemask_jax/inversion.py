"""Face images -> W+ codes with e4e: the one inversion path of photos, aligned crops and videos.

    encoder, variables = load_e4e("weights/e4e")
    inverter = make_inverter(encoder, variables, generator, RefineSettings(steps=20))
    codes = invert_all(inverter, gvars, crops, batch_size=8)   # (N, n_styles, 512), all at once
    for batch in invert(inverter, gvars, crops, batch_size=8, generator=generator):
        batch.start, batch.codes            # (b, n_styles, 512) float32 W+ codes
        batch.images                        # (b, S, S, 3) reconstructions in about [-1, 1], or None
    for batch in invert(inverter, gvars, paths, load=load_aligned): ...   # files, read per batch

Inputs are uint8 FFHQ crops (N, 256, 256, 3) (converted as the official u / 255 * 2 - 1) or
float images in [-1, 1]; `load` turns each batch of inputs (e.g. file names) into such an array
just before its call, so files are read batch by batch. The encoder, the optional refinement
(`photos.refine`) and the generator run in jit-compiled functions compiled once: the last
partial batch is padded (`batching`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator, Sequence

import jax
import numpy as np
from PIL import Image, UnidentifiedImageError

from stylemask_jax.batching import iter_batches, run_batches
from stylemask_jax.compiling import jit, map_in_chunks
from stylemask_jax.errors import UserInputError
from stylemask_jax.images import load_image
from stylemask_jax.models.e4e import E4E_INPUT_SIZE, Encoder4Editing
from stylemask_jax.photos.pipeline import crops_to_unit
from stylemask_jax.photos.refine import make_refine_fn
from stylemask_jax.photos.settings import RefineSettings


ENCODER_CPU_CHUNK = 1  # crops encoded at a time on a CPU (`encoder_chunk`)


def encoder_chunk() -> int | None:
    """How many crops e4e encodes at a time on this backend (`make_invert_fn`).

    On a CPU a batch of 8 took 5% longer per crop than one crop (1012 against 965 ms, AMD
    EPYC; benchmarks/results/xla_options.md), and 965 ms in chunks of one or two: there the
    encoder runs ENCODER_CPU_CHUNK crops at a time. Accelerators take the whole batch."""
    return ENCODER_CPU_CHUNK if jax.default_backend() == "cpu" else None


def make_invert_fn(encoder, chunk: int | None | str = "auto"):
    """jit(e4e variables, uint8 crops (B, 256, 256, 3)) -> W+ codes (B, n_styles, 512) float32.

    chunk: encode this many crops at a time (`compiling.map_in_chunks`) when it divides a
    larger batch; None: the whole batch at once; "auto": `encoder_chunk()`. The codes are the
    same up to float rounding."""
    chunk = encoder_chunk() if chunk == "auto" else chunk

    @jit
    def invert(variables, crops):
        return map_in_chunks(lambda x: encoder.apply(variables, x), crops_to_unit(crops), chunk)
    return invert


@dataclasses.dataclass
class Inverter:
    """The e4e encoder with its variables and, optionally, the W+ refinement (`refine_fn` from
    `refine.make_refine_fn`, with the IR-SE variables it uses, or None)."""
    encoder: object
    variables: dict
    refine_fn: object = None
    irse_variables: dict | None = None

    def __post_init__(self):
        self._invert = make_invert_fn(self.encoder)

    def __call__(self, gvars, crops) -> jax.Array:
        """uint8 crops (B, 256, 256, 3), or float images in [-1, 1] -> W+ codes
        (B, n_styles, 512), refined when asked."""
        codes = self._invert(self.variables, crops)
        if self.refine_fn is not None:
            codes, _ = self.refine_fn(gvars, self.irse_variables, codes, crops)
        return codes


@dataclasses.dataclass
class InvertedBatch:
    start: int                       # index of the batch's first input
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
        raise UserInputError(f"a {generator.size}px generator with style_dim "
                             f"{generator.style_dim} takes ({generator.n_latent}, "
                             f"{generator.style_dim}) W+ codes; the encoder gives "
                             f"({encoder.n_styles}, 512)")


def check_face_image(path: str) -> None:
    """Aligned crops are square and at least 256 px; reads only the file header."""
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


def load_aligned(paths: Sequence[str]) -> np.ndarray:
    """Aligned square crops (side >= 256) -> float32 (N, 256, 256, 3) in [-1, 1]: sides that are
    multiples of 256 box-averaged, other sizes resized bilinearly (`images.load_image`)."""
    for path in paths:
        check_face_image(path)
    return np.stack([load_image(p, E4E_INPUT_SIZE) for p in paths])


def make_inverter(encoder: Encoder4Editing, variables, generator=None,
                  refine: RefineSettings | None = None, irse=None) -> Inverter:
    """e4e (module and variables), checked against `generator` when given (W+ length and width),
    and with refine.steps > 0 the jitted refinement on `generator`'s reconstructions; `irse`
    (module, variables) or None adds the ArcFace identity term."""
    refine = (refine or RefineSettings()).check()
    if generator is not None:
        check_generator(encoder, generator)
    if not refine.steps:
        return Inverter(encoder, variables)
    if generator is None:
        raise UserInputError("the refinement needs the generator the codes are refined on")
    irse_module, irse_vars = irse if irse is not None else (None, None)
    return Inverter(encoder, variables, make_refine_fn(generator, refine, irse_module), irse_vars)


def invert(inverter: Inverter, gvars, inputs: Sequence, batch_size: int = 8, *, load=None,
           generator=None, desc: str | None = None) -> Iterator[InvertedBatch]:
    """Yields the W+ codes of `inputs` (and with `generator` their reconstructions), one batch
    at a time, in order. gvars: the generator's variables (refinement, reconstructions)."""
    render = None
    if generator is not None:
        render = jit(lambda v, codes: generator.apply(v, codes, input_type="wplus"))

    def run(images):
        codes = inverter(gvars, images)
        return codes, (None if render is None else render(gvars, codes))

    for start, (codes, recon) in iter_batches(run, [inputs], batch_size, desc=desc, unit="image",
                                              load=None if load is None else lambda c: [load(c)]):
        yield InvertedBatch(start, codes, recon)


def invert_all(inverter: Inverter, gvars, crops, batch_size: int = 8) -> np.ndarray:
    """All codes at once: crops (N, 256, 256, 3) -> untruncated W+ codes (N, n_styles, 512)."""
    return run_batches(lambda batch: inverter(gvars, batch), [crops], batch_size)
