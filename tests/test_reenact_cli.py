"""`stylemask reenact` end to end on converted fixtures, its input errors, and multi-device runs."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from stylemask_jax.cli import main
from stylemask_jax.images import to_uint8

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "stylegan2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    gen, mask = str(root / "generator"), str(root / "mask_net")
    assert main(["convert", "stylegan2", os.path.join(FIXTURES, "generator_small.pt"), gen]) == 0
    assert main(["convert", "mask-net", os.path.join(FIXTURES, "mask_net_small.pt"), mask,
                 "--generator", gen]) == 0
    cases = dict(np.load(os.path.join(FIXTURES, "cases.npz")))
    np.save(root / "sources.npy", cases["z_source"])
    np.save(root / "targets.npy", cases["z_target"])
    return root, gen, mask, cases


def test_reenact_matches_reference_and_library(converted, tmp_path):
    root, gen, mask, cases = converted
    out = tmp_path / "out"
    code = main(["reenact", "--generator", gen, "--mask-net", mask, "--sources", str(root / "sources.npy"),
                 "--targets", str(root / "targets.npy"), "--batch-size", "2", "--save-arrays",
                 "--out", str(out)])
    assert code == 0
    reenacted = np.load(out / "arrays" / "reenacted_images.npy")
    assert reenacted.shape == (3, 64, 64, 3) and reenacted.dtype == np.float32
    # vs the official code's output (float64 reference; float32 images agree to 1e-4, see
    # tests/test_reenact.py); truncation 0.7 toward the checkpoint's latent_avg, as the reference
    nchw = lambda x: np.transpose(x, (0, 2, 3, 1))  # noqa: E731
    np.testing.assert_allclose(reenacted, nchw(cases["reenacted_image"]), atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.load(out / "arrays" / "source_images.npy"),
                               nchw(cases["source_image"]), atol=1e-4, rtol=0)
    # vs the library call on the same codes
    from stylemask_jax import inference
    models = inference.load_models(gen, mask)
    mean = inference.truncation_mean(models)
    w_src = inference.encode_codes(models, cases["z_source"], "z", 0.7, mean, 3)
    w_tgt = inference.encode_codes(models, cases["z_target"], "z", 0.7, mean, 3)
    lib = inference.reenact_codes(models, w_src, w_tgt, "zip", 3, progress=False)
    np.testing.assert_allclose(reenacted, lib["reenacted"], atol=1e-6, rtol=0)  # same graph, other batch size
    # the PNGs are the 8-bit versions of those arrays
    names = sorted(os.listdir(out / "pairs"))
    assert names == ["0000_s000_t000.png", "0001_s001_t001.png", "0002_s002_t002.png"]
    png = np.asarray(Image.open(out / "pairs" / names[1]))
    np.testing.assert_array_equal(png, to_uint8(reenacted[1]))
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape == (3 * 64, 3 * 64, 3)
    np.testing.assert_array_equal(grid[64:128, 128:192], to_uint8(reenacted[1]))
    np.testing.assert_array_equal(grid[0:64, 64:128], to_uint8(np.load(out / "arrays" / "target_images.npy")[0]))


def test_reenact_all_pairs_matrix_and_random_codes(converted, tmp_path):
    _, gen, mask, _ = converted
    out = tmp_path / "matrix"
    assert main(["reenact", "--generator", gen, "--mask-net", mask, "--num-pairs", "2", "--pairs", "all",
                 "--seed", "3", "--out", str(out), "--resize-256"]) == 0
    assert len(os.listdir(out / "pairs")) == 4
    matrix = np.asarray(Image.open(out / "matrix.png"))
    assert matrix.shape == (3 * 256, 3 * 256, 3)  # header row/column + 2x2 reenactments, pooled to 256
    assert (matrix[:256, :256] == 255).all()  # the empty corner
    again = tmp_path / "again"
    assert main(["reenact", "--generator", gen, "--mask-net", mask, "--num-pairs", "2", "--pairs", "all",
                 "--seed", "3", "--out", str(again), "--resize-256"]) == 0
    assert np.array_equal(np.asarray(Image.open(again / "matrix.png")), matrix)  # --seed reproduces


def test_tiny_config_needs_no_files(tmp_path):
    assert main(["reenact", "--config", "tiny", "--num-pairs", "2", "--out", str(tmp_path / "o")]) == 0
    assert os.path.isfile(tmp_path / "o" / "grid.png")


def _error(capsys, args):
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("stylemask: error: ") and "\n" not in err, err
    return err


def test_a_used_out_is_refused_or_replaced_whole(tmp_path, capsys):
    """A second run into the same --out: refused without --overwrite (nothing changes), and
    with it the old files are gone (never two runs' files in one folder)."""
    out = tmp_path / "o"
    assert main(["reenact", "--config", "tiny", "--num-pairs", "3", "--out", str(out)]) == 0
    first = sorted(os.listdir(out / "pairs"))
    assert len(first) == 3
    capsys.readouterr()
    assert main(["reenact", "--config", "tiny", "--num-pairs", "1", "--out", str(out)]) == 2
    assert "--out" in capsys.readouterr().err and sorted(os.listdir(out / "pairs")) == first
    assert main(["reenact", "--config", "tiny", "--num-pairs", "1", "--outputs", "reenacted",
                 "--overwrite", "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["pairs"]
    assert os.listdir(out / "pairs") == ["0000_s000_t000.png"]


def test_bad_inputs_are_one_line_errors_without_output(converted, tmp_path, capsys):
    root, gen, mask, _ = converted
    out = tmp_path / "never"
    base = ["reenact", "--generator", gen, "--mask-net", mask, "--out", str(out)]
    assert "no such directory" in _error(capsys, ["reenact", "--generator", str(tmp_path / "nope"),
                                                  "--mask-net", mask, "--out", str(out)])
    np.save(tmp_path / "wide.npy", np.zeros((3, 65), np.float32))
    assert "(3, 65)" in _error(capsys, base + ["--sources", str(tmp_path / "wide.npy"),
                                               "--targets", str(root / "targets.npy")])
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    assert "dtype" in _error(capsys, base + ["--sources", str(tmp_path / "text.npy"),
                                             "--targets", str(root / "targets.npy")])
    np.save(tmp_path / "two.npy", np.zeros((2, 64), np.float32))
    assert "3 sources and 2 targets" in _error(capsys, base + ["--sources", str(root / "sources.npy"),
                                                             "--targets", str(tmp_path / "two.npy")])
    assert "no such file" in _error(capsys, base + ["--sources", str(tmp_path / "missing.npy"),
                                                    "--targets", str(root / "targets.npy")])
    (tmp_path / "afile").write_text("x")
    assert "not a folder" in _error(capsys, ["reenact", "--generator", gen, "--mask-net", mask,
                                             "--out", str(tmp_path / "afile" / "sub")])
    assert not out.exists()  # nothing was written by any of the failed runs


def test_mask_net_for_another_generator_is_refused(converted, tmp_path, capsys):
    import collections
    from convert_weights.torch_writer import save_torch_file
    _, gen, _, _ = converted
    rng = np.random.default_rng(0)
    state = collections.OrderedDict()
    for i, d in enumerate([512] * 2):  # an FFHQ-1024 style mask net
        for j in ("0", "2"):
            state[f"network_{i:02d}.masknet.{j}.weight"] = rng.standard_normal((d, d)).astype(np.float32)
            state[f"network_{i:02d}.masknet.{j}.bias"] = np.zeros(d, np.float32)
    pt = tmp_path / "other.pt"
    save_torch_file({"step": 1, "mask_net": state, "num_layers_control": 2}, pt)
    err = _error(capsys, ["convert", "mask-net", str(pt), str(tmp_path / "m1"), "--generator", gen])
    assert "do not match" in err and not (tmp_path / "m1").exists()
    assert main(["convert", "mask-net", str(pt), str(tmp_path / "m2")]) == 0  # no check without --generator
    err = _error(capsys, ["reenact", "--generator", gen, "--mask-net", str(tmp_path / "m2"),
                          "--out", str(tmp_path / "o")])
    assert "do not match" in err and not (tmp_path / "o").exists()


MULTI_DEVICE_SCRIPT = r"""
import sys, numpy as np, jax
from stylemask_jax import inference
import configs.tiny
assert jax.local_device_count() == 4
models = inference.tiny_models(configs.tiny.get_config(), seed=1)
rng = np.random.default_rng(0)
w_src, w_tgt = (rng.standard_normal((6, 10, 64)).astype(np.float32) for _ in range(2))
sharded = inference.reenact_codes(models, w_src, w_tgt, "zip", 4, progress=False)
inference.data_mesh = lambda **_: jax.sharding.Mesh(np.array(jax.local_devices()[:1]), ("data",))
single = inference.reenact_codes(models, w_src, w_tgt, "zip", 4, progress=False)
np.savez(sys.argv[1], sharded=sharded["reenacted"], single=single["reenacted"])
"""


def test_four_devices_give_the_same_images_as_one(tmp_path):
    """Pairs sharded over 4 simulated CPU devices (batch 4, 6 pairs: the last batch is padded)
    vs the same batches on 1 device. Per-pair computation is independent of the sharding, so
    the images agree to float32 rounding of the convolutions (atol 1e-5 on values ~1)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    path = tmp_path / "images.npz"
    subprocess.run([sys.executable, "-c", MULTI_DEVICE_SCRIPT, str(path)], env=env, cwd=ROOT,
                   check=True, timeout=600)
    result = np.load(path)
    assert result["sharded"].shape == (6, 64, 64, 3)
    np.testing.assert_allclose(result["sharded"], result["single"], atol=1e-5, rtol=0)
