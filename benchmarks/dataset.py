"""The face dataset: serialising, building, random access, disk use, and aligning in parallel.

    python -m benchmarks.dataset                  # 200 photos
    python -m benchmarks.dataset --num 1000
    python -m benchmarks.dataset --throughput     # 40 clips x 60 frames, 1/2/4 workers

1. Serialising one example with the builder's features, the image as raw bytes
   (`Encoding.BYTES`, what the builder uses) vs TFDS's default for a uint8 tensor (an int64
   list, one varint per byte): median time of `--repeat` calls each, and their ratio.
2. `build_dataset` on a folder of `--num` synthetic 320x320 PNG photos with a stand-in aligner
   (a resize, no face detection), so the time is reading, serialising and writing only:
   seconds per face, and bytes per face on disk (array_record compresses).
3. Random access: median time of `dataset[i]` over shuffled indices, and of a 32-index batch
   through `dataset.examples`, per example.
4. `--throughput`: `build_dataset` with the real aligner (dlib + the FFHQ crop) on a synthetic
   corpus of `--clips` frame folders of `--frames` frames (the test photos, resized to
   `--side` and shifted a little from frame to frame), with 1, 2 and 4 worker processes, each
   build in a fresh process: frames per second, wall and CPU time (the build's processes and
   Beam's workers together), the main process's and the largest worker's peak memory. Then
   where one worker process stops being the faster choice (small corpora, 1 vs 2 workers),
   and the cost of each step per frame: decoding, detection (full frame, and at
   `--max-detect-side 160`), alignment, the record's serialisation; and what
   `--frame-stride` skips.
Times are wall-clock medians on this machine; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _example(rng) -> dict:
    return {"image": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
            "landmarks": rng.random((68, 2), dtype=np.float32) * 256,
            "landmarks_frame": rng.random((68, 2), dtype=np.float32) * 512,
            "identity": "id00017", "identity_id": 3, "video": "id00017/clip",
            "video_id": 7, "frame": 12, "path": "id00017/clip.mp4"}


def serialisation(repeat: int) -> None:
    import tensorflow_datasets as tfds
    from stylemask_jax.datasets.builder import features
    ours = features()
    default = dict(ours)
    default["image"] = tfds.features.Tensor(shape=(256, 256, 3), dtype=np.uint8)
    default = tfds.features.FeaturesDict(default)
    example = _example(np.random.default_rng(0))
    t_bytes = _median_time(lambda: ours.serialize_example(example), repeat)
    t_list = _median_time(lambda: default.serialize_example(example),
                          max(3, repeat // 10))
    print(f"serialise one example: image as bytes {t_bytes * 1e3:.2f} ms, as int64 list "
          f"{t_list * 1e3:.1f} ms: {t_list / t_bytes:.0f}x")


class ResizeAligner:
    """A stand-in aligner: the photo resized to 256, landmarks on a grid (no detection)."""

    def __call__(self, frame):
        from PIL import Image
        from stylemask_jax.datasets import FaceCrop
        crop = np.asarray(Image.fromarray(frame).resize((256, 256)))
        points = np.stack(np.meshgrid(np.linspace(60, 196, 17), np.linspace(80, 200, 4)),
                          -1).reshape(-1, 2)[:68].astype(np.float32)
        return FaceCrop(crop, points, points * frame.shape[0] / 256)


def build_and_read(num: int, repeat: int) -> None:
    from PIL import Image
    from stylemask_jax.datasets import build_dataset, load_dataset
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "src")
        for k in range(num):
            ident = os.path.join(src, f"id{k % 10:02d}")
            os.makedirs(ident, exist_ok=True)
            smooth = np.kron(rng.integers(0, 256, (40, 40, 3)), np.ones((8, 8, 1)))
            Image.fromarray(smooth.astype(np.uint8)).save(os.path.join(ident, f"{k:05d}.png"))
        t0 = time.perf_counter()
        report = build_dataset(src, os.path.join(tmp, "data"), aligner=ResizeAligner(),
                               progress=False)
        seconds = time.perf_counter() - t0
        size = sum(os.path.getsize(os.path.join(report.path, f)) for f in os.listdir(report.path)
                   if "array_record" in f)
        print(f"build {report.num_examples} faces (stand-in aligner): {seconds / num * 1e3:.1f} "
              f"ms per face; {size / num / 1024:.0f} KiB per face on disk "
              f"(raw image {256 * 256 * 3 / 1024:.0f} KiB)")
        dataset = load_dataset(report.path)
        order = rng.permutation(len(dataset))
        t_one = _median_time(lambda: [dataset[i] for i in order[:32]], repeat) / 32
        t_batch = _median_time(lambda: dataset.examples(order[:32]), repeat) / 32
        print(f"random access: dataset[i] {t_one * 1e3:.2f} ms per example, 32-index batch "
              f"{t_batch * 1e3:.2f} ms per example")


CORPUS_PHOTOS = ("astronaut.png", "astronaut_tilt.png", "astronaut_edge.png")


def make_corpus(root: str, clips: int, frames: int, side: int) -> str:
    """ROOT/src/idCC/clip/FFF.png: the test photos resized to `side`, moved a pixel or two a
    frame (a camera that drifts), so every frame has one face to find."""
    from PIL import Image
    fixtures = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "align")
    bases = []
    for name in CORPUS_PHOTOS:
        with Image.open(os.path.join(fixtures, name)) as img:
            bases.append(np.asarray(img.convert("RGB").resize((side, side))))
    src = os.path.join(root, "src")
    for c in range(clips):
        base = bases[c % len(bases)]
        folder = os.path.join(src, f"id{c:03d}", "clip")
        os.makedirs(folder, exist_ok=True)
        for k in range(frames):
            dy, dx = (k * 2 + c) % 9, (k + 2 * c) % 7
            frame = np.pad(base, ((dy, 0), (dx, 0), (0, 0)), mode="edge")[:side, :side]
            Image.fromarray(np.ascontiguousarray(frame)).save(os.path.join(folder, f"{k:03d}.png"))
    return src


def one_build(src: str, out: str, workers: int) -> dict:
    """Builds in this (fresh) process; what `throughput` reports, as a dict."""
    from stylemask_jax.datasets import build_dataset
    t0, c0 = time.perf_counter(), os.times()
    report = build_dataset(src, out, workers=workers, progress=False)
    wall, c1 = time.perf_counter() - t0, os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system) + (c1.children_user - c0.children_user) \
        + (c1.children_system - c0.children_system)
    return {"workers": workers, "runner": report.runner, "frames": report.metadata["num_frames"],
            "faces": report.num_examples, "wall_s": wall, "cpu_s": cpu,
            "main_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def _build_in_fresh_process(src: str, out: str, workers: int) -> dict:
    result = subprocess.run([sys.executable, "-m", "benchmarks.dataset", "--one-build", src, out,
                             str(workers)], capture_output=True, text=True, check=True,
                            cwd=os.path.join(os.path.dirname(__file__), ".."))
    return json.loads(result.stdout.strip().splitlines()[-1])


def throughput(clips: int, frames: int, side: int, workers_list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = make_corpus(tmp, clips, frames, side)
        print(f"corpus: {clips} clips x {frames} frames of {side}x{side} ({os.cpu_count()} cores)")
        print("| workers | where | frames | wall s | frames/s | speed-up | CPU s | main peak MiB "
              "| largest worker peak MiB |")
        print("|---|---|---|---|---|---|---|---|---|")
        first = None
        for workers in workers_list:
            r = _build_in_fresh_process(src, os.path.join(tmp, f"out{workers}"), workers)
            first = first or r["wall_s"]
            print(f"| {workers} | {r['runner']} | {r['frames']} | {r['wall_s']:.1f} | "
                  f"{r['frames'] / r['wall_s']:.1f} | {first / r['wall_s']:.2f}x | "
                  f"{r['cpu_s']:.1f} | {r['main_peak_mib']:.0f} | "
                  + (f"{r['worker_peak_mib']:.0f} |" if r["workers"] > 1 else "- |"))


def crossover(side: int, sizes) -> None:
    """Small corpora: one process against two worker processes (Beam's start-up cost); each
    build's process is told to take that many workers whatever the size (`--one-build` with
    negative workers)."""
    print("| frames | 1 process s | 2 worker processes s |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for clips, frames in sizes:
            src = make_corpus(os.path.join(tmp, f"c{clips}x{frames}"), clips, frames, side)
            walls = []
            for workers in (1, 2):
                out = os.path.join(tmp, f"o{clips}x{frames}w{workers}")
                walls.append(_build_in_fresh_process(src, out, -workers)["wall_s"])
            print(f"| {clips * frames} | {walls[0]:.1f} | {walls[1]:.1f} |")


def frame_costs(side: int, repeat: int) -> None:
    from stylemask_jax.datasets import crops
    from stylemask_jax.datasets.builder import features
    from stylemask_jax.photos import LandmarkDetector, align_face, load_photo
    with tempfile.TemporaryDirectory() as tmp:
        src = make_corpus(tmp, 3, 1, side)
        paths = [os.path.join(src, f"id{c:03d}", "clip", "000.png") for c in range(3)]
        full, small = LandmarkDetector(), LandmarkDetector(max_detect_side=side // 2)
        paths = [p for p in paths if full.detect(load_photo(p)) is not None]
        frames = [load_photo(p) for p in paths]
        marks = [full.detect(f) for f in frames]
        face = crops.default_aligner()(frames[0])
        example = {"image": face.image, "landmarks": face.landmarks,
                   "landmarks_frame": face.landmarks_frame, "identity": "id000",
                   "identity_id": 0, "video": "id000/clip", "video_id": 0, "frame": 0,
                   "path": "id000/clip/000.png"}
        feats = features()
        costs = {
            "decode (PNG, load_photo)": _median_time(lambda: [load_photo(p) for p in paths],
                                                     repeat) / len(paths),
            "detect + 68 landmarks, full frame": _median_time(
                lambda: [full.detect(f) for f in frames], repeat) / len(frames),
            f"detect + 68 landmarks, --max-detect-side {side // 2}": _median_time(
                lambda: [small.detect(f) for f in frames], repeat) / len(frames),
            "FFHQ alignment (align_face)": _median_time(
                lambda: [align_face(f, m) for f, m in zip(frames, marks)], repeat) / len(frames),
            "serialise the record": _median_time(lambda: feats.serialize_example(example),
                                                 repeat),
        }
    print(f"per frame ({side}x{side}), median of {repeat}:")
    for name, seconds in costs.items():
        print(f"  {name}: {seconds * 1e3:.1f} ms")
    print("--frame-stride N reads, detects and aligns one frame in N (frame folders are not "
          "even decoded; a video file is decoded whole and the other frames dropped)")


def main(argv=None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--one-build":
        src, out, workers = sys.argv[2], sys.argv[3], int(sys.argv[4])
        if workers < 0:      # crossover: this many workers whatever the corpus size
            from stylemask_jax.datasets import pipeline
            pipeline.IN_PROCESS_FRAMES, workers = 0, -workers
        print(json.dumps(one_build(src, out, workers)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=200, help="photos to build from")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--throughput", action="store_true",
                        help="only the parallel alignment figures (section 4)")
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--side", type=int, default=320, help="frame side in pixels")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args(argv)
    if args.throughput:
        throughput(args.clips, args.frames, args.side, args.workers)
        crossover(args.side, [(2, 10), (4, 10), (8, 10), (8, 20)])
        frame_costs(args.side, max(3, args.repeat // 3))
        return
    serialisation(args.repeat)
    build_and_read(args.num, max(3, args.repeat // 5))


if __name__ == "__main__":
    main()
