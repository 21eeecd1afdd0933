"""The one Orbax wrapper for training runs: keep-last-N, resume from the latest, abstract restore.

A damaged step (a truncated or missing file) is moved to WORKDIR/checkpoints/corrupt/STEP, never
deleted, and the next older step is restored; a checkpoint of another config (other mask-net
shapes) is a CheckpointError naming the first differing parameter.

A checkpoint holds the whole TrainState (step, mask params, optimizer state, key). Restoring
goes into an abstract target with the current mesh's (replicated) shardings, so a checkpoint
written on any topology (2 processes x 2 devices, 1 device, ...) restores on any other.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import os
import sys
import time
import traceback

import jax
import ml_collections
import orbax.checkpoint as ocp

from stylemask_jax.errors import CheckpointError, UserInputError
from stylemask_jax.sharding import data_mesh, replicated
from stylemask_jax.training import networks
from stylemask_jax.training import state as state_lib
from stylemask_jax.training.config_checks import validate_config

CORRUPT_DIR = "corrupt"  # WORKDIR/checkpoints/corrupt/STEP: steps that failed to restore
REPORT_NAME = "restore_error.log"  # in corrupt/STEP: what Orbax reported about the failure
SETTLE_S = 1.0  # after a failed restore, TensorStore's cancelled reads still report for a moment


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def make_manager(workdir: str, keep: int = 3, create: bool = True) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create)
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def save(manager: ocp.CheckpointManager, state, force: bool = False) -> bool:
    """Saves `state` under its step (asynchronously); returns whether a save started."""
    step = int(jax.device_get(state.step))
    return manager.save(step, args=ocp.args.StandardSave(state), force=force)


def _abstract(target):
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        target)


def _shapes(tree) -> dict:
    """{'params/network_00/fc1/kernel': shape, ...} of a state or stored metadata tree."""
    leaves = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: hasattr(x, "shape"))[0]
    return {"/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path):
            tuple(leaf.shape) for path, leaf in leaves if hasattr(leaf, "shape")}


def config_mismatch(step_path: str, abstract) -> str | None:
    """How the mask parameters stored at `step_path` differ from `abstract`'s, or None.

    Raises whatever Orbax raises when the step's metadata cannot be read (a damaged step)."""
    metadata = ocp.StandardCheckpointer().metadata(os.path.join(step_path, "default"))
    tree = getattr(getattr(metadata, "item_metadata", None), "tree", None)
    if not hasattr(tree, "keys") or "params" not in tree:
        return None  # a layout this check does not know: the restore itself decides
    stored = _shapes({"params": tree["params"]})
    wanted = _shapes({"params": abstract.params})
    for name in sorted(set(stored) | set(wanted)):
        if stored.get(name) != wanted.get(name):
            have = stored.get(name, "missing")
            want = wanted.get(name, "missing")
            return (f"{name} is {have} in the checkpoint but {want} in the config (a checkpoint of "
                    "another config: other mask-net widths or num_layers_control?)")
    return None


def _restore_step(manager, step: int, abstract):
    """The state at `step`; CheckpointError for another config's checkpoint; other exceptions
    (Orbax / TensorStore errors of a damaged step) propagate."""
    path = os.path.join(manager.directory, str(step))
    mismatch = config_mismatch(path, abstract)
    if mismatch:
        raise CheckpointError(f"{path}: {mismatch}")
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def _move_aside(directory: str, step: int) -> str:
    """Moves the damaged step folder to DIRECTORY/corrupt/STEP (Orbax ignores it there)."""
    source = os.path.join(directory, str(step))
    target = os.path.join(directory, CORRUPT_DIR, str(step))
    if jax.process_index() == 0:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        suffix = 1
        while os.path.lexists(target):
            target = os.path.join(directory, CORRUPT_DIR, f"{step}.{suffix}")
            suffix += 1
        os.replace(source, target)
    return target


@contextlib.contextmanager
def _reports_kept(report: io.StringIO):
    """While Orbax restores, what it and TensorStore report about a failure (absl and asyncio
    log records, tracebacks their background threads print) goes to `report`, not the terminal:
    a damaged step is one warning line, its details go to a file in its folder."""
    loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
    saved = [(log, log.level, log.propagate) for log in loggers]
    handler = logging.StreamHandler(report)
    for log in loggers:
        log.addHandler(handler)
        log.propagate = False
    try:
        with contextlib.redirect_stderr(report):
            yield
    finally:
        for log, level, propagate in saved:
            log.removeHandler(handler)
            log.setLevel(level)
            log.propagate = propagate


class DamagedStep(Exception):
    """A step that Orbax could not restore: `kind` and `first_line` of its error, `details` the
    whole report (the traceback and what Orbax and TensorStore printed meanwhile)."""

    def __init__(self, kind: str, first_line: str, details: str):
        super().__init__(first_line)
        self.kind, self.details = kind, details


def _try_restore(manager, step: int, abstract):
    """_restore_step with Orbax's failure reports kept off the terminal; a damaged step is a
    DamagedStep (raised only once Orbax's failed reads have settled and been freed, so that
    nothing of them reaches the terminal later)."""
    report = io.StringIO()
    with _reports_kept(report):
        try:
            return _restore_step(manager, step, abstract)
        except CheckpointError:
            raise
        except Exception as err:  # Orbax/TensorStore raise many types for a damaged step
            kind, first = type(err).__name__, (str(err).splitlines() or [""])[0][:160]
            report.write("".join(traceback.format_exception(err)))
        time.sleep(SETTLE_S)  # the failed reads' late callbacks report here, not after,
        gc.collect()          # and so do their abandoned coroutines, freed here
    raise DamagedStep(kind, first, report.getvalue())


