"""Memory and speed of streaming a long clip through stylemask_jax.photos.video (no model).

    python -m benchmarks.video_stream                  # a 10-minute 640x360 30 fps clip
    python -m benchmarks.video_stream --minutes 2 --size 1280x720 --batch 16

Builds a test clip with ffmpeg's lavfi `testsrc2` (moving pattern) and `sine` (audio) sources,
then decodes it with `iter_frames` in batches and re-encodes every frame with `VideoWriter`
(libx264 `ultrafast`, the source's audio copied): the shape of the reenactment loop with the
networks left out. Prints the frame count, what holding the clip would take, the peak RSS of this
process above its start (sampled every 2 ms) and the peak RSS of the largest ffmpeg child
(getrusage), and the frames/s of the read + write loop.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import tempfile
import time

from benchmarks.harness import RssSampler, mib
from stylemask_jax.photos.video import VideoWriter, count_frames, iter_frames, probe_video


def make_clip(path: str, minutes: float, size: str, fps: int) -> None:
    import imageio_ffmpeg
    seconds = minutes * 60
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-shortest", path], check=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "clip.mp4"), os.path.join(tmp, "copy.mp4")
        t0 = time.perf_counter()
        make_clip(src, args.minutes, args.size, args.fps)
        print(f"built a {args.minutes:g}-minute {args.size} {args.fps} fps clip with audio "
              f"in {time.perf_counter() - t0:.0f} s ({os.path.getsize(src) / 2**20:.0f} MiB)")
        info = probe_video(src)
        n = 0
        t0 = time.perf_counter()
        with RssSampler() as rss:
            with VideoWriter(out, info.fps, audio_from=src, preset="ultrafast") as writer:
                for batch in iter_frames(src, args.batch, info):
                    writer.write(batch)
                    n += batch.shape[0]
        seconds = time.perf_counter() - t0
        w, h = info.size
        child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        print(f"frames read and written: {n} (probe estimate {info.num_frames}, "
              f"written file {count_frames(out)} frames, audio {probe_video(out).has_audio})")
        print(f"holding the decoded clip would take {mib(n * w * h * 3)} MiB; "
              f"one batch of {args.batch} is {mib(args.batch * w * h * 3)} MiB")
        print(f"peak RSS of this process above its start: {mib(rss.peak_delta)} MiB; "
              f"largest ffmpeg child peak RSS: {mib(child_peak)} MiB")
        print(f"read + write: {n / seconds:.0f} frames/s ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
