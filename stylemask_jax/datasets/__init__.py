"""Real-face datasets (TFDS, array_record, no TensorFlow needed): build, read, shard, pair,
invert and evaluate.

    from stylemask_jax.datasets import build_dataset, load_dataset, make_pairs, shard_indices
    report = build_dataset("faces/", "data/")          # `stylemask dataset build`
    dataset = load_dataset("data/")
    invert_dataset(dataset, encoder, e4e_vars)         # `stylemask invert --dataset`, per process
    evaluate_dataset(dataset, make_pairs(dataset, "self", 1000, 0), nets, frozen, params, config)

The TFDS builder itself is `stylemask_jax.datasets.builder.StylemaskFaces`; it imports
tensorflow_datasets, which this package only does inside the functions that need it.
"""

from stylemask_jax.datasets.build import (BuildReport, FaceDataset, build_dataset,
                                          load_dataset)
from stylemask_jax.datasets.crops import FaceCrop, crop_landmarks
from stylemask_jax.datasets.evaluate import evaluate_dataset
from stylemask_jax.datasets.invert import (DatasetCodes, invert_dataset, load_codes,
                                           save_codes)
from stylemask_jax.datasets.pairs import make_pairs, read_pairs, write_pairs
from stylemask_jax.datasets.shards import shard_bounds, shard_indices

__all__ = ["BuildReport", "DatasetCodes", "FaceCrop", "FaceDataset", "build_dataset",
           "crop_landmarks", "evaluate_dataset", "invert_dataset",
           "load_codes", "load_dataset", "make_pairs", "read_pairs",
           "save_codes", "shard_bounds", "shard_indices", "write_pairs"]
