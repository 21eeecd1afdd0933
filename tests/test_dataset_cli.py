"""`stylemask dataset build` end to end on two real photos (dlib + the official crop)."""

from __future__ import annotations

import os
import shutil

import pytest

pytest.importorskip("tensorflow_datasets")
pytest.importorskip("dlib")

from stylemask_jax import cli  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "align")


def test_dataset_build_command_writes_then_skips(tmp_path, capsys):
    src = tmp_path / "src"
    for identity, name in (("alice", "astronaut.png"), ("bob", "astronaut_small.png")):
        os.makedirs(src / identity)
        shutil.copy(os.path.join(FIXTURES, name), src / identity / name)
    out = tmp_path / "data"
    assert cli.main(["dataset", "build", str(src), "--out", str(out)]) == 0
    first = capsys.readouterr().out
    assert "wrote 2 faces" in first
    from stylemask_jax.datasets.build import load_dataset
    data = load_dataset(str(out))
    assert len(data) == 2
    assert data[0]["image"].shape == (256, 256, 3)
    assert cli.main(["dataset", "build", str(src), "--out", str(out)]) == 0
    assert "already built" in capsys.readouterr().out


def test_dataset_build_missing_source_is_one_line_error(tmp_path, capsys):
    code = cli.main(["dataset", "build", str(tmp_path / "nothing"), "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("stylemask: error:")
    assert not (tmp_path / "d").exists()


def _one_line_error(capsys, argv) -> str:
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("stylemask: error:"), err
    return err[0]


def test_invert_dataset_argument_errors(tmp_path, capsys):
    assert "no IMAGES" in _one_line_error(
        capsys, ["invert", "a.png", "--dataset", str(tmp_path), "--e4e", str(tmp_path)])
    assert "give IMAGES and --out" in _one_line_error(capsys, ["invert", "--e4e", str(tmp_path)])
    assert str(tmp_path / "none") in _one_line_error(
        capsys, ["invert", "--dataset", str(tmp_path / "none"), "--e4e", str(tmp_path)])


def test_evaluate_dataset_needs_a_dataset(tmp_path, capsys):
    assert str(tmp_path / "none") in _one_line_error(
        capsys, ["evaluate", "--workdir", str(tmp_path), "--dataset", str(tmp_path / "none")])
