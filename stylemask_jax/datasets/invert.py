"""W+ codes of every example of a face dataset, sharded over processes and devices.

    invert_dataset("data/", encoder, variables)     # on each process of a pod (or just one)
    codes = load_codes("data/")                     # float32 (N, n_styles, 512), record order
    codes[pairs[:, 0]]                              # reads those rows only

Process p of P inverts its contiguous block of examples (`shards.shard_bounds`) on its own
devices: the batch is split over a 1-D 'data' mesh of the local devices and the encoder's
weights are replicated, so no process waits for another. Each process writes one file:

    DATASET/codes/wplus-PPPPP-of-CCCCC.npy    float32 (stop - start, n_styles, 512)
    DATASET/codes/wplus-PPPPP-of-CCCCC.json   {"start", "stop", "num_examples", "fingerprint"}

(DATASET is the dataset folder, next to its array_record files.) A file appears only when its
block is complete (written under a temporary name, then renamed), and a re-run skips a block
whose file is already there. A block in progress resumes too: its rows go into
wplus-PPPPP-of-CCCCC.tmp.npy, and every `checkpoint_seconds` the rows written so far are synced
to disk and counted in wplus-PPPPP-of-CCCCC.progress.json (the header, the block's shape and
"rows"); a re-run with the same header and shape continues after those rows, anything else
starts the block over. `load_codes` reads the blocks of one complete run row by row, on demand.

The .npy files are read and written with positioned reads and writes, not memory maps: the
pages of a mapped file that the process touches count in its resident memory until unmapped,
so a mapped block would grow the process by the block's size (36 KiB an example).
"""

from __future__ import annotations

import glob
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax.batching import iter_batches
from stylemask_jax.compiling import jit
from stylemask_jax.datasets.build import FaceDataset, load_dataset
from stylemask_jax.datasets.shards import shard_bounds
from stylemask_jax.errors import UserInputError
from stylemask_jax.images import from_uint8
from stylemask_jax.models.e4e import E4E_INPUT_SIZE
from stylemask_jax.outputs import atomic_file
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
    block = _Block(dataset, process_index, process_count, codes.shape[1:], resume=False)
    block.write(0, codes)
    return block.commit()


def _npy_layout(path: str) -> tuple[tuple, np.dtype, bool, int]:
    """(shape, dtype, fortran_order, byte offset of the data) of a .npy file, from its header."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = read(f)
        return shape, dtype, fortran_order, f.tell()


def _float32_rows(path: str, shape: tuple) -> int | None:
    """The data offset of `path` if it is a complete C-order float32 .npy of `shape`, else None."""
    try:
        found, dtype, fortran_order, offset = _npy_layout(path)
        size = os.path.getsize(path)
    except (OSError, ValueError):
        return None
    ok = (tuple(found) == tuple(shape) and dtype == np.dtype("<f4") and not fortran_order
          and size >= offset + int(np.prod(shape)) * 4)
    return offset if ok else None


def _bytes(array: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array, writable where it is (no copy; empty arrays too)."""
    assert array.flags.c_contiguous
    return memoryview(array.reshape(-1).view(np.uint8))


def _pwrite_all(fd: int, data: memoryview, position: int) -> None:
    while data:
        written = os.pwrite(fd, data, position)
        data, position = data[written:], position + written


def _pread_into(fd: int, out: np.ndarray, position: int, path: str) -> None:
    """Fills the C-contiguous `out` with the bytes of `fd` from `position`."""
    view = _bytes(out)
    while view:
        read = os.preadv(fd, [view], position)
        if read == 0:
            raise UserInputError(f"{path}: the file ends early (truncated W+ codes); invert "
                                 "the dataset again")
        view, position = view[read:], position + read


def _write_json(path: str, value: dict) -> None:
    """Atomically (`outputs.atomic_file`), synced before the rename."""
    with atomic_file(path) as tmp, open(tmp, "w") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())


