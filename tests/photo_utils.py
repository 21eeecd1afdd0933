"""Random networks that fit together for the photo and video tests, and test photos / clips.

The e4e encoder gives (n_styles, 512) W+ codes, so the generator must have style_dim 512 and
n_latent == n_styles: a 64 px generator (10 W+ rows, the tiny config's channels) with a 512-wide
mapping, and a 10-code e4e with one IR-SE unit per stage (the size of the e4e fixture).
`write_weights` saves them as converted-weights folders for the command line.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from stylemask_jax.inference import Models
from stylemask_jax.models.e4e import Encoder4Editing
from stylemask_jax.models.irse import IRSE
from stylemask_jax.models.mask_net import MaskNet, init_mask_net
from stylemask_jax.models.random_init import fill_random, random_variables
from stylemask_jax.models.stylegan2 import Generator, init_variables
from stylemask_jax.weights import save_weights
from video_utils import ALIGN, clip_frames, write_test_clip

GEN_ARCH = dict(size=64, style_dim=512, n_mlp=2, lr_mlp=0.01, channels=[48, 40, 32, 24, 16],
                blur_kernel=[1, 3, 3, 1])
N_STYLES = 10
E4E_UNITS = (1, 1, 1, 1)
CONTROL = 7


def photo_models(seed: int = 0, arch: dict = GEN_ARCH):
    """inference.Models: the 64 px / style_dim 512 generator (or `arch`) and a mask network,
    random."""
    gen = Generator.from_arch(arch)
    mask_net = MaskNet(tuple(gen.style_dims[:CONTROL]))
    rng = np.random.default_rng(seed)

    def generator_leaf(path, leaf):  # init_variables' distributions, drawn with numpy
        keys = jax.tree_util.keystr(path)
        if "noise_strength" in keys or ("bias" in keys and "modulation" not in keys):
            return np.zeros(leaf.shape, np.float32)
        if "modulation" in keys and "bias" in keys:
            return np.ones(leaf.shape, np.float32)
        scale = 1.0 / arch["lr_mlp"] if "mapping" in keys else 1.0
        return (rng.standard_normal(leaf.shape) * scale).astype(np.float32)

    gvars = jax.tree_util.tree_map_with_path(
        generator_leaf, jax.eval_shape(lambda: init_variables(gen, jax.random.key(0))))
    mvars = fill_random(jax.eval_shape(lambda: init_mask_net(mask_net, jax.random.key(0))), rng)
    return Models(gen, gvars, mask_net, mvars, None)


def e4e_net(seed: int = 1):
    """A random 10-code e4e (one IR-SE unit per stage): (module, variables)."""
    module = Encoder4Editing(n_styles=N_STYLES, units=E4E_UNITS)
    example = np.zeros((1, 256, 256, 3), np.float32)
    return module, random_variables(module, np.random.default_rng(seed), example)


def irse_net(seed: int = 2):
    """A random IR-SE with one unit per stage: (module, variables)."""
    module = IRSE(units=(1, 1, 1, 1))
    example = np.zeros((1, 112, 112, 3), np.float32)
    return module, random_variables(module, np.random.default_rng(seed), example)


def write_weights(folder) -> dict:
    """Writes generator/, mask_net/, e4e/, irse/ (converted-weights folders) -> their paths."""
    folder = os.fspath(folder)
    models = photo_models()
    encoder, evars = e4e_net()
    _, ivars = irse_net()
    paths = {name: os.path.join(folder, name) for name in ("generator", "mask_net", "e4e", "irse")}
    save_weights(paths["generator"], "stylegan2", models.gvars, models.generator.arch())
    save_weights(paths["mask_net"], "mask_net", models.mvars,
                 {"widths": list(models.mask_net.widths), "num_layers_control": CONTROL, "step": 0})
    save_weights(paths["e4e"], "e4e", evars, {"n_styles": N_STYLES, "units": list(E4E_UNITS)})
    save_weights(paths["irse"], "irse", ivars, {"units": [1, 1, 1, 1], "embedding_dim": 512})
    return paths


def fixture_photo(name: str) -> str:
    return os.path.join(ALIGN, f"{name}.png")


def clip_with_gaps(n: int, blank, width: int = 160, height: int = 128) -> np.ndarray:
    """The moving astronaut clip (`video_utils.clip_frames`) with the frames in `blank` black."""
    frames = clip_frames(n, width, height).copy()
    for k in blank:
        frames[k] = 0
    return frames


__all__ = ["GEN_ARCH", "N_STYLES", "clip_with_gaps", "e4e_net", "fixture_photo", "irse_net",
           "photo_models", "write_test_clip", "write_weights"]
