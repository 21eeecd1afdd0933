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

Examples are stored in build order (sorted identities, videos, frames; TFDS shuffling is off),
so record i of the data source is the i-th face found. The source folder is the builder's
manual_dir; `frame_stride` and `max_frames` are the config (its name, e.g. `stride1_maxall`).
The build's report (source fingerprint, counts, faces not found) is the dataset's metadata.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stylemask_jax.datasets import crops, sources
from stylemask_jax.errors import UserInputError
from stylemask_jax.progress import progress_bar

try:  # the [datasets] extra, imported here alone: every dataset module goes through this one
    import array_record  # noqa: F401  (the file format's reader and writer)
    import tensorflow_datasets as tfds
except ImportError as err:
    raise UserInputError(f"datasets need tensorflow-datasets and array_record ({err}); "
                         'install them with pip install -e ".[datasets]"') from None

DATASET_NAME = "stylemask_faces"
MAX_LISTED_SKIPS = 1000         # no-face frames named in the metadata (all are counted)


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


class StylemaskFaces(tfds.core.GeneratorBasedBuilder):
    """Aligned real faces from a folder of photos or of videos grouped by identity."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}
    BUILDER_CONFIGS = [make_config()]
    MANUAL_DOWNLOAD_INSTRUCTIONS = ("The source folder: SRC/PHOTO.png, SRC/ID/PHOTO.png, "
                                    "SRC/ID/VIDEO.mp4 or SRC/ID/VIDEO/FRAME.png.")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        """None: there is no checksums file next to the code (nothing is downloaded).

        TFDS 4.9.10 locates that file with a check that needs the `importlib_resources`
        backport on Python >= 3.9 (its dependency only for < 3.9) whenever the builder is
        defined inside a package, so the inherited property fails without it.
        """
        return None

    def __init__(self, *, aligner: crops.Aligner | None = None,
                 max_detect_side: int | None = None, read_photo: crops.PhotoReader | None = None,
                 read_video: crops.VideoReader | None = None, progress: bool = True, **kwargs):
        self._aligner = aligner           # None: dlib + the FFHQ crop, made when first needed
        self._max_detect_side = max_detect_side
        self._read_photo = read_photo or crops.read_photo_default
        self._read_video = read_video or crops.read_video_default
        self._progress = progress
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(builder=self, description=self.__doc__, features=features(),
                                     disable_shuffling=True, metadata=tfds.core.MetadataDict())

    def _split_generators(self, dl_manager):
        source = sources.scan_source(dl_manager.manual_dir)
        return {"train": self._generate_examples(source)}

    def _generate_examples(self, source: sources.Source):
        config = self.builder_config
        align = self._aligner or crops.default_aligner(self._max_detect_side)
        identity_ids = {name: i for i, name in enumerate(source.identities)}
        report = {"source": str(source.root), "fingerprint": sources.fingerprint(source),
                  "num_source_files": len(sources.file_list(source)),
                  "frame_stride": config.frame_stride, "max_frames": config.max_frames,
                  "aligner": ("dlib + FFHQ crop, max_detect_side "
                              f"{self._max_detect_side}" if self._aligner is None
                              else getattr(align, "__name__", type(align).__name__)),
                  "num_items": len(source.items), "num_frames": 0, "num_faces": 0,
                  "num_no_face": 0, "no_face": [], "ignored_files": list(source.ignored)}
        bar = progress_bar(source.items, desc="faces", unit="file", disable=not self._progress)
        for video_id, item in enumerate(bar):
            for frame_index, rel, frame in crops.item_frames(
                    source.root, item, config.frame_stride, config.max_frames,
                    self._read_photo, self._read_video):
                report["num_frames"] += 1
                face = align(frame)
                if face is None:
                    report["num_no_face"] += 1
                    if len(report["no_face"]) < MAX_LISTED_SKIPS:
                        report["no_face"].append(f"{rel}#{frame_index}" if item.kind == "video"
                                                 else rel)
                    continue
                yield report["num_faces"], {
                    "image": face.image, "landmarks": face.landmarks,
                    "landmarks_frame": face.landmarks_frame, "identity": item.identity,
                    "identity_id": identity_ids[item.identity], "video": item.video,
                    "video_id": video_id, "frame": frame_index, "path": rel}
                report["num_faces"] += 1
            bar.set_postfix(faces=report["num_faces"], no_face=report["num_no_face"])
        bar.close()
        if report["num_faces"] == 0:
            raise UserInputError(f"{source.root}: no face found in any of the "
                                 f"{report['num_frames']} frames read")
        self.info.metadata.update(report)
