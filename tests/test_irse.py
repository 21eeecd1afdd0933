"""IR-SE (ArcFace): legacy-format reader, converter, embeddings, identity loss and CSIM parity.

Reference values: tests/fixtures/irse (official StyleMask IDLoss on random weights, float64;
see tests/fixtures/irse/README.md). `model_ir_se_small` has one unit per stage;
`_2unit` has [2, 1, 1, 1] units and so also runs a stride-1 unit with an identity shortcut.
"""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from convert_weights.common import ConversionError, StateDict
from convert_weights.irse import convert_irse, convert_state_dict
from convert_weights.torch_reader import load_torch_file
from stylemask_jax import cli
from stylemask_jax.faces import csim, identity_loss
from stylemask_jax.models.irse import (IRSE, arcface_input, face_embeddings, irse_from_arch,
                                       load_irse)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "irse")
VARIANTS = ["", "_2unit"]


def _nhwc(x):
    return jnp.asarray(np.asarray(x).transpose(0, 2, 3, 1))


@functools.lru_cache(maxsize=None)
def _converted(variant):
    return convert_irse(os.path.join(FIXTURES, f"model_ir_se_small{variant}.pth"))


@functools.lru_cache(maxsize=None)
def _cases(variant):
    return dict(np.load(os.path.join(FIXTURES, f"cases{variant}.npz")))


@functools.lru_cache(maxsize=None)
def _embed_fn(units):
    return jax.jit(functools.partial(face_embeddings, IRSE(units=units)))


# ----------------------------------------------------------------------------------------------
# reader and converter
# ----------------------------------------------------------------------------------------------

def test_legacy_reader_matches_torch_and_storage_index():
    path = os.path.join(FIXTURES, "model_ir_se_small.pth")
    ours = load_torch_file(path)
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(theirs)  # same 97 keys in file order (input, output, body)
    assert len(ours) == 97
    for key, tensor in theirs.items():
        assert ours[key].dtype == tensor.numpy().dtype, key
        np.testing.assert_array_equal(ours[key], tensor.numpy(), err_msg=key)  # copied bits: exact
    # Independent of torch: every strided view into the shared storage must agree on the values
    # it shares with the other views (offset + row stride from the index file).
    with open(os.path.join(FIXTURES, "model_ir_se_small.index.json")) as f:
        index = json.load(f)
    pool = np.full(524288, np.nan, np.float32)
    views = [k for k, e in index.items() if e["shared_storage"] == "pool0"]
    assert len(views) == 8
    for key in views:
        entry = index[key]
        assert list(ours[key].shape) == entry["shape"]
        positions = entry["storage_offset"] + sum(
            np.arange(n).reshape([-1 if i == d else 1 for i in range(len(entry["shape"]))]) * s
            for d, (n, s) in enumerate(zip(entry["shape"], entry["stride"])))
        known = ~np.isnan(pool[positions])
        np.testing.assert_array_equal(pool[positions][known], ours[key][known], err_msg=key)
        pool[positions] = ours[key]
    assert index["output_layer.3.weight"]["stride"][0] < 25088  # rows really overlap


@pytest.mark.parametrize("variant,units", [("", [1, 1, 1, 1]), ("_2unit", [2, 1, 1, 1])])
def test_converter_infers_units_and_matches_module_tree(variant, units):
    variables, arch = _converted(variant)
    assert arch == {"units": units, "embedding_dim": 512, "input_size": 112}
    expected = jax.eval_shape(IRSE(units=tuple(units)).init, jax.random.key(0),
                              jax.ShapeDtypeStruct((1, 112, 112, 3), jnp.float32))
    ours = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), variables)
    assert ours == jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), dict(expected))


def _fixture_state_dict():
    return dict(load_torch_file(os.path.join(FIXTURES, "model_ir_se_small.pth")))


