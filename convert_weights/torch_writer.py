"""Writes `torch.save`-compatible zip files without torch (for exports to the official layout).

Supports nested dicts (str keys; OrderedDict for state dicts), lists, tuples, str, int, float,
bool, None and numpy arrays (float32/float64/float16/int64/int32/uint8/bool), which become
contiguous CPU tensors. torch reads the result with its own loader (also in weights_only mode).
"""

from __future__ import annotations

import collections
import io
import os
import struct
import zipfile

import numpy as np

from stylemask_jax.outputs import atomic_file

_STORAGE = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
            np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage",
            np.dtype(np.int32): "IntStorage", np.dtype(np.uint8): "ByteStorage",
            np.dtype(np.bool_): "BoolStorage"}


class _Emitter:
    """A minimal protocol-2 pickle writer for the object kinds above."""

    def __init__(self):
        self.out = io.BytesIO()
        self.storages: list[np.ndarray] = []
        self.out.write(b"\x80\x02")  # PROTO 2

    def _global(self, module: str, name: str):
        self.out.write(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def _str(self, text: str):
        data = text.encode("utf-8")
        self.out.write(b"X" + struct.pack("<I", len(data)) + data)

    def _int(self, value: int):
        if 0 <= value < 256:
            self.out.write(b"K" + bytes([value]))
        elif -(2 ** 31) <= value < 2 ** 31:
            self.out.write(b"J" + struct.pack("<i", value))
        else:
            data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            self.out.write(b"\x8a" + bytes([len(data)]) + data)

    def _tuple(self, items):
        self.out.write(b"(")
        for item in items:
            self.emit(item)
        self.out.write(b"t")

    def _tensor(self, array: np.ndarray):
        array = np.ascontiguousarray(array)
        if array.dtype not in _STORAGE:
            raise TypeError(f"cannot write arrays of dtype {array.dtype}")
        key = str(len(self.storages))
        self.storages.append(array)
        self._global("torch._utils", "_rebuild_tensor_v2")
        self.out.write(b"(")  # MARK of the argument tuple
        self.out.write(b"(")  # persistent id ('storage', type, key, 'cpu', numel)
        self._str("storage")
        self._global("torch", _STORAGE[array.dtype])
        self._str(key)
        self._str("cpu")
        self._int(int(array.size))
        self.out.write(b"tQ")  # TUPLE, BINPERSID
        self._int(0)
        self._tuple(array.shape)
        strides = [int(s // array.itemsize) for s in array.strides] if array.size else [1] * array.ndim
        self._tuple(strides)
        self.out.write(b"\x89")  # False (requires_grad)
        self._global("collections", "OrderedDict")
        self.out.write(b")R")  # OrderedDict() for backward hooks
        self.out.write(b"tR")  # TUPLE, REDUCE

    def emit(self, obj):
        if obj is None:
            self.out.write(b"N")
        elif isinstance(obj, bool):
            self.out.write(b"\x88" if obj else b"\x89")
        elif isinstance(obj, (int, np.integer)):
            self._int(int(obj))
        elif isinstance(obj, (float, np.floating)):
            self.out.write(b"G" + struct.pack(">d", float(obj)))
        elif isinstance(obj, str):
            self._str(obj)
        elif isinstance(obj, np.ndarray):
            self._tensor(obj)
        elif isinstance(obj, dict):
            if isinstance(obj, collections.OrderedDict):
                self._global("collections", "OrderedDict")
                self.out.write(b")R")
            else:
                self.out.write(b"}")
            if obj:
                self.out.write(b"(")
                for key, value in obj.items():
                    if not isinstance(key, str):
                        raise TypeError(f"dict keys must be str, got {key!r}")
                    self._str(key)
                    self.emit(value)
                self.out.write(b"u")
        elif isinstance(obj, tuple):
            self._tuple(obj)
        elif isinstance(obj, list):
            self.out.write(b"](")
            for item in obj:
                self.emit(item)
            self.out.write(b"e")
        else:
            raise TypeError(f"cannot write objects of type {type(obj).__name__}")


def save_torch_file(obj, path: str | os.PathLike) -> None:
    """Writes `obj` as a torch zip checkpoint at `path` (atomically, via `outputs.atomic_file`)."""
    with atomic_file(os.fspath(path)) as tmp:
        write_torch_file(obj, tmp, os.fspath(path))


def write_torch_file(obj, path: str | os.PathLike, name: str | None = None) -> None:
    """Writes `obj` as a torch zip checkpoint at `path` (not atomic by itself); the archive's
    root folder is named after `name` (default `path`), as torch.save names it."""
    emitter = _Emitter()
    emitter.emit(obj)
    emitter.out.write(b".")
    root = os.path.splitext(os.path.basename(os.fspath(name or path)))[0] or "archive"
    with zipfile.ZipFile(os.fspath(path), "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{root}/data.pkl", emitter.out.getvalue())
        archive.writestr(f"{root}/byteorder", "little")
        for key, array in enumerate(emitter.storages):
            archive.writestr(f"{root}/data/{key}", array.astype(array.dtype.newbyteorder("<")).tobytes())
        archive.writestr(f"{root}/version", "3\n")
