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
