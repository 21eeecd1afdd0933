"""The frozen networks of training: converted weights from the config's paths, or random ones.

`build_networks(config) -> (Networks, frozen)`: `Networks` holds the static Linen modules
(hashable, closed over by jit); `frozen` is the pytree of their variables plus the FLAME arrays
and the truncation latent, passed to the jitted step as an argument (replicated on the mesh).

config.weights.<net> is a converted-weights directory or None. With None the network gets
random weights from config.seed (the tiny config does this for every network, so training runs
with no files; its losses are meaningful only as a test of the machinery).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax.codes import truncation_mean
from stylemask_jax.compiling import jit
from stylemask_jax.errors import UserInputError
from stylemask_jax.models import deca as deca_lib
from stylemask_jax.models import flame as flame_lib
from stylemask_jax.models import irse as irse_lib
from stylemask_jax.models.mask_net import MaskNet
from stylemask_jax.models.random_init import random_variables
from stylemask_jax.models.remat import REMAT_MODES
from stylemask_jax.models.stylegan2 import Generator, init_variables, load_generator


@dataclasses.dataclass(frozen=True)
class Networks:
    generator: Generator
    mask_net: MaskNet
    deca: deca_lib.DecaEncoder
    irse: irse_lib.IRSE


def random_flame(key: jax.Array, rings: int = 12, segments: int = 16) -> flame_lib.FlameModel:
    """A small synthetic FLAME-format head (an ellipsoid with random blend shapes) for tiny runs.

    Same array layout as a converted FLAME model (100 shape + 50 expression components, 5
    joints, 68 landmarks, 79 contour rows); values are random and mean nothing.
    """
    rng = key_rng(key)
    theta = np.linspace(0.15, np.pi - 0.15, rings)
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    verts = np.stack([0.08 * np.sin(t) * np.sin(p), 0.11 * np.cos(t), 0.09 * np.sin(t) * np.cos(p)],
                     -1).reshape(-1, 3)
    v = len(verts)
    faces = []
    for r in range(rings - 1):
        for s in range(segments):
            a, b = r * segments + s, r * segments + (s + 1) % segments
            faces += [(a, b, a + segments), (b, b + segments, a + segments)]
    faces = np.array(faces)
    n_faces = len(faces)
    weights = rng.random((v, 5)) ** 4
    weights /= weights.sum(1, keepdims=True)
    regressor = rng.random((5, v)) ** 8
    regressor /= regressor.sum(1, keepdims=True)

    def bary(*shape):
        w = rng.random(shape + (3,)) + 0.1
        return (w / w.sum(-1, keepdims=True)).astype(np.float32)

    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    i32 = lambda x: jnp.asarray(x, jnp.int32)  # noqa: E731
    return flame_lib.FlameModel(
        v_template=f32(verts), shapedirs=f32(rng.normal(0, 2e-3, (v, 3, 150))),
        posedirs=f32(rng.normal(0, 1e-3, (36, 3 * v))), J_regressor=f32(regressor),
        lbs_weights=f32(weights), faces=i32(faces),
        static_lmk_faces_idx=i32(rng.integers(0, n_faces, 51)), static_lmk_bary_coords=f32(bary(51)),
        dynamic_lmk_faces_idx=i32(rng.integers(0, n_faces, (79, 17))),
        dynamic_lmk_bary_coords=f32(bary(79, 17)),
        full_lmk_faces_idx=i32(rng.integers(0, n_faces, 68)), full_lmk_bary_coords=f32(bary(68)))


def key_rng(key: jax.Array) -> np.random.Generator:
    """A numpy Generator seeded by a JAX key's data (for `models.random_init`)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


def _dtype(config):
    return jnp.bfloat16 if config.get("compute_dtype", "float32") == "bfloat16" else jnp.float32


def remat_mode(config) -> str:
    """config.remat as a models/remat.py mode; True/False are "blocks"/"none"."""
    value = config.get("remat", "none")
    value = {True: "blocks", False: "none", "True": "blocks", "False": "none"}.get(value, value)
    if value not in REMAT_MODES:
        raise UserInputError(f"config.remat={config.get('remat')!r}: expected one of "
                             f"{', '.join(REMAT_MODES)} (or True = blocks, False = none)")
    return value


_NETWORK_FIELDS = ("weights", "generator", "num_layers_control", "seed", "compute_dtype", "remat",
                   "random_deca_blocks", "random_deca_widths", "random_irse_units")
_CACHE: dict = {}


def build_networks(config) -> tuple[Networks, dict]:
    """(Networks, frozen variables) for a training config (see the module docstring).

    Cached per process on the config fields that define the networks, so evaluation, export
    and resumed runs in one process do not load or initialise the weights again.
    """
    key = repr([(name, config.get(name)) for name in _NETWORK_FIELDS])
    if key not in _CACHE:
        _CACHE.clear()  # keep at most one set of (possibly large) frozen weights alive
        _CACHE[key] = _build_networks(config)
    return _CACHE[key]


def _build_networks(config) -> tuple[Networks, dict]:
    dtype, remat = _dtype(config), remat_mode(config)
    weights = config.weights
    keys = jax.random.split(jax.random.key(config.seed + 1), 4)
    if weights.generator:
        generator, gvars, latent_avg = load_generator(weights.generator, dtype=dtype)
    else:
        generator = Generator.from_arch(dict(config.generator), dtype=dtype)
        gvars = jit(lambda key: init_variables(generator, key))(keys[0])
        latent_avg = None
    if weights.deca:
        deca, dvars = deca_lib.load_deca(weights.deca, dtype=dtype)
    else:
        deca = deca_lib.DecaEncoder(blocks=tuple(config.random_deca_blocks),
                                    widths=tuple(config.random_deca_widths), dtype=dtype)
        dvars = jax.device_put(random_variables(deca, key_rng(keys[1]),
                                                 jnp.zeros((1, 224, 224, 3), jnp.float32)))
    if weights.irse:
        irse, ivars = irse_lib.load_irse(weights.irse, dtype=dtype)
    else:
        irse = irse_lib.IRSE(units=tuple(config.random_irse_units), dtype=dtype)
        ivars = jax.device_put(random_variables(irse, key_rng(keys[2]),
                                                 jnp.zeros((1, 112, 112, 3), jnp.float32)))
    flame = flame_lib.load_flame(weights.flame) if weights.flame else random_flame(keys[3])
    latent_avg = truncation_mean(generator, gvars, latent_avg)
    mask_net = MaskNet(tuple(generator.style_dims[: config.num_layers_control]), dtype=dtype)
    # Checkpointing per synthesis resolution / bottleneck / IR-SE unit (models/remat.py); only
    # the gradient-carrying passes of the step are affected.
    generator, deca, irse = (net.clone(remat=remat) for net in (generator, deca, irse))
    frozen = {"generator": gvars, "deca": dvars, "irse": ivars, "flame": flame,
              "truncation_latent": jnp.asarray(latent_avg, jnp.float32).reshape(-1)}
    return Networks(generator, mask_net, deca, irse), frozen
