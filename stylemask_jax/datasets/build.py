"""Build a face dataset from a source folder, and open it again for random access.

    report = build_dataset("faces/", "data/")     # data/stylemask_faces/stride1_maxall/1.0.0/
    report = build_dataset("faces/", "data/", workers=8)
    report = build_dataset("faces/", "data/", beam_options="--runner=FlinkRunner ...")
    dataset = load_dataset("data/")
    len(dataset), dataset[0]["image"]             # uint8 (256, 256, 3)
    dataset.table["video_id"]                     # int64 (N,), without decoding any image

A build has two halves. Aligning (decode, detect, align) is the slow one: Apache Beam runs it,
one source item (photo, video, frame folder) per element, on local worker processes or on a
cluster (`pipeline.py`), and each item's faces land in a work folder next to the dataset as the
item finishes (`items.py`). Then TFDS writes the records from that folder (`builder.py`) and
the work folder is removed.

A build that is killed or fails keeps the items that finished: the next build aligns only the
rest and writes the same dataset, byte for byte, as an uninterrupted build. Re-running a
finished build does nothing. When the source folder has changed since the dataset was built
(files added, removed, resized or touched), it is an error unless `overwrite=True`; a
different frame stride or frame limit is a different config, built next to the first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import math
import os
import shutil
from typing import Any

import numpy as np

from stylemask_jax.datasets import pipeline, sources
from stylemask_jax.datasets.builder import (DATASET_NAME, PlannedItem, StylemaskFaces,
                                            config_for, config_name, plan_shards, tfds)
from stylemask_jax.datasets.items import (MAX_LISTED_SKIPS, AlignSettings, ItemCache,
                                          item_key)
from stylemask_jax.datasets.pipeline import align_items, create_runner, plan_runner
from stylemask_jax.errors import UserInputError
from stylemask_jax.outputs import check_output_dir
from stylemask_jax.photos.video import probe_video

TABLE_FILE = "examples.npz"      # identity_id / video_id / frame per record, next to the data
TABLE_KEYS = ("identity_id", "video_id", "frame", "identity", "video")
WORK_FOLDER = ".stylemask_build"  # under the build's out_dir: WORK_FOLDER/CONFIG/ITEM_KEY.npz


@dataclasses.dataclass(frozen=True)
class BuildReport:
    path: str                  # the dataset folder (.../stylemask_faces/CONFIG/VERSION)
    skipped: bool              # True: it was already built from this source
    num_examples: int
    metadata: dict             # counts: num_items, num_frames, num_faces, num_no_face, ...
    items_reused: int = 0      # items an earlier, unfinished build had aligned
    items_aligned: int = 0     # items this build aligned
    runner: str = ""           # where they were aligned (`pipeline.BeamPlan.describe`)


def _stale_incomplete_dirs(data_path: str) -> list[str]:
    """Left-overs of builds that were killed (TFDS removes them itself on an exception)."""
    parent, version = os.path.split(data_path)
    if not os.path.isdir(parent):
        return []
    return [os.path.join(parent, name) for name in os.listdir(parent)
            if name.startswith("incomplete.") and name.endswith("_" + version)]


def estimate_frames(source: sources.Source, settings: AlignSettings, enough: int) -> int:
    """The frames a build will read, counted until `enough` (videos: from their headers)."""
    total = 0
    for item in source.items:
        if item.kind == "photo":
            count = 1
        elif item.kind == "frames":
            count = len(range(0, len(item.paths), settings.frame_stride))
        else:
            try:
                count = probe_video(os.path.join(source.root, item.paths[0])).num_frames or 1
            except UserInputError:
                count = 1           # aligning it reports the problem
            count = math.ceil(count / settings.frame_stride)
        total += min(count, settings.max_frames or count)
        if total >= enough:
            break
    return total


def _plan_items(source: sources.Source, keys: list[str], cache: ItemCache,
                settings: AlignSettings) -> tuple[list[PlannedItem], dict]:
    """The aligned items in build order with their first keys, and the build's report."""
    identity_ids = {name: i for i, name in enumerate(source.identities)}
    report = {"source": str(source.root), "fingerprint": sources.fingerprint(source),
              "num_source_files": len(sources.file_list(source)),
              "frame_stride": settings.frame_stride, "max_frames": settings.max_frames,
              "aligner": settings.aligner_name, "num_items": len(source.items),
              "num_frames": 0, "num_faces": 0, "num_no_face": 0, "no_face": [],
              "ignored_files": list(source.ignored)}
    planned = []
    for video_id, (key, item) in enumerate(zip(keys, source.items)):
        faces = cache.get(key, images=False)
        planned.append(PlannedItem(key, report["num_faces"], len(faces), item.identity,
                                   identity_ids[item.identity], item.video, video_id))
        report["num_frames"] += faces.num_frames
        report["num_faces"] += len(faces)
        report["num_no_face"] += len(faces.no_face)
        room = MAX_LISTED_SKIPS - len(report["no_face"])
        report["no_face"].extend(faces.no_face[:max(room, 0)])
    return planned, report


