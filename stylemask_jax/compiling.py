"""How the library compiles: `jit`, which is `jax.jit` with the XLA options measured best here.

    from stylemask_jax.compiling import jit
    step = jit(train_step, donate_argnums=0, in_shardings=...)   # any jax.jit keyword
    images = map_in_chunks(lambda part: net.apply(v, part), x, 1)  # inside a jitted function

Every jitted function of the library is made by `jit` (tests/test_layers.py checks it), so the
commands, the tests and the benchmarks run what was measured.

On a CPU, `compiler_options()` asks XLA:CPU to hand only matrix products to its YNNPACK
library and to compile convolutions and element-wise work itself (Eigen's convolutions and
XLA's own loop fusions). XLA's default also gives YNNPACK the convolutions and the element-wise
fusions around them, which on our networks is slower: IR-SE, e4e, DECA and the generator, with
and without gradients, all ran faster and compiled sooner (docs/performance.md, "XLA:CPU
options"). Results change only by float rounding: the parity tests hold with their tolerances.
Other backends get no options. An `XLA_FLAGS` that names `xla_cpu_experimental_ynn_fusion_type`
wins: then no option is set.
"""

from __future__ import annotations

import os

import jax
from jax._src import core as jax_core

YNN_OPTION = "xla_cpu_experimental_ynn_fusion_type"
# What YNNPACK may take on a CPU: the matrix products (alone or with their operands' fusions).
CPU_OPTIONS = {YNN_OPTION: "LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def compiler_options(backend: str | None = None) -> dict[str, str] | None:
    """The XLA options for `backend` (default: JAX's default backend); None where there are none."""
    if YNN_OPTION in os.environ.get("XLA_FLAGS", ""):
        return None
    return dict(CPU_OPTIONS) if (backend or jax.default_backend()) == "cpu" else None


def jit(fn, **kwargs):
    """`jax.jit(fn, **kwargs)` compiled with `compiler_options()` of the default backend.

    JAX accepts compiler options only on the outermost jit: called inside another trace (a
    jit, `jax.eval_shape`, ...), the function runs as a plain `jax.jit` and takes the options
    of the computation around it. Attributes (`lower`, `trace`, ...) are the outermost one's.
    """
    options = compiler_options()
    return _Jitted(jax.jit(fn, compiler_options=options, **kwargs),
                   jax.jit(fn, **kwargs)) if options else jax.jit(fn, **kwargs)


def map_in_chunks(fn, xs, chunk: int | None):
    """`fn(xs)` computed `chunk` rows at a time: a `lax.map` over the leading axis of the pytree
    `xs` (every leaf (B, ...)), the rows' results concatenated again. With chunk None, a batch of
    at most `chunk` rows, or one that `chunk` does not divide: `fn(xs)`, the whole batch at once.

    The same values up to float rounding, but a large batch streams through a network as a
    small one does: on a CPU the activations of one image stay in the caches, those of eight
    do not (reenact.synthesis_chunk, inversion.encoder_chunk)."""
    batch = jax.tree_util.tree_leaves(xs)[0].shape[0]
    if chunk is None or batch <= chunk or batch % chunk:
        return fn(xs)
    parts = jax.lax.map(fn, jax.tree_util.tree_map(
        lambda x: x.reshape(batch // chunk, chunk, *x.shape[1:]), xs))
    return jax.tree_util.tree_map(lambda y: y.reshape(batch, *y.shape[2:]), parts)


class _Jitted:
    """A jitted function with compiler options, and the same function without them for calls
    inside another trace."""

    def __init__(self, outermost, nested):
        self._outermost, self._nested = outermost, nested

    def __call__(self, *args, **kwargs):
        return (self._outermost if jax_core.trace_state_clean() else self._nested)(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._outermost, name)
