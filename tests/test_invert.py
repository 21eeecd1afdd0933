"""`stylemask invert` end to end on the e4e fixture, and `convert e4e --generator-out`."""

import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from PIL import Image

from stylemask_jax import cli, codes
from stylemask_jax.models.e4e import load_e4e

E4E = os.path.join(os.path.dirname(__file__), "fixtures", "e4e", "e4e_small.pt")
GENERATOR = os.path.join(os.path.dirname(__file__), "fixtures", "stylegan2", "generator_small.pt")


@pytest.fixture(scope="module")
def e4e_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("weights") / "e4e"
    assert cli.main(["convert", "e4e", E4E, str(out)]) == 0
    return str(out)


def _face_images(count, seed=0):
    """uint8 (count, 256, 256, 3) images with some structure (gradients plus noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256]
    base = np.stack([xx, yy, (xx + yy) // 2], axis=-1)[None]
    return np.clip(base + rng.integers(-60, 60, (count, 256, 256, 3)), 0, 255).astype(np.uint8)


def _write(tmp_path, arrays, names):
    paths = []
    for array, name in zip(arrays, names):
        path = tmp_path / name
        Image.fromarray(array).save(path)
        paths.append(str(path))
    return paths


def test_invert_writes_codes_that_reenact_can_read(tmp_path, e4e_dir, capsys):
    faces = _face_images(2)
    big = faces[0].repeat(2, axis=0).repeat(2, axis=1)  # 512 x 512, box-averages back to faces[0]
    paths = _write(tmp_path, [faces[0], faces[1], big], ["a.png", "b.png", "a_512.png"])
    out = tmp_path / "out"
    # batch 2 over 3 images: the last batch is padded and must not change the results
    assert cli.main(["invert", "--aligned", *paths, "--e4e", e4e_dir, "--out", str(out), "--batch-size", "2"]) == 0
    assert "wrote 3 W+ codes (10, 512)" in capsys.readouterr().out

    allc = np.load(out / "wplus.npy")
    assert allc.shape == (3, 10, 512) and allc.dtype == np.float32
    assert (out / "wplus.txt").read_text().splitlines() == paths
    for k, name in enumerate(["a", "b", "a_512"]):
        np.testing.assert_array_equal(np.load(out / "codes" / f"{name}.npy"), allc[k:k + 1])

    encoder, variables = load_e4e(e4e_dir)
    x = jnp.asarray(faces.astype(np.float32) / 255 * 2 - 1)  # StyleMask's u / 255 * 2 - 1
    expected = np.asarray(encoder.apply(variables, x))
    # the same float32 function at another batch size (XLA may block the convs differently)
    np.testing.assert_allclose(allc[:2], expected, rtol=0, atol=1e-5)
    # the 512 image pooled to 256 is exactly faces[0] (up to float32 rounding of 4-value means)
    np.testing.assert_allclose(allc[2], allc[0], rtol=0, atol=1e-5)

    # the reenact command's reader takes both the batch file and the per-image folder as W+
    for source in (out / "wplus.npy", out / "codes"):
        loaded, kind = codes.load_codes(str(source), "auto", 512, 10, "--sources")
        assert kind == "wplus" and loaded.shape == (3, 10, 512)
    loaded, _ = codes.load_codes(str(out / "codes"), "auto", 512, 10, "--sources")
    np.testing.assert_array_equal(loaded, allc[[0, 2, 1]])  # folder order: a, a_512, b


@pytest.mark.parametrize("case", ["not_square", "small", "duplicate", "missing", "batch"])
def test_invert_input_errors(tmp_path, e4e_dir, capsys, case):
    face = _face_images(1)[0]
    if case == "not_square":
        paths = _write(tmp_path, [face[:200]], ["wide.png"])
        expected = "wide.png: 256x200 image; expected a square FFHQ-aligned face crop"
    elif case == "small":
        paths = _write(tmp_path, [face[:128, :128]], ["small.png"])
        expected = "small.png: 128x128 image"
    elif case == "duplicate":
        os.makedirs(tmp_path / "x")
        paths = _write(tmp_path, [face, face], ["a.png", "x/a.png"])
        expected = "same name"
    elif case == "missing":
        paths, expected = [str(tmp_path / "nope.png")], "nope.png: no such image file"
    else:
        paths = _write(tmp_path, [face], ["a.png"]) + ["--batch-size", "0"]
        expected = "--batch-size"
    assert cli.main(["invert", "--aligned", *paths, "--e4e", e4e_dir, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stylemask: error: ") and expected in err and len(err.splitlines()) == 1


def _e4e_with_decoder(path, style_dim=512):
    """The e4e fixture plus a `decoder.*` generator: the small fixture generator's layout (64 px,
    10 codes) with its style MLP and modulations widened to `style_dim` (random values)."""
    e4e = torch.load(E4E, map_location="cpu", weights_only=True)
    g_ema = torch.load(GENERATOR, map_location="cpu", weights_only=True)["g_ema"]
    gen = torch.Generator().manual_seed(0)
    state = dict(e4e["state_dict"])
    for key, value in g_ema.items():
        if key.startswith("style.") and key.endswith(".weight"):
            value = torch.randn(style_dim, style_dim, generator=gen)
        elif key.startswith("style.") and key.endswith(".bias"):
            value = torch.zeros(style_dim)
        elif key.endswith("modulation.weight"):
            value = torch.randn(value.shape[0], style_dim, generator=gen)
        state["decoder." + key] = value
    torch.save({"state_dict": state, "latent_avg": e4e["latent_avg"], "opts": e4e["opts"]}, path)


def test_convert_generator_out_then_invert_with_reconstructions(tmp_path, capsys):
    ckpt = tmp_path / "e4e_with_decoder.pt"
    _e4e_with_decoder(ckpt)
    enc_dir, gen_dir = tmp_path / "e4e", tmp_path / "gen"
    assert cli.main(["convert", "e4e", str(ckpt), str(enc_dir), "--generator-out", str(gen_dir)]) == 0
    assert "generator" in capsys.readouterr().out
    from stylemask_jax.models.stylegan2 import load_generator
    generator, gen_vars, latent_avg = load_generator(gen_dir)
    assert (generator.size, generator.n_latent, generator.style_dim) == (64, 10, 512)
    assert latent_avg is None  # the fixture's average codes differ per row: no single mean w

    faces = _face_images(2, seed=3)
    paths = _write(tmp_path, list(faces), ["p.png", "q.png"])
    out = tmp_path / "out"
    assert cli.main(["invert", "--aligned", *paths, "--e4e", str(enc_dir), "--generator", str(gen_dir),
                     "--out", str(out)]) == 0
    allc = np.load(out / "wplus.npy")
    expected = np.asarray(generator.apply(gen_vars, jnp.asarray(allc), input_type="wplus"))
    for k, name in enumerate(["p", "q"]):
        png = np.asarray(Image.open(out / "reconstructions" / f"{name}.png"))
        assert png.shape == (64, 64, 3)
        # the PNG is the 8-bit rounding of the generator's image for the written codes
        ref = np.rint((np.clip(expected[k], -1, 1) + 1) * 127.5)
        assert np.abs(png.astype(np.float64) - ref).max() <= 1  # rounding of float32 ties


def test_generator_out_errors_and_mean_latent(tmp_path):
    from convert_weights import e4e as e4e_converter
    from convert_weights.common import ConversionError
    from convert_weights.torch_reader import load_torch_file

    ckpt = tmp_path / "wide.pt"
    _e4e_with_decoder(ckpt, style_dim=256)
    obj = load_torch_file(ckpt)
    with pytest.raises(ConversionError, match="style_dim is 256, the encoder's codes have 512"):
        e4e_converter.convert_generator(obj, str(ckpt), np.zeros((10, 512), np.float32))
    ckpt = tmp_path / "ok.pt"
    _e4e_with_decoder(ckpt)
    obj = load_torch_file(ckpt)
    with pytest.raises(ConversionError, match="takes 10 W\\+ codes but the encoder produces 18"):
        e4e_converter.convert_generator(obj, str(ckpt), np.zeros((18, 512), np.float32))
    mean = np.random.default_rng(0).normal(size=512).astype(np.float32)
    tree, arch = e4e_converter.convert_generator(obj, str(ckpt), np.tile(mean, (10, 1)))
    assert arch["has_latent_avg"] and np.array_equal(tree["latent_avg"], mean)
    # an e4e checkpoint without a decoder cannot give a generator
    out = tmp_path / "enc"
    assert cli.main(["convert", "e4e", E4E, str(out), "--generator-out", str(tmp_path / "g")]) == 2
    assert not out.exists() and not (tmp_path / "g").exists()
