"""`train(config, workdir)`: the training loop around one jitted, data-parallel step.

Mesh over every device of every host (`sharding.data_mesh`, axis 'data'); the global batch of
random codes is sharded on 'data', the state and the frozen networks are replicated. The whole
global batch is drawn from the step key alone (every host draws it and keeps its devices' rows),
so the data depend neither on the number of processes or devices nor on where a run resumed.
Only process 0 writes config.json, metrics, TensorBoard events and evaluation images; every
process takes part in the (Orbax) checkpoint saves.
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax import distributed
from stylemask_jax.compiling import jit
from stylemask_jax.errors import UserInputError
from stylemask_jax.outputs import check_output_dir
from stylemask_jax.progress import progress_bar
from stylemask_jax.sharding import data_mesh, data_sharding, replicated
from stylemask_jax.training import checkpoints, evaluation, microbatch, networks, objective
from stylemask_jax.training import state as state_lib
from stylemask_jax.training.config_checks import validate_config
from stylemask_jax.training.logs import MetricWriter, format_metrics, non_finite


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; the last good checkpoint is kept."""


def host_batch(state_key, step: int, config, style_dim: int) -> dict:
    """The random codes of `step`, {'z_source','z_target','z_cycle'} each (batch_size, style_dim)
    float32 numpy: the whole global batch, from the step key alone (the same on every host)."""
    key = state_lib.step_key(state_key, step)
    k1, k2, k3 = jax.random.split(key, 3)
    normal = lambda k: np.asarray(jax.random.normal(k, (config.batch_size, style_dim), jnp.float32))  # noqa: E731
    return {"z_source": normal(k1), "z_target": normal(k2), "z_cycle": normal(k3)}


def global_batch(batch: dict, mesh) -> dict:
    """The global batch as arrays sharded on 'data'; each host places only its devices' rows."""
    sharding = data_sharding(mesh)
    return {k: jax.make_array_from_callback(v.shape, sharding, lambda index, v=v: v[index])
            for k, v in batch.items()}


def make_train_step(nets: networks.Networks, config, optimizer, mesh,
                    on_trace: Callable[[], None] | None = None, size: int | None = None):
    """jit(state, frozen, batch) -> (state, metrics); the state buffer is donated.

    With micro-batch `size` > 0 (default config.microbatch) the loss and gradients are
    accumulated over micro-batches (training/microbatch.py) before the one optimizer update.
    `on_trace()` (optional) is called each time jit traces the step, i.e. once per compilation
    (a new shape, dtype or sharding)."""
    chunks = microbatch.num_chunks(config, mesh.size, size)

    def train_step(state, frozen, batch):
        if on_trace is not None:
            on_trace()   # Python runs here only while jit traces, never per executed step
        key = state_lib.step_key(state.key, state.step)
        grad_fn = jax.value_and_grad(objective.loss_fn, has_aux=True)
        (loss, metrics), grads = microbatch.accumulate(
            lambda params, chunk: grad_fn(params, frozen, chunk, nets, config, key),
            state.params, batch, chunks, mesh)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = jax.tree_util.tree_map(lambda p, u: p + u, state.params, updates)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(p)) for p in jax.tree_util.tree_leaves(params)]))
        metrics = dict(metrics, loss=loss,
                       grad_norm=jnp.sqrt(sum(jnp.sum(g * g) for g in jax.tree_util.tree_leaves(grads))),
                       # NaN unless the updated parameters are all finite (checked by the guard)
                       params_finite=jnp.where(finite, 1.0, jnp.nan))
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return jit(train_step, donate_argnums=0,
               in_shardings=(replicated(mesh), replicated(mesh), data_sharding(mesh)),
               out_shardings=(replicated(mesh), replicated(mesh)))


def choose_train_step(nets: networks.Networks, config, optimizer, mesh, args: tuple,
                      on_trace: Callable[[], None] | None = None):
    """config.microbatch "auto": (jitted step, its micro-batch, the start-up line saying why).

    Each divisor of the per-device batch, largest first, is compiled for `args` (state, frozen,
    batch) until one fits the memory limit (microbatch.choose, microbatch.memory_limit). The
    chosen step's jit cache keeps its executable, so its first call does not compile again."""
    steps = {}

    def compile_step(size):
        steps[size] = make_train_step(nets, config, optimizer, mesh, on_trace, size)
        return steps[size].lower(*args).compile()

    local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    size, _, line = microbatch.choose(config.batch_size // mesh.size, compile_step,
                                      *microbatch.memory_limit(config, local))
    return steps[size], size, line


