"""Starting JAX's multi-process runtime (`jax.distributed.initialize`) from explicit values or
cluster auto-detection; must run before anything touches a device.

    start("10.0.0.1:1234", 2, 0)      # explicit: coordinator host:port, processes, this id
    start(auto=True)                  # none given: JAX detects the cluster (TPU, Slurm, MPI, k8s)

All three values given: that process group is started. Some given: with `auto` JAX's
auto-detection fills in the rest, otherwise a UserInputError. None and not `auto`: one process,
nothing is started. (`stylemask train` takes each value from its flag, else from the
JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID environment variables.) On the CPU backend the processes talk over gloo
(`jax_cpu_collectives_implementation`, the default in current JAX).

Gloo sets up the connections of a group of devices at the first collective over that group, and
that setup gives up after a fixed 30 s (`GetKeyValue() timed out`, not configurable) when one
process arrives later than that, which a slower compile, import or first-host-only work easily
causes; later collectives over the same group wait as long as needed (measured on CPU, 2
processes: a 40 s late first collective fails, a 40 s late later one passes, also in another
jitted function). So `start` meets every process at a barrier of the coordination service (long
timeout) and then runs the first collectives over all devices and over one device per process
(Orbax's barriers) together (`warm_up`); `barrier` is for the other places where processes may
drift apart before a new group's first collective (the training step after its compilation).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from stylemask_jax.compiling import jit
from stylemask_jax.errors import UserInputError
from stylemask_jax.sharding import data_mesh, data_sharding, replicated

BARRIER_TIMEOUT_S = 3600  # a full-size step compiles for many minutes on a busy CPU host
_barrier_ids = itertools.count(1)  # a coordination-service barrier name is used once

NAMES = ("coordinator address", "number of processes", "process id")  # initialize's order


def start(coordinator: str | None = None, num_processes: int | None = None,
          process_id: int | None = None, auto: bool = False) -> bool:
    """Initialises jax.distributed as the module docstring says; returns whether it is running.
    A second call is a no-op. The values are checked by the caller (`stylemask train` takes
    them from its flags or the JAX_* environment variables)."""
    if jax.distributed.is_initialized():
        return True
    values = [coordinator, num_processes, process_id]
    missing = [name for value, name in zip(values, NAMES) if value is None]
    if len(missing) == 3 and not auto:
        return False
    if missing and not auto:
        raise UserInputError(f"multi-process run: {', '.join(missing)} not given; give all three "
                             "(or none, with auto-detection, to detect the cluster)")
    try:
        jax.distributed.initialize(*values)
    except (ValueError, RuntimeError) as e:
        where = f"{', '.join(missing)} not given and " if missing else ""
        raise UserInputError(f"multi-process run: {where}jax.distributed.initialize failed: "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    warm_up()
    return True


def barrier(name: str, timeout_s: int = BARRIER_TIMEOUT_S) -> None:
    """Waits until every process has reached `barrier(name)` (the coordination service, no device
    collective, so nothing of gloo's 30 s setup limit); a no-op in a single-process run. Every
    process must call the barriers in the same order."""
    if jax.process_count() == 1:
        return
    # jax has no public barrier without device collectives; Orbax's public accessor of the
    # coordination-service client is what its own barriers use
    ocp.multihost.get_jax_distributed_client().wait_at_barrier(
        f"stylemask/{next(_barrier_ids)}/{name}", timeout_s * 1000)


def warm_up() -> None:
    """Sets up the collectives over all devices and over one device per process (what
    `multihost_utils` and Orbax's barriers use) while every process is at the same point."""
    if jax.process_count() == 1:
        return
    barrier("warm-up")
    multihost_utils.sync_global_devices("stylemask warm-up")
    mesh = data_mesh(0)
    ones = jax.make_array_from_callback((mesh.size,), data_sharding(mesh),
                                        lambda index: np.ones(mesh.size, np.float32)[index])
    total = jit(jnp.sum, out_shardings=replicated(mesh))(ones)
    if float(total.addressable_data(0)) != mesh.size:
        raise RuntimeError(f"multi-process warm-up: the sum over {mesh.size} devices gave {total}")
