"""StyleGAN2 parity against the reference vectors (official code, float64, random weights).

Tolerances follow tests/fixtures/stylegan2/README.md:
the official code run in float32 deviates from the stored float64 values by about 1e-6
(w 1.0e-6, styles 8e-7, images 1.1e-6..1.7e-6), so float32 re-implementations that differ only
in summation order get atol 1e-5 for w / W+ / styles and 1e-4 for images (the suggested
values); a wrong pad, flip, gain or transposition gives errors of 0.1 to 1.
"""

import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convert_weights.stylegan2 import convert_stylegan2
from stylemask_jax.models import stylegan2 as sg

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "stylegan2")
ATOL_CODES = 1e-5   # w, W+, styles: float32 ~1e-6 from float64 (README)
ATOL_IMAGE = 1e-4   # images through 9 conv layers: float32 ~1.7e-6 from float64 (README)


def nhwc(x):
    return np.asarray(x).transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def cases():
    return dict(np.load(os.path.join(FIXTURES, "cases.npz")))


@pytest.fixture(scope="module")
def model():
    variables, arch, latent_avg = convert_stylegan2(os.path.join(FIXTURES, "generator_small.pt"))
    gen = sg.Generator.from_arch(arch)
    variables = jax.tree_util.tree_map(jnp.asarray, variables)
    return gen, variables, latent_avg


def test_legacy_checkpoint(model, cases):
    """The legacy (pre-zip) serialization converts to the identical tree, hence the same model."""
    gen, variables, latent_avg = model
    legacy, arch, legacy_avg = convert_stylegan2(os.path.join(FIXTURES, "generator_small_legacy.pt"))
    assert arch == gen.arch()
    np.testing.assert_array_equal(legacy_avg, latent_avg)
    assert jax.tree_util.tree_structure(legacy) == jax.tree_util.tree_structure(variables)
    for a, b in zip(jax.tree_util.tree_leaves(legacy), jax.tree_util.tree_leaves(variables)):
        np.testing.assert_array_equal(a, b)
    image = gen.apply(legacy, cases["z"], truncation=0.7, truncation_latent=legacy_avg)
    np.testing.assert_allclose(image, nhwc(cases["image_forward"]), rtol=0, atol=ATOL_IMAGE)


@pytest.fixture(scope="module")
def jitted(model):
    gen, variables, _ = model
    return dict(
        mapping=jax.jit(lambda v, z: gen.apply(v, z, method="mapping")),
        styles=jax.jit(lambda v, wp: gen.apply(v, wp, method="style_codes")),
        synth=jax.jit(lambda v, s, wp: gen.apply(v, s, wp, method="synthesize")),
    )


def test_architecture(model, cases):
    gen, variables, latent_avg = model
    assert (gen.size, gen.style_dim, gen.n_mlp, gen.num_layers, gen.n_latent) == (64, 64, 4, 9, 10)
    assert gen.style_dims == (48, 48, 40, 40, 32, 32, 24, 24, 16)
    assert variables["buffers"]["noise_7"].shape == (1, 64, 64, 1)
    # the checkpoint's latent_avg is the stored truncation latent (an exact copy)
    np.testing.assert_array_equal(latent_avg, cases["truncation_latent"][0])


def test_mapping_and_truncation(model, jitted, cases):
    gen, variables, latent_avg = model
    w = jitted["mapping"](variables, cases["z"])
    np.testing.assert_allclose(w, cases["w"], rtol=0, atol=ATOL_CODES)  # README: f32 w ~1.0e-6
    w_trunc = sg.truncate(w, latent_avg, 0.7)
    np.testing.assert_allclose(w_trunc, cases["w_trunc"], rtol=0, atol=ATOL_CODES)
    # the mean may also be given as (1, D), as the reference stores it
    np.testing.assert_allclose(sg.truncate(w, cases["truncation_latent"], 0.7), w_trunc,
                               rtol=0, atol=0)
    wplus = gen.apply(variables, cases["z"], "z", 0.7, latent_avg, method="wplus")
    np.testing.assert_allclose(wplus, cases["latent"], rtol=0, atol=ATOL_CODES)
    np.testing.assert_array_equal(sg.to_wplus(w_trunc, gen.n_latent), wplus)


def test_every_style_code(model, jitted, cases):
    _, variables, _ = model
    styles = jitted["styles"](variables, jnp.asarray(cases["latent"]))
    assert len(styles) == 9
    for i, s in enumerate(styles):
        # per-layer style codes, README: f32 ~8e-7 from f64
        np.testing.assert_allclose(s, cases[f"style_{i:02d}"], rtol=0, atol=ATOL_CODES,
                                   err_msg=f"style layer {i}")
    np.testing.assert_allclose(np.concatenate(styles, 1), cases["style_concat"], rtol=0,
                               atol=ATOL_CODES)


def test_image_forward(model, cases):
    gen, variables, latent_avg = model
    fwd = jax.jit(lambda v, z, t: gen.apply(v, z, truncation=0.7, truncation_latent=t))
    image = fwd(variables, cases["z"], latent_avg)
    assert image.shape == (3, 64, 64, 3) and image.dtype == jnp.float32
    # README: images atol 1e-4 at the small config (f32 reference ~1.1e-6 from f64)
    np.testing.assert_allclose(image, nhwc(cases["image_forward"]), rtol=0, atol=ATOL_IMAGE)


