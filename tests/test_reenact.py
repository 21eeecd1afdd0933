"""Reenactment parity with the official StyleMask code (reference vectors on random weights).

Fixture: tests/fixtures/stylegan2 (see tests/fixtures/stylegan2/README.md): a 64x64
generator with 9 style layers, a mask network controlling the first 7, three source/target
pairs, and the gradient of sum(reenacted * R) w.r.t. the mask networks' weights. The expected
values were computed in float64 by the official code; we run float32 with full-precision
matmuls/convolutions. Tolerances follow the fixture README's measured float32-vs-float64
deviations (styles/masks ~8e-7, images ~1.7e-6, gradient ~3e-6 on |grad| <= 4): codes and
masks atol 1e-5, images atol 1e-4, loss rtol 1e-5, gradients atol 1e-4 * max|grad|.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convert_weights.mask_net import convert_mask_net
from convert_weights.stylegan2 import convert_stylegan2
from stylemask_jax import reenact as method
from stylemask_jax.models.mask_net import MaskNet
from stylemask_jax.models.stylegan2 import Generator

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "stylegan2")


@pytest.fixture(scope="module")
def setup():
    gvars, arch, latent_avg = convert_stylegan2(os.path.join(FIXTURES, "generator_small.pt"))
    mvars, march = convert_mask_net(os.path.join(FIXTURES, "mask_net_small.pt"))
    gen = Generator.from_arch(arch)
    mask_net = MaskNet(tuple(march["widths"]))
    cases = dict(np.load(os.path.join(FIXTURES, "cases.npz")))
    return gen, gvars, latent_avg, mask_net, mvars, cases


def nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def _wplus(gen, gvars, z, latent_avg, psi):
    return method.encode_wplus(gen, gvars, jnp.asarray(z), "z", psi, jnp.asarray(latent_avg))


def test_masks_mixed_codes_and_image(setup):
    gen, gvars, latent_avg, mask_net, mvars, c = setup
    psi = float(c["truncation_psi"])
    with jax.default_matmul_precision("highest"):
        w_src = _wplus(gen, gvars, c["z_source"], latent_avg, psi)
        w_tgt = _wplus(gen, gvars, c["z_target"], latent_avg, psi)
        out = jax.jit(lambda g, m, a, b: method.reenact(gen, g, mask_net, m, a, b))(gvars, mvars, w_src, w_tgt)
    np.testing.assert_allclose(w_src, c["w_source"], atol=1e-5, rtol=0)
    for i, mask in enumerate(out["masks"]):
        np.testing.assert_allclose(mask, c[f"mask_{i:02d}"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(jnp.concatenate(out["masks"], 1), c["mask_concat"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(jnp.concatenate(out["mixed_styles"], 1), c["new_style_concat"],
                               atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["source"], nhwc(c["source_image"]), atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["target"], nhwc(c["target_image"]), atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["reenacted"], nhwc(c["reenacted_image"]), atol=1e-4, rtol=0)
    # the uncontrolled layers (7, 8) are the source's codes, unchanged
    s_src = method.style_codes(gen, gvars, w_src)
    for layer in (7, 8):
        np.testing.assert_array_equal(out["mixed_styles"][layer], s_src[layer])


def test_reenacted_only_equals_the_full_path(setup, capsys):
    """outputs='reenacted' synthesises B images instead of 3B; the images are the full path's
    up to float32 rounding (XLA may block a batch of B differently from one of 3B), and against
    the official reference within the same tolerance."""
    gen, gvars, latent_avg, mask_net, mvars, c = setup
    psi = float(c["truncation_psi"])
    with jax.default_matmul_precision("highest"):
        w_src = _wplus(gen, gvars, c["z_source"], latent_avg, psi)
        w_tgt = _wplus(gen, gvars, c["z_target"], latent_avg, psi)
        _, _, full = method.make_reenact_fn(gen, mask_net)(gvars, mvars, w_src, w_tgt)
        only = method.make_reenact_fn(gen, mask_net, outputs="reenacted")(gvars, mvars, w_src, w_tgt)
    diff = float(np.max(np.abs(np.asarray(only) - np.asarray(full))))
    with capsys.disabled():
        print(f"\nreenacted-only vs full path: max |diff| {diff:.2e} (images in [-1, 1])")
    assert only.shape == full.shape
    np.testing.assert_allclose(only, full, atol=1e-5, rtol=0)
    np.testing.assert_allclose(only, nhwc(c["reenacted_image"]), atol=1e-4, rtol=0)
    # the reenacted-only graph runs the synthesis on B images: its jaxpr has no 3B batch
    def image_batches(fn):
        jaxpr = jax.make_jaxpr(fn)(gvars, mvars, w_src, w_tgt)
        return {v.aval.shape[0] for eqn in jaxpr.eqns for v in eqn.outvars
                if len(getattr(v.aval, "shape", ())) == 4}
    batch = w_src.shape[0]
    assert 3 * batch in image_batches(lambda g, m, a, b: method.reenact(gen, g, mask_net, m, a, b))
    only_batches = image_batches(lambda g, m, a, b: method.reenact_only(gen, g, mask_net, m, a, b))
    assert batch in only_batches and 3 * batch not in only_batches


def test_mask_net_gradient(setup):
    gen, gvars, latent_avg, mask_net, mvars, c = setup
    psi = float(c["truncation_psi"])
    R = jnp.asarray(nhwc(c["R"]))

    with jax.default_matmul_precision("highest"):
        w_src = _wplus(gen, gvars, c["z_source"], latent_avg, psi)
        w_tgt = _wplus(gen, gvars, c["z_target"], latent_avg, psi)
        s_src = method.style_codes(gen, gvars, w_src)
        s_tgt = method.style_codes(gen, gvars, w_tgt)

        def objective(params):
            mixed, _ = method.reenact_styles(mask_net, {"params": params}, s_src, s_tgt)
            return jnp.sum(method.synthesize(gen, gvars, mixed, w_src) * R)

        loss, grads = jax.jit(jax.value_and_grad(objective))(mvars["params"])
    np.testing.assert_allclose(loss, c["loss"], rtol=1e-5)
    torch_names = {"0_weight": ("fc1", "kernel"), "0_bias": ("fc1", "bias"),
                   "2_weight": ("fc2", "kernel"), "2_bias": ("fc2", "bias")}
    checked = 0
    for key in c:
        if not key.startswith("grad_network_"):
            continue
        net = key[len("grad_"):len("grad_network_00")]
        dense, leaf = torch_names[key[len("grad_network_00_masknet_"):]]
        ours = np.asarray(grads[net][dense][leaf])
        expected = c[key].T if leaf == "kernel" else c[key]  # torch (out, in) vs Dense (in, out)
        np.testing.assert_allclose(ours, expected, atol=1e-4 * np.abs(expected).max(), rtol=0,
                                   err_msg=key)
        checked += 1
    assert checked == 5


def test_mixing_rule_on_hand_made_masks():
    rng = np.random.default_rng(0)
    src = [rng.standard_normal((2, 4)).astype(np.float32) for _ in range(3)]
    tgt = [rng.standard_normal((2, 4)).astype(np.float32) for _ in range(3)]
    masks = [np.ones((2, 4), np.float32), np.zeros((2, 4), np.float32)]
    mixed = method.mix_styles(masks, src, tgt)
    np.testing.assert_array_equal(mixed[0], tgt[0])  # mask 1 selects the target
    np.testing.assert_array_equal(mixed[1], src[1])
    np.testing.assert_array_equal(mixed[2], src[2])  # uncontrolled layer


@pytest.mark.parametrize("chunk", [1, 2])
def test_chunked_synthesis_is_the_same_images(setup, chunk):
    """`synthesize(..., chunk)` runs the batch a few images at a time (lax.map): the images
    equal the whole batch's up to float rounding, and the graph's image batch is the chunk."""
    gen, gvars, latent_avg, mask_net, mvars, c = setup
    w_src = _wplus(gen, gvars, c["z_source"], latent_avg, 1.0)
    w_tgt = _wplus(gen, gvars, c["z_target"], latent_avg, 1.0)
    wplus = jnp.concatenate([w_src, w_tgt, w_src, w_tgt])[:4]
    styles = method.style_codes(gen, gvars, wplus)
    with jax.default_matmul_precision("highest"):
        whole = jax.jit(lambda g, s, w: method.synthesize(gen, g, s, w))(gvars, styles, wplus)
        parts = jax.jit(lambda g, s, w: method.synthesize(gen, g, s, w, chunk=chunk))(
            gvars, styles, wplus)
    assert parts.shape == whole.shape == (4, gen.size, gen.size, 3)
    np.testing.assert_allclose(parts, whole, atol=1e-5, rtol=0)
    jaxpr = str(jax.make_jaxpr(lambda g, s, w: method.synthesize(gen, g, s, w, chunk=chunk))(
        gvars, styles, wplus))
    assert f"f32[{chunk},{gen.size},{gen.size},3]" in jaxpr
    # a batch the chunk does not divide runs whole; reenact passes the chunk on
    _, _, reenacted = method.make_reenact_fn(gen, mask_net, chunk=chunk)(gvars, mvars, w_src, w_tgt)
    _, _, plain = method.make_reenact_fn(gen, mask_net, chunk=None)(gvars, mvars, w_src, w_tgt)
    np.testing.assert_allclose(reenacted, plain, atol=1e-5, rtol=0)
