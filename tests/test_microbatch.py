"""Gradient accumulation over micro-batches and per-block remat give the unchunked step's result.

Tiny config (random networks), global batch 4 on one device. The chunked step sums float32
gradients of chunk means in another order than the unchunked step's batch mean, so results
agree up to float32 rounding, not bit for bit. Tolerances: the loss and metrics (values ~1 to
50) and gradients are compared with rtol 1e-5 (float32 epsilon is 1.2e-7; sums over the batch
in another order, a few ulps per reduction; the loss of microbatch 2 was bit-identical,
47.492630); the updated parameters with atol 1e-6. The first
Adam step moves each parameter by lr * g / (|g| + eps) with lr = 1e-2, so a relative rounding
error d of one gradient entry changes its update by at most lr * d: entries that are sums with
cancellation carry d ~ 1e-5 to 1e-4, hence up to ~1e-6 (measured: 7.3e-7 for microbatch 2),
far above the parameters' own float32 spacing (~1e-9 at values ~0.01). Microbatch 1 (4 chunks
of one sample) measured a max of 3.77e-5 in one leaf (the other leaves <= 9.3e-7): an entry whose
batch gradient nearly cancels between samples has a relative rounding error of ~4e-3, and for
|g| near Adam's eps the update lr * g / (|g| + eps) is not sign-like. So, as in
test_training.test_four_devices_match_one_device: max <= 1e-3 and 99% of the parameters within
1e-6.

config.microbatch="auto" (microbatch.choose through loop.choose_train_step): the tests measure
the compiled step's needs per micro-batch (they depend on the XLA version) and set
config.memory_limit_gib around them.
"""

import jax
import numpy as np
import pytest

import configs.tiny
from stylemask_jax.errors import UserInputError
from stylemask_jax.sharding import data_mesh
from stylemask_jax.training import loop, microbatch, networks, objective
from stylemask_jax.training import state as state_lib
from stylemask_jax.commands.overrides import apply_overrides, config_fields

BATCH = 4


def tiny_config(**overrides):
    return apply_overrides(configs.tiny.get_config(),
                           [f"--config.{k}={v}" for k, v in overrides.items()])


def one_step(**overrides):
    """(loss/metrics dict, updated params) of the first training step of the tiny config."""
    config = tiny_config(batch_size=BATCH, **overrides)
    mesh = data_mesh()
    loop.check_config(config, mesh)
    nets, frozen = networks.build_networks(config)
    optimizer = state_lib.make_optimizer(config.learning_rate, config.weight_decay)
    state = state_lib.initial_state(nets, config, optimizer, mesh)
    batch = loop.global_batch(loop.host_batch(state.key, 0, config, nets.generator.style_dim), mesh)
    state, metrics = loop.make_train_step(nets, config, optimizer, mesh)(state, frozen, batch)
    return jax.device_get(metrics), jax.device_get(state.params)


def gradients(**overrides):
    """(loss, metrics, gradients) of objective.loss_fn on the first step's batch."""
    config = tiny_config(batch_size=BATCH, **overrides)
    mesh = data_mesh()
    nets, frozen = networks.build_networks(config)
    optimizer = state_lib.make_optimizer(config.learning_rate, config.weight_decay)
    state = state_lib.initial_state(nets, config, optimizer, mesh)
    batch = loop.global_batch(loop.host_batch(state.key, 0, config, nets.generator.style_dim), mesh)
    grad_fn = jax.jit(jax.value_and_grad(  # frozen is an argument: constants compile slowly
        lambda p, f, b: objective.loss_fn(p, f, b, nets, config), has_aux=True))
    (loss, metrics), grads = grad_fn(state.params, frozen, batch)
    return jax.device_get((loss, metrics, grads))


@pytest.fixture(scope="module")
def unchunked():
    return one_step()


