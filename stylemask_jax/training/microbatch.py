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

`config.microbatch = "auto"`: `choose` compiles the divisors of b, largest first, and takes the
first whose compiled step fits `memory_limit` (XLA's memory_analysis(): arguments + outputs +
temporaries - donated, per device); `loop.train` then runs that compiled step.
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from stylemask_jax.errors import UserInputError
from stylemask_jax.sharding import data_sharding, stacked_data_sharding


AUTO = "auto"  # config.microbatch: the largest micro-batch whose compiled step fits
RAM_FRACTION = 0.75  # the limit on a backend that reports none (CPU) without memory_limit_gib
GIB = 2 ** 30


def is_auto(config) -> bool:
    """Whether config.microbatch asks for `choose`."""
    return config.get("microbatch") == AUTO


def num_chunks(config, num_devices: int, m: int | None = None) -> int:
    """How many micro-batches a step has (1 = off) with micro-batch `m` (default
    config.microbatch, which must not be "auto" then); a UserInputError if m does not divide b."""
    if m is None:
        if is_auto(config):
            raise ValueError("config.microbatch='auto': choose the micro-batch first")
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


def candidates(per_device: int) -> list[int]:
    """The micro-batches `choose` tries: the divisors of the per-device batch, largest first."""
    return [m for m in range(per_device, 0, -1) if per_device % m == 0]


def step_bytes(compiled) -> int:
    """Bytes per device that one call of a compiled step needs, from its memory_analysis():
    arguments + outputs + temporaries - aliased (donated) bytes (benchmarks' 'XLA total')."""
    stats = compiled.memory_analysis()
    get = lambda name: int(getattr(stats, name, 0) or 0)  # noqa: E731
    return (get("argument_size_in_bytes") + get("output_size_in_bytes")
            + get("temp_size_in_bytes") - get("alias_size_in_bytes"))


def size_text(num_bytes: float) -> str:
    """'9.84 GiB', or '35.2 MiB' below 1 GiB."""
    if num_bytes >= GIB:
        return f"{num_bytes / GIB:.2f} GiB"
    return f"{num_bytes / 2 ** 20:.1f} MiB"


def ram_bytes() -> int:
    """This machine's physical memory (os.sysconf)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_limit(config, devices) -> tuple[int, str]:
    """(bytes per device a step may need, where that figure comes from).

    The smallest `memory_stats()["bytes_limit"]` of `devices` where the backend reports one
    (GPU, TPU), lowered to config.memory_limit_gib when that is set; else config.memory_limit_gib;
    else RAM_FRACTION of this machine's RAM (CPU). With several processes, the smallest limit of
    them all (every process must choose the same micro-batch).
    """
    reported = [(d.memory_stats() or {}).get("bytes_limit") for d in devices]
    reported = [int(b) for b in reported if b]
    gib = config.get("memory_limit_gib")
    if gib is not None and (not reported or gib * GIB < min(reported)):
        limit, source = int(gib * GIB), "config.memory_limit_gib"
    elif reported:
        limit, source = min(reported), "the device's bytes_limit"
    else:
        ram = ram_bytes()
        limit = int(RAM_FRACTION * ram)
        source = (f"{RAM_FRACTION:.0%} of this machine's {size_text(ram)} of RAM: set "
                  "config.memory_limit_gib to change it")
    if jax.process_count() > 1:
        mib = multihost_utils.process_allgather(np.int32(limit // 2 ** 20))
        if int(np.min(mib)) < limit // 2 ** 20:
            limit, source = int(np.min(mib)) * 2 ** 20, "the smallest limit of the processes"
    return limit, source


def choose(per_device: int, compile_step: Callable, limit: int, source: str):
    """(micro-batch, its compiled step, the start-up line saying why): the first of
    `candidates(per_device)` whose `compile_step(m)` needs at most `limit` bytes (step_bytes).

    A UserInputError naming config.microbatch and the figures when none fits."""
    needs = {}
    for m in candidates(per_device):
        compiled = compile_step(m)
        if compiled.memory_analysis() is None:
            raise UserInputError(f"config.microbatch={AUTO}: this backend reports no memory "
                                 "analysis of the compiled step; set config.microbatch to a number")
        needs[m] = step_bytes(compiled)
        if needs[m] <= limit:
            refused = ""
            if len(needs) > 1:  # the next larger candidate, which did not fit
                k = list(needs)[-2]
                refused = f" (micro-batch {k}: {size_text(needs[k])})"
            return m, compiled, (f"micro-batch {m} of {per_device} per device: the step needs "
                                 f"{size_text(needs[m])} of the {size_text(limit)} "
                                 f"limit{refused}; limit: {source}")
    tried = ", ".join(f"{m}: {size_text(b)}" for m, b in needs.items())
    raise UserInputError(f"config.microbatch={AUTO}: even micro-batch 1 needs "
                         f"{size_text(needs[1])} per device, over the {size_text(limit)} limit "
                         f"({source}); micro-batches tried: {tried}")
