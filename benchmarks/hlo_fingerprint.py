"""Fingerprints of the lowered programs: a refactor that leaves them equal cannot change speed.

    python -m benchmarks.hlo_fingerprint > after.txt      # on two checkouts, then diff them

For the tiny and FFHQ-1024 layouts, batch 1 and 8: the reenactment (`reenact.make_reenact_fn`,
full pair and reenacted-only), the generator (z -> image), and at 1024 the reenactment with
`resize_256`, `face_pool` and the e4e encoder. Each line is the first 16 hex digits of the
SHA-256 of the jitted function's StableHLO text (`jit(f).lower(...).as_text()`); weights are
abstract (`jax.eval_shape`), so nothing runs and no memory is used for them.
"""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp

import configs.ffhq1024
import configs.tiny
from stylemask_jax import reenact as method
from stylemask_jax.models.e4e import E4E_INPUT_SIZE, Encoder4Editing
from stylemask_jax.models.mask_net import MaskNet, init_mask_net
from stylemask_jax.models.stylegan2 import Generator, face_pool, init_variables


def fingerprint(lowered) -> str:
    return hashlib.sha256(lowered.as_text().encode()).hexdigest()[:16]


def networks(config):
    gen = Generator.from_arch(dict(config.generator))
    mask = MaskNet(tuple(gen.style_dims[: config.num_layers_control]))
    gvars = jax.eval_shape(lambda: init_variables(gen, jax.random.key(0)))
    mvars = jax.eval_shape(lambda: init_mask_net(mask, jax.random.key(1)))
    return gen, mask, gvars, mvars


def main() -> None:
    for name, config in (("tiny", configs.tiny.get_config()),
                         ("ffhq1024", configs.ffhq1024.get_config())):
        gen, mask, gvars, mvars = networks(config)
        for batch in (1, 8):
            w = jax.ShapeDtypeStruct((batch, gen.n_latent, gen.style_dim), jnp.float32)
            for outputs in ("all", "reenacted"):
                fn = method.make_reenact_fn(gen, mask, False, None, outputs)
                print(name, batch, f"reenact-{outputs}", fingerprint(fn.lower(gvars, mvars, w, w)))
            z = jax.ShapeDtypeStruct((batch, gen.style_dim), jnp.float32)
            print(name, batch, "generator", fingerprint(jax.jit(gen.apply).lower(gvars, z)))
    gen, mask, gvars, mvars = networks(configs.ffhq1024.get_config())
    w = jax.ShapeDtypeStruct((2, gen.n_latent, gen.style_dim), jnp.float32)
    fn = method.make_reenact_fn(gen, mask, True, None, "all")
    print("ffhq1024 2 reenact-resize_256", fingerprint(fn.lower(gvars, mvars, w, w)))
    images = jax.ShapeDtypeStruct((3, 1024, 1024, 3), jnp.float32)
    print("ffhq1024 3 face_pool", fingerprint(jax.jit(face_pool).lower(images)))
    encoder = Encoder4Editing(n_styles=gen.n_latent)
    crops = jax.ShapeDtypeStruct((2, E4E_INPUT_SIZE, E4E_INPUT_SIZE, 3), jnp.float32)
    evars = jax.eval_shape(encoder.init, jax.random.key(0), crops)
    print("ffhq1024 2 e4e", fingerprint(jax.jit(encoder.apply).lower(evars, crops)))


if __name__ == "__main__":
    main()
