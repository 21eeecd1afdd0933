"""Streaming batches of per-frame arrays, so that jitted steps see one shape.

A video is a stream of frames of one shape; the jitted alignment / inversion / reenactment
steps want fixed-size batches. `group` stacks consecutive items into batches (the last one may
be short); `fixed_batches` pads every batch to the same size by repeating its last item and
says how many items are real, so one compiled shape serves the whole clip.

Nothing here holds more than one batch: memory is bounded by `size` items whatever the length
of the stream. Every yielded array is freshly allocated (never reused), so a consumer may keep
it or hand it to an asynchronous device transfer.
"""

from __future__ import annotations

from typing import Iterable, Iterator, NamedTuple

import numpy as np


class Batch(NamedTuple):
    """data: (size, ...) array whose rows count: are real; rows after that repeat the last real one."""
    data: np.ndarray
    count: int


def group(items: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Stacks consecutive items of one shape S into (b, *S) arrays, b == size except the last (>= 1).

    items: any iterable of arrays (e.g. uint8 (H, W, 3) frames or (68, 2) landmarks), consumed
    lazily. An item whose shape or dtype differs from the first one's is a ValueError.
    """
    if int(size) < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    size = int(size)
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


def pad_batch(batch: np.ndarray, size: int) -> Batch:
    """(b, ...) with 1 <= b <= size -> Batch((size, ...), b): rows b.. repeat row b - 1."""
    batch = np.asarray(batch)
    b = batch.shape[0]
    if not 1 <= b <= size:
        raise ValueError(f"cannot pad a batch of {b} to {size}")
    if b == size:
        return Batch(batch, b)
    pad = np.repeat(batch[-1:], size - b, axis=0)
    return Batch(np.concatenate([batch, pad], axis=0), b)


def fixed_batches(items: Iterable[np.ndarray], size: int) -> Iterator[Batch]:
    """Items of shape S -> Batch((size, *S), count) for each run of `size` items; the last is padded.

    Use `batch.data[:batch.count]` of the results to drop the padding.
    """
    for batch in group(items, size):
        yield pad_batch(batch, size)


def unbatch(batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """(b, *S) arrays -> their rows, one by one (the inverse of `group`)."""
    for batch in batches:
        yield from batch
