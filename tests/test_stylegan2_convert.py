"""The StyleGAN2 converter: key/shape checking, architecture inference, the CLI, loading back,
and `stylemask generate` on random (--config tiny) and converted weights."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from convert_weights.common import ConversionError
from convert_weights.stylegan2 import convert_stylegan2
from convert_weights.torch_reader import load_torch_file
from stylemask_jax import cli
from stylemask_jax.models import stylegan2 as sg
from stylemask_jax.weights import WeightsError

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "stylegan2")
CKPT = os.path.join(FIXTURES, "generator_small.pt")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def checkpoint():
    return load_torch_file(CKPT)


def _g_ema(checkpoint):
    return dict(checkpoint["g_ema"])


def test_arch_inferred_from_shapes(checkpoint):
    variables, arch, latent_avg = convert_stylegan2(checkpoint)
    assert arch == dict(size=64, style_dim=64, n_mlp=4, lr_mlp=0.01,
                        channels=[48, 40, 32, 24, 16], blur_kernel=[1.0, 3.0, 3.0, 1.0])
    assert latent_avg.shape == (64,) and latent_avg.dtype == np.float32
    # every parameter of the 91 keys is used; blur kernels (5 x 16 numbers) dropped;
    # README: 139,352 numbers in parameters
    n = sum(np.size(x) for x in jax.tree_util.tree_leaves(variables["params"]))
    assert n == 139_352
    # same structure and shapes as a random init of the inferred architecture
    gen = sg.Generator.from_arch(arch)
    init = sg.init_variables(gen, jax.random.key(0))
    assert (jax.tree_util.tree_map(np.shape, variables)
            == jax.tree_util.tree_map(np.shape, init))
    # layout: torch (1, out, in, 3, 3) -> HWIO; Linear (out, in) -> (in, out); noise NHWC
    g = checkpoint["g_ema"]
    np.testing.assert_array_equal(variables["params"]["conv_1"]["weight"][1, 2, 5, 7],
                                  g["convs.0.conv.weight"][0, 7, 5, 1, 2])
    np.testing.assert_array_equal(variables["params"]["mapping_network"]["dense_0"]["kernel"],
                                  g["style.1.weight"].T)
    np.testing.assert_array_equal(variables["buffers"]["noise_3"][0, :, :, 0],
                                  g["noises.noise_3"][0, 0])


def test_state_dict_and_prefix_inputs(checkpoint):
    """A flat state dict works, and `prefix` picks a generator out of a larger checkpoint."""
    base, arch, _ = convert_stylegan2(checkpoint)
    flat, arch_flat, avg = convert_stylegan2(_g_ema(checkpoint))
    assert arch_flat == arch and avg is None
    wrapped = {"state_dict": {**{f"decoder.{k}": v for k, v in checkpoint["g_ema"].items()},
                              "encoder.conv.weight": np.zeros((2, 2), np.float32)}}
    prefixed, arch_p, _ = convert_stylegan2(wrapped, prefix="decoder.")
    assert arch_p == arch
    for a, b in zip(jax.tree_util.tree_leaves(base), jax.tree_util.tree_leaves(prefixed)):
        np.testing.assert_array_equal(a, b)


def test_missing_key_is_named(checkpoint):
    sd = _g_ema(checkpoint)
    del sd["convs.3.noise.weight"]
    with pytest.raises(ConversionError, match=r"missing key 'convs\.3\.noise\.weight'"):
        convert_stylegan2(sd, source="g.pt")
    sd = _g_ema(checkpoint)
    del sd["noises.noise_8"]
    with pytest.raises(ConversionError, match=r"missing key 'decoder\.noises\.noise_8'"):
        convert_stylegan2({f"decoder.{k}": v for k, v in sd.items()}, prefix="decoder.")


def test_unexpected_key_is_named(checkpoint):
    sd = _g_ema(checkpoint)
    sd["convs.3.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ConversionError, match=r"g\.pt: unexpected key\(s\) 'convs\.3\.extra\.weight'"):
        convert_stylegan2(sd, source="g.pt")


def test_misshapen_key_is_named(checkpoint):
    sd = _g_ema(checkpoint)
    sd["convs.5.conv.modulation.weight"] = np.zeros((24, 63), np.float32)
    with pytest.raises(ConversionError, match=r"'convs\.5\.conv\.modulation\.weight' has shape "
                                              r"\(24, 63\), expected \(24, 64\)"):
        convert_stylegan2(sd)
    sd = _g_ema(checkpoint)
    sd["to_rgbs.1.conv.weight"] = np.zeros((1, 3, 40, 1, 1), np.float32)
    with pytest.raises(ConversionError, match=r"'to_rgbs\.1\.conv\.weight' has shape"):
        convert_stylegan2(sd)


def test_wrong_blur_kernel_and_latent_avg(checkpoint):
    sd = _g_ema(checkpoint)
    sd["convs.2.conv.blur.kernel"] = np.ones((4, 4), np.float32) / 4
    with pytest.raises(ConversionError, match=r"'convs\.2\.conv\.blur\.kernel' is not the blur kernel"):
        convert_stylegan2(sd)
    with pytest.raises(ConversionError, match="'latent_avg' has shape"):
        convert_stylegan2({"g_ema": _g_ema(checkpoint), "latent_avg": np.zeros((2, 64), np.float32)})
    with pytest.raises(ConversionError, match="missing key 'style.1.weight'"):
        convert_stylegan2({"g_ema": {"input.input": np.zeros((1, 4, 4, 4), np.float32)}})


def test_convert_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "gen"
    assert cli.main(["convert", "stylegan2", CKPT, str(out)]) == 0
    printed = capsys.readouterr().out
    assert "size 64" in printed and "n_mlp 4" in printed and "139,352 parameters" in printed
    assert "latent_avg present" in printed
    header = json.loads((out / "model.json").read_text())
    assert header["kind"] == "stylegan2" and header["arch"]["has_latent_avg"] is True
    gen, variables, latent_avg = sg.load_generator(str(out))
    cases = np.load(os.path.join(FIXTURES, "cases.npz"))
    image = gen.apply(variables, cases["z"], truncation=0.7, truncation_latent=latent_avg)
    # README: images atol 1e-4 (float32 vs the float64 reference)
    np.testing.assert_allclose(image, cases["image_forward"].transpose(0, 2, 3, 1), rtol=0,
                               atol=1e-4)
    # existing output is refused without --overwrite, one-line error and exit code 2
    assert cli.main(["convert", "stylegan2", CKPT, str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert cli.main(["convert", "stylegan2", CKPT, str(out), "--overwrite"]) == 0


def test_convert_cli_rejects_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert cli.main(["convert", "stylegan2", str(bad), str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stylemask: error: ") and str(bad) in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_load_generator_errors(tmp_path):
    with pytest.raises(WeightsError, match="no such directory"):
        sg.load_generator(str(tmp_path / "missing"))


def test_python_m_convert_weights(tmp_path):
    out = tmp_path / "g2"
    proc = subprocess.run([sys.executable, "-m", "convert_weights", "stylegan2",
                           os.path.join(FIXTURES, "generator_small_legacy.pt"), str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.json").is_file()


# -- stylemask generate -------------------------------------------------------------------------

def test_generate_tiny_config(tmp_path):
    out = tmp_path / "tiny"
    assert cli.main(["generate", "--config", "tiny", "--seeds", "0-2", "--truncation", "0.7",
                     "--batch-size", "2", "--save-arrays", "--out", str(out)]) == 0
    from PIL import Image
    for s in range(3):
        png = np.asarray(Image.open(out / f"seed{s:04d}.png"))
        arr = np.load(out / f"seed{s:04d}.npy")
        assert png.shape == (64, 64, 3) and png.dtype == np.uint8
        assert arr.shape == (64, 64, 3) and arr.dtype == np.float32
        np.testing.assert_array_equal(png, np.rint((np.clip(arr, -1, 1) + 1) * 127.5))
    # reproducible per seed, whatever the batch size
    again = tmp_path / "again"
    assert cli.main(["generate", "--config", "tiny", "--seeds", "2", "--truncation", "0.7",
                     "--save-arrays", "--out", str(again)]) == 0
    np.testing.assert_allclose(np.load(again / "seed0002.npy"), np.load(out / "seed0002.npy"),
                               rtol=0, atol=1e-5)  # batch 1 vs 2: f32 summation order only


def test_generate_converted_fixture(tmp_path):
    weights = tmp_path / "gen"
    assert cli.main(["convert", "stylegan2", CKPT, str(weights)]) == 0
    out = tmp_path / "imgs"
    assert cli.main(["generate", "--generator", str(weights), "--seeds", "3,5", "--truncation",
                     "0.7", "--resize-256", "--save-arrays", "--out", str(out)]) == 0
    arr = np.load(out / "seed0005.npy")
    assert arr.shape == (256, 256, 3)
    # the image is the generator's forward pass of z(seed 5) truncated toward latent_avg
    from stylemask_jax.generate import seed_latents
    gen, variables, latent_avg = sg.load_generator(str(weights))
    z = seed_latents([5], gen.style_dim)
    expected = sg.face_pool(gen.apply(variables, z, truncation=0.7, truncation_latent=latent_avg))
    np.testing.assert_allclose(arr, np.asarray(expected)[0], rtol=0, atol=1e-5)  # same f32 ops


def test_generate_bad_input(tmp_path, capsys):
    assert cli.main(["generate", "--config", "tiny", "--seeds", "0", "--truncation", "1.5",
                     "--out", str(tmp_path)]) == 2
    assert "--truncation" in capsys.readouterr().err
    assert cli.main(["generate", "--generator", str(tmp_path / "none"), "--out",
                     str(tmp_path / "o")]) == 2
    assert "no such directory" in capsys.readouterr().err
