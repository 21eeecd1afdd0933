"""The one Orbax wrapper for training runs: keep-last-N, resume from the latest, abstract restore.

A checkpoint holds the whole TrainState (step, mask params, optimizer state, key). Restoring
goes into an abstract target (jax.eval_shape of a fresh state) with the target's shardings, so
resumed arrays land replicated on the current mesh.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def make_manager(workdir: str, keep: int = 3) -> ocp.CheckpointManager:
    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    return ocp.CheckpointManager(directory, options=options)


def save(manager: ocp.CheckpointManager, state, force: bool = False) -> bool:
    """Saves `state` under its step (asynchronously); returns whether a save started."""
    step = int(jax.device_get(state.step))
    return manager.save(step, args=ocp.args.StandardSave(state), force=force)


def restore_latest(manager: ocp.CheckpointManager, target):
    """(state, step) from the latest checkpoint, or (target, None) when there is none.

    `target` is a concrete or abstract state (its shapes, dtypes and shardings are used).
    """
    step = manager.latest_step()
    if step is None:
        return target, None
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        target)
    state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return state, step
