"""Real photos -> aligned face crops (-> e4e W+ codes in `inversion`): the photo half of the
official inference path.

    detector = LandmarkDetector()
    faces = prepare_faces(["a.jpg", "b.png"], detector)      # crops, geometry, landmarks
    codes = inversion.invert_all(inverter, gvars, faces.crops)   # (N, L, 512) W+ (`inversion`)
    wplus = reenact.make_encode_fn(gen, "wplus", 0.7)(gvars, codes, mean)   # truncated

The official real-image path (`run_inference.py` of StelaBou/StyleMask, with
`libs/utilities/utils_inference.py`): 68 landmarks (FAN there, dlib here), the FFHQ crop to 256
(`align.align_face`, exact given the landmarks), the crop as u / 255 * 2 - 1, e4e's W+ codes
(its `latent_avg` added), and then, inside the reenactment, truncation of the W+ codes row by
row toward the mean W with psi 0.7 (`w' = mean + 0.7 (w - mean)`), the truncated codes feeding
both the style codes and the ToRGB layers. Their mean is `G.mean_latent(4096)`, drawn afresh on
every run; ours is fixed (`codes.truncation_mean`).

Inputs: photo files (.png, .jpg, .jpeg, .webp) or decoded uint8 arrays (video frames). A photo
without a face is a one-line UserInputError naming the file.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax.errors import UserInputError
from stylemask_jax.photos.align import AlignGeometry, align_face
from stylemask_jax.photos.landmarks import LandmarkDetector, require_face
from stylemask_jax.photos.loading import load_photo

PHOTO_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
CODE_EXTENSION = ".npy"


def is_photo(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in PHOTO_EXTENSIONS


def input_files(path: str, what: str) -> tuple[str, list[str]]:
    """A photo, a .npy file or a folder -> ('photos' | 'codes', sorted files).

    The rule: a file is a photo by its extension (.png/.jpg/.jpeg/.webp, any case) or codes
    (.npy); a folder must hold only one of the two kinds (other files are ignored); a folder with
    both, or with neither, is an error.
    """
    if os.path.isdir(path):
        names = sorted(os.listdir(path))
        photos = [os.path.join(path, n) for n in names if is_photo(n)]
        codes = [os.path.join(path, n) for n in names if n.lower().endswith(CODE_EXTENSION)]
        if photos and codes:
            raise UserInputError(f"{what}: folder {path} mixes photos and .npy codes; a folder "
                                 "must hold only photos or only .npy files")
        if not photos and not codes:
            raise UserInputError(f"{what}: folder {path} holds no photos "
                                 f"({', '.join(PHOTO_EXTENSIONS)}) and no .npy codes")
        return ("photos", photos) if photos else ("codes", codes)
    if not os.path.isfile(path):
        raise UserInputError(f"{what}: no such file or folder: {path}")
    if is_photo(path):
        return "photos", [path]
    if path.lower().endswith(CODE_EXTENSION):
        return "codes", [path]
    raise UserInputError(f"{what}: {path}: expected a photo ({', '.join(PHOTO_EXTENSIONS)}), "
                         "a .npy code file or a folder of either")


@dataclasses.dataclass
class Faces:
    """names: one per input; crops: uint8 (N, 256, 256, 3) FFHQ crops; geometry: where each came
    from (for paste_back); landmarks: float64 (N, 68, 2); photos: the decoded uint8 photos when
    asked for (keep_photos), else None."""
    names: list[str]
    crops: np.ndarray
    geometry: list[AlignGeometry]
    landmarks: np.ndarray
    photos: list[np.ndarray] | None = None


def prepare_faces(inputs: Sequence, detector: LandmarkDetector | None = None,
                  names: Sequence[str] | None = None, keep_photos: bool = False) -> Faces:
    """Photos (paths or uint8 arrays) -> their largest face, FFHQ-aligned to 256.

    Every photo is read (EXIF, modes, size limits: `load_photo`) and checked before the next:
    the first unreadable photo or photo without a face raises a one-line UserInputError naming it.
    """
    if len(inputs) == 0:
        raise UserInputError("no photos given")
    detector = detector or LandmarkDetector()
    if names is None:
        names = [os.fspath(x) if not isinstance(x, np.ndarray) else f"image {k}"
                 for k, x in enumerate(inputs)]
    crops, geometry, landmarks, photos = [], [], [], []
    for source, name in zip(inputs, names):
        photo = load_photo(source, name)
        points = require_face(detector.detect(photo), name)
        crop, geo = align_face(photo, points)
        crops.append(crop)
        geometry.append(geo)
        landmarks.append(points)
        if keep_photos:
            photos.append(photo)
    return Faces(list(names), np.stack(crops), geometry, np.stack(landmarks),
                 photos if keep_photos else None)


def crops_to_unit(crops) -> jax.Array:
    """uint8 (B, 256, 256, 3) -> float32 [-1, 1] as the official `image_to_tensor`: u / 255 * 2 - 1.
    Float images (already in [-1, 1], e.g. box-averaged 1024 crops) pass through as float32."""
    crops = jnp.asarray(crops)
    if crops.dtype != jnp.uint8:
        return crops.astype(jnp.float32)
    return crops.astype(jnp.float32) / 255.0 * 2.0 - 1.0
