"""DECA E_flame encoder and its converter vs the official PyTorch reference (tests/fixtures/deca).

The fixtures are reduced-depth checkpoints with random weights: blocks (1, 1, 1, 1) and
(2, 1, 1, 1) (the latter runs the identity-residual bottleneck). Expected values were produced
by DECA's own code, in float64 (encoder case) and float32 (end-to-end case).
"""

from __future__ import annotations

import collections
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convert_weights.common import ConversionError
from convert_weights.deca import convert_deca, convert_e_flame
from convert_weights.torch_reader import CheckpointError, load_torch_file
from stylemask_jax.models.deca import DecaEncoder, load_deca, split_params
from stylemask_jax.ops.deca_crop import deca_crop

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "deca"
CASES = {"1unit": ("deca_model_small.tar", "cases.npz", [1, 1, 1, 1]),
         "2unit": ("deca_model_small_2unit.tar", "cases_2unit.npz", [2, 1, 1, 1])}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    checkpoint, cases, blocks = CASES[request.param]
    variables, arch = convert_deca(FIXTURES / checkpoint)
    return dict(name=request.param, variables=variables, arch=arch, blocks=blocks,
                ref=dict(np.load(FIXTURES / cases)), model=DecaEncoder(blocks=tuple(arch["blocks"])))


def _nhwc(x):
    return jnp.asarray(np.asarray(x, np.float32).transpose(0, 2, 3, 1))


def test_converter_infers_blocks_and_matches_module_layout(case):
    assert case["arch"] == {"blocks": case["blocks"]}
    expected = jax.eval_shape(case["model"].init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    got = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), case["variables"])
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(expected)
    for g, e in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        assert (g.shape, g.dtype) == (e.shape, e.dtype)


@pytest.mark.parametrize("index_name,checkpoint", [
    ("deca_model_small.index.json", "deca_model_small.tar"),
    ("deca_model_small_2unit.index.json", "deca_model_small_2unit.tar")])
def test_strided_views_into_shared_storage_are_read_consistently(index_name, checkpoint):
    """Views ('pool0') overlap in one storage: wherever two elements (of the same or of different
    tensors) sit at the same storage position, the reader must have given them the same value.
    A reader that ignored offsets or strides would break this on the overlapping rows."""
    index = json.loads((FIXTURES / index_name).read_text())["E_flame"]
    state = load_torch_file(FIXTURES / checkpoint)["E_flame"]
    positions, values = [], []
    for key, info in index.items():
        assert list(state[key].shape) == info["shape"], key
        if info["shared_storage"] != "pool0":
            continue
        grid = np.indices(info["shape"]).reshape(len(info["shape"]), -1)
        positions.append(info["storage_offset"] + np.asarray(info["stride"]) @ grid)
        values.append(state[key].reshape(-1))
    positions, values = np.concatenate(positions), np.concatenate(values)
    order = np.argsort(positions, kind="stable")
    positions, values = positions[order], values[order]
    same = positions[1:] == positions[:-1]
    assert same.sum() > 10_000  # the views really overlap, so the check below has teeth
    np.testing.assert_array_equal(values[1:][same], values[:-1][same])


