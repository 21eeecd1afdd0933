"""Frames of a source item -> aligned 256 face crops with their 68 landmarks.

The face alignment itself lives in `stylemask_jax.photos`; this module only defines the small
interface the dataset builder needs, so that the builder (and its tests) can take any aligner:

    aligner(frame) -> FaceCrop | None       frame: uint8 (H, W, 3) RGB; None: no face found

and the reading of photos and (streamed) video frames with a frame stride and a frame limit.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterator

import numpy as np

from stylemask_jax.datasets.sources import SourceItem
from stylemask_jax.photos.align import align_face
from stylemask_jax.photos.landmarks import LandmarkDetector
from stylemask_jax.photos.loading import load_photo
from stylemask_jax.photos.video import read_frames

CROP_SIZE = 256


@dataclasses.dataclass(frozen=True)
class FaceCrop:
    """One aligned face.

    image: uint8 (256, 256, 3) RGB, the FFHQ-aligned crop.
    landmarks: float32 (68, 2) x, y in crop pixels (pixel centres at integers).
    landmarks_frame: float32 (68, 2) x, y in pixels of the frame the crop was taken from.
    """

    image: np.ndarray
    landmarks: np.ndarray
    landmarks_frame: np.ndarray


Aligner = Callable[[np.ndarray], "FaceCrop | None"]
PhotoReader = Callable[[str], np.ndarray]                  # path -> uint8 (H, W, 3)
VideoReader = Callable[[str], Iterator[np.ndarray]]        # path -> frames, uint8 (H, W, 3)


def crop_landmarks(landmarks, quad, size: int = CROP_SIZE) -> np.ndarray:
    """Frame landmarks -> crop landmarks, through the crop's quad.

    landmarks: (68, 2) x, y, pixel-centre convention (as dlib).
    quad: (4, 2) the crop's top-left, bottom-left, bottom-right and top-right corners in frame
        pixel-edge coordinates (PIL's QUAD order). The FFHQ quad is a square, so the map from
        the crop to the frame is affine and is inverted exactly.
    Returns float32 (68, 2) x, y in crop pixels, pixel-centre convention.
    """
    quad = np.asarray(quad, np.float64)
    origin = quad[0]
    basis = np.stack([quad[3] - origin, quad[1] - origin], axis=1) / size   # crop -> frame
    edge = np.asarray(landmarks, np.float64) + 0.5 - origin
    crop = np.linalg.solve(basis, edge.T).T - 0.5
    return crop.astype(np.float32)


def read_photo_default(path: str) -> np.ndarray:
    """`stylemask_jax.photos.load_photo`: upright uint8 (H, W, 3) RGB, one-line errors."""
    return load_photo(path)


def read_video_default(path: str) -> Iterator[np.ndarray]:
    """The frames of a video one by one (`stylemask_jax.photos.video.read_frames`, streamed:
    closing the iterator, e.g. at the frame limit, stops ffmpeg)."""
    return read_frames(path)


def default_aligner(max_detect_side: int | None = None) -> Aligner:
    """dlib's 68 landmarks of the largest face and the official FFHQ crop (stylemask_jax.photos).

    max_detect_side: see `LandmarkDetector` (None: detect on the full frame, the reference's
    recipe; e.g. 640 is much faster on HD video frames, landmarks move by a few pixels).
    """
    detector = LandmarkDetector(max_detect_side=max_detect_side)

    def align(frame: np.ndarray) -> FaceCrop | None:
        landmarks = detector.detect(frame)
        if landmarks is None:
            return None
        image, geometry = align_face(frame, landmarks)
        return FaceCrop(image, crop_landmarks(landmarks, geometry.quad, geometry.crop_size),
                        np.asarray(landmarks, np.float32))

    return align


def item_frames(root: str, item: SourceItem, frame_stride: int, max_frames: int,
                read_photo: PhotoReader, read_video: VideoReader
                ) -> Iterator[tuple[int, str, np.ndarray]]:
    """Yields (frame index, relative path, uint8 (H, W, 3) frame) of one item, one at a time.

    Keeps frames 0, s, 2s, ... (s = frame_stride) and stops after `max_frames` kept frames
    (0: no limit); a video is read frame by frame and closed as soon as the limit is reached.
    """
    if item.kind == "photo":
        yield 0, item.paths[0], read_photo(os.path.join(root, item.paths[0]))
        return
    limit = max_frames or None
    kept = 0
    if item.kind == "frames":
        for index in range(0, len(item.paths), frame_stride):
            yield index, item.paths[index], read_photo(os.path.join(root, item.paths[index]))
            kept += 1
            if kept == limit:
                return
        return
    frames = read_video(os.path.join(root, item.paths[0]))
    try:
        for index, frame in enumerate(frames):
            if index % frame_stride == 0:
                yield index, item.paths[0], frame
                kept += 1
                if kept == limit:
                    return
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