class _Block:
    """A block's .npy filled in place under a temporary name, renamed when complete.

    `done`: the rows already written by an earlier, killed run (0 for a new block); `write`
    puts rows in place, `checkpoint(rows)` makes the first `rows` survive a kill.
    """

    def __init__(self, dataset, process_index, process_count, row_shape, resume: bool = True):
        self.start, self.stop = shard_bounds(len(dataset), process_index, process_count)
        folder = os.path.join(dataset.path, CODES_DIR)
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, _shard_name(process_index, process_count))
        self.tmp, self.progress = self.path + ".tmp.npy", self.path + ".progress.json"
        self.header = _header(dataset, self.start, self.stop)
        self.shape = (self.stop - self.start, *map(int, row_shape))
        self.row_bytes = int(np.prod(self.shape[1:])) * 4
        self.state = {**self.header, "shape": list(self.shape)}
        self.done = self._resumable() if resume else None
        if self.done is None:              # a new block; the old progress goes first
            if os.path.exists(self.progress):
                os.remove(self.progress)
            with open(self.tmp, "wb") as f:
                np.lib.format.write_array_header_1_0(
                    f, {"descr": "<f4", "fortran_order": False, "shape": self.shape})
                self.offset = f.tell()
                f.truncate(self.offset + self.shape[0] * self.row_bytes)
            self.done = 0
        self.fd = os.open(self.tmp, os.O_RDWR)

    def _resumable(self) -> int | None:
        """The rows done by a killed run of this same block (header and shape), else None."""
        try:
            with open(self.progress) as f:
                saved = json.load(f)
        except (OSError, ValueError):
            return None
        rows = saved.pop("rows", None) if isinstance(saved, dict) else None
        if saved != self.state or not isinstance(rows, int) or not 0 <= rows <= self.shape[0]:
            return None
        self.offset = _float32_rows(self.tmp, self.shape)
        return None if self.offset is None else rows

    def write(self, row: int, codes) -> None:
        """Rows row .. row + len(codes) - 1 of the block."""
        codes = np.ascontiguousarray(codes, np.float32)
        _pwrite_all(self.fd, _bytes(codes), self.offset + row * self.row_bytes)

    def checkpoint(self, rows: int) -> None:
        """Syncs the file, then records that its first `rows` rows are written."""
        os.fsync(self.fd)
        _write_json(self.progress, {**self.state, "rows": rows})

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def commit(self) -> str:
        """Syncs and renames the complete block and writes its header; returns its path."""
        os.fsync(self.fd)
        self.close()
        os.replace(self.tmp, self.path + ".npy")
        _write_json(self.path + ".json", self.header)
        if os.path.exists(self.progress):
            os.remove(self.progress)
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
                   mesh=None, checkpoint_seconds: float = 30.0, progress: bool = True) -> str:
    """Inverts this process's block of the dataset with e4e; returns its codes file.

    encoder, variables: `load_e4e(...)` (an `Encoder4Editing` and its variables).
    batch_size: faces per step, rounded up to a multiple of the local device count.
    process_index / process_count: default `jax.process_index()` / `jax.process_count()`.
    mesh: a 1-D 'data' mesh (default: this host's devices).
    checkpoint_seconds: how often the rows done are recorded (after the first batch that ends
        at least this long after the last record; 0: after every batch); a killed run resumes
        from the last record.
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
    encode = jit(encoder.apply, in_shardings=(replicated(mesh), data_sharding(mesh)),
                 out_shardings=data_sharding(mesh))
    placed = jax.device_put(variables, replicated(mesh))
    face = jax.ShapeDtypeStruct((1, E4E_INPUT_SIZE, E4E_INPUT_SIZE, 3), jnp.float32)
    block = _Block(dataset, p, count, jax.eval_shape(encoder.apply, variables, face).shape[1:])

    def load(indices):
        return [from_uint8(np.stack([ex["image"] for ex in dataset.examples(indices)]))]

    try:
        resumed, saved_at = block.done, time.monotonic()
        for offset, codes in iter_batches(lambda images: encode(placed, images),
                                          [np.arange(block.start + resumed, block.stop)], batch,
                                          load=load, desc="invert" if progress else None,
                                          unit="face"):
            block.write(resumed + offset, codes)
            if time.monotonic() - saved_at >= checkpoint_seconds:
                block.checkpoint(resumed + offset + len(codes))
                saved_at = time.monotonic()
        return block.commit()
    finally:
        block.close()


class DatasetCodes:
    """The W+ codes of a dataset, read from its blocks on demand: float32 (N, n_styles, 512).

    codes[i] -> (n_styles, 512); codes[indices] (ints of any shape, or a slice) ->
    (*indices.shape, n_styles, 512), a new array: only those rows are read.
    np.asarray(codes) reads every row.
    """

    dtype = np.dtype(np.float32)
    ndim = 3

    def __init__(self, blocks: list[tuple[int, int, str, int]], shape: tuple):
        """blocks: (start, stop, .npy path, byte offset of its data), in order, covering
        0 .. shape[0] (empty blocks left out); shape: (N, n_styles, 512)."""
        self._blocks = blocks
        self._starts = np.array([b[0] for b in blocks], np.int64)
        self.shape = tuple(shape)
        self._row_bytes = int(np.prod(self.shape[1:])) * 4

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self._row_bytes

    def __repr__(self) -> str:
        return f"DatasetCodes(shape={self.shape}, blocks={len(self._blocks)})"

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            return self._gather(np.arange(*key.indices(len(self))))
        index = np.asarray(key) if not isinstance(key, tuple) else None
        if index is None or (index.dtype.kind not in "iu" and index.size):
            raise TypeError(f"W+ codes are indexed by example (an int, ints or a slice), got "
                            f"{key!r}")
        return self._gather(index.astype(np.int64))

    def _gather(self, index: np.ndarray) -> np.ndarray:
        n = len(self)
        flat = index.reshape(-1)
        if flat.size and (flat.min() < -n or flat.max() >= n):
            raise IndexError(f"example index out of range for {n} W+ codes")
        flat = np.where(flat < 0, flat + n, flat)
        out = np.empty((flat.size, *self.shape[1:]), np.float32)
        block_of = np.searchsorted(self._starts, flat, side="right") - 1
        for b in np.unique(block_of):
            start, _, path, offset = self._blocks[b]
            with open(path, "rb", buffering=0) as f:
                for k in np.flatnonzero(block_of == b):
                    _pread_into(f.fileno(), out[k], offset + (flat[k] - start) * self._row_bytes,
                                path)
        return out.reshape(*index.shape, *self.shape[1:])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if copy is False:
            raise ValueError("W+ codes are read from their files: an array of them is a copy")
        out = np.empty(self.shape, np.float32)
        for start, stop, path, offset in self._blocks:
            with open(path, "rb", buffering=0) as f:
                _pread_into(f.fileno(), out[start:stop], offset, path)
        return out if dtype is None else out.astype(dtype, copy=False)


def _open_blocks(blocks: list[tuple[int, int, str]]) -> DatasetCodes:
    """The view over one complete run's blocks (start, stop, .npy path), checked: float32,
    C order, of their rows, the same row shape, complete files."""
    opened, row_shape = [], None
    for start, stop, path in blocks:
        try:
            shape, dtype, fortran_order, offset = _npy_layout(path)
        except (OSError, ValueError) as e:
            raise UserInputError(f"{path}: not a readable .npy file of W+ codes ({e})") from None
        row_shape = tuple(shape[1:]) if row_shape is None else row_shape
        expected = (stop - start, *row_shape)
        if (tuple(shape) != expected or dtype != np.dtype("<f4") or fortran_order
                or os.path.getsize(path) < offset + int(np.prod(expected)) * 4):
            raise UserInputError(f"{path}: W+ codes {tuple(shape)} {dtype}"
                                 f"{' (Fortran order)' if fortran_order else ''}, "
                                 f"{os.path.getsize(path)} bytes; expected a complete C-order "
                                 f"float32 {expected}: invert the dataset again")
        if stop > start:
            opened.append((start, stop, path, offset))
    return DatasetCodes(opened, (blocks[-1][1], *row_shape))


def load_codes(data_dir, config: str | None = None) -> DatasetCodes:
    """float32 (N, n_styles, 512): the codes of every example, from one complete run, as a
    `DatasetCodes` view (rows are read when indexed; np.asarray reads them all)."""
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
            return _open_blocks(blocks)
    have = {count: len(blocks) for count, blocks in runs.items()}
    raise UserInputError(f"{dataset.path}: no complete set of W+ codes (blocks found per "
                         f"process count: {have or 'none'}); invert the dataset on every process "
                         "first (`stylemask invert`)")
