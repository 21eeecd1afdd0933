"""The one Orbax wrapper for training runs: keep-last-N, resume from the latest, abstract restore.

A checkpoint holds the whole TrainState (step, mask params, optimizer state, key). Restoring
goes into an abstract target with the current mesh's (replicated) shardings, so a checkpoint
written on any topology (2 processes x 2 devices, 1 device, ...) restores on any other.
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


def restore_state(workdir: str, nets, config, mesh=None):
    """(state, step) of WORKDIR's latest checkpoint, or (a fresh step-0 state, None) when there is
    none; restored replicated on `mesh` (default: every device)."""
    from stylemask_jax.sharding import data_mesh, replicated
    from stylemask_jax.training import state as state_lib
    mesh = data_mesh() if mesh is None else mesh
    optimizer = state_lib.make_optimizer(config.learning_rate, config.weight_decay)
    # The current mesh's sharding on every leaf: without one Orbax would reuse the saved
    # shardings, which name the devices of the topology that wrote the checkpoint.
    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated(mesh)),
        jax.eval_shape(lambda: state_lib.initial_state(nets, config, optimizer, mesh)))
    manager = make_manager(workdir)
    try:
        state, step = restore_latest(manager, target)
    finally:
        manager.close()
    if step is None:
        state = state_lib.initial_state(nets, config, optimizer, mesh)
    return state, step


def restore_mask_params(workdir: str, config):
    """The networks of `config` and WORKDIR's latest mask parameters (`stylemask evaluate/export`):
    (nets, frozen, params, step). No checkpoint is a UserInputError."""
    from stylemask_jax.errors import UserInputError
    from stylemask_jax.training import networks
    nets, frozen = networks.build_networks(config)
    state, step = restore_state(workdir, nets, config)
    if step is None:
        raise UserInputError(f"--workdir {workdir}: no checkpoint to load")
    return nets, frozen, state.params, step


def workdir_config(workdir: str, overrides=()):
    """The config a training run saved (WORKDIR/config.json), with command-line overrides."""
    import json
    import ml_collections
    from stylemask_jax.errors import UserInputError
    from stylemask_jax.training.config_overrides import apply_overrides
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise UserInputError(f"--workdir {workdir}: no config.json (not a training workdir)")
    with open(path) as f:
        return apply_overrides(ml_collections.ConfigDict(json.load(f)), list(overrides))
