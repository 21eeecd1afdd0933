"""The one batch runner: a jitted function over fixed-size batches of numpy inputs.

    for start, out in iter_batches(fn, [a, b], batch_size=8, desc="reenact"):
        ...                                  # out = fn(a[start:start+8], b[...]) as numpy, trimmed
    out = run_batches(fn, [a, b], batch_size=8)            # the same, concatenated

The last partial batch is padded (its last row repeated) to `batch_size`, so a jitted `fn` is
compiled once; padded rows are dropped from every output leaf. `load(*chunks)` (optional) turns
each batch of inputs (e.g. a list of file names) into arrays just before the call, so inputs
are read batch by batch. With `desc`, a tqdm progress bar counts the rows.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import jax
import numpy as np


def pad_batch(chunk: np.ndarray, size: int) -> np.ndarray:
    """(n, ...) -> (size, ...) by repeating the last row (n <= size)."""
    chunk = np.asarray(chunk)
    if len(chunk) == size:
        return chunk
    return np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])


def iter_batches(fn: Callable, inputs: Sequence, batch_size: int, *, load: Callable | None = None,
                 desc: str | None = None, unit: str = "item") -> Iterator[tuple[int, object]]:
    """Yields (start, fn's output for rows start..start+n-1 as a numpy pytree), in order.

    inputs: sequences of equal length (numpy arrays, or anything `load` accepts slices of).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    from tqdm.auto import tqdm
    total = len(inputs[0])
    bar = tqdm(total=total, desc=desc, unit=unit, disable=desc is None)
    try:
        for start in range(0, total, batch_size):
            chunk = [x[start: start + batch_size] for x in inputs]
            n = len(chunk[0])
            if load is not None:
                chunk = load(*chunk)
            result = jax.device_get(fn(*[pad_batch(c, batch_size) for c in chunk]))
            yield start, jax.tree_util.tree_map(lambda x: np.asarray(x)[:n], result)
            bar.update(n)
    finally:
        bar.close()


def run_batches(fn: Callable, inputs: Sequence, batch_size: int, **kwargs):
    """iter_batches, concatenated along the leading axis of every output leaf."""
    outputs = [out for _, out in iter_batches(fn, inputs, batch_size, **kwargs)]
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0), *outputs)
