"""The face dataset's storage: serialising an example, building, random access, disk use.

    python -m benchmarks.dataset                  # 200 photos
    python -m benchmarks.dataset --num 1000

1. Serialising one example with the builder's features, the image as raw bytes
   (`Encoding.BYTES`, what the builder uses) vs TFDS's default for a uint8 tensor (an int64
   list, one varint per byte): median time of `--repeat` calls each, and their ratio.
2. `build_dataset` on a folder of `--num` synthetic 320x320 PNG photos with a stand-in aligner
   (a resize, no face detection), so the time is reading, serialising and writing only:
   seconds per face, and bytes per face on disk (array_record compresses).
3. Random access: median time of `dataset[i]` over shuffled indices, and of a 32-index batch
   through `dataset.examples`, per example.
Times are wall-clock medians on this machine; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=200, help="photos to build from")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)
    serialisation(args.repeat)
    build_and_read(args.num, max(3, args.repeat // 5))


if __name__ == "__main__":
    main()
