"""`--config tiny` runs every photo and video path without weights files: photos with
paste-back and refinement, a driving clip, and `invert` (the demo's random networks)."""

import os

import numpy as np
from PIL import Image

from photo_utils import clip_with_gaps, fixture_photo, write_test_clip
from stylemask_jax.cli import main


def test_photos_paste_back_and_refinement(tmp_path, capsys):
    out = tmp_path / "photos"
    assert main(["reenact", "--config", "tiny", "--sources", fixture_photo("astronaut"),
                 "--targets", fixture_photo("astronaut_tilt"), "--paste-back", "--save-aligned",
                 "--refine-steps", "1", "--out", str(out)]) == 0
    assert "wrote 1 reenacted pair to" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["aligned", "grid.png", "pairs", "pasted"]
    source = np.asarray(Image.open(fixture_photo("astronaut")))
    pasted = np.asarray(Image.open(out / "pasted" / "0000_s000_t000.png"))
    assert pasted.shape == source.shape


def test_driving_clip(tmp_path, capsys):
    clip = write_test_clip(tmp_path / "clip.mp4", clip_with_gaps(4, blank=[]), 10)
    out = tmp_path / "video"
    assert main(["reenact", "--config", "tiny", "--sources", fixture_photo("astronaut"),
                 "--driving", clip, "--save-track", "--out", str(out)]) == 0
    assert "4 frames" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["reenacted.mp4", "track.csv"]


def test_invert(tmp_path, capsys):
    out = tmp_path / "codes"
    assert main(["invert", fixture_photo("astronaut"), "--config", "tiny", "--out", str(out)]) == 0
    assert "wrote 1 W+ code (" in capsys.readouterr().out
    assert np.load(out / "wplus.npy").shape[0] == 1
    assert sorted(os.listdir(out)) == ["aligned", "codes", "reconstructions", "wplus.npy",
                                       "wplus.txt"]
