"""e4e encoder: converter, W+ parity with the official pSp/Encoder4Editing, input pooling.

Reference values: tests/fixtures/e4e (official StyleMask pSp loading + forward on random
weights, float64; one IR-SE unit per stage, output size 64 -> 10 codes; see
tests/fixtures/e4e/README.md).
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convert_weights.common import ConversionError, StateDict
from convert_weights.e4e import convert_e4e, convert_encoder
from convert_weights.torch_reader import load_torch_file
from stylemask_jax.models.e4e import (Encoder4Editing, e4e_from_arch, e4e_input, load_e4e,
                                      n_styles_for, style_block_convs, style_groups)
from stylemask_jax.models.irse import IRSEBody

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "e4e")
CHECKPOINT = os.path.join(FIXTURES, "e4e_small.pt")


@functools.lru_cache(maxsize=None)
def _converted():
    return convert_e4e(CHECKPOINT)


@functools.lru_cache(maxsize=None)
def _cases():
    return dict(np.load(os.path.join(FIXTURES, "cases.npz")))


@functools.lru_cache(maxsize=None)
def _codes():
    variables, arch = _converted()
    images = jnp.asarray(_cases()["images"].transpose(0, 2, 3, 1))
    return np.asarray(jax.jit(e4e_from_arch(arch).apply)(variables, images))


def test_converter_arch_and_tree():
    variables, arch = _converted()
    assert arch == {"n_styles": 10, "units": [1, 1, 1, 1]}
    np.testing.assert_array_equal(variables["params"]["latent_avg"], _cases()["latent_avg"])
    expected = jax.eval_shape(Encoder4Editing(n_styles=10, units=(1, 1, 1, 1)).init,
                              jax.random.key(0), jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32))
    assert (jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), variables)
            == jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), dict(expected)))


def test_feature_taps_match_reference():
    variables, arch = _converted()
    c = _cases()
    body = {"params": variables["params"]["body"], "batch_stats": variables["batch_stats"]["body"]}
    _, c1, c2, c3 = IRSEBody(units=tuple(arch["units"])).apply(
        body, jnp.asarray(c["images"].transpose(0, 2, 3, 1)))
    assert c1.shape == (2, 64, 64, 128) and c2.shape == (2, 32, 32, 256) and c3.shape == (2, 16, 16, 512)
    for ours, name in ((c1, "c1_mean"), (c2, "c2_mean"), (c3, "c3_mean")):
        # spatial means of values of size <= ~2 after 2-4 float32 units: measured <= 4e-7
        np.testing.assert_allclose(np.asarray(ours.mean(axis=(1, 2))), c[name], rtol=0, atol=2e-6)


def test_wplus_codes_match_reference():
    codes, c = _codes(), _cases()
    latent_avg = _cases()["latent_avg"]
    assert codes.shape == (2, 10, 512) and codes.dtype == np.float32
    # Values up to ~4 after 5 convs per style block; the reference's own float32 run differs from
    # its float64 run by 8.4e-6 (README). We measured 4.3e-6; 2e-5 is ~2x the reference's error.
    np.testing.assert_allclose(codes, c["codes"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(codes - latent_avg, c["codes_without_avg"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(codes[:, 0] - latent_avg[0], c["w0"], rtol=0, atol=2e-5)  # measured 2.3e-6


def test_bfloat16_compute_runs_and_returns_float32():
    variables, arch = _converted()
    images = jnp.asarray(_cases()["images"][:1].transpose(0, 2, 3, 1))
    codes16 = np.asarray(e4e_from_arch(arch, jnp.bfloat16).apply(variables, images))
    assert codes16.dtype == np.float32
    # bfloat16 (8 significant bits) through the body and 6-conv style blocks: measured 4.5e-2 on
    # codes of size ~4 (~1%); 0.15 leaves room for other inputs while still catching a wrong layer
    np.testing.assert_allclose(codes16, _codes()[:1], rtol=0, atol=0.15)


def _encoder_entries():
    obj = load_torch_file(CHECKPOINT)
    return {k[len("encoder."):]: v for k, v in obj["state_dict"].items()}, obj["latent_avg"]


@pytest.mark.parametrize("edit,message", [
    (lambda sd: sd.pop("styles.9.convs.10.weight"), "missing key 'encoder.styles.9.convs.10.weight'"),
    (lambda sd: sd.pop("latlayer2.bias"), "missing key 'encoder.latlayer2.bias'"),
    (lambda sd: sd.update({"styles.2.convs.8.weight": np.zeros((512, 512, 3, 3), np.float32)}),
     "unexpected key(s) 'encoder.styles.2.convs.8.weight'"),
    (lambda sd: sd.update({"styles.0.linear.weight": np.zeros((512, 256), np.float32)}),
     "'encoder.styles.0.linear.weight' has shape (512, 256), expected (512, 512)"),
    (lambda sd: [sd.pop(k) for k in list(sd) if k.startswith("styles.4.")],
     "missing key(s) 'encoder.styles.4.*'"),
    (lambda sd: sd.pop("body.3.res_layer.5.fc2.weight"), "missing key 'encoder.body.3.res_layer.5.fc2.weight'"),
])
def test_encoder_conversion_errors_name_the_key(edit, message):
    sd, latent_avg = _encoder_entries()
    edit(sd)
    with pytest.raises(ConversionError) as err:
        convert_encoder(StateDict(sd, "e4e.pt", prefix="encoder."), latent_avg)
    assert message in str(err.value) and str(err.value).startswith("e4e.pt: ")


def test_latent_avg_shapes():
    sd, latent_avg = _encoder_entries()
    variables, _ = convert_encoder(StateDict(dict(sd), "e4e.pt", "encoder."), latent_avg[0])
    np.testing.assert_array_equal(variables["params"]["latent_avg"], np.tile(latent_avg[:1], (10, 1)))
    with pytest.raises(ConversionError, match=r"'latent_avg' has shape \(18, 512\), expected \(10, 512\)"):
        convert_encoder(StateDict(dict(sd), "e4e.pt", "encoder."), np.zeros((18, 512), np.float32))


def test_checkpoint_level_errors(tmp_path):
    import torch
    good = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    cases = {
        "no_avg.pt": ({"state_dict": good["state_dict"], "opts": {}}, "missing entry 'latent_avg'"),
        "foreign.pt": ({"state_dict": {**good["state_dict"], "discriminator.w": torch.zeros(1)},
                        "latent_avg": good["latent_avg"]}, "unexpected key(s) 'discriminator.w'"),
        "plain.pt": (good["state_dict"], "expected an e4e checkpoint"),
    }
    for name, (obj, message) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(ConversionError) as err:
            convert_e4e(tmp_path / name)
        assert str(err.value).startswith(f"{tmp_path / name}: ") and message in str(err.value), name
    # generator entries are known and left to the stylegan2 converter
    torch.save({**good, "state_dict": {**good["state_dict"], "decoder.style.1.weight": torch.zeros(2)}},
               tmp_path / "with_decoder.pt")
    variables, arch = convert_e4e(tmp_path / "with_decoder.pt")
    assert arch["n_styles"] == 10


def _per_block(params, n_styles):
    """The grouped style parameters split back into the per-block layout
    (`styles_{i}/conv_{k}`, `styles_{i}/linear`) of directories converted before the groups."""
    out = {k: v for k, v in params.items() if k not in {g[0] for g in style_groups(n_styles)}}
    for name, first, end in style_groups(n_styles):
        for j, i in enumerate(range(first, end)):
            out[f"styles_{i}"] = {
                layer: {"kernel": (w["kernel"][j] if layer == "linear"
                                   else np.transpose(w["kernel"][j], (1, 2, 3, 0))),  # OHWI -> HWIO
                        "bias": w["bias"][j]}
                for layer, w in params[name].items()}
    return out


def test_directories_in_the_per_block_layout_still_load(tmp_path):
    from stylemask_jax.weights import save_weights
    variables, arch = _converted()
    old = dict(variables, params=_per_block(variables["params"], arch["n_styles"]))
    assert old["params"]["styles_8"]["conv_0"]["kernel"].shape == (3, 3, 512, 512)
    assert old["params"]["styles_8"]["linear"]["kernel"].shape == (512, 512)
    save_weights(tmp_path / "old", "e4e", old, arch)
    _, loaded = load_e4e(tmp_path / "old")
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(variables)
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, variables)


def test_layout_helpers():
    assert [n_styles_for(s) for s in (64, 256, 1024)] == [10, 14, 18]
    assert [style_block_convs(i) for i in range(18)] == [4] * 3 + [5] * 4 + [6] * 11
    assert style_groups(18) == [("styles_coarse", 0, 3), ("styles_middle", 3, 7), ("styles_fine", 7, 18)]
    assert style_groups(6) == [("styles_coarse", 0, 3), ("styles_middle", 3, 6)]
    with pytest.raises(ValueError):
        n_styles_for(1000)


def test_e4e_input_box_averages_large_images():
    x = np.random.default_rng(0).uniform(-1, 1, (1, 512, 512, 3)).astype(np.float32)
    pooled = np.asarray(e4e_input(jnp.asarray(x)))
    expected = x.reshape(1, 256, 2, 256, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(pooled, expected, rtol=0, atol=1e-6)  # float32 means of 4 values
    assert e4e_input(jnp.asarray(x[:, :256, :256])).shape == (1, 256, 256, 3)
    with pytest.raises(ValueError, match="multiple of 256"):
        e4e_input(jnp.zeros((1, 300, 300, 3)))