def assert_metrics_close(got, want):
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("micro", [BATCH // 2, BATCH // 4])
def test_microbatched_step_matches_the_unchunked_step(unchunked, micro):
    metrics, params = one_step(microbatch=micro)
    want_metrics, want_params = unchunked
    assert_metrics_close(metrics, want_metrics)
    diff = np.concatenate([np.ravel(np.abs(a - b)) for a, b in zip(
        jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(want_params))])
    print(f"microbatch {micro}: loss {metrics['loss']:.6f} vs {want_metrics['loss']:.6f}, "
          f"max |param diff| {diff.max():.2e}, {(diff > 1e-6).sum()} of {diff.size} above 1e-6")
    assert diff.max() <= 1e-3  # a chunking bug moves most parameters by ~lr = 1e-2
    assert (diff <= 1e-6).mean() >= 0.99


def test_remat_gives_the_same_gradients():
    loss, metrics, grads = gradients()
    loss_r, metrics_r, grads_r = gradients(remat="blocks")
    np.testing.assert_allclose(loss_r, loss, rtol=1e-6)
    assert_metrics_close(metrics_r, metrics)
    flat, flat_r = (np.concatenate([np.ravel(g) for g in jax.tree_util.tree_leaves(t)])
                    for t in (grads, grads_r))
    rel = np.linalg.norm(flat_r - flat) / np.linalg.norm(flat)
    print(f"remat: relative L2 gradient difference {rel:.2e}, max abs {np.max(np.abs(flat_r - flat)):.2e}")
    assert rel < 1e-5


def test_microbatch_must_divide_the_per_device_batch():
    mesh = data_mesh(1)
    with pytest.raises(UserInputError, match="config.microbatch=3"):
        loop.check_config(tiny_config(batch_size=BATCH, microbatch=3), mesh)
    assert microbatch.num_chunks(tiny_config(batch_size=BATCH, microbatch=0), 1) == 1
    assert microbatch.num_chunks(tiny_config(batch_size=BATCH, microbatch=1), 1) == BATCH


def test_remat_mode_is_validated():
    with pytest.raises(UserInputError, match="config.remat"):
        networks.remat_mode(tiny_config(remat="everything"))
    assert networks.remat_mode(tiny_config(remat=True)) == "blocks"


# --- config.microbatch = "auto" -------------------------------------------------------------

GIB = microbatch.GIB


def auto_setup(**overrides):
    """(config, mesh, nets, optimizer, (state, frozen, batch)) of the tiny config's first step
    with config.microbatch=auto and global batch 4 on one device."""
    config = tiny_config(batch_size=BATCH, microbatch="auto", **overrides)
    mesh = data_mesh(1)
    loop.check_config(config, mesh)
    nets, frozen = networks.build_networks(config)
    optimizer = state_lib.make_optimizer(config.learning_rate, config.weight_decay)
    state = state_lib.initial_state(nets, config, optimizer, mesh)
    batch = loop.global_batch(loop.host_batch(state.key, 0, config, nets.generator.style_dim), mesh)
    return config, mesh, nets, optimizer, (state, frozen, batch)


@pytest.fixture(scope="module")
def compiled_steps():
    """{micro-batch: the tiny step compiled for it} for 4, 2 and 1."""
    config, mesh, nets, optimizer, args = auto_setup()
    return {m: loop.make_train_step(nets, config, optimizer, mesh, size=m).lower(*args).compile()
            for m in (4, 2, 1)}


@pytest.fixture(scope="module")
def needs(compiled_steps):
    """{micro-batch: bytes its compiled step needs}, measured (they depend on the XLA version)."""
    out = {m: microbatch.step_bytes(c) for m, c in compiled_steps.items()}
    print("needs:", out)
    assert out[4] > out[2] > out[1] > 0  # else no limit separates the candidates
    return out


def choose(compiled_steps, limit):
    """(micro-batch, start-up line, micro-batches compiled) that microbatch.choose gives under a
    limit of `limit` bytes, compiling from `compiled_steps`."""
    tried = []

    def compile_step(m):
        tried.append(m)
        return compiled_steps[m]

    size, compiled, line = microbatch.choose(BATCH, compile_step, int(limit), "a test's limit")
    assert compiled is compiled_steps[size]
    return size, line, tried


def test_auto_takes_the_whole_batch_under_a_large_limit(compiled_steps, needs):
    assert choose(compiled_steps, 1000 * GIB) == (
        4, f"micro-batch 4 of 4 per device: the step needs {microbatch.size_text(needs[4])} of "
           "the 1000.00 GiB limit; limit: a test's limit", [4])


def test_auto_takes_the_largest_micro_batch_that_fits(compiled_steps, needs):
    size, line, tried = choose(compiled_steps, (needs[2] + needs[4]) / 2)
    assert (size, tried) == (2, [4, 2])
    assert line.startswith(f"micro-batch 2 of 4 per device: the step needs "
                           f"{microbatch.size_text(needs[2])} of the ")
    assert f" limit (micro-batch 4: {microbatch.size_text(needs[4])}); " in line
    assert choose(compiled_steps, needs[2])[0] == 2  # a step that needs the limit exactly fits
    assert choose(compiled_steps, needs[2] - 1)[0] == 1


def test_auto_is_an_error_when_not_even_micro_batch_1_fits(compiled_steps, needs):
    with pytest.raises(UserInputError) as err:
        choose(compiled_steps, needs[1] - 1)
    assert str(err.value) == (
        f"config.microbatch=auto: even micro-batch 1 needs {microbatch.size_text(needs[1])} per "
        f"device, over the {microbatch.size_text(needs[1] - 1)} limit (a test's limit); "
        f"micro-batches tried: 4: {microbatch.size_text(needs[4])}, "
        f"2: {microbatch.size_text(needs[2])}, 1: {microbatch.size_text(needs[1])}")


def test_auto_needs_a_memory_analysis():
    class NoAnalysis:
        def memory_analysis(self):
            return None

    with pytest.raises(UserInputError, match="config.microbatch=auto: this backend reports no "
                                             "memory analysis"):
        microbatch.choose(BATCH, lambda m: NoAnalysis(), GIB, "a test's limit")


def test_auto_trains_like_that_micro_batch_set_by_hand(needs, tmp_path, capsys):
    """The first step with "auto" (choosing 2) gives the metrics of microbatch=2, and the step
    chosen is not compiled again, also when a run resumes: one compilation per candidate tried
    (4, then 2). Nothing is written when no candidate fits."""
    compiles = []

    def listener(event, seconds, fun_name="", **kwargs):
        if event == "/jax/core/compile/backend_compile_duration" and "train_step" in fun_name:
            compiles.append(fun_name)  # also counted when the persistent cache has it

    def run(name, steps=1, **overrides):
        config = tiny_config(batch_size=BATCH, num_steps=steps, checkpoint_every=1,
                             progress=False, tensorboard=False, **overrides)
        compiles.clear()
        jax.monitoring.register_event_duration_secs_listener(listener)
        try:
            return loop.train(config, str(tmp_path / name))
        finally:
            jax.monitoring.unregister_event_duration_listener(listener)

    between = (needs[2] + needs[4]) / 2 / GIB
    auto = run("auto", microbatch="auto", memory_limit_gib=between)
    printed = [line for line in capsys.readouterr().out.splitlines() if "micro-batch" in line]
    assert len(printed) == 1 and printed[0].startswith("micro-batch 2 of 4 per device: "), printed
    assert auto["microbatch"] == 2
    assert auto["step_compilations"] == 2 and len(compiles) == 2, compiles
    by_hand = run("by_hand", microbatch=2)
    assert by_hand["microbatch"] == 2
    extra = ("microbatch", "step_compilations")
    assert_metrics_close(*({k: v for k, v in r.items() if k not in extra} for r in (auto, by_hand)))

    resumed = run("auto", steps=2, microbatch="auto", memory_limit_gib=between)
    assert resumed["microbatch"] == 2
    assert resumed["step_compilations"] == 2 and len(compiles) == 2, compiles

    with pytest.raises(UserInputError, match="config.microbatch=auto: even micro-batch 1"):
        run("nothing_fits", microbatch="auto", memory_limit_gib=needs[1] / 2 / GIB)
    assert not (tmp_path / "nothing_fits").exists()


def test_auto_is_accepted_on_the_command_line_and_other_words_are_not():
    mesh = data_mesh(1)
    config = tiny_config(batch_size=BATCH, microbatch="auto")
    assert config.microbatch == "auto" and microbatch.is_auto(config)
    loop.check_config(config, mesh)
    with pytest.raises(UserInputError) as err, config_fields():
        loop.check_config(tiny_config(batch_size=BATCH, microbatch="sometimes"), mesh)
    assert str(err.value) == "--config.microbatch='sometimes': expected an integer >= 0 or 'auto'"
    with pytest.raises(UserInputError, match="--config.memory_limit_gib=0.0: expected a finite "
                                             "number > 0.0 or None"), config_fields():
        loop.check_config(tiny_config(memory_limit_gib=0), mesh)


class FakeDevice:
    def __init__(self, stats):
        self.stats = stats

    def memory_stats(self):
        return self.stats


def test_memory_limit_sources():
    limit = lambda gib, *stats: microbatch.memory_limit(  # noqa: E731
        tiny_config(memory_limit_gib=gib), [FakeDevice(s) for s in stats])
    assert limit(None, {"bytes_limit": 8 * GIB}, {"bytes_limit": 6 * GIB}) == (
        6 * GIB, "the device's bytes_limit")
    assert limit(4, {"bytes_limit": 8 * GIB}) == (4 * GIB, "config.memory_limit_gib")
    assert limit(16, {"bytes_limit": 8 * GIB}) == (8 * GIB, "the device's bytes_limit")
    assert limit(2.5, None) == (int(2.5 * GIB), "config.memory_limit_gib")
    ram, source = limit(None, None, {})
    assert ram == int(0.75 * microbatch.ram_bytes()) and "of RAM" in source


def test_candidates_are_the_divisors_largest_first():
    assert microbatch.candidates(12) == [12, 6, 4, 3, 2, 1]
    assert microbatch.candidates(1) == [1]
