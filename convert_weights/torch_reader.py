"""A restricted, torch-free reader of `torch.save` files.

Reads the zip container (torch >= 1.6) and the legacy container (a sequence of pickles followed
by raw storage bytes) into nested dicts/lists of numpy arrays. Pickled code is never executed:
the unpickler only resolves the globals in an allow-list (tensor and storage rebuilders,
OrderedDict, argparse.Namespace, numpy array reconstruction, ...). Any other global, such as
`os.system` or `builtins.eval`, raises `UnsafePickleError` naming it before anything runs.

Public entry points:
  load_torch_file(path)                 -> object tree with numpy arrays for tensors
  restricted_unpickle(file, ...)        -> the same machinery for plain pickles (FLAME, .npy)
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO, Callable

import numpy as np

from stylemask_jax.errors import CheckpointError  # also importable from here: the same class

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class UnsafePickleError(CheckpointError):
    """The pickle references a global that is not on the allow-list."""


# ---------------------------------------------------------------------------------------------
# Storages and tensors
# ---------------------------------------------------------------------------------------------

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    """Stand-in for `torch.FloatStorage` and friends: only carries the element dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    def __repr__(self):
        return f"torch.{self.name}"


class _Storage:
    """A flat storage whose bytes may arrive after the pickle that references it (legacy)."""

    def __init__(self, storage_type: _StorageType, numel: int):
        self.storage_type = storage_type
        self.numel = numel
        self.array: np.ndarray | None = None

    def set_bytes(self, raw: bytes | memoryview, source: str):
        dtype = self.storage_type.dtype
        if dtype == "bfloat16":
            words = np.frombuffer(raw, dtype="<u2")
            array = (words.astype(np.uint32) << 16).view(np.float32)
        else:
            array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
        if array.size < self.numel:
            raise CheckpointError(
                f"{source}: storage holds {array.size} elements, expected {self.numel} (truncated?)")
        self.array = array[: self.numel]


class _StorageView:
    """A legacy-format view into a root storage (view_metadata in the persistent id)."""

    def __init__(self, root: _Storage, offset: int, numel: int):
        self.root, self.offset, self.numel = root, offset, numel

    @property
    def array(self):
        if self.root.array is None:
            return None
        return self.root.array[self.offset: self.offset + self.numel]


