"""The TFDS builder of a real-face dataset: aligned 256 crops, landmarks and ids, in array_record.

It runs without TensorFlow: every feature is a plain `tfds.features.Tensor` / `Scalar` /
`Text` (serialised to tf.train.Example protos by TFDS's own numpy path; no `Image` feature,
which would need TF to encode PNGs), the image is stored as raw bytes (`Encoding.BYTES`:
TFDS's default for a uint8 tensor, an int64 list, serialises hundreds of times slower, see
benchmarks/dataset.py), and the file format is array_record, which `tfds.data_source` reads
with random access.

Features of one example (one face in one frame):

    image            uint8 (256, 256, 3)  the FFHQ-aligned crop, RGB
    landmarks        float32 (68, 2)      x, y in crop pixels (iBUG 300-W order)
    landmarks_frame  float32 (68, 2)      x, y in pixels of the source photo / frame
    identity         text                 the identity name (folder name, or photo stem)
    identity_id      int64                its index among the sorted identity names
    video            text                 "ID/VIDEO" (a photo is its own one-frame video)
    video_id         int64                its index in build order
    frame            int64                the frame's index in its video (before the stride)
    path             text                 the photo / video / frame file, relative to the source

Examples are stored in build order (sorted identities, videos, frames), so record i of the
data source is the i-th face found; example i has key i. The faces come from the build's item
cache (`items.ItemCache`, filled by `pipeline.align_items`); the builder only writes them: a
`ShardBasedBuilder` whose shards are runs of whole items of about SHARD_FACES faces, each
written by one `ShardExamples` (in this process, or on a Beam runner's workers when the build
runs on a cluster). `frame_stride` and `max_frames` are the config (its name, e.g.
`stride1_maxall`). The build's report (source fingerprint, counts, faces not found) is the
dataset's metadata.

Datasets built by the first, serial builder (before Beam) have the same features, order,
keys, metadata and version, and open and skip a rebuild as before.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stylemask_jax.datasets import crops
from stylemask_jax.datasets.items import ItemCache
from stylemask_jax.errors import UserInputError

try:  # the [datasets] extra, imported here alone: every dataset module goes through this one
    import array_record  # noqa: F401  (the file format's reader and writer)
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import writer as writer_lib
    from tensorflow_datasets.proto import tf_example_pb2
except ImportError as err:
    raise UserInputError(f"datasets need tensorflow-datasets and array_record ({err}); "
                         'install them with pip install -e ".[datasets]"') from None

DATASET_NAME = "stylemask_faces"
SHARD_FACES = 1024      # about 200 MB of crops: what one shard writer holds at a time


def config_name(frame_stride: int, max_frames: int) -> str:
    return f"stride{frame_stride}_max{max_frames or 'all'}"


@dataclasses.dataclass
class FacesConfig(tfds.core.BuilderConfig):
    """frame_stride: keep every n-th video frame; max_frames: kept frames per video (0: all)."""

    frame_stride: int = 1
    max_frames: int = 0


def make_config(frame_stride: int = 1, max_frames: int = 0) -> FacesConfig:
    return FacesConfig(name=config_name(frame_stride, max_frames), frame_stride=frame_stride,
                       max_frames=max_frames,
                       description=f"every {frame_stride}. frame, "
                                   f"{max_frames or 'all'} frames per video")


def config_for(frame_stride: int, max_frames: int) -> "FacesConfig | str":
    """What `StylemaskFaces(config=...)` takes: a predefined config by name, else a new one."""
    name = config_name(frame_stride, max_frames)
    predefined = [c.name for c in StylemaskFaces.BUILDER_CONFIGS]
    return name if name in predefined else make_config(frame_stride, max_frames)


def features() -> tfds.features.FeaturesDict:
    tensor = tfds.features.Tensor
    return tfds.features.FeaturesDict({
        "image": tensor(shape=(crops.CROP_SIZE, crops.CROP_SIZE, 3), dtype=np.uint8,
                        encoding=tfds.features.Encoding.BYTES),
        "landmarks": tensor(shape=(68, 2), dtype=np.float32),
        "landmarks_frame": tensor(shape=(68, 2), dtype=np.float32),
        "identity": tfds.features.Text(),
        "identity_id": tfds.features.Scalar(dtype=np.int64),
        "video": tfds.features.Text(),
        "video_id": tfds.features.Scalar(dtype=np.int64),
        "frame": tfds.features.Scalar(dtype=np.int64),
        "path": tfds.features.Text(),
    })


@dataclasses.dataclass(frozen=True)
class PlannedItem:
    """One item of the dataset, in build order: its cache entry and its ids.

    first_key: the key (= record index) of its first face; num_faces: its faces."""

    cache_key: str
    first_key: int
    num_faces: int
    identity: str
    identity_id: int
    video: str
    video_id: int


@dataclasses.dataclass(frozen=True)
class ShardExamples:
    """The (key, example) pairs of one shard: its items' faces, read from the item cache."""

    cache_folder: str
    items: tuple[PlannedItem, ...]

    def __call__(self):
        cache = ItemCache(self.cache_folder)
        for item in self.items:
            faces = cache.get(item.cache_key)
            for j in range(len(faces)):
                yield item.first_key + j, {
                    "image": faces.images[j], "landmarks": faces.landmarks[j],
                    "landmarks_frame": faces.landmarks_frame[j], "identity": item.identity,
                    "identity_id": item.identity_id, "video": item.video,
                    "video_id": item.video_id, "frame": int(faces.frames[j]),
                    "path": str(faces.paths[j])}