def _write_report(moved: str, damaged: DamagedStep) -> str | None:
    """The failure's details in the moved step's folder, MOVED/restore_error.log (process 0
    writes it); returns its path."""
    if jax.process_index() != 0 or not os.path.isdir(moved):
        return None
    path = os.path.join(moved, REPORT_NAME)
    with open(path, "w") as f:
        f.write(damaged.details)
    return path


def restore_latest(manager: ocp.CheckpointManager, target, step: int | None = None):
    """(state, step) from the newest checkpoint that restores, or (target, None) when there is
    none; `target` is a concrete or abstract state (its shapes, dtypes and shardings are used).

    A step that fails to restore is moved to checkpoints/corrupt/STEP with one line on stderr
    and the next older one is tried; a checkpoint of another config is a CheckpointError.
    With `step`, only that step is restored (missing or damaged: a CheckpointError)."""
    abstract = _abstract(target)
    directory = str(manager.directory)
    steps = sorted(manager.all_steps(), reverse=True)
    if step is not None:
        if step not in steps:
            raise CheckpointError(f"step {step}: no such checkpoint in {directory} (steps: "
                                  f"{', '.join(map(str, sorted(steps))) or 'none'})")
        try:
            return _try_restore(manager, step, abstract), step
        except DamagedStep as err:
            raise CheckpointError(f"{directory}/{step}: damaged checkpoint, cannot restore "
                                  f"({err.kind}: {err})") from None
    damaged = []
    try:
        for candidate in steps:
            try:
                return _try_restore(manager, candidate, abstract), candidate
            except DamagedStep as err:
                moved = _move_aside(directory, candidate)
                damaged.append(candidate)
                details = _write_report(moved, err)
                print(f"stylemask: warning: checkpoint step {candidate} in {directory} is damaged "
                      f"({err.kind}); moved to {moved}, trying an older step"
                      + (f" (details: {details})" if details else ""), file=sys.stderr)
    finally:
        if damaged:
            manager.reload()  # forget the moved steps
    if steps:
        raise CheckpointError(f"{directory}: no checkpoint restores (damaged steps "
                              f"{', '.join(map(str, steps))} moved to {directory}/{CORRUPT_DIR})")
    return target, None


def restore_state(workdir: str, nets, config, mesh=None, step: int | None = None):
    """(state, step) of WORKDIR's newest restorable checkpoint (or of `step`), or (a fresh
    step-0 state, None) when there is none; restored replicated on `mesh` (default: every
    device). Does not create WORKDIR/checkpoints."""
    mesh = data_mesh() if mesh is None else mesh
    optimizer = state_lib.make_optimizer(config.learning_rate, config.weight_decay)
    # The current mesh's sharding on every leaf: without one Orbax would reuse the saved
    # shardings, which name the devices of the topology that wrote the checkpoint.
    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated(mesh)),
        jax.eval_shape(lambda: state_lib.initial_state(nets, config, optimizer, mesh)))
    if os.path.isdir(checkpoint_dir(workdir)):
        manager = make_manager(workdir, create=False)
        try:
            state, found = restore_latest(manager, target, step)
        finally:
            manager.close()
    else:
        found = None
    if found is None:
        if step is not None:
                    raise CheckpointError(f"step {step}: {checkpoint_dir(workdir)} holds no checkpoints")
        state = state_lib.initial_state(nets, config, optimizer, mesh)
    return state, found


def restore_mask_params(workdir: str, config, step: int | None = None):
    """The networks of `config` and WORKDIR's newest restorable (or `step`'s) mask parameters
    (`stylemask evaluate/export`): (nets, frozen, params, step). No checkpoint is a
    UserInputError naming the folder."""
    nets, frozen = networks.build_networks(config)
    state, found = restore_state(workdir, nets, config, step=step)
    if found is None:
        raise UserInputError(f"{workdir}: no checkpoint to load in {checkpoint_dir(workdir)}")
    return nets, frozen, state.params, found


def saved_steps(workdir: str) -> list[int]:
    """The steps of WORKDIR's checkpoints, oldest first (none: [])."""
    if not os.path.isdir(checkpoint_dir(workdir)):
        return []
    manager = make_manager(workdir, create=False)
    try:
        return sorted(manager.all_steps())
    finally:
        manager.close()


def read_config(workdir: str):
    """The config a training run saved (WORKDIR/config.json), not yet validated."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise UserInputError(f"{workdir}: no config.json (not a training workdir)")
    try:
        with open(path) as f:
            return ml_collections.ConfigDict(json.load(f))
    except (OSError, ValueError) as err:
        raise UserInputError(f"{path}: unreadable ({err})") from None


def workdir_config(workdir: str, change=None):
    """The config a training run saved; `change(config)` (e.g. overrides) is applied before the
    config is validated."""
    config = read_config(workdir)
    if change is not None:
        config = change(config)
    validate_config(config)
    return config