class _LazyTensor:
    """`_rebuild_tensor_v2` result; materialised once every storage has its bytes."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

    def materialize(self, source: str) -> np.ndarray:
        flat = self.storage.array
        if flat is None:
            raise CheckpointError(f"{source}: a tensor references storage data that is missing")
        if not self.size:
            if self.offset >= flat.size:
                raise CheckpointError(f"{source}: tensor offset {self.offset} outside its storage")
            return np.array(flat[self.offset])
        if any(s == 0 for s in self.size):
            return np.zeros(self.size, dtype=flat.dtype)
        last = self.offset + sum((n - 1) * st for n, st in zip(self.size, self.stride))
        if self.offset < 0 or last >= flat.size or min(self.stride) < 0:
            raise CheckpointError(
                f"{source}: tensor of size {self.size}, stride {self.stride}, offset "
                f"{self.offset} does not fit its storage of {flat.size} elements")
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size,
            strides=tuple(st * flat.itemsize for st in self.stride), writeable=False)
        return view.copy()  # contiguous, writable, independent of the file buffer


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    return data


# ---------------------------------------------------------------------------------------------
# numpy reconstruction (old pickles reference numpy.core.*, new ones numpy._core.*)
# ---------------------------------------------------------------------------------------------

def _np_reconstruct(cls, shape, dtype_code):
    return np.ndarray.__new__(np.ndarray, shape, dtype_code)


def _np_scalar(dtype, raw=None):
    if raw is None:  # object scalars are not supported: they would need arbitrary code
        raise CheckpointError("numpy object scalars are not supported")
    if isinstance(raw, str):
        raw = raw.encode("latin1")
    return np.frombuffer(raw, dtype=dtype)[0]


def _codecs_encode(text, encoding="latin1"):
    return text.encode(encoding)


_NUMPY_GLOBALS = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _NUMPY_GLOBALS[(_mod, "_reconstruct")] = _np_reconstruct
    _NUMPY_GLOBALS[(_mod, "scalar")] = _np_scalar
_NUMPY_GLOBALS.update({
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "float64"): np.float64,
    ("numpy", "float32"): np.float32,
    ("numpy", "int64"): np.int64,
    ("numpy", "int32"): np.int32,
    ("numpy.dtypes", "Float64DType"): type(np.dtype("f8")),
    ("numpy.dtypes", "Float32DType"): type(np.dtype("f4")),
    ("numpy.dtypes", "Int64DType"): type(np.dtype("i8")),
    ("numpy.dtypes", "Int32DType"): type(np.dtype("i4")),
    ("_codecs", "encode"): _codecs_encode,
})

_BASE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("argparse", "Namespace"): argparse.Namespace,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    **_NUMPY_GLOBALS,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str, allowed: dict, persistent_load=None, encoding="ASCII"):
        super().__init__(file, encoding=encoding)
        self._source, self._allowed, self._persistent = source, allowed, persistent_load

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refusing to load global '{module}.{name}' (not on the allow-list "
                "of tensor/array reconstructors; nothing was executed)") from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise CheckpointError(f"{self._source}: unexpected persistent id {pid!r}")
        return self._persistent(pid)


def restricted_unpickle(file: BinaryIO, source: str, extra_globals: dict | None = None,
                        persistent_load: Callable | None = None, encoding: str = "ASCII"):
    """Unpickles `file` resolving only allow-listed globals (plus `extra_globals`).

    Tensors come back as numpy arrays. `extra_globals` maps (module, name) to a safe stand-in,
    e.g. a class that accepts a chumpy object's state. Raises UnsafePickleError for any other
    global and CheckpointError for a corrupt or truncated stream.
    """
    allowed = dict(_BASE_GLOBALS)
    allowed[("torch.storage", "_load_from_bytes")] = (
        lambda blob: _load_legacy(io.BytesIO(blob), f"{source} (embedded storage)", allowed))
    allowed.update(extra_globals or {})
    obj = _unpickle(file, source, allowed, persistent_load, encoding)
    return _materialize(obj, source)


def _unpickle(file, source, allowed, persistent_load=None, encoding="ASCII"):
    try:
        return _RestrictedUnpickler(file, source, allowed, persistent_load, encoding).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, TypeError, KeyError,
            IndexError, AttributeError, UnicodeDecodeError, MemoryError) as err:
        raise CheckpointError(f"{source}: corrupt or truncated pickle data ({type(err).__name__}: "
                              f"{err})") from None


def _materialize(obj, source):
    if isinstance(obj, _LazyTensor):
        return obj.materialize(source)
    if isinstance(obj, (_Storage, _StorageView)):
        return obj.array
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _materialize(v, source)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialize(v, source) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialize(v, source) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v, source) for v in obj)
    if isinstance(obj, np.ndarray) and obj.dtype == object:
        out = np.empty(obj.shape, dtype=object)
        for index, item in np.ndenumerate(obj):
            out[index] = _materialize(item, source)
        return out
    if isinstance(obj, argparse.Namespace):
        return argparse.Namespace(**_materialize(vars(obj), source))
    return obj


# ---------------------------------------------------------------------------------------------
# Containers
# ---------------------------------------------------------------------------------------------

def _storage_pid(pid, source):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
        raise CheckpointError(f"{source}: unexpected persistent id {pid!r}")
    storage_type = pid[1]
    if not isinstance(storage_type, _StorageType):
        raise CheckpointError(f"{source}: unknown storage type {storage_type!r}")
    return storage_type, str(pid[2]), int(pid[4]), (pid[5] if len(pid) > 5 else None)


def _load_zip(path: str, source: str):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"{source}: not a readable zip container ({err})") from None
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(f"{source}: expected one data.pkl in the zip, found {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in names and archive.read(byteorder).strip() not in (b"little", b""):
            raise CheckpointError(f"{source}: big-endian checkpoints are not supported")
        storages: dict[str, _Storage] = {}

        def persistent_load(pid):
            storage_type, key, numel, _ = _storage_pid(pid, source)
            if key not in storages:
                storage = _Storage(storage_type, numel)
                member = f"{prefix}data/{key}"
                try:
                    storage.set_bytes(archive.read(member), f"{source}:{member}")
                except KeyError:
                    raise CheckpointError(f"{source}: storage record '{member}' is missing") from None
                except (zipfile.BadZipFile, OSError, EOFError, zipfile.LargeZipFile) as err:
                    raise CheckpointError(f"{source}: cannot read '{member}' ({err})") from None
                storages[key] = storage
            return storages[key]

        try:
            data = archive.read(pickles[0])
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise CheckpointError(f"{source}: cannot read data.pkl ({err})") from None
        return _unpickle(io.BytesIO(data), source, _allowed_for_file(), persistent_load)


def _allowed_for_file():
    return dict(_BASE_GLOBALS)


def _load_legacy(file: BinaryIO, source: str, allowed: dict):
    """The pre-1.6 format: magic, protocol, sys_info, object, storage keys, raw storages."""
    magic = _unpickle(file, source, {})
    if magic != LEGACY_MAGIC:
        raise CheckpointError(f"{source}: not a torch checkpoint (bad magic number)")
    protocol = _unpickle(file, source, {})
    if protocol != LEGACY_PROTOCOL:
        raise CheckpointError(f"{source}: unsupported legacy protocol version {protocol!r}")
    sys_info = _unpickle(file, source, {})
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise CheckpointError(f"{source}: big-endian checkpoints are not supported")
    roots: dict[str, _Storage] = {}

    def persistent_load(pid):
        storage_type, key, numel, view = _storage_pid(pid, source)
        if key not in roots:
            roots[key] = _Storage(storage_type, numel)
        if view is not None:
            _, view_offset, view_numel = view
            return _StorageView(roots[key], int(view_offset), int(view_numel))
        return roots[key]

    obj = _unpickle(file, source, allowed, persistent_load)
    keys = _unpickle(file, source, {})
    if not isinstance(keys, list):
        raise CheckpointError(f"{source}: malformed storage key list")
    for key in keys:
        header = file.read(8)
        if len(header) != 8:
            raise CheckpointError(f"{source}: file ends before the data of storage '{key}' (truncated)")
        (numel,) = struct.unpack("<q", header)
        storage = roots.get(str(key))
        if storage is None:
            raise CheckpointError(f"{source}: data for unknown storage '{key}'")
        itemsize = 2 if storage.storage_type.dtype == "bfloat16" else np.dtype(storage.storage_type.dtype).itemsize
        raw_bytes = file.read(numel * itemsize)
        if len(raw_bytes) != numel * itemsize:
            raise CheckpointError(f"{source}: file ends inside the data of storage '{key}' (truncated)")
        storage.numel = numel
        storage.set_bytes(raw_bytes, f"{source}: storage '{key}'")
    missing = [k for k, s in roots.items() if s.array is None]
    if missing:
        raise CheckpointError(f"{source}: storages {missing} are referenced but have no data")
    return obj


def load_torch_file(path: str | os.PathLike) -> Any:
    """Reads a `torch.save` file (zip or legacy) without torch and without executing code.

    Returns the saved object with every tensor replaced by a contiguous numpy array (dtype as
    stored; bfloat16 is widened to float32). Raises CheckpointError naming `path` when the file is
    missing, corrupt or truncated, and UnsafePickleError when it references a global outside the
    allow-list.
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise CheckpointError(f"{source}: no such file")
    if os.path.getsize(source) == 0:
        raise CheckpointError(f"{source}: file is empty")
    with open(source, "rb") as file:
        is_zip = file.read(4) == b"PK\x03\x04"
    if is_zip:
        obj = _load_zip(source, source)
    else:
        with open(source, "rb") as file:
            obj = _load_legacy(file, source, _allowed_for_file())
    return _materialize(obj, source)
