"""The one batch runner: a jitted function over fixed-size batches of numpy inputs.

    for start, out in iter_batches(fn, [a, b], batch_size=8, desc="reenact"):
        ...                                  # out = fn(a[start:start+8], b[...]) as numpy, trimmed
    out = run_batches(fn, [a, b], batch_size=8)            # the same, concatenated
    out = run_batches(fn, [a], batch_size=(1, 4))          # compiled sizes: pad to the smallest fit
    for frames, out in stream_batches(fn, frames, 8, load=crops_of):   # a lazy stream (video)
        ...                          # frames (b, H, W, 3) stacked; out = fn(*crops_of(frames))

The padding rule, the same for every caller: a batch of n rows is padded to its compiled size by
repeating its last row, and the padded rows are dropped from every output leaf, so a jitted `fn`
sees one shape per compiled size. `batch_size` is one size, or several compiled sizes (the demo):
the inputs are cut into chunks of the largest and each chunk is padded to the smallest size that
holds it (`bucket`).

Inputs are either sequences of equal length (sliced: `iter_batches`, `run_batches`) or one
iterable of arrays of one shape, consumed lazily (`stream_batches`, via `group`): then nothing
holds more than one batch, whatever the length of the stream. `load(*chunks)` (optional) turns
each batch of inputs (file names, frames) into the arrays `fn` takes, just before the call. With
`desc`, a progress bar (`progress.progress_bar`) counts the rows.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Sequence

import jax
import numpy as np

from stylemask_jax.errors import UserInputError
from stylemask_jax.progress import progress_bar


def compiled_sizes(batch_size: int | Sequence[int]) -> tuple[int, ...]:
    """One size or several -> the sorted distinct sizes; a size below 1 is a UserInputError."""
    sizes = sorted({int(s) for s in np.atleast_1d(batch_size)})
    if not sizes or sizes[0] < 1:
        raise UserInputError(f"batch size must be at least 1, got {batch_size}")
    return tuple(sizes)


def bucket(sizes: Sequence[int], count: int) -> int:
    """The smallest of the sorted compiled `sizes` that holds `count` rows, else the largest."""
    return next((s for s in sizes if s >= count), sizes[-1])


def pad_batch(chunk: np.ndarray, size: int) -> np.ndarray:
    """(n, ...) -> (size, ...) by repeating the last row (1 <= n <= size)."""
    chunk = np.asarray(chunk)
    if not 1 <= len(chunk) <= size:
        raise ValueError(f"cannot pad a batch of {len(chunk)} rows to {size}")
    if len(chunk) == size:
        return chunk
    return np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])


def run_padded(fn: Callable, chunk: Sequence[np.ndarray], sizes: Sequence[int]):
    """fn on one batch: the arrays of `chunk` (n rows each) padded to `bucket(sizes, n)` ->
    fn's output as a numpy pytree, every leaf trimmed to n rows."""
    n = len(chunk[0])
    size = bucket(sizes, n)
    result = jax.device_get(fn(*[pad_batch(c, size) for c in chunk]))
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[:n], result)


def _load(load: Callable | None, chunk: list) -> list:
    return chunk if load is None else list(load(*chunk))


def iter_batches(fn: Callable, inputs: Sequence, batch_size: int | Sequence[int], *,
                 load: Callable | None = None, desc: str | None = None,
                 unit: str = "item") -> Iterator[tuple[int, object]]:
    """Yields (start, fn's output for rows start..start+n-1 as a numpy pytree), in order.

    inputs: sequences of equal length (numpy arrays, or anything `load` accepts slices of).
    """
    sizes = compiled_sizes(batch_size)
    total = len(inputs[0])
    with progress_bar(total=total, desc=desc, unit=unit) as bar:
        for start in range(0, total, sizes[-1]):
            chunk = [x[start: start + sizes[-1]] for x in inputs]
            n = len(chunk[0])
            yield start, run_padded(fn, _load(load, chunk), sizes)
            bar.update(n)


def run_batches(fn: Callable, inputs: Sequence, batch_size: int | Sequence[int], **kwargs):
    """iter_batches, concatenated along the leading axis of every output leaf."""
    outputs = [out for _, out in iter_batches(fn, inputs, batch_size, **kwargs)]
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0), *outputs)


def group(items: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Stacks consecutive items of one shape S into (b, *S) arrays, b == size but the last (>= 1).

    items: any iterable of arrays (e.g. uint8 (H, W, 3) frames), consumed lazily; every yielded
    array is freshly allocated (a consumer may keep it). An item whose shape or dtype differs
    from the first one's is a ValueError.
    """
    [size] = compiled_sizes(size)
    buf, n = None, 0
    for item in items:
        item = np.asarray(item)
        if buf is None:
            buf = np.empty((size,) + item.shape, item.dtype)
        elif item.shape != buf.shape[1:] or item.dtype != buf.dtype:
            raise ValueError(f"item {item.shape} {item.dtype} differs from the first one "
                             f"{buf.shape[1:]} {buf.dtype}")
        buf[n] = item
        n += 1
        if n == size:
            yield buf
            buf, n = np.empty_like(buf), 0
    if n:
        yield buf[:n]


def stream_batches(fn: Callable, items: Iterable[np.ndarray], batch_size: int, *,
                   load: Callable | None = None, desc: str | None = None, unit: str = "item",
                   total: int | None = None) -> Iterator[tuple[np.ndarray, object]]:
    """Yields (batch, output) for consecutive batches of a lazy stream of same-shape items.

    batch: the items stacked, (b, *S) with b == batch_size but the last; output: fn(*load(batch))
    (or fn(batch) without `load`) for those b rows, a numpy pytree, padded and trimmed as above.
    total: the stream's length, for the progress bar only.
    """
    sizes = compiled_sizes(batch_size)
    with progress_bar(total=total, desc=desc, unit=unit) as bar:
        for batch in group(items, sizes[-1]):
            yield batch, run_padded(fn, _load(load, [batch]), sizes)
            bar.update(len(batch))