def test_decoder_path_equals_forward(model, jitted, cases):
    """Image from S (conv layers) + W+ (ToRGB layers) is the forward image, bit for bit."""
    gen, variables, latent_avg = model
    wplus = jnp.asarray(cases["latent"])
    styles = jitted["styles"](variables, wplus)
    from_s = jitted["synth"](variables, styles, wplus)
    np.testing.assert_allclose(from_s, nhwc(cases["image_decoder"]), rtol=0, atol=ATOL_IMAGE)
    forward = gen.apply(variables, wplus, input_type="wplus")
    # same operations in the same order: exactly equal (README observes 0.0 in the reference)
    np.testing.assert_array_equal(jax.jit(lambda v, wp: gen.apply(v, wp, input_type="wplus"))(
        variables, wplus), from_s)
    # eager op-by-op vs one fused jit program: float32 rounding differences of a few ulps
    np.testing.assert_allclose(forward, from_s, rtol=0, atol=1e-5)
    # synthesizing from the reference's own style codes gives the same image
    ref_styles = _split_styles(cases["style_concat"], gen.style_dims)
    np.testing.assert_allclose(jitted["synth"](variables, ref_styles, wplus),
                               nhwc(cases["image_decoder"]), rtol=0, atol=ATOL_IMAGE)


def _split_styles(concat, style_dims) -> list:
    """The reference's concatenated style codes (B, sum(style_dims)) -> list of (B, C_l)."""
    return jnp.split(jnp.asarray(concat), np.cumsum(style_dims)[:-1].tolist(), axis=-1)


def test_wplus_input(model, jitted, cases):
    gen, variables, latent_avg = model
    wplus = jnp.asarray(cases["w_plus"])
    image = jax.jit(lambda v, wp: gen.apply(v, wp, input_type="wplus"))(variables, wplus)
    np.testing.assert_allclose(image, nhwc(cases["image_wplus"]), rtol=0, atol=ATOL_IMAGE)
    styles = jitted["styles"](variables, wplus)
    np.testing.assert_allclose(np.concatenate(styles, 1), cases["style_wplus_concat"], rtol=0,
                               atol=ATOL_CODES)


def test_truncated_wplus_input(model, jitted, cases):
    gen, variables, latent_avg = model
    wplus = jnp.asarray(cases["w_plus"])
    fwd = jax.jit(lambda v, wp, t: gen.apply(v, wp, "wplus", 0.7, t))
    image = fwd(variables, wplus, latent_avg)
    np.testing.assert_allclose(image, nhwc(cases["image_wplus_trunc"]), rtol=0, atol=ATOL_IMAGE)
    truncated = sg.truncate(wplus, latent_avg, 0.7)  # row-wise on (B, L, D)
    styles = jitted["styles"](variables, truncated)
    np.testing.assert_allclose(np.concatenate(styles, 1), cases["style_wplus_trunc_concat"],
                               rtol=0, atol=ATOL_CODES)


def test_reenactment_images_from_mixed_styles(model, jitted, cases):
    """The decoder with the reference's mixed codes and source W+ gives its reenacted image."""
    gen, variables, _ = model
    styles = _split_styles(cases["new_style_concat"], gen.style_dims)
    image = jitted["synth"](variables, styles, jnp.asarray(cases["w_source"]))
    np.testing.assert_allclose(image, nhwc(cases["reenacted_image"]), rtol=0, atol=ATOL_IMAGE)


def test_synthesize_compiles_once(model, cases):
    gen, variables, _ = model
    wplus = jnp.asarray(cases["latent"])
    styles = gen.apply(variables, wplus, method="style_codes")

    @jax.jit
    @chex.assert_max_traces(n=1)
    def synth(v, s, wp):
        return gen.apply(v, s, wp, method="synthesize")

    synth(variables, styles, wplus)
    synth(variables, [s + 1.0 for s in styles], wplus * 0.5)  # new values, same shapes


def test_mean_latent_reproducible(model):
    gen, variables, latent_avg = model
    a = sg.mean_latent(gen, variables, jax.random.key(3), n=512)
    b = sg.mean_latent(gen, variables, jax.random.key(3), n=512)
    c = sg.mean_latent(gen, variables, jax.random.key(4), n=512)
    assert a.shape == (64,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # 4096 fresh samples land near the stored mean of 4096 other samples (sampling error only)
    full = sg.mean_latent(gen, variables, jax.random.key(0))
    assert np.abs(full - latent_avg).max() < 0.2 * np.abs(latent_avg).max()


def test_noise_argument(model, cases):
    gen, variables, latent_avg = model
    wplus = jnp.asarray(cases["latent"])
    stored = [variables["buffers"][f"noise_{i}"] for i in range(gen.num_layers)]
    base = gen.apply(variables, wplus, input_type="wplus")
    np.testing.assert_array_equal(gen.apply(variables, wplus, input_type="wplus", noise=stored), base)
    fresh = sg.random_noise(gen, jax.random.key(0), 3)
    assert [n.shape for n in fresh][:3] == [(3, 4, 4, 1), (3, 8, 8, 1), (3, 8, 8, 1)]
    other = gen.apply(variables, wplus, input_type="wplus", noise=fresh)
    assert np.abs(np.asarray(other) - np.asarray(base)).max() > 1e-2


def test_face_pool():
    x = jax.random.normal(jax.random.key(0), (2, 1024, 1024, 3))
    pooled = sg.face_pool(x)
    expected = np.asarray(x).reshape(2, 256, 4, 256, 4, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(pooled, expected, rtol=0, atol=1e-6)  # same mean, f32 order
    small = jnp.arange(2 * 64 * 64 * 3, dtype=jnp.float32).reshape(2, 64, 64, 3)
    up = sg.face_pool(small)  # adaptive pooling to a larger size replicates pixels
    np.testing.assert_array_equal(up, np.repeat(np.repeat(np.asarray(small), 4, 1), 4, 2))
    same = jax.random.normal(jax.random.key(1), (1, 256, 256, 3))
    np.testing.assert_array_equal(sg.face_pool(same), same)   # the one pooling: 256 unchanged
