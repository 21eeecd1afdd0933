"""The photo and video halves of `stylemask reenact` and `stylemask invert`: e4e (+ refinement)
loading, photos -> W+ codes, and the files they write.

    inverter = load_inverter(e4e_dir, generator, RefineSettings(steps=20), irse_dir)
    faces, codes = photo_codes(paths, detector, inverter, gvars, batch_size=8)
    save_aligned(out, "sources", faces)                  # OUT/aligned/sources/NAME.png
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from stylemask_jax.errors import UserInputError
from stylemask_jax.photos.pipeline import Faces, Inverter, invert_batches, prepare_faces
from stylemask_jax.photos.refine import RefineSettings

ALIGNED_DIR = "aligned"
PASTED_DIR = "pasted"


def load_inverter(e4e_dir: str, generator, refine: RefineSettings = RefineSettings(),
                  irse_dir: str | None = None) -> Inverter:
    """A converted e4e folder (checked against `generator`: W+ length and width), and with
    refine.steps > 0 the jitted refinement (with the ArcFace term when `irse_dir` is given)."""
    from stylemask_jax.inversion import check_generator
    from stylemask_jax.models.e4e import load_e4e
    refine = refine.check()
    encoder, variables = load_e4e(e4e_dir)
    check_generator(encoder, generator)
    refine_fn = irse_vars = None
    if refine.steps:
        from stylemask_jax.photos.refine import make_refine_fn
        irse = None
        if irse_dir:
            from stylemask_jax.models.irse import load_irse
            irse, irse_vars = load_irse(irse_dir)
        refine_fn = make_refine_fn(generator, refine, irse)
    elif irse_dir:
        raise UserInputError("--irse is used only by the refinement: give --refine-steps N too")
    return Inverter(encoder, variables, refine_fn, irse_vars)


def photo_codes(paths: Sequence[str], detector, inverter: Inverter, gvars, batch_size: int,
                keep_photos: bool = False) -> tuple[Faces, np.ndarray]:
    """Photos -> (their aligned faces, untruncated W+ codes (N, n_styles, 512))."""
    faces = prepare_faces(list(paths), detector, keep_photos=keep_photos)
    return faces, invert_batches(inverter, gvars, faces.crops, batch_size)


def output_stems(names: Sequence[str], what: str) -> list[str]:
    """File stems of the inputs for output names; two inputs with one stem are an error."""
    seen: dict[str, str] = {}
    for name in names:
        stem = os.path.splitext(os.path.basename(name))[0]
        if stem in seen:
            raise UserInputError(f"{what}: {name} has the same name as {seen[stem]}; outputs are "
                                 "named after the input files, so names must be unique")
        seen[stem] = name
    return list(seen)


def save_aligned(out: str, role: str, faces: Faces) -> None:
    """OUT/aligned/ROLE/NAME.png: the uint8 FFHQ crops."""
    from PIL import Image
    folder = os.path.join(out, ALIGNED_DIR, role)
    os.makedirs(folder, exist_ok=True)
    for stem, crop in zip(output_stems(faces.names, f"--{role}"), faces.crops):
        Image.fromarray(crop).save(os.path.join(folder, f"{stem}.png"))


def save_pasted(out: str, faces: Faces, reenacted: np.ndarray, source_index: np.ndarray,
                names: Sequence[str], feather: float = 0.1) -> None:
    """OUT/pasted/NAME.png: each reenacted face (float [-1, 1]) pasted into its source photo."""
    from PIL import Image
    from stylemask_jax.photos.align import paste_back
    folder = os.path.join(out, PASTED_DIR)
    os.makedirs(folder, exist_ok=True)
    for face, s, name in zip(reenacted, source_index, names):
        photo = paste_back(faces.photos[s], face, faces.geometry[s], feather)
        Image.fromarray(photo).save(os.path.join(folder, name))
