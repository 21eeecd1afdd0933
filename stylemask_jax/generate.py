"""Sampling images from the generator by seed (`stylemask generate` writes them as files).

    gen, variables, latent_avg = load_generator("weights/stylegan2")   # or random_generator(arch)
    z = seed_latents([0, 1, 2], gen.style_dim)                          # (3, D)
    mean = truncation_mean(gen, variables, latent_avg)                   # (D,) (codes.py)
    for start, images in generate(gen, variables, z, truncation=0.7, mean=mean):
        ...                                                             # (b, H, W, 3) in [-1, 1]

Seed s gives z = jax.random.normal(jax.random.key(s), (1, style_dim))[0] (`codes.seed_codes`),
the same on every machine and independent of the batch size.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax.batching import iter_batches
from stylemask_jax.codes import seed_codes
from stylemask_jax.compiling import jit
from stylemask_jax.models.stylegan2 import Generator, face_pool, init_variables


def seed_latents(seeds: Sequence[int], style_dim: int) -> np.ndarray:
    """One standard-normal z per seed: (len(seeds), style_dim) float32."""
    return np.stack([seed_codes(int(s), 1, style_dim)[0] for s in seeds]).astype(np.float32)


def random_generator(arch: dict, seed: int = 0, dtype=jnp.float32):
    """A generator of `arch` with the reference's random initialisation from key(seed) (its images
    are noise, not faces): (Generator, variables, None)."""
    gen = Generator.from_arch(dict(arch), dtype=dtype)
    return gen, init_variables(gen, jax.random.key(seed)), None


def make_render_fn(gen: Generator, truncation: float, resize_256: bool = False):
    """jit(variables, z (B, D), mean (D,)) -> images (B, H, W, 3); compiled once per batch size."""
    truncation = float(truncation)

    def render(variables, z, mean):
        images = gen.apply(variables, z, truncation=truncation, truncation_latent=mean)
        return face_pool(images) if resize_256 else images

    return jit(render)


def generate(gen: Generator, variables, z: np.ndarray, truncation: float = 1.0,
             mean: np.ndarray | None = None, batch_size: int = 8, resize_256: bool = False,
             progress: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (start index, float32 images (b, H, W, 3)) for z (N, D) in batches of `batch_size`.

    The last batch is padded so every call reuses one compiled shape. `mean` is required when
    truncation != 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if truncation != 1.0 and mean is None:
        raise ValueError("truncation != 1 needs a mean latent")
    batch_size = max(1, min(batch_size, len(z)))
    mean = jnp.zeros((gen.style_dim,), jnp.float32) if mean is None else jnp.asarray(mean)
    render = make_render_fn(gen, truncation, resize_256)
    yield from iter_batches(lambda chunk: render(variables, chunk, mean),
                            [np.asarray(z, np.float32)], batch_size,
                            desc="generate" if progress else None, unit="image")
