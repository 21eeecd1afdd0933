"""Random networks that fit together, for `stylemask demo --config tiny` and the tests.

The e4e encoder always gives 512-wide W+ rows, so the config's generator is taken with
style_dim 512 (its size, channels and mapping depth kept) and the encoder gets
n_styles = n_latent of that generator with one IR-SE unit per stage. Images from random weights
are coloured noise, not faces: the page demonstrates the machinery.

The e4e variables follow the project's random-initialisation rule (`models.random_init`:
shapes from `jax.eval_shape`, nothing compiled).
"""

from __future__ import annotations

import ml_collections
import numpy as np

from stylemask_jax.inference import tiny_models
from stylemask_jax.models.e4e import E4E_INPUT_SIZE, Encoder4Editing
from stylemask_jax.models.random_init import random_variables

E4E_WIDTH = 512
TINY_E4E_UNITS = (1, 1, 1, 1)


def random_e4e(n_styles: int, units=TINY_E4E_UNITS, seed: int = 1):
    """A random e4e encoder: (module, variables), without running Flax's init."""
    module = Encoder4Editing(n_styles=n_styles, units=tuple(units))
    example = np.zeros((1, E4E_INPUT_SIZE, E4E_INPUT_SIZE, 3), np.float32)
    return module, random_variables(module, np.random.default_rng(seed), example)


def tiny_photo_models(config, seed: int = 0):
    """-> (inference.Models with a style_dim-512 generator of `config`, e4e module, e4e variables)."""
    wide = ml_collections.ConfigDict(config.to_dict())   # the config is locked: a plain copy
    wide.generator.style_dim = E4E_WIDTH
    models = tiny_models(wide, seed=seed)
    encoder, evars = random_e4e(models.generator.n_latent, seed=seed + 1)
    return models, encoder, evars