def plan_shards(items: list[PlannedItem], cache_folder: str,
                shard_faces: int = SHARD_FACES) -> list[ShardExamples]:
    """Runs of whole items (in order) of about `shard_faces` faces each; items without a face
    are left out."""
    shards, current, count = [], [], 0
    for item in items:
        if not item.num_faces:
            continue
        current.append(item)
        count += item.num_faces
        if count >= shard_faces:
            shards.append(ShardExamples(cache_folder, tuple(current)))
            current, count = [], 0
    if current:
        shards.append(ShardExamples(cache_folder, tuple(current)))
    return shards


class SortedExampleWriter(writer_lib.ExampleWriter):
    """Writes each tf.train.Example with its features in name order.

    TFDS serialises the features map in the order of protobuf's hash table, which changes from
    one process to the next; sorted, a rebuild (or a build resumed in a new process) writes the
    same bytes."""

    def write(self, path, examples):
        return super().write(path, ((key, tf_example_pb2.Example.FromString(record)
                                     .SerializeToString(deterministic=True))
                                    for key, record in examples))


class StylemaskFaces(tfds.core.ShardBasedBuilder):
    """Aligned real faces from a folder of photos or of videos grouped by identity."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}
    BUILDER_CONFIGS = [make_config()]

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        """None: there is no checksums file next to the code (nothing is downloaded).

        TFDS 4.9.10 locates that file with a check that needs the `importlib_resources`
        backport on Python >= 3.9 (its dependency only for < 3.9) whenever the builder is
        defined inside a package, so the inherited property fails without it.
        """
        return None

    def __init__(self, *, shards: list[ShardExamples] | None = None,
                 metadata: dict | None = None, **kwargs):
        """shards / metadata: what to write (from `build.build_dataset`); None to read."""
        self._shards = shards
        self._metadata = metadata
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, description=self.__doc__, features=features(),
                                     disable_shuffling=True, metadata=tfds.core.MetadataDict())

    def _example_writer(self) -> writer_lib.ExampleWriter:
        return SortedExampleWriter(file_format=self.info.file_format)

    def _log_download_bytes(self) -> None:
        """Silent: TFDS would print "Downloading and preparing dataset Unknown size" on stdout;
        the build has its own progress bar and summary."""

    def _log_download_done(self) -> None:
        """Silent (see `_log_download_bytes`)."""

    def _shard_iterators_per_split(self, dl_manager):
        if self._shards is None:
            raise UserInputError("this builder writes a planned build only; use "
                                 "stylemask_jax.datasets.build_dataset")
        self.info.metadata.update(self._metadata or {})
        return {"train": self._shards}
