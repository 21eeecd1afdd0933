"""Training state: only the mask network trains; everything else is frozen input.

`TrainState` is a pytree (step, params, opt_state, key). The optimizer is the paper's torch
Adam with coupled L2 weight decay: decay * param is added to the gradient *before* the Adam
moments (optax.add_decayed_weights before optax.adam), unlike AdamW.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from stylemask_jax.compiling import jit
from stylemask_jax.models.mask_net import init_mask_net
from stylemask_jax.sharding import replicated


@flax.struct.dataclass
class TrainState:
    step: jax.Array          # int32 scalar: number of updates applied
    params: Any              # the mask network's parameters
    opt_state: Any
    key: jax.Array           # base PRNG key (raw uint32 data); per-step keys are fold_in(key, step)


def make_optimizer(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
    """torch.optim.Adam(lr, weight_decay) semantics: g + wd * p, then Adam (eps 1e-8)."""
    return optax.chain(optax.add_decayed_weights(weight_decay),
                       optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8))


def create_state(params, optimizer: optax.GradientTransformation, seed: int) -> TrainState:
    """The state at step 0 from initial mask parameters."""
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=optimizer.init(params),
                      key=jax.random.key_data(jax.random.key(seed)))


def step_key(state_key: jax.Array, step, process_index: int = 0) -> jax.Array:
    """The PRNG key of one step: fold_in(fold_in(key, step), process_index). Training uses
    process_index 0 on every host (one global batch per step, the same codes a single-process
    run always drew)."""
    key = jax.random.wrap_key_data(state_key)
    return jax.random.fold_in(jax.random.fold_in(key, step), process_index)


def init_mask_params(nets, key: jax.Array):
    """Fresh mask-network parameters of `nets.mask_net` from `key`."""
    return init_mask_net(nets.mask_net, key)["params"]


def initial_state(nets, config, optimizer: optax.GradientTransformation, mesh) -> TrainState:
    """The step-0 state from `config.seed`, created replicated on `mesh` (jit out_shardings)."""
    def init():
        return create_state(init_mask_params(nets, jax.random.key(config.seed)), optimizer,
                            config.seed)
    return jit(init, out_shardings=replicated(mesh))()
