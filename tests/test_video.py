"""Video streaming (stylemask_jax.photos.video); its fixed-shape batches: tests/test_batching.py.

Clips are built from tests/fixtures/align/astronaut.png (a sliding, slightly turning window)
and written with imageio-ffmpeg directly; sizes and lengths are small so the file runs in a
few seconds.
"""

import os
import subprocess
import tracemalloc

import numpy as np
import pytest

from stylemask_jax.errors import UserInputError

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

from stylemask_jax.photos.video import (VideoWriter, _audio_codec, count_frames,  # noqa: E402
                                        iter_frames, probe_video)
from video_utils import clip_frames, sine_audio, write_test_clip  # noqa: E402

FPS = 12
N, W, H = 16, 160, 128


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    frames = clip_frames(N, W, H)
    silent = write_test_clip(d / "silent.mp4", frames, FPS)
    sound = write_test_clip(d / "sound.mp4", frames, FPS, audio=True)
    return frames, silent, sound


def _ffmpeg_children():
    """pids of running ffmpeg processes started by this process (Linux /proc)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1: stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == os.getpid() and "ffmpeg" in comm:
            out.append(int(pid))
    return out


def _nearest(decoded, frames):
    """index of the source frame closest to each decoded frame, and the mean abs error to its own."""
    d = np.abs(decoded[:, None].astype(np.int16) - frames[None].astype(np.int16)).mean((2, 3, 4))
    return d.argmin(1), float(np.mean(np.diag(d)))


def test_probe(clips):
    _, silent, sound = clips
    info = probe_video(silent)
    assert info.fps == FPS and info.size == (W, H) and info.num_frames == N
    assert info.duration == pytest.approx(N / FPS, abs=0.01) and not info.has_audio
    info = probe_video(sound)
    assert info.fps == FPS and info.size == (W, H) and info.has_audio
    # the container lasts as long as its longer audio: the estimate is off, count_frames is exact
    assert info.num_frames > N and count_frames(sound) == N == count_frames(silent)


def test_iter_frames_batches_in_order(clips):
    frames, silent, _ = clips
    batches = list(iter_frames(silent, 5))
    assert [b.shape for b in batches] == [(5, H, W, 3)] * 3 + [(1, H, W, 3)]
    assert all(b.dtype == np.uint8 for b in batches)
    order, err = _nearest(np.concatenate(batches), frames)
    assert list(order) == list(range(N)) and err < 4.0  # H.264 at quality 9: ~1-2 levels


def test_iter_frames_early_exit_stops_ffmpeg(clips):
    _, silent, _ = clips
    gen = iter_frames(silent, 2)
    next(gen)
    assert _ffmpeg_children(), "the decoder should still be running mid-clip"
    gen.close()
    assert _ffmpeg_children() == []
    with pytest.raises(ZeroDivisionError):
        for _ in iter_frames(silent, 2):
            1 / 0
    assert _ffmpeg_children() == []


def test_iter_frames_streams_in_bounded_memory(tmp_path):
    n, side = 64, 192  # 7.1 MB of frames if the clip were held
    frame = clip_frames(1, side, side)[0]
    frames = np.stack([np.roll(frame, 3 * i, axis=1) for i in range(n)])
    path = write_test_clip(tmp_path / "long.mp4", frames, 24)
    del frames
    tracemalloc.start()
    count = 0
    for batch in iter_frames(path, 4):
        count += batch.shape[0]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    batch_bytes = 4 * side * side * 3
    assert count == n
    assert peak < 4 * batch_bytes, (peak, batch_bytes)  # a batch, a frame's bytes, slack


def test_rotated_phone_clip_is_read_upright(clips, tmp_path):
    _, silent, _ = clips
    rotated = str(tmp_path / "rotated.mp4")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
                    "-display_rotation:v:0", "90", "-i", str(silent), "-c", "copy", rotated],
                   check=True)
    assert probe_video(rotated).size == (H, W)
    assert next(iter_frames(rotated, 3)).shape == (3, W, H, 3)


def test_writer_roundtrip_fps_size_count(clips, tmp_path):
    frames, _, _ = clips
    out = tmp_path / "sub" / "out.mp4"
    with VideoWriter(out, fps=25, preset="ultrafast") as writer:
        writer.write(frames[:5])       # a batch
        for frame in frames[5:]:       # single frames
            writer.write(frame)
    info = probe_video(out)
    assert (info.fps, info.size, info.has_audio) == (25, (W, H), False)
    assert count_frames(out) == N and writer.frames_written == N
    order, err = _nearest(np.concatenate(list(iter_frames(out, 8))), frames)
    assert list(order) == list(range(N)) and err < 4.0
    assert sorted(os.listdir(out.parent)) == ["out.mp4"]  # no temporary files left


def test_writer_pads_odd_sizes(clips, tmp_path):
    frames = clips[0][:4, :97, :121]
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, fps=FPS, preset="ultrafast") as writer:
        writer.write(frames)
    assert writer.size == (122, 98) and probe_video(out).size == (122, 98)
    decoded = np.concatenate(list(iter_frames(out, 4))).astype(np.int16)
    assert np.abs(decoded[:, :97, :121] - frames).mean() < 4.0
    # the extra column and row repeat the last ones (up to coding error)
    assert np.abs(decoded[:, :97, 121] - decoded[:, :97, 120]).mean() < 4.0
    assert np.abs(decoded[:, 97, :121] - decoded[:, 96, :121]).mean() < 4.0


def test_writer_keeps_audio_trimmed_to_video(clips, tmp_path):
    frames, silent, sound = clips
    out = tmp_path / "with_audio.mp4"
    with VideoWriter(out, fps=FPS, audio_from=sound, preset="ultrafast") as writer:
        writer.write(frames[:10])
    info = probe_video(out)
    assert info.has_audio and info.fps == FPS and count_frames(out) == 10
    # the source's audio lasts N / FPS + 0.5 s; the result stops with its video (AAC packet slack)
    assert info.duration == pytest.approx(10 / FPS, abs=0.05)
    # a source without audio gives a silent result
    out2 = tmp_path / "no_audio.mp4"
    with VideoWriter(out2, fps=FPS, audio_from=silent, preset="ultrafast") as writer:
        writer.write(frames[:3])
    assert not probe_video(out2).has_audio and count_frames(out2) == 3
    # PCM audio (a .wav), which .mp4 players do not read, is re-encoded to AAC
    wav = tmp_path / "tone.wav"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f",
                    "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "pcm_s16le", str(wav)],
                   check=True)
    out3 = tmp_path / "pcm_audio.mp4"
    with VideoWriter(out3, fps=FPS, audio_from=wav, preset="ultrafast") as writer:
        writer.write(frames[:6])
    assert _audio_codec(wav) == "pcm_s16le" and _audio_codec(out3) == "aac"
    assert probe_video(out3).duration == pytest.approx(6 / FPS, abs=0.05)
    assert sorted(os.listdir(tmp_path)) == ["no_audio.mp4", "pcm_audio.mp4", "tone.wav",
                                            "with_audio.mp4"]


def test_writer_failure_leaves_nothing(clips, tmp_path):
    frames = clips[0]
    out = tmp_path / "broken.mp4"
    with pytest.raises(KeyError):
        with VideoWriter(out, fps=FPS, preset="ultrafast") as writer:
            writer.write(frames[:6])
            raise KeyError("model failed mid-clip")
    assert os.listdir(tmp_path) == []
    # an existing file of that name is left as it was
    out.write_bytes(b"old")
    with pytest.raises(ValueError, match="differs from the first"):
        with VideoWriter(out, fps=FPS, preset="ultrafast") as writer:
            writer.write(frames[:2])
            writer.write(frames[:2, :64])
    assert os.listdir(tmp_path) == ["broken.mp4"] and out.read_bytes() == b"old"
    with pytest.raises(ValueError, match="no frames"):
        with VideoWriter(tmp_path / "empty.mp4", fps=FPS):
            pass
    assert os.listdir(tmp_path) == ["broken.mp4"]
    assert _ffmpeg_children() == []


def test_bad_files_are_one_line_errors(clips, tmp_path):
    _, silent, _ = clips
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.mp4"  # imageio writes the index (moov) last: cut it off
    truncated.write_bytes(open(silent, "rb").read()[:20000])
    audio_only = tmp_path / "tone.m4a"
    sine_audio(str(audio_only), 1.0)
    cases = {tmp_path / "missing.mp4": "not found", empty: "empty", garbage: "not a readable video",
             truncated: "not a readable video", audio_only: "not a readable video",
             tmp_path: "is a folder"}
    for path, what in cases.items():
        for call in (lambda: probe_video(path), lambda: next(iter_frames(path, 4)),
                     lambda: count_frames(path)):
            with pytest.raises(UserInputError) as e:
                call()
            msg = str(e.value)
            assert str(path) in msg and "\n" not in msg, msg
            assert what in msg, msg
    with pytest.raises(UserInputError, match="missing.wav"):
        VideoWriter(tmp_path / "x.mp4", fps=FPS, audio_from=tmp_path / "missing.wav")
    assert not (tmp_path / "x.mp4").exists()