@pytest.mark.parametrize("edit,message", [
    (lambda sd: sd.pop("body.2.res_layer.3.weight"), "missing key 'body.2.res_layer.3.weight'"),
    (lambda sd: sd.pop("body.1.shortcut_layer.1.running_var"),
     "missing key 'body.1.shortcut_layer.1.running_var'"),
    (lambda sd: sd.update({"body.0.res_layer.2.weight": np.zeros(63, np.float32)}),
     "'body.0.res_layer.2.weight' has shape (63,), expected (64,)"),
    (lambda sd: sd.update({"output_layer.9.weight": np.zeros(3, np.float32)}),
     "unexpected key(s) 'output_layer.9.weight'"),
    (lambda sd: sd.update({"body.0.shortcut_layer.0.weight": np.zeros((64, 64, 1, 1), np.float32)}),
     "unexpected key(s) 'body.0.shortcut_layer.0.weight'"),
    (lambda sd: sd.update({"output_layer.3.weight": np.zeros((512, 1000), np.float32)}),
     "1000 input features"),
    (lambda sd: [sd.pop(k) for k in list(sd) if k.startswith("body.1.")], "missing key(s) 'body.1.*'"),
    (lambda sd: [sd.pop(k) for k in list(sd) if k.startswith("body.")], "not an IR-SE network"),
])
def test_converter_errors_name_the_key(edit, message):
    sd = _fixture_state_dict()
    edit(sd)
    with pytest.raises(ConversionError) as err:
        convert_state_dict(StateDict(sd, "ir.pth"))
    assert message in str(err.value) and str(err.value).startswith("ir.pth: ")


