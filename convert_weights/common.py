"""What every converter shares: strict key/shape bookkeeping over a flat state dict."""

from __future__ import annotations

from typing import Iterable

import jax
import numpy as np
from einops import rearrange

from convert_weights.torch_reader import CheckpointError


class ConversionError(CheckpointError):
    """A checkpoint does not fit the network: a missing, unexpected or misshapen key."""


class StateDict:
    """A flat `{key: array}` state dict that is consumed key by key.

    `take(key, shape)` returns the array and checks its shape (None in `shape` matches any
    size); `finish()` raises for keys never taken, so an unknown tensor cannot slip through.
    Every error names the file and the key.
    """

    def __init__(self, arrays: dict, source: str, prefix: str = ""):
        if not isinstance(arrays, dict):
            raise ConversionError(f"{source}: expected a state dict, found {type(arrays).__name__}")
        self.source, self.prefix = source, prefix
        self._arrays = {}
        for key, value in arrays.items():
            if not isinstance(value, np.ndarray):
                raise ConversionError(f"{source}: entry '{prefix}{key}' is a {type(value).__name__}, "
                                      "expected a tensor")
            self._arrays[str(key)] = value
        self._taken: set[str] = set()

    def keys(self) -> list[str]:
        return list(self._arrays)

    def __contains__(self, key: str) -> bool:
        return key in self._arrays

    def shape(self, key: str) -> tuple[int, ...]:
        return self._get(key).shape

    def _get(self, key: str) -> np.ndarray:
        try:
            return self._arrays[key]
        except KeyError:
            raise ConversionError(f"{self.source}: missing key '{self.prefix}{key}'") from None

    def take(self, key: str, shape: Iterable[int | None] | None = None,
             dtype=np.float32) -> np.ndarray:
        value = self._get(key)
        if shape is not None:
            shape = tuple(shape)
            if len(shape) != value.ndim or any(e is not None and e != a
                                                for e, a in zip(shape, value.shape)):
                want = tuple("*" if e is None else e for e in shape)
                raise ConversionError(f"{self.source}: key '{self.prefix}{key}' has shape "
                                      f"{tuple(value.shape)}, expected {want}")
        if dtype is not None:
            if not np.issubdtype(value.dtype, np.floating) and np.issubdtype(np.dtype(dtype), np.floating):
                raise ConversionError(f"{self.source}: key '{self.prefix}{key}' has dtype "
                                      f"{value.dtype}, expected a floating tensor")
            value = value.astype(dtype)
        self._taken.add(key)
        return value

    def skip(self, key: str) -> None:
        """Marks a key as known but unused (e.g. BatchNorm's num_batches_tracked)."""
        self._get(key)
        self._taken.add(key)

    def finish(self) -> None:
        unused = [k for k in self._arrays if k not in self._taken]
        if unused:
            shown = ", ".join(f"'{self.prefix}{k}'" for k in unused[:5])
            more = f" and {len(unused) - 5} more" if len(unused) > 5 else ""
            raise ConversionError(f"{self.source}: unexpected key(s) {shown}{more}")


def torch_linear(sd: StateDict, prefix: str, in_features: int | None = None,
                 out_features: int | None = None, bias: bool = True) -> dict:
    """A torch Linear `(out, in)` weight -> a Flax Dense `{'kernel': (in, out), 'bias'}`."""
    out = {"kernel": sd.take(f"{prefix}.weight", (out_features, in_features)).T.copy()}
    if bias:
        out["bias"] = sd.take(f"{prefix}.bias", (out["kernel"].shape[1],))
    return out


def torch_conv(sd: StateDict, key: str, out_ch: int | None = None, in_ch: int | None = None,
               k: int | None = None) -> np.ndarray:
    """A torch conv weight OIHW -> HWIO."""
    return np.ascontiguousarray(rearrange(sd.take(key, (out_ch, in_ch, k, k)), "o i h w -> h w i o"))


def torch_batchnorm(sd: StateDict, prefix: str, channels: int | None = None) -> tuple[dict, dict]:
    """A torch BatchNorm2d -> (params {'scale','bias'}, batch_stats {'mean','var'})."""
    params = {"scale": sd.take(f"{prefix}.weight", (channels,))}
    channels = params["scale"].shape[0]
    params["bias"] = sd.take(f"{prefix}.bias", (channels,))
    stats = {"mean": sd.take(f"{prefix}.running_mean", (channels,)),
             "var": sd.take(f"{prefix}.running_var", (channels,))}
    if f"{prefix}.num_batches_tracked" in sd:
        sd.skip(f"{prefix}.num_batches_tracked")
    return params, stats


def count_params(tree) -> int:
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(tree)))
