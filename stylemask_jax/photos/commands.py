"""The photo and video halves of `stylemask reenact` and `stylemask invert`: e4e (+ refinement)
loading, photos -> W+ codes, and the files they write.

    kinds = input_kinds(sources, targets, driving, e4e_dir, ...)   # the argument rules, first
    inverter = load_inverter(e4e_dir, generator, RefineSettings(steps=20), irse_dir)
    faces, codes = photo_codes(paths, inverter, gvars, batch_size=8)
    write_photo_outputs(out, {"source": faces, ...}, result, save_aligned, paste_back)

The rules for --sources/--targets: a file is a photo by its extension (.png, .jpg, .jpeg, .webp)
or codes (.npy); a folder holds only photos or only .npy files. Sources and targets may be of
different kinds (photos driven by .npy codes and the reverse). Photos and --driving need --e4e.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from stylemask_jax.errors import UserInputError
from stylemask_jax.photos.pipeline import Faces, Inverter, input_files, invert_batches, prepare_faces
from stylemask_jax.photos.refine import RefineSettings

ALIGNED_DIR = "aligned"
PASTED_DIR = "pasted"


def input_kinds(sources, targets, driving, e4e_dir, paste_back=False, save_aligned=False,
                side_by_side=False, refine: RefineSettings | None = None,
                irse_dir=None) -> dict:
    """Checks the photo/video arguments of `stylemask reenact` before any model loads ->
    {'source': (kind, files) or None, 'target': ...}, kind 'photos' or 'codes'."""
    if driving and not sources:
        raise UserInputError("--driving needs --sources PHOTO (the face the video animates)")
    if driving and targets:
        raise UserInputError("--driving replaces --targets (each frame is a target); give one")
    if side_by_side and not driving:
        raise UserInputError("--side-by-side is for --driving videos")
    kinds = {role: input_files(path, f"--{role}s") if path else None
             for role, path in (("source", sources), ("target", targets))}
    photos = [role for role, kind in kinds.items() if kind and kind[0] == "photos"]
    if driving and (kinds["source"][0] != "photos" or len(kinds["source"][1]) != 1):
        raise UserInputError(f"--sources {sources}: --driving animates one source photo; give one "
                             "photo file")
    if (photos or driving) and not e4e_dir:
        raise UserInputError("photos and --driving videos are inverted with e4e: give --e4e DIR "
                             "(`stylemask convert e4e`)")
    if paste_back and "source" not in photos:
        raise UserInputError("--paste-back puts faces back into the source photos: give photos "
                             "as --sources")
    if save_aligned and not photos:
        raise UserInputError("--save-aligned writes the aligned crops of photos: none were given")
    if ((refine is not None and refine.steps) or irse_dir) and not (photos or driving):
        raise UserInputError("--refine-steps/--irse refine the inversion of photos: none were given")
    if e4e_dir and not (photos or driving):
        raise UserInputError("--e4e is for photos and videos; --sources/--targets are codes")
    return kinds


def load_inverter(e4e_dir: str, generator, refine: RefineSettings | None = None,
                  irse_dir: str | None = None) -> Inverter:
    """A converted e4e folder (checked against `generator`: W+ length and width), and with
    refine.steps > 0 the jitted refinement (with the ArcFace term when `irse_dir` is given)."""
    from stylemask_jax.inversion import check_generator
    from stylemask_jax.models.e4e import load_e4e
    refine = (refine or RefineSettings()).check()
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


def photo_codes(paths: Sequence[str], inverter: Inverter, gvars, batch_size: int,
                keep_photos: bool = False, detector=None) -> tuple[Faces, np.ndarray]:
    """Photos -> (their aligned faces, untruncated W+ codes (N, n_styles, 512))."""
    faces = prepare_faces(list(paths), detector, keep_photos=keep_photos)
    return faces, invert_batches(inverter, gvars, faces.crops, batch_size)


def output_stems(names: Sequence[str], what: str) -> list[str]:
    """File stems of the inputs for output names; two inputs with one stem are an error
    (`inversion.output_names`, with the argument named)."""
    from stylemask_jax.inversion import output_names
    try:
        return output_names(names)
    except UserInputError as err:
        raise UserInputError(f"{what}: {err}") from None


def save_aligned_crops(out: str, role: str, faces: Faces) -> None:
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


def write_photo_outputs(out: str, faces: dict, result: dict, save_aligned: bool,
                        paste_back: bool) -> str:
    """OUT/aligned/{sources,targets}/ and OUT/pasted/ as asked -> the summary's suffix."""
    written = []
    if save_aligned:
        for role, role_faces in faces.items():
            save_aligned_crops(out, f"{role}s", role_faces)
        written.append(f"{ALIGNED_DIR}/")
    if paste_back:
        names = [f"{k:04d}_s{s:03d}_t{t:03d}.png"
                 for k, (s, t) in enumerate(zip(result["source_index"], result["target_index"]))]
        save_pasted(out, faces["source"], result["reenacted"], result["source_index"], names)
        written.append(f"{PASTED_DIR}/")
    return f"; also {', '.join(written)}" if written else ""


def video_to_folder(out: str, models, inverter: Inverter, source: str, driving: str,
                    truncation: float, mean, batch_size: int, paste_back: bool,
                    side_by_side: bool) -> str:
    """`stylemask reenact --sources PHOTO --driving CLIP`: OUT/reenacted.mp4 -> the summary."""
    from stylemask_jax.photos.driving import reenact_video
    result = reenact_video(models, inverter, source, driving, out, truncation=truncation, mean=mean,
                           batch_size=batch_size, paste_back=paste_back,
                           side_by_side_view=side_by_side)
    st = result.stats
    return (f"wrote {result.path} ({st['frames']} frames, {result.size[0]}x{result.size[1]} at "
            f"{result.fps:g} fps): face found in {st['detected']}, {st['carried']} carried "
            f"(no face: the last alignment reused), {st['filled']} filled (before the first face), "
            f"{st['resets']} smoother resets")
