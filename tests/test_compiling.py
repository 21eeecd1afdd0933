"""`compiling.jit`: the library's jax.jit with the XLA:CPU options of `compiling.CPU_OPTIONS`.

On a CPU, convolutions are compiled by XLA itself and matrix products still go to YNNPACK
(read from the compiled HLO: a YNNPACK call is a fusion of kind `__ynn_fusion`); results equal
those of plain `jax.jit` to float rounding; an XLA_FLAGS naming the option leaves it to the user.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylemask_jax import compiling


def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


# (YNNPACK takes convolutions from about this size: not 2 x 8 x 8 x 16)
ARGS = (jnp.asarray(np.random.default_rng(0).standard_normal((1, 16, 16, 64)), jnp.float32),
        jnp.asarray(np.random.default_rng(1).standard_normal((3, 3, 64, 64)) / 24, jnp.float32))


def ynn_fusions(jitted, *args) -> int:
    return jitted.lower(*args).compile().as_text().count('"kind":"__ynn_fusion"')


def test_cpu_options_keep_convolutions_and_give_products_to_ynnpack():
    assert jax.default_backend() == "cpu"
    assert compiling.compiler_options() == compiling.CPU_OPTIONS
    assert ynn_fusions(jax.jit(conv), *ARGS) == 1          # XLA's default: YNNPACK's conv
    assert ynn_fusions(compiling.jit(conv), *ARGS) == 0    # ours: XLA's own
    a = ARGS[0].reshape(-1, 64)
    assert ynn_fusions(compiling.jit(jnp.dot), a, a.T) == 1  # products stay with YNNPACK
    np.testing.assert_allclose(compiling.jit(conv)(*ARGS), jax.jit(conv)(*ARGS),
                               rtol=0, atol=1e-5)


def test_no_options_off_the_cpu_or_when_xla_flags_choose(monkeypatch):
    assert compiling.compiler_options("gpu") is None
    assert compiling.compiler_options("tpu") is None
    monkeypatch.setenv("XLA_FLAGS", f"--{compiling.YNN_OPTION}=LIBRARY_FUSION_TYPE_DOT")
    assert compiling.compiler_options() is None


def test_jit_passes_jax_jit_keywords():
    f = compiling.jit(lambda x, n: x * n, static_argnums=1)
    assert float(f(jnp.float32(2.0), 3)) == 6.0
    with pytest.raises(TypeError):
        compiling.jit(conv, no_such_keyword=1)


def test_inside_other_traces_the_function_runs_without_its_options():
    f = compiling.jit(conv)
    expected = np.asarray(f(*ARGS))
    np.testing.assert_allclose(jax.jit(f)(*ARGS), expected, rtol=0, atol=1e-5)
    assert jax.eval_shape(f, *ARGS).shape == expected.shape
    assert jax.eval_shape(compiling.jit(lambda: f(*ARGS))).shape == expected.shape
    grads = jax.jit(jax.grad(lambda x: f(x, ARGS[1]).sum()))(ARGS[0])
    np.testing.assert_allclose(grads, jax.grad(lambda x: conv(x, ARGS[1]).sum())(ARGS[0]),
                               rtol=0, atol=1e-4)
    batched = jax.vmap(f, in_axes=(0, None))(ARGS[0][:, None], ARGS[1])
    np.testing.assert_allclose(batched[:, 0], expected, rtol=0, atol=1e-5)
    assert ynn_fusions(f, *ARGS) == 0                 # `lower` is the outermost jit's
