"""`stylemask reenact` on real photographs and a driving clip, end to end with random networks
(converted-weights folders written by photo_utils.write_weights), and its bad-input errors."""

import os

import numpy as np
import pytest
from PIL import Image

from photo_utils import GEN_ARCH, clip_with_gaps, fixture_photo, write_test_clip, write_weights
from stylemask_jax import cli


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_weights(tmp_path_factory.mktemp("photo_weights"))


def _models(weights):
    return ["--generator", weights["generator"], "--mask-net", weights["mask_net"],
            "--e4e", weights["e4e"], "--batch-size", "2"]


def test_photo_to_photo(tmp_path, weights, capsys):
    out = tmp_path / "out"
    assert cli.main(["reenact", "--sources", fixture_photo("astronaut"),
                     "--targets", fixture_photo("astronaut_tilt"), *_models(weights),
                     "--out", str(out), "--save-aligned", "--save-arrays", "--paste-back"]) == 0
    assert "wrote 1 reenacted pair to" in capsys.readouterr().out
    pair = np.asarray(Image.open(out / "pairs" / "0000_s000_t000.png"))
    assert pair.shape == (64, 64, 3)
    assert np.asarray(Image.open(out / "grid.png")).shape == (64, 3 * 64, 3)
    for role, name in (("sources", "astronaut"), ("targets", "astronaut_tilt")):
        assert np.asarray(Image.open(out / "aligned" / role / f"{name}.png")).shape == (256, 256, 3)
    pasted = np.asarray(Image.open(out / "pasted" / "0000_s000_t000.png"))
    assert pasted.shape == (512, 512, 3)               # the source photo's size
    codes = np.load(out / "arrays" / "source_codes.npy")
    assert codes.shape == (1, 10, 512)                 # the inverted e4e codes


def test_folder_to_photo_reenacted_only(tmp_path, weights, capsys):
    folder = tmp_path / "faces"
    folder.mkdir()
    for name in ("astronaut", "astronaut_small"):
        Image.open(fixture_photo(name)).save(folder / f"{name}.jpg", quality=95)
    out = tmp_path / "out"
    assert cli.main(["reenact", "--sources", str(folder), "--targets", fixture_photo("astronaut_tilt"),
                     "--pairs", "all", "--outputs", "reenacted", *_models(weights),
                     "--out", str(out)]) == 0
    assert sorted(os.listdir(out / "pairs")) == ["0000_s000_t000.png", "0001_s001_t000.png"]
    assert not (out / "grid.png").exists() and not (out / "matrix.png").exists()


def test_driving_video(tmp_path, weights, capsys):
    clip = write_test_clip(tmp_path / "clip.mp4", clip_with_gaps(5, blank=[2]), 10, audio=True)
    out = tmp_path / "out"
    assert cli.main(["reenact", "--sources", fixture_photo("astronaut"), "--driving", clip,
                     *_models(weights), "--out", str(out), "--side-by-side", "--save-track"]) == 0
    text = capsys.readouterr().out
    assert "5 frames" in text and "1 carried" in text and "0 filled" in text
    assert f"track in {out / 'track.csv'}" in text
    rows = (out / "track.csv").read_text().splitlines()
    assert rows[0].startswith("frame,status,faces,") and len(rows) == 1 + 5
    assert [row.split(",")[1] for row in rows[1:]] == ["detected", "detected", "carried",
                                                       "detected", "detected"]
    from stylemask_jax.photos.video import count_frames, probe_video
    info = probe_video(str(out / "reenacted.mp4"))
    assert count_frames(str(out / "reenacted.mp4")) == 5 and info.has_audio
    assert info.size == (80 + 64, 64)


