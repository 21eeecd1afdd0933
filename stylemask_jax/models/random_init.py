"""The one random-initialisation rule for frozen ResNet-style networks (e4e, IR-SE, DECA) and
the mask network when no weights are given: the tiny configs, the demo's `--config tiny`, tests.

    variables = random_variables(IRSE(units=(1, 1, 1, 1)), np.random.default_rng(0),
                                 np.zeros((1, 112, 112, 3), np.float32))
    variables = fill_random(jax.eval_shape(module.init, key, example), rng)   # the same

Shapes come from `jax.eval_shape(module.init, ...)`, so nothing is compiled (Flax's init of a
whole encoder compiles the network: seconds to minutes on a busy CPU). Each leaf, by its name:
`kernel` N(0, 1 / fan_in) with fan_in the product of all but the last axis; `scale` and `var`
(batch norm) 1; `alpha` (PReLU slopes) 0.25; everything else 0. Leaves are numpy arrays of the
leaf's dtype, drawn in the tree's flattening order from one numpy Generator.
"""

from __future__ import annotations

import jax
import numpy as np

_CONSTANTS = {"scale": 1.0, "var": 1.0, "alpha": 0.25}


def fill_random(shapes, rng: np.random.Generator) -> dict:
    """A pytree of ShapeDtypeStructs -> numpy leaves by the rule of the module docstring."""
    def fill(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        if name == "kernel":
            fan_in = np.prod(leaf.shape[:-1])
            return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(leaf.dtype)
        return np.full(leaf.shape, _CONSTANTS.get(name, 0.0), leaf.dtype)
    return jax.tree_util.tree_map_with_path(fill, shapes)


def random_variables(module, rng: np.random.Generator, *example_inputs) -> dict:
    """Random variables of a Flax module for `module.init(key, *example_inputs)`'s tree."""
    return fill_random(jax.eval_shape(module.init, jax.random.key(0), *example_inputs), rng)
