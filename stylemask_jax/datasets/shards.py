"""Which examples each process reads: contiguous, near-equal blocks.

    indices = shard_indices(len(dataset), jax.process_index(), jax.process_count())

Process p of P gets the block [p * N // P, (p + 1) * N // P): the blocks are contiguous (an
array_record file is read fastest in order, and videos, stored frame after frame, mostly stay
on one host), differ in size by at most one, and together cover every example exactly once.
"""

from __future__ import annotations

import numpy as np

from stylemask_jax.errors import UserInputError


def shard_bounds(num_examples: int, process_index: int, process_count: int) -> tuple[int, int]:
    """(start, stop) of process `process_index`'s block of `num_examples`."""
    if process_count < 1 or not 0 <= process_index < process_count:
        raise UserInputError(f"process index {process_index} of {process_count} processes: "
                             "expected 0 <= index < count")
    if num_examples < 0:
        raise UserInputError(f"number of examples must be >= 0, got {num_examples}")
    return (process_index * num_examples // process_count,
            (process_index + 1) * num_examples // process_count)


def shard_indices(num_examples: int, process_index: int, process_count: int) -> np.ndarray:
    """int64 (n,) the example indices of one process (see the module docstring)."""
    start, stop = shard_bounds(num_examples, process_index, process_count)
    return np.arange(start, stop, dtype=np.int64)
