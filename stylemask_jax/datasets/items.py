"""One source item (a photo, a video or a frame folder) -> its aligned faces, cached on disk.

A build aligns every item once and keeps the result in a work folder next to the dataset:

    cache = ItemCache(folder)
    key = item_key(source, item, settings)      # the files' paths, sizes, mtimes + the settings
    if not cache.has(key):
        cache.put(key, align_item(source.root, item, settings, align))
    faces = cache.get(key)                      # ItemFaces: crops, landmarks, frame indices

A finished item is one file, written under a temporary name and renamed into place, so a build
that is killed keeps every item that finished and a rerun aligns only the rest. An item whose
files changed gets a new key (its old entry is never read again). An item that cannot be read
(a broken photo) leaves an error note instead (`put_error`), which the build reports and
removes, so that the next build tries the item again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np

from stylemask_jax.datasets import crops
from stylemask_jax.datasets.sources import Source, SourceItem, file_stamp
from stylemask_jax.outputs import atomic_file

CACHE_FORMAT = 1                 # bump when ItemFaces' stored fields change
MAX_LISTED_SKIPS = 1000          # no-face frames named in the metadata (all are counted)


@dataclasses.dataclass(frozen=True)
class AlignSettings:
    """What decides an item's faces, besides its files.

    frame_stride / max_frames: see `crops.item_frames`.
    max_detect_side: the default aligner's detection size (see `crops.default_aligner`).
    aligner: a picklable `crops.Aligner`, or None for dlib + the FFHQ crop (made in each worker).
    read_photo / read_video: picklable readers, or None for `stylemask_jax.photos`.
    """

    frame_stride: int = 1
    max_frames: int = 0
    max_detect_side: int | None = None
    aligner: crops.Aligner | None = None
    read_photo: crops.PhotoReader | None = None
    read_video: crops.VideoReader | None = None

    @property
    def aligner_name(self) -> str:
        if self.aligner is None:
            return f"dlib + FFHQ crop, max_detect_side {self.max_detect_side}"
        return getattr(self.aligner, "__name__", type(self.aligner).__name__)

    def make_aligner(self) -> crops.Aligner:
        return self.aligner or crops.default_aligner(self.max_detect_side)


@dataclasses.dataclass(frozen=True)
class ItemFaces:
    """The faces of one item, in frame order.

    images uint8 (n, 256, 256, 3); landmarks / landmarks_frame float32 (n, 68, 2);
    frames int64 (n,) frame indices; paths str (n,) the file each face came from (relative);
    num_frames: frames read; no_face: "PATH" or "PATH#FRAME" of each frame without a face.
    """

    images: np.ndarray
    landmarks: np.ndarray
    landmarks_frame: np.ndarray
    frames: np.ndarray
    paths: np.ndarray
    num_frames: int
    no_face: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.frames)


def item_key(source: Source, item: SourceItem, settings: AlignSettings) -> str:
    """A name for the item's cache entry: changes when a file or a setting changes."""
    digest = hashlib.sha256(json.dumps(
        [CACHE_FORMAT, item.video, item.kind, settings.frame_stride, settings.max_frames,
         settings.aligner_name]).encode())
    for rel in item.paths:
        digest.update(file_stamp(source.root, rel))
    return digest.hexdigest()[:32]


def align_item(root: str, item: SourceItem, settings: AlignSettings,
               align: crops.Aligner) -> ItemFaces:
    """Reads the item's frames one at a time and aligns the face of each (see `crops`)."""
    faces: list[crops.FaceCrop] = []
    frames, paths, no_face = [], [], []
    num_frames = 0
    for frame_index, rel, frame in crops.item_frames(
            root, item, settings.frame_stride, settings.max_frames,
            settings.read_photo or crops.read_photo_default,
            settings.read_video or crops.read_video_default):
        num_frames += 1
        face = align(frame)
        if face is None:
            no_face.append(f"{rel}#{frame_index}" if item.kind == "video" else rel)
            continue
        faces.append(face)
        frames.append(frame_index)
        paths.append(rel)
    size = crops.CROP_SIZE
    return ItemFaces(
        images=np.stack([f.image for f in faces]) if faces else np.zeros((0, size, size, 3),
                                                                          np.uint8),
        landmarks=np.asarray([f.landmarks for f in faces], np.float32).reshape(-1, 68, 2),
        landmarks_frame=np.asarray([f.landmarks_frame for f in faces],
                                   np.float32).reshape(-1, 68, 2),
        frames=np.asarray(frames, np.int64), paths=np.asarray(paths, str),
        num_frames=num_frames, no_face=tuple(no_face))


class ItemCache:
    """Finished items of one build (one config), one .npz file each; see the module docstring."""

    def __init__(self, folder: str):
        self.folder = folder

    def _path(self, key: str) -> str:
        return os.path.join(self.folder, key + ".npz")

    def _error_path(self, key: str) -> str:
        return os.path.join(self.folder, key + ".error")

    def has(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def put(self, key: str, faces: ItemFaces) -> None:
        with atomic_file(self._path(key)) as tmp, open(tmp, "wb") as f:
            np.savez(f, images=faces.images, landmarks=faces.landmarks,
                     landmarks_frame=faces.landmarks_frame, frames=faces.frames,
                     paths=faces.paths, num_frames=np.int64(faces.num_frames),
                     no_face=np.asarray(faces.no_face, str))

    def get(self, key: str, images: bool = True) -> ItemFaces:
        """The stored faces (images=False: an empty images array, for counting)."""
        with np.load(self._path(key), allow_pickle=False) as saved:
            return ItemFaces(
                images=saved["images"] if images else np.zeros((0,), np.uint8),
                landmarks=saved["landmarks"], landmarks_frame=saved["landmarks_frame"],
                frames=saved["frames"], paths=saved["paths"],
                num_frames=int(saved["num_frames"]), no_face=tuple(saved["no_face"].tolist()))

    def put_error(self, key: str, message: str) -> None:
        with atomic_file(self._error_path(key)) as tmp, open(tmp, "w") as f:
            f.write(message)

    def pop_error(self, key: str) -> str | None:
        """The item's error note, removed (None: there is none)."""
        path = self._error_path(key)
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            message = f.read()
        os.remove(path)
        return message

    def count_finished(self, keys) -> int:
        """How many of `keys` are finished (an entry or an error note), for a progress bar."""
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return 0
        return len({os.path.splitext(name)[0] for name in names} & set(keys))
