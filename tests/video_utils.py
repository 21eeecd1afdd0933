"""Test clips: frames cut from the astronaut photo with a moving crop and a small rotation,
written with imageio-ffmpeg directly (not with the library's writer, which is under test)."""

from __future__ import annotations

import os
import subprocess

import numpy as np

ALIGN = os.path.join(os.path.dirname(__file__), "fixtures", "align")


def clip_frames(n: int, width: int, height: int) -> np.ndarray:
    """uint8 (n, height, width, 3): a 300x240 window over astronaut.png sliding right and down
    by 4 px a frame and turning by up to 3 degrees, resized to width x height."""
    from PIL import Image
    photo = Image.open(os.path.join(ALIGN, "astronaut.png")).convert("RGB")
    frames = []
    for i in range(n):
        angle = 3.0 * np.sin(i / 3.0)
        turned = photo.rotate(angle, resample=Image.BILINEAR, center=(256, 200))
        x, y = 80 + 4 * i, 40 + 2 * i
        window = turned.crop((x, y, x + 300, y + 240)).resize((width, height), Image.BILINEAR)
        frames.append(np.asarray(window))
    return np.stack(frames)


def sine_audio(path: str, seconds: float) -> str:
    """An AAC .m4a with a 440 Hz tone, from ffmpeg's lavfi `sine` source."""
    import imageio_ffmpeg
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
                    "-c:a", "aac", path], check=True)
    return path


def write_test_clip(path, frames, fps: float, audio: bool = False) -> str:
    """Writes uint8 (n, H, W, 3) frames (H, W multiples of 16) as an H.264 .mp4; with audio, a
    sine tone 0.5 s longer than the video (so trimming to the video can be checked)."""
    import imageio_ffmpeg
    path = os.fspath(path)
    frames = np.asarray(frames, np.uint8)
    audio_path = None
    if audio:
        audio_path = sine_audio(path + ".m4a", frames.shape[0] / fps + 0.5)
    writer = imageio_ffmpeg.write_frames(
        path, (frames.shape[2], frames.shape[1]), fps=fps, quality=9, macro_block_size=16,
        audio_path=audio_path, audio_codec="copy" if audio else None)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    if audio_path:
        os.remove(audio_path)
    return path


def head_motion(base, n: int, fps: float, amplitude: float, period: float,
                degrees: float = 6.0, zoom: float = 0.08) -> np.ndarray:
    """A smooth synthetic head trajectory: landmarks base (68, 2) moved over n frames at fps by a
    sideways sway of `amplitude` px every `period` s (half of it vertically, 1.7x slower), a turn
    of +-`degrees` every 4 s and a +-`zoom` scale change every 5 s. -> float64 (n, 68, 2)."""
    base = np.asarray(base, np.float64)
    centre = base.mean(0)
    t = np.arange(n)[:, None] / fps
    angle = np.deg2rad(degrees) * np.sin(2 * np.pi * t / 4.0)
    scale = 1.0 + zoom * np.sin(2 * np.pi * t / 5.0)
    cos, sin = np.cos(angle)[..., None], np.sin(angle)[..., None]
    rel = base - centre
    turned = np.stack([cos[..., 0] * rel[:, 0] - sin[..., 0] * rel[:, 1],
                       sin[..., 0] * rel[:, 0] + cos[..., 0] * rel[:, 1]], -1)
    shift = np.concatenate([amplitude * np.sin(2 * np.pi * t / period),
                            0.5 * amplitude * np.sin(2 * np.pi * t / (1.7 * period))], -1)
    return turned * scale[..., None] + centre + shift[:, None, :]
