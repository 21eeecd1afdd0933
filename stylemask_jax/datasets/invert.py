"""W+ codes of every example of a face dataset, sharded over processes and devices.

    invert_dataset("data/", encoder, variables)     # on each process of a pod (or just one)
    codes = load_codes("data/")                     # float32 (N, n_styles, 512), record order

Process p of P inverts its contiguous block of examples (`shards.shard_bounds`) on its own
devices: the batch is split over a 1-D 'data' mesh of the local devices and the encoder's
weights are replicated, so no process waits for another. Each process writes one file:

    DATASET/codes/wplus-PPPPP-of-CCCCC.npy    float32 (stop - start, n_styles, 512)
    DATASET/codes/wplus-PPPPP-of-CCCCC.json   {"start", "stop", "num_examples", "fingerprint"}

(DATASET is the dataset folder, next to its array_record files.) A file appears only when its
block is complete (written under a temporary name, then renamed), and a re-run skips a block
whose file is already there. `load_codes` concatenates the blocks of one complete run.
"""

from __future__ import annotations

import glob
import json
import os

import jax
import numpy as np

from stylemask_jax.batching import iter_batches
from stylemask_jax.datasets.build import FaceDataset, load_dataset
from stylemask_jax.datasets.shards import shard_bounds
from stylemask_jax.errors import UserInputError
from stylemask_jax.images import from_uint8
from stylemask_jax.models.e4e import E4E_INPUT_SIZE
from stylemask_jax.sharding import data_mesh, data_sharding, replicated, round_to_mesh

CODES_DIR = "codes"


def _shard_name(process_index: int, process_count: int) -> str:
    return f"wplus-{process_index:05d}-of-{process_count:05d}"


def _header(dataset: FaceDataset, start: int, stop: int) -> dict:
    return {"start": start, "stop": stop, "num_examples": len(dataset),
            "fingerprint": dataset.metadata.get("fingerprint")}


def save_codes(dataset: FaceDataset, codes, process_index: int = 0,
               process_count: int = 1) -> str:
    """Writes one process's block of codes (the rows of its shard, in order); returns the path."""
    start, stop = shard_bounds(len(dataset), process_index, process_count)
    codes = np.asarray(codes, np.float32)
    if codes.shape[0] != stop - start:
        raise UserInputError(f"process {process_index} of {process_count}: {codes.shape[0]} "
                             f"codes for examples [{start}, {stop})")
    block = _Block(dataset, process_index, process_count, codes.shape[1:])
    block.array[:] = codes
    return block.commit()


class _Block:
    """A block's .npy written in place under a temporary name, renamed when complete."""

    def __init__(self, dataset, process_index, process_count, row_shape):
        self.start, self.stop = shard_bounds(len(dataset), process_index, process_count)
        folder = os.path.join(dataset.path, CODES_DIR)
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, _shard_name(process_index, process_count))
        self.header = _header(dataset, self.start, self.stop)
        self.array = np.lib.format.open_memmap(self.path + ".tmp.npy", mode="w+",
                                               dtype=np.float32,
                                               shape=(self.stop - self.start, *row_shape))

    def commit(self) -> str:
        self.array.flush()
        del self.array
        os.replace(self.path + ".tmp.npy", self.path + ".npy")
        with open(self.path + ".json.tmp", "w") as f:
            json.dump(self.header, f)
        os.replace(self.path + ".json.tmp", self.path + ".json")
        return self.path + ".npy"


def _finished(dataset: FaceDataset, process_index: int, process_count: int) -> str | None:
    start, stop = shard_bounds(len(dataset), process_index, process_count)
    path = os.path.join(dataset.path, CODES_DIR, _shard_name(process_index, process_count))
    try:
        with open(path + ".json") as f:
            header = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    ok = header == _header(dataset, start, stop) and os.path.isfile(path + ".npy")
    return path + ".npy" if ok else None


def invert_dataset(data_dir, encoder, variables, *, batch_size: int = 8, config: str | None = None,
                   process_index: int | None = None, process_count: int | None = None,
                   mesh=None, progress: bool = True) -> str:
    """Inverts this process's block of the dataset with e4e; returns its codes file.

    encoder, variables: `load_e4e(...)` (an `Encoder4Editing` and its variables).
    batch_size: faces per step, rounded up to a multiple of the local device count.
    process_index / process_count: default `jax.process_index()` / `jax.process_count()`.
    mesh: a 1-D 'data' mesh (default: this host's devices).
    """
    if batch_size < 1:
        raise UserInputError(f"batch size must be at least 1, got {batch_size}")
    dataset = data_dir if isinstance(data_dir, FaceDataset) else load_dataset(data_dir, config)
    p = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    done = _finished(dataset, p, count)
    if done is not None:
        return done
    image_size = dataset[0]["image"].shape[0] if len(dataset) else E4E_INPUT_SIZE
    if image_size != E4E_INPUT_SIZE:
        raise UserInputError(f"{dataset.path}: {image_size}px crops; e4e takes {E4E_INPUT_SIZE}")
    mesh = mesh or data_mesh(local=True)
    batch = round_to_mesh(batch_size, mesh)
    encode = jax.jit(encoder.apply, in_shardings=(replicated(mesh), data_sharding(mesh)),
                     out_shardings=data_sharding(mesh))
    placed = jax.device_put(variables, replicated(mesh))
    start, stop = shard_bounds(len(dataset), p, count)

    def load(indices):
        return [from_uint8(np.stack([ex["image"] for ex in dataset.examples(indices)]))]

    block = None
    for offset, codes in iter_batches(lambda images: encode(placed, images),
                                      [np.arange(start, stop)], batch, load=load,
                                      desc="invert" if progress else None, unit="face"):
        if block is None:
            block = _Block(dataset, p, count, codes.shape[1:])
        block.array[offset: offset + len(codes)] = codes
    if block is None:                       # an empty block (more processes than examples)
        block = _Block(dataset, p, count, (encoder.n_styles, 512))
    return block.commit()


def load_codes(data_dir, config: str | None = None) -> np.ndarray:
    """float32 (N, n_styles, 512): the codes of every example, from one complete run."""
    dataset = data_dir if isinstance(data_dir, FaceDataset) else load_dataset(data_dir, config)
    runs: dict[int, list[tuple[int, int, str]]] = {}
    for header_path in sorted(glob.glob(os.path.join(dataset.path, CODES_DIR, "wplus-*.json"))):
        with open(header_path) as f:
            header = json.load(f)
        count = int(os.path.basename(header_path)[len("wplus-00000-of-"):-len(".json")])
        if (header.get("num_examples") == len(dataset)
                and header.get("fingerprint") == dataset.metadata.get("fingerprint")):
            runs.setdefault(count, []).append((header["start"], header["stop"],
                                               header_path[:-len(".json")] + ".npy"))
    for count, blocks in sorted(runs.items()):
        blocks.sort()
        if len(blocks) == count and [b[0] for b in blocks] == [0] + [b[1] for b in blocks[:-1]] \
                and blocks[-1][1] == len(dataset):
            return np.concatenate([np.load(path, mmap_mode="r") for _, _, path in blocks])
    have = {count: len(blocks) for count, blocks in runs.items()}
    raise UserInputError(f"{dataset.path}: no complete set of W+ codes (blocks found per "
                         f"process count: {have or 'none'}); invert the dataset on every process "
                         "first (`stylemask invert`)")
