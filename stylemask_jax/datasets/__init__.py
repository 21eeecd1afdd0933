"""Real-face datasets (TFDS, array_record, no TensorFlow needed): build, read, shard, pair.

    from stylemask_jax.datasets import build_dataset, load_dataset, make_pairs, shard_indices

The TFDS builder itself is `stylemask_jax.datasets.builder.StylemaskFaces`; it imports
tensorflow_datasets, which this package only does inside the functions that need it.
"""

from stylemask_jax.datasets.build import (BuildReport, FaceDataset, build_dataset, build_summary,
                                          load_dataset)
from stylemask_jax.datasets.crops import FaceCrop, crop_landmarks
from stylemask_jax.datasets.pairs import make_pairs, read_pairs, write_pairs
from stylemask_jax.datasets.shards import shard_bounds, shard_indices

__all__ = ["BuildReport", "FaceCrop", "FaceDataset", "build_dataset", "build_summary", "crop_landmarks",
           "load_dataset", "make_pairs", "read_pairs", "shard_bounds", "shard_indices",
           "write_pairs"]
