"""Time per photo of the photo path's CPU steps: dlib landmarks and the FFHQ alignment.

    python -m benchmarks.landmarks                  # every fixture photo, 5 timed calls each
    python -m benchmarks.landmarks --iters 3 --max-detect-side 600

Rows per fixture photo (tests/fixtures/align): the face detector + 68-point predictor with the
reference's recipe (full photo, one up-sampling), optionally the same with the detector on a
reduced copy (`LandmarkDetector(max_detect_side=N)`, with its largest landmark difference from
the full-resolution points), and `align_face`. Median wall time and median process CPU time
of the timed calls after one warm-up call; a video is hundreds of such frames.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from benchmarks.harness import cpu_model, load_average, markdown_table, time_calls
from stylemask_jax.photos import LandmarkDetector, align_face, load_photo

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "align")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--max-detect-side", type=int, default=None,
                        help="also time detection on a copy reduced to this longer side")
    args = parser.parse_args(argv)

    cases = json.load(open(os.path.join(FIXTURES, "cases.json")))["cases"]
    full = LandmarkDetector()
    reduced = LandmarkDetector(max_detect_side=args.max_detect_side) if args.max_detect_side else None
    rows = []
    for name, case in sorted(cases.items(), key=lambda kv: kv[1]["size_hw"][0]):
        photo = load_photo(os.path.join(FIXTURES, case["photo"]))
        points = full.detect(photo)
        t_full = time_calls(lambda: full.detect(photo), warmup=1, iters=args.iters)
        t_align = time_calls(lambda: align_face(photo, points), warmup=1, iters=args.iters)
        row = [name, f"{photo.shape[1]}x{photo.shape[0]}",
               f"{t_full['median_s']:.3f} / {t_full['cpu_s']:.3f}"]
        if reduced is not None:
            t_red = time_calls(lambda: reduced.detect(photo), warmup=1, iters=args.iters)
            diff = np.abs(reduced.detect(photo) - points).max()
            row += [f"{t_red['median_s']:.3f} / {t_red['cpu_s']:.3f}", f"{diff:.1f}"]
        row.append(f"{t_align['median_s'] * 1e3:.1f}")
        rows.append(row)

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load {load_average()}")
    headers = ["photo", "size", "landmarks s (wall / CPU)"]
    if reduced is not None:
        headers += [f"detect at <= {args.max_detect_side} px s", "max diff px"]
    headers.append("align_face ms")
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
