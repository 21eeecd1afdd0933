"""The restricted torch-free reader: formats, strided storages, dtypes, refusal of unsafe globals."""

import argparse
import collections
import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from convert_weights.torch_reader import CheckpointError, UnsafePickleError, load_torch_file

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "stylegan2")


def _assert_same_tree(ours, theirs, path="root"):
    if isinstance(theirs, torch.Tensor):
        expected = theirs.detach().float().numpy() if theirs.dtype == torch.bfloat16 else theirs.detach().numpy()
        assert isinstance(ours, np.ndarray), path
        assert ours.shape == expected.shape and ours.dtype == expected.dtype, path
        np.testing.assert_array_equal(ours, expected, err_msg=path)  # a copy of bits: exact
    elif isinstance(theirs, dict):
        assert list(ours) == list(theirs), path
        for key in theirs:
            _assert_same_tree(ours[key], theirs[key], f"{path}/{key}")
    elif isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs)):
            _assert_same_tree(a, b, f"{path}[{i}]")
    elif isinstance(theirs, argparse.Namespace):
        _assert_same_tree(vars(ours), vars(theirs), path)
    else:
        assert ours == theirs, path


@pytest.mark.parametrize("name", ["generator_small.pt", "generator_small_legacy.pt", "mask_net_small.pt"])
def test_reads_reference_checkpoints_like_torch(name):
    path = os.path.join(FIXTURES, name)
    _assert_same_tree(load_torch_file(path), torch.load(path, map_location="cpu", weights_only=True))


def test_zip_and_legacy_fixture_hold_the_same_values():
    zipped = load_torch_file(os.path.join(FIXTURES, "generator_small.pt"))
    legacy = load_torch_file(os.path.join(FIXTURES, "generator_small_legacy.pt"))
    assert len(zipped["g_ema"]) == 91
    _assert_same_tree(zipped["g_ema"], {k: torch.from_numpy(v) for k, v in legacy["g_ema"].items()})


def _tricky_object():
    base = torch.arange(200, dtype=torch.float32).reshape(10, 20)
    shared = torch.randn(1000)
    return {
        "transposed": base.t(),                       # non-contiguous strides
        "sliced": base[2:7, 3:15:2],                   # storage offset and step
        "overlap": shared.as_strided((8, 30), (17, 1), 5),  # rows overlap in one storage
        "same_storage_a": shared[:10], "same_storage_b": shared[100:110],
        "half": torch.randn(3, 4).half(), "bf16": torch.randn(5).bfloat16(),
        "int64": torch.tensor([1, -2, 3]), "bool": torch.tensor([True, False]),
        "uint8": torch.tensor([0, 255], dtype=torch.uint8), "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "param": torch.nn.Parameter(torch.ones(2, 2)),
        "nested": collections.OrderedDict(a=[torch.ones(1), (2, "x")], b={"c": None, "d": 1.5}),
        "opts": argparse.Namespace(size=1024, name="ffhq"),
    }


@pytest.mark.parametrize("zip_format", [True, False])
def test_strided_views_dtypes_and_containers(tmp_path, zip_format):
    obj = _tricky_object()
    path = tmp_path / "tricky.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    ours = load_torch_file(path)
    _assert_same_tree(ours, torch.load(path, weights_only=False))
    assert ours["bf16"].dtype == np.float32  # bfloat16 widened exactly


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_os_system_in_zip_checkpoint(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.ones(2)}, path)
    with zipfile.ZipFile(path) as src:
        members = {n: src.read(n) for n in src.namelist()}
    pkl = next(n for n in members if n.endswith("data.pkl"))
    members[pkl] = pickle.dumps({"weights": _Evil(marker)}, protocol=2)
    with zipfile.ZipFile(path, "w") as dst:
        for name, data in members.items():
            dst.writestr(name, data)
    with pytest.raises(UnsafePickleError, match=r"system"):
        load_torch_file(path)
    assert not marker.exists()


def test_refuses_eval_in_legacy_checkpoint(tmp_path):
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    code = f"open({str(marker)!r}, 'w')"
    buf.write(b"\x80\x02cbuiltins\neval\nq\x00X" + len(code).to_bytes(4, "little") + code.encode()
              + b"q\x01\x85q\x02Rq\x03.")
    path = tmp_path / "evil_legacy.pt"
    path.write_bytes(buf.getvalue())
    with pytest.raises(UnsafePickleError, match=r"builtins\.eval"):
        load_torch_file(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["generator_small.pt", "generator_small_legacy.pt"])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.97])
def test_truncated_files_raise_clear_errors(tmp_path, name, fraction):
    data = open(os.path.join(FIXTURES, name), "rb").read()
    path = tmp_path / name
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match=str(path)):
        load_torch_file(path)


def test_missing_empty_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_torch_file(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_torch_file(tmp_path / "empty.pt")
    (tmp_path / "garbage.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_torch_file(tmp_path / "garbage.pt")


def test_writer_round_trips_through_torch_and_our_reader(tmp_path):
    from convert_weights.torch_writer import save_torch_file
    rng = np.random.default_rng(0)
    state = collections.OrderedDict(
        (f"network_{i:02d}.masknet.0.weight", rng.standard_normal((5, 5)).astype(np.float32)) for i in range(3))
    state["ints"] = np.arange(4, dtype=np.int64)
    obj = {"step": 1234, "mask_net": state, "num_layers_control": 3, "misc": [1.5, None, True, (2, "x")],
           "big": 10 ** 12, "negative": -7}
    path = tmp_path / "export.pt"
    save_torch_file(obj, path)
    theirs = torch.load(path, weights_only=True)  # the official code's loader accepts it
    _assert_same_tree(load_torch_file(path), theirs)
    for key, value in state.items():
        np.testing.assert_array_equal(theirs["mask_net"][key].numpy(), value)
    assert theirs["misc"] == [1.5, None, True, (2, "x")] and theirs["big"] == 10 ** 12
