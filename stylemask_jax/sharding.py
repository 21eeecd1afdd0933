"""Data parallelism in one place: a 1-D 'data' mesh and the two shardings everything uses.

    mesh = data_mesh()                       # every device of every host (training)
    mesh = data_mesh(local=True)             # this host's devices (batch inference)
    compiling.jit(fn, in_shardings=(replicated(mesh), data_sharding(mesh)), ...)

Batches are split on their leading axis over the 'data' axis; weights, optimizer state and
other constants are replicated. Auto axes: XLA propagates the batch sharding through the step.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from stylemask_jax.errors import UserInputError

DATA_AXIS = "data"


def data_mesh(num_devices: int = 0, local: bool = False) -> jax.sharding.Mesh:
    """A 1-D 'data' mesh over every visible device (this host's only with `local`), or over the
    first `num_devices` of them."""
    devices = jax.local_devices() if local else jax.devices()
    if num_devices:
        if num_devices > len(devices):
            raise UserInputError(f"config.num_devices={num_devices} but only {len(devices)} "
                                 "devices are visible")
        devices = devices[:num_devices]
    return jax.sharding.Mesh(np.array(devices), (DATA_AXIS,),
                             axis_types=(jax.sharding.AxisType.Auto,))


def data_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Leading (batch) axis split over the mesh's 'data' axis."""
    return NamedSharding(mesh, P(DATA_AXIS))


def stacked_data_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """(K, B, ...) stacks of batches (micro-batches): the second (batch) axis split on 'data'."""
    return NamedSharding(mesh, P(None, DATA_AXIS))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, P())


def round_to_mesh(batch_size: int, mesh: jax.sharding.Mesh) -> int:
    """The smallest multiple of the mesh size that is >= batch_size."""
    return -(-batch_size // mesh.size) * mesh.size
