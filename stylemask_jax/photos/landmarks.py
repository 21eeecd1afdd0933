"""68-point face landmarks with dlib (offline: the model ships with face-recognition-models).

The detector is dlib's HOG frontal face detector run with one up-sampling on the full photo;
of the faces it finds, the one with the largest box area is used, and dlib's 68-point shape
predictor (`shape_predictor_68_face_landmarks.dat` from the face-recognition-models package)
places the points in it: iBUG 300-W order, float64 (68, 2) x, y in pixel-centre coordinates.
This is exactly how the landmarks in tests/fixtures/align were made.

The official StyleMask script uses the FAN network of the `face_alignment` package instead;
both give 68 points in the same order, but not the same points.

    detector = LandmarkDetector()                 # loads the models once
    points = detector(frames)                     # list of (68, 2) arrays or None
    points = require_face(detector.detect(photo), "photo.jpg")
    boxes = detector.boxes(frame)                 # every face: [(left, top, right, bottom)]
    points = detector.landmarks(frame, boxes[0])  # (68, 2) of one chosen face

dlib and face-recognition-models are optional (`pip install -e ".[photos]"`) and imported
when a detector is made.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Iterable

import numpy as np
from PIL import Image

from stylemask_jax.errors import UserInputError
from stylemask_jax.photos.loading import check_rgb

_INSTALL = 'pip install -e ".[photos]"'
_PREDICTOR = "shape_predictor_68_face_landmarks.dat"


def _import_models():
    """-> (the dlib module, the path of the 68-point shape predictor model)."""
    try:
        import dlib
    except ImportError:
        raise UserInputError(f"face landmarks need dlib: install the photos extra "
                             f"({_INSTALL})") from None
    # Located without importing face_recognition_models: its __init__ imports pkg_resources,
    # which recent setuptools no longer ship.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError(f"face landmarks need the face-recognition-models package: install "
                             f"the photos extra ({_INSTALL})")
    model = os.path.join(list(spec.submodule_search_locations)[0], "models", _PREDICTOR)
    if not os.path.isfile(model):
        raise UserInputError(f"{model}: missing from the face-recognition-models package; "
                             f"reinstall the photos extra ({_INSTALL})")
    return dlib, model


class LandmarkDetector:
    """Loads dlib's face detector and 68-point shape predictor once; call it on many images.

    upsample: the detector's up-sampling count (1, as the reference: finds faces down to about
              40 px; each step doubles the side of the image it scans, and ~4x the time).
    max_detect_side: None (the default, the reference's recipe) runs the detector on the full
              image. An integer runs it on a copy whose longer side is at most that (bilinear
              resize) when the image is larger, and scales the box back; the 68 points are
              still placed on the full image. Much faster on large photos and video frames,
              but the box differs by a few pixels and so do the points: on the 1800 px fixture
              with 600, 4 px at most (0.9 px mean) and ~10x less detection time.

    Detection dominates the cost (`python -m benchmarks.landmarks`); dlib holds the GIL, so
    threads do not run it in parallel (processes would).
    """

    def __init__(self, upsample: int = 1, max_detect_side: int | None = None):
        dlib, model = _import_models()
        self._dlib = dlib
        self.upsample = int(upsample)
        self.max_detect_side = max_detect_side
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(model)

    def _faces(self, image: np.ndarray) -> list:
        """dlib rectangles of all faces in full-image coordinates."""
        h, w = image.shape[:2]
        if self.max_detect_side is None or max(h, w) <= self.max_detect_side:
            return list(self._detector(image, self.upsample))
        factor = max(h, w) / self.max_detect_side
        size = (max(int(round(w / factor)), 1), max(int(round(h / factor)), 1))
        small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        fx, fy = w / size[0], h / size[1]
        return [self._dlib.rectangle(int(round(r.left() * fx)), int(round(r.top() * fy)),
                                     int(round((r.right() + 1) * fx)) - 1,
                                     int(round((r.bottom() + 1) * fy)) - 1)
                for r in self._detector(small, self.upsample)]

    def boxes(self, image) -> list[tuple[int, int, int, int]]:
        """All detected faces of one uint8 (H, W, 3) RGB image as (left, top, right, bottom)."""
        return [(r.left(), r.top(), r.right(), r.bottom())
                for r in self._faces(check_rgb(image, "landmarks"))]

    def landmarks(self, image, box: tuple[int, int, int, int]) -> np.ndarray:
        """One uint8 (H, W, 3) RGB image and a face box (left, top, right, bottom), e.g. one of
        `boxes(image)` -> float64 (68, 2) x, y of that face."""
        image = check_rgb(image, "landmarks")
        shape = self._predictor(image, self._dlib.rectangle(*(int(v) for v in box)))
        return np.array([(p.x, p.y) for p in shape.parts()], np.float64)

    def detect(self, image) -> np.ndarray | None:
        """One uint8 (H, W, 3) RGB image -> float64 (68, 2) x, y of the largest face, or None."""
        image = check_rgb(image, "landmarks")
        faces = self.boxes(image)
        if len(faces) == 0:
            return None
        largest = max(faces, key=lambda b: (b[2] - b[0] + 1) * (b[3] - b[1] + 1))  # first of equals
        return self.landmarks(image, largest)

    def __call__(self, images: Iterable) -> list[np.ndarray | None]:
        """A batch (list, or (N, H, W, 3) array) of uint8 RGB images -> one result per image."""
        return [self.detect(image) for image in images]


def require_face(landmarks: np.ndarray | None, name: str) -> np.ndarray:
    """Returns the landmarks, or raises a one-line UserInputError naming `name` when None."""
    if landmarks is None:
        raise UserInputError(f"{name}: no face found (dlib's frontal face detector found none; "
                             f"expected a photo with a visible, roughly frontal face)")
    return landmarks

