"""A source photo driven by a test clip (the astronaut with a moving, turning crop, and frames with
no face), with random networks: frame count, fps, audio, carried/filled counts, the track file,
paste-back and side-by-side sizes; and the crop jitter on that clip with and without the landmark
smoother."""

import csv

import numpy as np
import pytest

from photo_utils import clip_with_gaps, e4e_net, fixture_photo, photo_models, write_test_clip
from stylemask_jax.errors import UserInputError
from stylemask_jax.photos.driving import reenact_video
from stylemask_jax.inversion import Inverter
from stylemask_jax.photos.video import count_frames, probe_video

FPS = 10
BATCH = 4


@pytest.fixture(scope="module")
def nets():
    models = photo_models()
    encoder, evars = e4e_net()
    return models, Inverter(encoder, evars)


def _mean(models):
    return np.zeros(models.generator.style_dim, np.float32) + 0.1


def test_video_counts_fps_audio_side_by_side(tmp_path, nets):
    models, inverter = nets
    frames = clip_with_gaps(7, blank=[0, 3, 4])          # 160 x 128; no face in frames 0, 3, 4
    clip = write_test_clip(tmp_path / "clip.mp4", frames, FPS, audio=True)
    track = tmp_path / "out" / "track.csv"
    result = reenact_video(models, inverter, fixture_photo("astronaut"), clip, str(tmp_path / "out"),
                           mean=_mean(models), batch_size=BATCH, side_by_side_view=True,
                           progress=False, track_path=str(track))
    assert result.path == str(tmp_path / "out" / "reenacted.mp4")
    assert result.stats == dict(frames=7, detected=4, carried=2, filled=1, resets=0, reacquired=0)
    # the track: one row per frame, the status of each, a box where a face was taken, every quad
    with open(track, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["frame"] for r in rows] == [str(k) for k in range(7)]
    assert [r["status"] for r in rows] == ["filled", "detected", "detected", "carried", "carried",
                                           "detected", "detected"]
    assert [r["faces"] for r in rows] == ["0", "1", "1", "0", "0", "1", "1"]
    assert all((r["box_left"] != "") == (r["status"] == "detected") for r in rows)
    quads = np.array([[float(r[f"quad_{a}{k}"]) for k in range(4) for a in "xy"] for r in rows])
    assert np.all(np.isfinite(quads)) and np.all(quads[3] == quads[4])  # carried: the same crop
    info = probe_video(result.path)
    assert count_frames(result.path) == 7 and abs(info.fps - FPS) < 1e-6 and info.has_audio
    # driving 160x128 resized to the 64 px output's height: 80x64, then the 64x64 face
    assert info.size == result.size == (80 + 64, 64)


def test_video_paste_back_has_the_photo_size(tmp_path, nets):
    models, inverter = nets
    clip = write_test_clip(tmp_path / "clip.mp4", clip_with_gaps(4, blank=[]), FPS)
    photo = fixture_photo("astronaut")                    # 512 x 512
    result = reenact_video(models, inverter, photo, clip, str(tmp_path / "out"), mean=_mean(models),
                           batch_size=BATCH, paste_back=True, progress=False)
    info = probe_video(result.path)
    assert info.size == (512, 512) and count_frames(result.path) == 4 and not info.has_audio
    assert result.stats["carried"] == 0 and result.stats["filled"] == 0


def test_video_face_point_outside_the_first_face_frame(tmp_path, nets):
    models, inverter = nets
    clip = write_test_clip(tmp_path / "clip.mp4", clip_with_gaps(3, blank=[0]), FPS)  # 160 x 128
    with pytest.raises(UserInputError, match=r"^face point \(900, 20\) is outside the first face "
                                             r"frame \(160x128\)$"):
        reenact_video(models, inverter, fixture_photo("astronaut"), clip, str(tmp_path / "out"),
                      mean=_mean(models), batch_size=BATCH, face=(900, 20), progress=False,
                      track_path=str(tmp_path / "out" / "track.csv"))
    assert not (tmp_path / "out").exists()                # checked before anything is written


def test_jitter_with_and_without_smoothing(capsys):
    from stylemask_jax.photos import LandmarkDetector
    from stylemask_jax.photos.smoothing import jitter, smooth_sequence
    from video_utils import clip_frames
    frames = clip_frames(24, 320, 256)
    detector = LandmarkDetector()
    raw = detector(frames)
    assert all(lm is not None for lm in raw)
    smoothed, stats = smooth_sequence(raw, 30.0, "clip")
    before, after = jitter(np.stack(raw)), jitter(smoothed)
    with capsys.disabled():
        print(f"\ncrop jitter on the 24-frame test clip (RMS corner acceleration, px/frame^2): "
              f"raw dlib {before:.3f}, smoothed {after:.3f} ({before / after:.1f}x less)")
    assert after < before