def test_converter_full_depth_layout():
    """IR-SE-50's 24 units: units inferred as 3-4-14-3 and the tree fits the module."""
    sd = {}
    bn = lambda p, c: sd.update({f"{p}.{n}": np.zeros(c, np.float32) for n in
                                 ("weight", "bias", "running_mean", "running_var")})
    sd["input_layer.0.weight"] = np.zeros((64, 3, 3, 3), np.float32)
    bn("input_layer.1", 64)
    sd["input_layer.2.weight"] = np.zeros(64, np.float32)
    c, n = 64, 0
    for d, count in zip((64, 128, 256, 512), (3, 4, 14, 3)):
        for _ in range(count):
            p = f"body.{n}."
            if c != d:
                sd[p + "shortcut_layer.0.weight"] = np.zeros((d, c, 1, 1), np.float32)
                bn(p + "shortcut_layer.1", d)
            bn(p + "res_layer.0", c)
            sd[p + "res_layer.1.weight"] = np.zeros((d, c, 3, 3), np.float32)
            sd[p + "res_layer.2.weight"] = np.zeros(d, np.float32)
            sd[p + "res_layer.3.weight"] = np.zeros((d, d, 3, 3), np.float32)
            bn(p + "res_layer.4", d)
            sd[p + "res_layer.5.fc1.weight"] = np.zeros((d // 16, d, 1, 1), np.float32)
            sd[p + "res_layer.5.fc2.weight"] = np.zeros((d, d // 16, 1, 1), np.float32)
            c, n = d, n + 1
    bn("output_layer.0", 512)
    sd["output_layer.3.weight"] = np.zeros((512, 25088), np.float32)
    sd["output_layer.3.bias"] = np.zeros(512, np.float32)
    bn("output_layer.4", 512)
    variables, arch = convert_state_dict(StateDict(sd, "full.pth"))
    assert arch["units"] == [3, 4, 14, 3]
    expected = jax.eval_shape(IRSE().init, jax.random.key(0),
                              jax.ShapeDtypeStruct((1, 112, 112, 3), jnp.float32))
    assert (jax.tree_util.tree_map(lambda a: a.shape, variables)
            == jax.tree_util.tree_map(lambda a: a.shape, dict(expected)))


# ----------------------------------------------------------------------------------------------
# parity with the reference
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_preprocessing_matches_reference(variant):
    c = _cases(variant)
    pooled = np.asarray(arcface_input(_nhwc(c["source_images"][:1])))[0].transpose(2, 0, 1)
    # float32 averages of 4-9 inputs in [-1, 1] vs float64: a few ulps (measured 1.6e-7)
    np.testing.assert_allclose(pooled, c["pooled_input_source0"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_embeddings_cosine_and_loss_match_reference(variant):
    variables, arch = _converted(variant)
    c = _cases(variant)
    model = IRSE(units=tuple(arch["units"]))
    emb = _embed_fn(model.units)
    source = np.asarray(emb(variables, _nhwc(c["source_images"])))
    generated = np.asarray(emb(variables, _nhwc(c["generated_images"])))
    # Unit-norm embeddings; the reference's own float32 run differs from its float64 run by up to
    # 4.3e-7 (README), we measured <= 2.5e-7: 1e-6 is ~2x the reference's float32 error.
    np.testing.assert_allclose(source, c["source_embeddings"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(generated, c["generated_embeddings"], rtol=0, atol=1e-6)
    cos = csim(model, variables, _nhwc(c["generated_images"]), _nhwc(c["source_images"]))
    # a dot product of two unit vectors each within 2.5e-7: measured 9e-8
    np.testing.assert_allclose(np.asarray(cos), c["cosine_similarity"], rtol=0, atol=1e-6)
    loss = identity_loss(model, variables, _nhwc(c["generated_images"]), _nhwc(c["source_images"]))
    np.testing.assert_allclose(float(loss), float(c["loss"]), rtol=0, atol=1e-6)  # mean of the above


def test_identity_loss_gradients_flow_only_into_the_reenacted_image():
    variables, arch = _converted("_2unit")
    c = _cases("_2unit")
    model = IRSE(units=tuple(arch["units"]))
    loss_fn = jax.jit(jax.value_and_grad(functools.partial(identity_loss, model), argnums=(1, 2)))
    loss, (g_reenacted, g_source) = loss_fn(variables, _nhwc(c["generated_images"]),
                                            _nhwc(c["source_images"]))
    g_reenacted, g_source = np.asarray(g_reenacted), np.asarray(g_source)
    assert np.isfinite(float(loss)) and np.isfinite(g_reenacted).all()
    assert np.abs(g_reenacted).max() > 0
    # only the crop (rows 35..222, columns 32..219) reaches the network
    outside = np.ones(g_reenacted.shape[1:3], bool)
    outside[35:223, 32:220] = False
    assert np.all(g_reenacted[:, outside] == 0)
    assert np.abs(g_reenacted[:, 35:223, 32:220]).max() > 0
    assert np.all(g_source == 0)  # stop_gradient on the source embedding


def test_bfloat16_compute_stays_close_to_float32():
    variables, arch = _converted("_2unit")
    images = _nhwc(_cases("_2unit")["source_images"])
    e32 = face_embeddings(IRSE(units=tuple(arch["units"])), variables, images)
    e16 = face_embeddings(IRSE(units=tuple(arch["units"]), dtype=jnp.bfloat16), variables, images)
    assert e16.dtype == jnp.float32
    np.testing.assert_allclose(np.linalg.norm(np.asarray(e16), axis=1), 1.0, rtol=0, atol=1e-5)
    # bfloat16 has 8 significant bits; through 5 units the embedding moved by 2.4e-3 (measured)
    np.testing.assert_allclose(np.asarray(e16), np.asarray(e32), rtol=0, atol=1e-2)


def test_cli_convert_then_load_round_trip(tmp_path, capsys):
    out = tmp_path / "irse"
    assert cli.main(["convert", "irse", os.path.join(FIXTURES, "model_ir_se_small.pth"), str(out)]) == 0
    assert "units per stage [1, 1, 1, 1]" in capsys.readouterr().out
    model, variables = load_irse(out)
    assert model.units == (1, 1, 1, 1)
    c = _cases("")
    emb = np.asarray(_embed_fn(model.units)(variables, _nhwc(c["source_images"])))
    np.testing.assert_allclose(emb, c["source_embeddings"], rtol=0, atol=1e-6)  # as above
    # converting into the same, now non-empty, directory needs --overwrite
    assert cli.main(["convert", "irse", os.path.join(FIXTURES, "model_ir_se_small.pth"), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_cli_convert_rejects_a_foreign_checkpoint(tmp_path, capsys):
    bad = tmp_path / "e4e_as_irse.pt"
    torch.save({"state_dict": {"encoder.x": torch.zeros(2)}}, bad)
    assert cli.main(["convert", "irse", str(bad), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stylemask: error: ") and "not an IR-SE network" in err
    assert not (tmp_path / "out").exists()


def test_irse_from_arch_rebuilds_the_fixture_model():
    _, arch = _converted("_2unit")
    assert irse_from_arch(arch) == IRSE(units=(2, 1, 1, 1))