def test_encoder_matches_float64_reference(case):
    """float32 (CPU, full precision) vs the float64 reference on the reference's crops. The
    reference's own float32 run differs from its float64 one by up to 1.1e-6 on `params`; we
    allow ~5x that for XLA's different summation order (measured: features 2.2e-6/3.1e-6 with
    |features| <= 2.2, params 9.2e-7/1.1e-6)."""
    ref, model, variables = case["ref"], case["model"], case["variables"]
    crops = _nhwc(ref["crops"])
    with jax.default_matmul_precision("highest"):
        features = jax.jit(lambda x: model.apply(variables, x, method=DecaEncoder.features))(crops)
        params = jax.jit(lambda x: model.apply(variables, x))(crops)
    assert features.dtype == params.dtype == jnp.float32
    np.testing.assert_allclose(features, ref["features"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(params, ref["params"], rtol=0, atol=5e-6)
    # Same split as the reference, applied to our output (same tolerance as params).
    ours = split_params(params)
    for name in ("shape", "tex", "exp", "pose", "cam", "light"):
        np.testing.assert_allclose(ours[name], ref[f"code_{name}"], rtol=0, atol=5e-6)


def test_split_params_is_the_reference_split(case):
    ref = case["ref"]
    split = split_params(ref["params"])  # numpy in, exact slicing: must be bit-identical
    assert sorted(split) == ["cam", "exp", "light", "pose", "shape", "tex"]
    for name, value in split.items():
        np.testing.assert_array_equal(value, ref[f"code_{name}"])
    with pytest.raises(ValueError, match="236"):
        split_params(np.zeros((2, 235)))


def test_end_to_end_crop_and_encoder(case):
    """Generator images + 68 landmarks -> crop -> encoder, jitted, vs the float32 end-to-end run.
    Our float32 sampling positions differ from the reference's by ~1e-5 px, which moves the
    crops by up to 1.8e-5 (test_deca_crop.py) and the parameters by up to 1.5e-5 (measured);
    tolerance 5e-5."""
    ref, model, variables = case["ref"], case["model"], case["variables"]
    fn = jax.jit(lambda img, lmk: split_params(model.apply(variables, deca_crop(img, lmk))))
    with jax.default_matmul_precision("highest"):
        out = fn(_nhwc(ref["gan_images"]), jnp.asarray(ref["kpt68"], jnp.float32))
    for ours, theirs in (("pose", "e2e_pose"), ("shape", "e2e_alpha_shp"),
                         ("exp", "e2e_alpha_exp"), ("cam", "e2e_cam")):
        np.testing.assert_allclose(out[ours], ref[theirs], rtol=0, atol=5e-5, err_msg=ours)


def test_gradient_reaches_the_image_through_the_crop(case):
    ref, model, variables = case["ref"], case["model"], case["variables"]
    images, landmarks = _nhwc(ref["gan_images"]), jnp.asarray(ref["kpt68"], jnp.float32)

    def loss(img, lmk):
        code = split_params(model.apply(variables, deca_crop(img, lmk)))
        return jnp.sum(code["exp"] ** 2) + jnp.sum(code["pose"] ** 2)

    g_img, g_lmk = jax.jit(jax.grad(loss, argnums=(0, 1)))(images, landmarks)
    assert bool(jnp.all(jnp.isfinite(g_img))) and bool(jnp.all(jnp.isfinite(g_lmk)))
    assert float(jnp.abs(g_img).max()) > 0 and float(jnp.abs(g_lmk).max()) > 0
    # Pixels outside every sampled square get no gradient: the crop of case 0 has side
    # crop_size[0] around crop_center[0]; a pixel 3 px beyond it cannot be read.
    cx, cy = ref["crop_center"][0]
    half = ref["crop_size"][0] / 2 + 3
    ys, xs = np.mgrid[:256, :256]
    outside = (np.abs(xs - cx) > half) | (np.abs(ys - cy) > half)
    assert outside.any()
    assert float(jnp.abs(g_img[0][outside]).max()) == 0.0


def test_bfloat16_compute_keeps_float32_outputs(case):
    """bfloat16 convolutions (8-bit mantissa, rel. error ~4e-3 per op) with float32 parameters
    and BatchNorm statistics: the code stays float32 and near the reference. Measured max abs
    error 1.4e-2 / 1.3e-2 on |params| <= 1; we require < 0.1, a bound that a wrong layer would break."""
    ref = case["ref"]
    model = DecaEncoder(blocks=tuple(case["arch"]["blocks"]), dtype=jnp.bfloat16)
    params = jax.jit(lambda x: model.apply(case["variables"], x))(_nhwc(ref["crops"]))
    assert params.dtype == jnp.float32
    assert float(jnp.abs(params - ref["params"]).max()) < 0.1


def test_non_224_input_is_rejected():
    model = DecaEncoder(blocks=(1, 1, 1, 1))
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    with pytest.raises(ValueError, match="224"):
        jax.eval_shape(model.apply, variables, jnp.zeros((1, 256, 256, 3)))


# ---------------------------------------------------------------------------------------------
# converter errors and the CLI round trip
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def e_flame():
    return load_torch_file(FIXTURES / "deca_model_small.tar")["E_flame"]


def test_missing_key_is_named(e_flame):
    state = collections.OrderedDict(e_flame)
    del state["encoder.layer3.0.bn2.running_var"]
    with pytest.raises(ConversionError, match=r"missing key 'E_flame\.encoder\.layer3\.0\.bn2\.running_var'"):
        convert_e_flame(state, "x.tar")


def test_misshapen_key_is_named(e_flame):
    state = collections.OrderedDict(e_flame)
    state["layers.2.weight"] = state["layers.2.weight"][:235]
    with pytest.raises(ConversionError, match=r"'E_flame\.layers\.2\.weight' has shape \(235, 1024\)"):
        convert_e_flame(state, "x.tar")


def test_unknown_key_is_named(e_flame):
    state = collections.OrderedDict(e_flame)
    state["encoder.fc.weight"] = np.zeros((1000, 2048), np.float32)
    with pytest.raises(ConversionError, match=r"unexpected key\(s\) 'E_flame\.encoder\.fc\.weight'"):
        convert_e_flame(state, "x.tar")


def test_gap_in_block_numbering_is_an_error(e_flame):
    state = collections.OrderedDict(e_flame)
    for key in [k for k in state if k.startswith("encoder.layer2.0.")]:
        state[key.replace("layer2.0.", "layer2.1.")] = state.pop(key)
    with pytest.raises(ConversionError, match=r"missing key 'E_flame\.encoder\.layer2\.0\.conv1\.weight'"):
        convert_e_flame(state, "x.tar")


def test_checkpoint_without_e_flame_is_rejected(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "no_flame.tar"
    torch.save({"E_detail": collections.OrderedDict(w=torch.zeros(2)), "D_detail": {}}, path)
    with pytest.raises(ConversionError, match="no 'E_flame' entry"):
        convert_deca(path)
    from stylemask_jax.cli import main
    assert main(["convert", "deca", str(path), str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_truncated_checkpoint_is_rejected(tmp_path):
    data = (FIXTURES / "deca_model_small.tar").read_bytes()
    path = tmp_path / "truncated.tar"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        convert_deca(path)


def test_cli_convert_then_load_deca(tmp_path, capsys):
    from stylemask_jax.cli import main
    out = tmp_path / "deca"
    assert main(["convert", "deca", str(FIXTURES / "deca_model_small_2unit.tar"), str(out)]) == 0
    assert "blocks [2, 1, 1, 1]" in capsys.readouterr().out
    model, variables = load_deca(out)
    assert model.blocks == (2, 1, 1, 1)
    expected, _ = convert_deca(FIXTURES / "deca_model_small_2unit.tar")
    for a, b in zip(jax.tree_util.tree_leaves(variables), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_array_equal(a, b)
    assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(expected)