def check_config(config, mesh) -> None:
    validate_config(config)  # every field's range (training/config_checks.py)
    n = mesh.size
    if config.batch_size < 1 or config.batch_size % n:
        raise UserInputError(f"config.batch_size={config.batch_size} must be a positive multiple "
                             f"of the {n} devices")
    if config.batch_size % jax.process_count():
        raise UserInputError(f"config.batch_size={config.batch_size} must split evenly over "
                             f"the {jax.process_count()} hosts")
    if not microbatch.is_auto(config):
        microbatch.num_chunks(config, n)  # validates config.microbatch


def train(config, workdir: str) -> dict:
    """Trains the mask network; resumes from WORKDIR's latest checkpoint when there is one.

    Returns the last logged metrics plus 'step_compilations' (how often jit traced the step:
    one trace per compilation, so a retrace per step would show up here; with micro-batch
    "auto", one per candidate compiled) and 'microbatch' (the micro-batch the steps used).
    """
    distributed.start(auto=bool(config.get("multihost", False)))  # no-op when started already
    mesh = data_mesh(config.get("num_devices", 0))
    check_config(config, mesh)
    check_output_dir(workdir, "workdir")
    nets, frozen = networks.build_networks(config)
    frozen = jax.device_put(frozen, replicated(mesh))
    optimizer = state_lib.make_optimizer(config.learning_rate, config.weight_decay)
    state = state_lib.initial_state(nets, config, optimizer, mesh)
    is_main = jax.process_index() == 0
    traces = []
    size = config.get("microbatch", 0) or 0
    if microbatch.is_auto(config):  # before anything is written: it may refuse every candidate
        first = global_batch(host_batch(state.key, 0, config, nets.generator.style_dim), mesh)
        step_fn, size, line = choose_train_step(nets, config, optimizer, mesh,
                                                (state, frozen, first), lambda: traces.append(1))
        if is_main:
            print(line)
    else:
        step_fn = make_train_step(nets, config, optimizer, mesh, on_trace=lambda: traces.append(1))
    manager = checkpoints.make_manager(workdir, keep=config.keep_checkpoints)
    state, resumed = checkpoints.restore_latest(manager, state)
    start = int(jax.device_get(state.step))
    if is_main:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:  # read by evaluate / export
            f.write(config.to_json_best_effort(indent=1))
    writer = MetricWriter(workdir, tensorboard=config.get("tensorboard", True)) if is_main else None
    evaluate = evaluation.make_evaluator(nets, config, mesh) if config.eval_every else None
    if is_main and resumed is not None:
        print(f"resumed from {workdir} at step {start}")

    last, last_good = {}, resumed
    bar = progress_bar(total=config.num_steps, initial=start, desc="train", unit="step",
                       disable=not is_main or not config.get("progress", True))
    try:
        for step in range(start, config.num_steps):
            batch = global_batch(host_batch(state.key, step, config, nets.generator.style_dim), mesh)
            if step == start and jax.process_count() > 1:
                # Compile first (the jit cache keeps it), then meet: compile times differ between
                # hosts, and the step's first collectives must not start far apart (distributed.py).
                step_fn.lower(state, frozen, batch).compile()
                distributed.barrier("first training step")
            state, metrics = step_fn(state, frozen, batch)
            done = step + 1
            log_now = done % config.log_every == 0 or done == config.num_steps
            save_now = bool(config.checkpoint_every) and (
                done % config.checkpoint_every == 0 or done == config.num_steps)
            if log_now or save_now:
                # params_finite is NaN when the update produced a non-finite parameter.
                last = {k: float(v) for k, v in jax.device_get(metrics).items()}
                bad = non_finite(last)
                if bad:
                    raise NonFiniteLossError(
                        f"non-finite {', '.join(bad)} at step {done}; stopped without saving. The "
                        f"last good checkpoint is step {last_good} in {workdir}/checkpoints")
            if log_now:
                if writer:
                    writer.write(done, last)
                bar.set_postfix_str(format_metrics(last))
            if save_now:
                checkpoints.save(manager, state)
                last_good = done
            if evaluate is not None and (done % config.eval_every == 0 or done == config.num_steps):
                results = evaluate(state.params, frozen, workdir if is_main else None, done)
                if writer:
                    writer.write(done, results, prefix="eval/")
            bar.update(1)
    finally:
        bar.close()
        manager.wait_until_finished()
        manager.close()
        if writer:
            writer.close()
    return dict(last, step_compilations=len(traces), microbatch=size)