def _bad_inputs(tmp_path, weights, case):
    """-> (argv, the expected part of the message) for one bad-input case."""
    photo = fixture_photo("astronaut")
    if case == "not_an_image":
        bad = tmp_path / "notes.png"
        bad.write_text("these are notes")
        return ["--sources", str(bad), "--targets", photo], "notes.png: not an image"
    if case == "truncated":
        data = open(fixture_photo("astronaut_small"), "rb").read()
        bad = tmp_path / "cut.png"
        bad.write_bytes(data[: len(data) // 2])
        return ["--sources", photo, "--targets", str(bad)], "cut.png: damaged or truncated"
    if case == "no_face":
        bad = tmp_path / "wall.png"
        Image.fromarray(np.full((200, 240, 3), 90, np.uint8)).save(bad)
        return ["--sources", str(bad), "--targets", photo], "wall.png: no face found"
    if case == "empty_folder":
        (tmp_path / "empty").mkdir()
        return ["--sources", str(tmp_path / "empty"), "--targets", photo], "holds no photos"
    if case == "unreadable_video":
        bad = tmp_path / "clip.mp4"
        bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
        return ["--sources", photo, "--driving", str(bad)], "clip.mp4: not a readable video"
    if case == "empty_video":
        bad = tmp_path / "clip.mp4"
        bad.write_bytes(b"")
        return ["--sources", photo, "--driving", str(bad)], "clip.mp4: the video file is empty"
    if case == "driving_without_sources":
        clip = write_test_clip(tmp_path / "clip.mp4", clip_with_gaps(2, blank=[]), 10)
        return ["--driving", clip], "--driving needs --sources"
    if case == "photos_without_e4e":
        return ["--sources", photo, "--targets", photo, "--no-e4e"], "--e4e"
    if case == "config_with_e4e":  # --config tiny brings its own small e4e
        return (["--sources", photo, "--targets", photo, "--config", "tiny", "--e4e", "x"],
                "do not combine it with --generator/--mask-net/--e4e")
    raise AssertionError(case)


CASES = ["not_an_image", "truncated", "no_face", "empty_folder", "unreadable_video", "empty_video",
         "driving_without_sources", "photos_without_e4e", "config_with_e4e"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input(tmp_path, weights, capsys, case):
    argv, expected = _bad_inputs(tmp_path, weights, case)
    models = _models(weights)
    if "--no-e4e" in argv:
        argv.remove("--no-e4e")
        models = models[:4] + models[6:]
    if "--config" in argv:
        models = models[6:]
    out = tmp_path / "out"
    assert cli.main(["reenact", *argv, *models, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stylemask: error: ") and len(err.splitlines()) == 1, err
    assert expected in err, err
    assert not out.exists()


def test_mismatched_wplus_length(tmp_path, weights, capsys):
    """A 32 px generator with 512-wide styles takes 8 W+ rows; the e4e gives 10."""
    from photo_utils import photo_models
    from stylemask_jax.weights import save_weights
    arch = dict(GEN_ARCH, size=32, channels=GEN_ARCH["channels"][:4])
    models = photo_models(arch=arch)
    save_weights(tmp_path / "gen32", "stylegan2", models.gvars, models.generator.arch())
    save_weights(tmp_path / "mask32", "mask_net", models.mvars,
                 {"widths": list(models.mask_net.widths), "num_layers_control": 7, "step": 0})
    out = tmp_path / "out"
    assert cli.main(["reenact", "--sources", fixture_photo("astronaut"),
                     "--targets", fixture_photo("astronaut"), "--generator", str(tmp_path / "gen32"),
                     "--mask-net", str(tmp_path / "mask32"), "--e4e", weights["e4e"],
                     "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "(8, 512) W+ codes; the encoder gives (10, 512)" in err and not out.exists()


def test_invert_unaligned_photos_with_refinement(tmp_path, weights, capsys):
    out = tmp_path / "out"
    photos = [fixture_photo("astronaut"), fixture_photo("astronaut_small")]
    assert cli.main(["invert", *photos, "--e4e", weights["e4e"], "--generator", weights["generator"],
                     "--refine-steps", "2", "--irse", weights["irse"], "--batch-size", "2",
                     "--out", str(out)]) == 0
    assert "refined 2 steps" in capsys.readouterr().out
    assert np.load(out / "wplus.npy").shape == (2, 10, 512)
    for name in ("astronaut", "astronaut_small"):
        assert np.asarray(Image.open(out / "aligned" / f"{name}.png")).shape == (256, 256, 3)
        assert np.asarray(Image.open(out / "reconstructions" / f"{name}.png")).shape == (64, 64, 3)
    # a photo without a face: one line, nothing written
    wall = tmp_path / "wall.png"
    Image.fromarray(np.full((150, 150, 3), 90, np.uint8)).save(wall)
    assert cli.main(["invert", str(wall), "--e4e", weights["e4e"], "--out", str(tmp_path / "o2")]) == 2
    assert "wall.png: no face found" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
