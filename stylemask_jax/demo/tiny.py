"""Random networks that fit together, for `stylemask demo --config tiny` and the tests.

The e4e encoder always gives 512-wide W+ rows, so the config's generator is taken with
style_dim 512 (its size, channels and mapping depth kept) and the encoder gets
n_styles = n_latent of that generator with one IR-SE unit per stage. Images from random weights
are coloured noise, not faces: the page demonstrates the machinery.

The e4e variables are drawn with numpy on shapes from `jax.eval_shape` (Flax's init of the
encoder compiles the whole network, which takes minutes on a busy 2-core machine): kernels
N(0, 1 / fan_in), batch-norm scales and variances 1, PReLU slopes 0.25, everything else 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

E4E_WIDTH = 512
TINY_E4E_UNITS = (1, 1, 1, 1)


def fill_random(shapes, rng: np.random.Generator) -> dict:
    """A pytree of ShapeDtypeStructs -> float32 numpy leaves (the rule in the module docstring)."""
    def fill(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        if name == "kernel":
            fan_in = np.prod(leaf.shape[:-1])
            return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(np.float32)
        value = {"scale": 1.0, "var": 1.0, "alpha": 0.25}.get(name, 0.0)
        return np.full(leaf.shape, value, np.float32)
    return jax.tree_util.tree_map_with_path(fill, shapes)


def random_e4e(n_styles: int, units=TINY_E4E_UNITS, seed: int = 1):
    """A random e4e encoder: (module, variables), without running Flax's init."""
    from stylemask_jax.models.e4e import E4E_INPUT_SIZE, Encoder4Editing
    module = Encoder4Editing(n_styles=n_styles, units=tuple(units))
    example = jnp.zeros((1, E4E_INPUT_SIZE, E4E_INPUT_SIZE, 3), jnp.float32)
    shapes = jax.eval_shape(module.init, jax.random.key(0), example)
    return module, fill_random(shapes, np.random.default_rng(seed))


def tiny_photo_models(config, seed: int = 0):
    """-> (inference.Models with a style_dim-512 generator of `config`, e4e module, e4e variables)."""
    import ml_collections
    from stylemask_jax.inference import tiny_models
    wide = ml_collections.ConfigDict(config.to_dict())   # the config is locked: a plain copy
    wide.generator.style_dim = E4E_WIDTH
    models = tiny_models(wide, seed=seed)
    encoder, evars = random_e4e(models.generator.n_latent, seed=seed + 1)
    return models, encoder, evars
