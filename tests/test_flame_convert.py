"""FLAME loaders: generic_model.pkl and landmark_embedding.npy read without chumpy/scipy/torch,
refusal of unsafe or broken files, the `stylemask convert flame` command and `load_flame`."""

import io
import os
import pickle

import numpy as np
import pytest

from convert_weights.common import ConversionError
from convert_weights.flame import convert_flame, read_flame_pickle, read_landmark_embedding
from convert_weights.torch_reader import CheckpointError, UnsafePickleError
from stylemask_jax.cli import main as cli_main
from stylemask_jax.models.flame import FlameModel, load_flame

from conftest import flame_model_pkl

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "flame")
PKL = flame_model_pkl()
NPY = os.path.join(FIXTURES, "landmark_embedding.npy")


class _Ch:  # test-side stand-in for chumpy.ch.Ch, used only with the standard unpickler
    def __setstate__(self, state):
        self.x = state["x"]


class _StdUnpickler(pickle.Unpickler):
    """The ordinary unpickler (numpy and scipy resolve themselves), chumpy mapped to _Ch."""

    def find_class(self, module, name):
        if (module, name) == ("chumpy.ch", "Ch"):
            return _Ch
        return super().find_class(module, name)


def test_pickle_matches_the_standard_unpickler():
    pytest.importorskip("scipy")
    with open(PKL, "rb") as f:
        expected = _StdUnpickler(f, encoding="latin1").load()
    ours = read_flame_pickle(PKL)
    assert set(ours) == set(expected)
    # a copy of the stored values: exact
    np.testing.assert_array_equal(ours["shapedirs"], expected["shapedirs"].x)
    np.testing.assert_array_equal(ours["J_regressor"], expected["J_regressor"].toarray())
    for key in ("f", "v_template", "posedirs", "weights", "kintree_table", "J"):
        np.testing.assert_array_equal(ours[key], expected[key])
    assert ours["bs_style"] == "lbs"


def test_pickle_regressor_reproduces_stored_joints():
    model = read_flame_pickle(PKL)
    assert model["J_regressor"].shape == (5, 600) and np.count_nonzero(model["J_regressor"]) == 42
    # J = regressor x template in the file (README); float64 matmul of 600 terms: 1e-12 m
    np.testing.assert_allclose(model["J_regressor"] @ model["v_template"], model["J"], atol=1e-12)


def test_landmark_embedding_matches_numpy_load():
    pytest.importorskip("torch")  # np.load needs torch to rebuild the two tensors
    expected = np.load(NPY, allow_pickle=True, encoding="latin1")[()]
    ours = read_landmark_embedding(NPY)
    assert set(ours) == set(expected)
    for key, value in expected.items():
        value = value.numpy() if hasattr(value, "numpy") else value
        assert ours[key].dtype == value.dtype and ours[key].shape == value.shape, key
        np.testing.assert_array_equal(ours[key], value, err_msg=key)  # a copy of bits: exact


def test_convert_flame_layout():
    arrays, arch = convert_flame(PKL, NPY)
    model = read_flame_pickle(PKL)
    assert arch == {"parents": [-1, 0, 1, 1, 1], "n_shape": 100, "n_exp": 50,
                    "num_vertices": 600, "num_faces": 1150}
    sd = model["shapedirs"]
    np.testing.assert_array_equal(arrays["shapedirs"][..., :100], sd[..., :100].astype(np.float32))
    np.testing.assert_array_equal(arrays["shapedirs"][..., 100:], sd[..., 300:350].astype(np.float32))
    # vertex-major pose basis: row k, column 3 v + c = posedirs[v, c, k]
    np.testing.assert_array_equal(arrays["posedirs"][7, 3 * 5 + 2], np.float32(model["posedirs"][5, 2, 7]))
    assert arrays["full_lmk_faces_idx"].shape == (68,) and arrays["dynamic_lmk_bary_coords"].shape == (79, 17, 3)
    for key, value in arrays.items():
        assert value.dtype in (np.float32, np.int32), key


def _write(path, data: bytes):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


class _RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "executed"
    payload = pickle.dumps({"v_template": _RunsShell(marker)}, protocol=2)
    pickle_path = _write(tmp_path / "evil.pkl", payload)
    with pytest.raises(UnsafePickleError, match="system"):
        read_flame_pickle(pickle_path)
    # the same payload inside an object .npy
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": ()})
    npy_path = _write(tmp_path / "evil.npy", header.getvalue() + payload)
    with pytest.raises(UnsafePickleError, match="system"):
        read_landmark_embedding(npy_path)
    assert not marker.exists()


@pytest.mark.parametrize("source", [PKL, NPY])
def test_truncated_files(tmp_path, source):
    with open(source, "rb") as f:
        data = f.read()
    reader = read_flame_pickle if source == PKL else read_landmark_embedding
    for cut in (len(data) // 2, len(data) - 3):
        with pytest.raises(CheckpointError):
            reader(_write(tmp_path / os.path.basename(source), data[:cut]))


def test_missing_empty_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        read_flame_pickle(tmp_path / "nothing.pkl")
    with pytest.raises(CheckpointError, match="empty"):
        read_landmark_embedding(_write(tmp_path / "empty.npy", b""))
    with pytest.raises(CheckpointError, match="not a valid .npy"):
        read_landmark_embedding(_write(tmp_path / "garbage.npy", b"not numpy at all"))
    with pytest.raises(CheckpointError):
        read_flame_pickle(_write(tmp_path / "garbage.pkl", b"\x80\x02garbage"))
    numbers = io.BytesIO()
    np.save(numbers, np.zeros(3))
    with pytest.raises(CheckpointError, match="object array"):
        read_landmark_embedding(_write(tmp_path / "numbers.npy", numbers.getvalue()))


def test_missing_key_and_wrong_shape_name_the_key(tmp_path):
    model = read_flame_pickle(PKL)
    broken = dict(model)
    del broken["posedirs"]
    with pytest.raises(ConversionError, match="'posedirs'"):
        convert_flame(_write(tmp_path / "a.pkl", pickle.dumps(broken, protocol=2)), NPY)
    broken = dict(model, weights=model["weights"][:, :4])
    with pytest.raises(ConversionError, match="'weights' has shape"):
        convert_flame(_write(tmp_path / "b.pkl", pickle.dumps(broken, protocol=2)), NPY)


def test_cli_convert_and_load_flame(tmp_path, capsys):
    out = tmp_path / "flame"
    assert cli_main(["convert", "flame", PKL, NPY, str(out)]) == 0
    model = load_flame(out)
    arrays, arch = convert_flame(PKL, NPY)
    expected = FlameModel.from_arrays(arrays, arch)
    assert model.parents == (-1, 0, 1, 1, 1) and (model.n_shape, model.n_exp) == (100, 50)
    for name in arrays:
        ours, theirs = getattr(model, name), getattr(expected, name)
        assert ours.dtype == theirs.dtype, name
        np.testing.assert_array_equal(ours, theirs, err_msg=name)  # stored bits: exact
    # bad input: a one-line error and exit code 2
    capsys.readouterr()
    assert cli_main(["convert", "flame", str(tmp_path / "missing.pkl"), NPY, str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("stylemask: error:") and "missing.pkl" in err[0]
