"""Build a face dataset from a source folder, and open it again for random access.

    report = build_dataset("faces/", "data/")     # data/stylemask_faces/stride1_maxall/1.0.0/
    dataset = load_dataset("data/")
    len(dataset), dataset[0]["image"]             # uint8 (256, 256, 3)
    dataset.table["video_id"]                     # int64 (N,), without decoding any image

Re-running `build_dataset` with the same source and config does nothing (TFDS only renames
its `incomplete.*` folder to the dataset folder when the whole build succeeded, so a failed or
killed build is never taken for a finished one; a failed build starts again from the first
file). When the source folder has changed since the dataset was built (files added, removed,
resized or touched), it is an error unless `overwrite=True`; a different frame stride or
frame limit is a different config, built next to the first.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
from typing import Any

import numpy as np

from stylemask_jax.datasets import sources
from stylemask_jax.datasets.builder import DATASET_NAME, StylemaskFaces, config_for, tfds
from stylemask_jax.errors import UserInputError
from stylemask_jax.outputs import check_output_dir

TABLE_FILE = "examples.npz"      # identity_id / video_id / frame per record, next to the data
TABLE_KEYS = ("identity_id", "video_id", "frame", "identity", "video")


@dataclasses.dataclass(frozen=True)
class BuildReport:
    path: str                  # the dataset folder (.../stylemask_faces/CONFIG/VERSION)
    skipped: bool              # True: it was already built from this source
    num_examples: int
    metadata: dict             # counts: num_items, num_frames, num_faces, num_no_face, ...


def _stale_incomplete_dirs(data_path: str) -> list[str]:
    """Left-overs of builds that were killed (TFDS removes them itself on an exception)."""
    parent, version = os.path.split(data_path)
    if not os.path.isdir(parent):
        return []
    return [os.path.join(parent, name) for name in os.listdir(parent)
            if name.startswith("incomplete.") and name.endswith("_" + version)]


def build_dataset(src: str | os.PathLike, out_dir: str | os.PathLike, *, frame_stride: int = 1,
                  max_frames: int = 0, overwrite: bool = False, max_detect_side: int | None = None,
                  aligner=None, read_photo=None, read_video=None,
                  progress: bool = True) -> BuildReport:
    """Aligns every face of `src` into a TFDS dataset under `out_dir` (its data_dir).

    frame_stride: keep every n-th frame of a video (photos are always kept).
    max_frames: at most this many kept frames per video (0: all).
    max_detect_side: dlib detects on a copy of at most this side (None: the full frame; see
        `photos.landmarks.LandmarkDetector`); only for the default aligner.
    aligner / read_photo / read_video: see `crops`; None uses `stylemask_jax.photos`.
    Frames where no face is found are skipped, counted and listed in the report's metadata.
    """
    if frame_stride < 1:
        raise UserInputError(f"frame stride must be at least 1, got {frame_stride}")
    if max_frames < 0:
        raise UserInputError(f"max frames must be 0 (all) or more, got {max_frames}")

    source = sources.scan_source(os.path.abspath(os.fspath(src)))
    check_output_dir(os.fspath(out_dir), "output folder")
    builder = StylemaskFaces(data_dir=os.fspath(out_dir), config=config_for(frame_stride,
                             max_frames), file_format="array_record", aligner=aligner,
                             max_detect_side=max_detect_side, read_photo=read_photo,
                             read_video=read_video, progress=progress)
    data_path = os.fspath(builder.data_path)
    if builder.is_prepared():
        built = dict(builder.info.metadata)
        if built.get("fingerprint") == sources.fingerprint(source):
            return BuildReport(data_path, True, _num_examples(builder), built)
        if not overwrite:
            raise UserInputError(
                f"{data_path}: was built from {built.get('source')} "
                f"({built.get('num_source_files')} files); {source.root} has changed since "
                f"({len(sources.file_list(source))} files, or some were modified). Build into "
                "a new output folder, or rebuild it with overwrite")
    for stale in _stale_incomplete_dirs(data_path):
        shutil.rmtree(stale)
    mode = (tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS if not overwrite
            else tfds.download.GenerateMode.FORCE_REDOWNLOAD)
    tfds.display_progress_bar(False)     # our own bar counts files, faces and misses
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            manual_dir=source.root, download_mode=mode))
    finally:
        tfds.display_progress_bar(True)
    dataset = load_dataset(data_path)
    return BuildReport(data_path, False, len(dataset), dataset.metadata)


def _num_examples(builder) -> int:
    return int(builder.info.splits["train"].num_examples)


def dataset_dirs(data_dir: str | os.PathLike) -> list[str]:
    """The built datasets under `data_dir` (a build's out_dir, or one dataset folder)."""
    data_dir = os.fspath(data_dir)
    if os.path.isfile(os.path.join(data_dir, "dataset_info.json")):
        return [data_dir]
    root = os.path.join(data_dir, DATASET_NAME)
    found = []
    if os.path.isdir(root):
        for config in sorted(os.listdir(root)):
            config_dir = os.path.join(root, config)
            if config.startswith("incomplete.") or not os.path.isdir(config_dir):
                continue
            for version in sorted(os.listdir(config_dir)):
                path = os.path.join(config_dir, version)
                if os.path.isfile(os.path.join(path, "dataset_info.json")):
                    found.append(path)
    return found


class FaceDataset:
    """A built face dataset: random access to its examples, and its per-example ids.

    dataset[i] -> dict of numpy values (see `builder` for the features; text as bytes).
    dataset.table -> {"identity_id", "video_id", "frame"}: int64 (N,) each, and
        {"identity", "video"}: str (N,), in record order.
    """

    def __init__(self, path: str):
        self.path = path
        self._builder = tfds.builder_from_directory(path)
        self.source = self._builder.as_data_source(split="train")
        self.metadata: dict[str, Any] = dict(self._builder.info.metadata)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        return self.source[int(index)]

    def examples(self, indices) -> list[dict]:
        return self.source.__getitems__([int(i) for i in indices])

    @functools.cached_property
    def table(self) -> dict[str, np.ndarray]:
        """Per-record ids, read once from the records (images skipped) and cached on disk."""
        cache = os.path.join(self.path, TABLE_FILE)
        if os.path.isfile(cache):
            with np.load(cache, allow_pickle=False) as saved:
                if all(k in saved for k in TABLE_KEYS) and len(saved["frame"]) == len(self):
                    return {k: saved[k] for k in TABLE_KEYS}
        light = self._builder.as_data_source(
            split="train", decoders={"image": tfds.decode.SkipDecoding()})
        columns: dict[str, list] = {k: [] for k in TABLE_KEYS}
        for i in range(len(self)):
            example = light[i]
            for k in TABLE_KEYS:
                value = example[k]
                columns[k].append(value.decode() if isinstance(value, bytes) else value)
        table = {k: np.asarray(v, np.int64 if k in ("identity_id", "video_id", "frame") else str)
                 for k, v in columns.items()}
        tmp = cache + ".tmp.npz"
        np.savez(tmp, **table)
        os.replace(tmp, cache)
        return table


def load_dataset(data_dir: str | os.PathLike, config: str | None = None) -> FaceDataset:
    """Opens a dataset built by `build_dataset`.

    data_dir: the build's out_dir (with one config, or name it with `config`, e.g.
        "stride1_maxall") or a dataset folder (.../stylemask_faces/CONFIG/VERSION).
    """
    found = dataset_dirs(data_dir)
    if config is not None:
        found = [p for p in found if os.path.basename(os.path.dirname(p)) == config]
    if not found:
        raise UserInputError(f"{data_dir}: no built face dataset here"
                             + (f" with config {config}" if config else "")
                             + " (`stylemask dataset build` makes one)")
    if len(found) > 1:
        configs = sorted({os.path.basename(os.path.dirname(p)) for p in found})
        raise UserInputError(f"{data_dir}: holds several datasets ({', '.join(configs)}); "
                             "pass the folder of one of them")
    return FaceDataset(found[0])
