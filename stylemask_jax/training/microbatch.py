"""Gradient accumulation over micro-batches, inside the jitted step.

`config.microbatch` = m > 0 splits each device's share of the global batch (b = batch_size /
devices samples) into b / m chunks of m samples; `lax.scan` runs the loss and its gradient on one
chunk at a time (one global chunk = m samples from every device, still sharded on 'data') and
sums the gradients and the metrics; the step then applies ONE optimizer update. Only one chunk's
activations are alive at a time, so the activation memory is that of batch m per device.

The objective is a mean over the samples (every loss term is a batch mean of equal-sized
per-sample terms, and so are the logged metrics), hence with equal chunks

    loss(batch) = mean over chunks of loss(chunk),   grad(batch) = mean of grad(chunk),

the same update as the unchunked step up to float rounding (tests/test_microbatch.py). The
chunks are slices of the same global batch of random codes, so the data does not depend on m.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from stylemask_jax.errors import UserInputError
from stylemask_jax.sharding import data_sharding, stacked_data_sharding


def num_chunks(config, num_devices: int) -> int:
    """How many micro-batches a step has (1 = off); a UserInputError if m does not divide b."""
    m = int(config.get("microbatch", 0) or 0)
    per_device = config.batch_size // num_devices
    if m == 0:
        return 1
    if m < 0 or per_device % m:
        raise UserInputError(f"config.microbatch={m} must be 0 (off) or divide the per-device "
                             f"batch {per_device} (batch_size {config.batch_size} over "
                             f"{num_devices} devices)")
    return per_device // m


def split_chunks(batch: dict, chunks: int, mesh) -> dict:
    """Leaves (B, ...) sharded on 'data' -> (chunks, B / chunks, ...), chunk c holding rows
    c*m .. c*m + m - 1 of every device's share (so no data moves between devices)."""
    devices = mesh.size

    def split(x):
        m = x.shape[0] // devices // chunks
        x = jnp.swapaxes(x.reshape((devices, chunks, m) + x.shape[1:]), 0, 1)
        x = x.reshape((chunks, devices * m) + x.shape[3:])
        return jax.lax.with_sharding_constraint(x, stacked_data_sharding(mesh))

    return jax.tree_util.tree_map(split, batch)


def accumulate(value_and_grad: Callable, params, batch: dict, chunks: int, mesh):
    """((loss, metrics), grads) of the whole batch from `value_and_grad(params, chunk)`.

    chunks == 1 calls it once on the whole batch; otherwise the chunk results are summed in a
    `lax.scan` (float32 accumulators) and divided by `chunks`.
    """
    if chunks == 1:
        return value_and_grad(params, batch)
    stacked = split_chunks(batch, chunks, mesh)
    chunk_sharding = data_sharding(mesh)
    first = jax.tree_util.tree_map(lambda x: x[0], stacked)
    shapes = jax.eval_shape(value_and_grad, params, first)
    wide = lambda d: jnp.float32 if jnp.issubdtype(d, jnp.floating) else d  # noqa: E731
    zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, wide(s.dtype)), shapes)

    def body(total, chunk):
        chunk = jax.lax.with_sharding_constraint(chunk, chunk_sharding)
        out = value_and_grad(params, chunk)
        return jax.tree_util.tree_map(lambda t, o: t + o.astype(t.dtype), total, out), None

    total, _ = jax.lax.scan(body, zeros, stacked)
    return jax.tree_util.tree_map(lambda t: t / chunks, total)