def build_dataset(src: str | os.PathLike, out_dir: str | os.PathLike, *, frame_stride: int = 1,
                  max_frames: int = 0, overwrite: bool = False, max_detect_side: int | None = None,
                  aligner=None, read_photo=None, read_video=None, workers: int | None = None,
                  beam_options: str = "", progress: bool = True) -> BuildReport:
    """Aligns every face of `src` into a TFDS dataset under `out_dir` (its data_dir).

    frame_stride: keep every n-th frame of a video (photos are always kept).
    max_frames: at most this many kept frames per video (0: all).
    max_detect_side: dlib detects on a copy of at most this side (None: the full frame; see
        `photos.landmarks.LandmarkDetector`); only for the default aligner.
    aligner / read_photo / read_video: see `crops` (picklable: they travel to Beam's workers);
        None uses `stylemask_jax.photos`.
    workers: local worker processes (None: every core; small sources run in this process).
    beam_options: Beam options, e.g. "--runner=FlinkRunner --flink_master=HOST:8081" (the
        source and `out_dir` must then be paths every worker sees).
    Frames where no face is found are skipped, counted and listed in the report's metadata.
    """
    if frame_stride < 1:
        raise UserInputError(f"frame stride must be at least 1, got {frame_stride}")
    if max_frames < 0:
        raise UserInputError(f"max frames must be 0 (all) or more, got {max_frames}")
    if workers is not None and workers < 1:
        raise UserInputError(f"workers must be at least 1, got {workers}")

    source = sources.scan_source(os.path.abspath(os.fspath(src)))
    out_dir = os.path.abspath(os.fspath(out_dir))
    check_output_dir(out_dir, "output folder")
    config = config_for(frame_stride, max_frames)
    data_path = os.fspath(StylemaskFaces(data_dir=out_dir, config=config,
                                         file_format="array_record").data_path)
    if os.path.isfile(os.path.join(data_path, "dataset_info.json")):     # built before
        reader = tfds.builder_from_directory(data_path)
        built = dict(reader.info.metadata)
        if built.get("fingerprint") == sources.fingerprint(source):
            return BuildReport(data_path, True, _num_examples(reader), built)
        if not overwrite:
            raise UserInputError(
                f"{data_path}: was built from {built.get('source')} "
                f"({built.get('num_source_files')} files); {source.root} has changed since "
                f"({len(sources.file_list(source))} files, or some were modified). Build into "
                "a new output folder, or rebuild it with overwrite")

    settings = AlignSettings(frame_stride, max_frames, max_detect_side, aligner, read_photo,
                             read_video)
    plan = plan_runner(workers, beam_options,
                       estimate_frames(source, settings, enough=pipeline.IN_PROCESS_FRAMES))
    work = os.path.join(out_dir, WORK_FOLDER, config_name(frame_stride, max_frames))
    cache = ItemCache(work)
    keys = [item_key(source, item, settings) for item in source.items]
    todo = [(key, item) for key, item in zip(keys, source.items) if not cache.has(key)]
    align_items(todo, source.root, cache, settings, plan, progress)
    errors = [message for key in keys if (message := cache.pop_error(key)) is not None]
    if errors:
        more = (f" ({len(errors) - 1} more items could not be read; the next build aligns only "
                "what is left)" if len(errors) > 1 else "")
        raise UserInputError(errors[0] + more)
    planned, report = _plan_items(source, keys, cache, settings)
    if report["num_faces"] == 0:
        raise UserInputError(f"{source.root}: no face found in any of the "
                             f"{report['num_frames']} frames read")

    for stale in _stale_incomplete_dirs(data_path):
        shutil.rmtree(stale)
    writer = StylemaskFaces(data_dir=out_dir, config=config, file_format="array_record",
                            shards=plan_shards(planned, cache.folder), metadata=report)
    mode = (tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS if not overwrite
            else tfds.download.GenerateMode.FORCE_REDOWNLOAD)
    tfds.display_progress_bar(False)     # our own bar counts the items
    try:
        writer.download_and_prepare(download_config=tfds.download.DownloadConfig(
            download_mode=mode,
            beam_runner=None if plan.local else create_runner(plan.runner),
            beam_options=None if plan.local else plan.options()))
    finally:
        tfds.display_progress_bar(True)
    for leftover in glob.glob(os.path.join(data_path, "*.shard_infos.json")):
        os.remove(leftover)          # TFDS's note from its Beam shard writer, read and done with
    shutil.rmtree(work)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(work))              # the last config's work is done
    dataset = load_dataset(data_path)
    return BuildReport(data_path, False, len(dataset), dataset.metadata,
                       items_reused=len(keys) - len(todo), items_aligned=len(todo),
                       runner=plan.describe())


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
