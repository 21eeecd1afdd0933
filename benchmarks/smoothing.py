"""Jitter and lag of the landmark filter (stylemask_jax.photos.smoothing) on synthetic head motion.

    python -m benchmarks.smoothing
    python -m benchmarks.smoothing --min-cutoff 0.3 --beta 4 --fps 30 60

Ground truth: the dlib landmarks of the astronaut photo (tests/fixtures/align) moved smoothly
(tests/video_utils.head_motion: a still head, then a +-6 degree turn and +-8% zoom, plus a
sideways sway of growing speed) for 10 s; the
"detections" add independent Gaussian noise (sigma 1 px per coordinate) to every point. Columns:

  jitter     RMS second temporal difference of the FFHQ crop's corners (px / frame^2): of the
             ground truth, of the raw detections, of the filtered landmarks
  error      RMS and max distance of the filtered crop corners from the ground truth's (px;
             the raw detections' RMS for comparison), after the first second
  lag        the delay (frames) that best aligns the filtered crop with the ground truth's
Run from the repository root (the trajectory comes from tests/).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from stylemask_jax.photos.smoothing import OneEuroParams, crop_quad, jitter, smooth_sequence
from tests.video_utils import ALIGN, head_motion

# (name, sway amplitude px, sway period s, turn degrees, zoom); the turn (every 4 s) and zoom
# (every 5 s) move the crop's corners by up to ~13 px and ~14 px
MOTIONS = [("still head", 0.0, 3.0, 0.0, 0.0), ("turn 6 deg + zoom 8%", 0.0, 3.0, 6.0, 0.08),
           ("+ sway 30 px / 3 s", 30.0, 3.0, 6.0, 0.08), ("+ sway 60 px / 2 s", 60.0, 2.0, 6.0, 0.08),
           ("+ sway 100 px / 1.5 s", 100.0, 1.5, 6.0, 0.08)]


def evaluate(params: OneEuroParams, fps: float, amplitude: float, period: float,
             degrees: float = 6.0, zoom: float = 0.08, seconds: float = 10.0, noise: float = 1.0, seed: int = 0) -> dict:
    base = np.load(os.path.join(ALIGN, "astronaut_landmarks.npy"))
    truth = head_motion(base, int(seconds * fps), fps, amplitude, period, degrees, zoom)
    raw = truth + np.random.default_rng(seed).normal(0.0, noise, truth.shape)
    smooth, _ = smooth_sequence(raw, fps, "synthetic", params)
    skip = int(fps)
    q_true, qsize = crop_quad(truth)
    q_raw, _ = crop_quad(raw)
    q_smooth, _ = crop_quad(smooth)
    dist = np.linalg.norm(q_smooth - q_true, axis=-1)[skip:]
    lags = range(0, int(fps // 2))
    lag = min(lags, key=lambda k: np.mean(np.sum((q_smooth[skip:] - q_true[skip - k:len(q_true) - k]) ** 2, -1)))
    return dict(jitter_true=jitter(truth), jitter_raw=jitter(raw), jitter_smooth=jitter(smooth),
                err_raw=float(np.sqrt(np.mean(np.sum((q_raw - q_true)[skip:] ** 2, -1)))),
                err_rms=float(np.sqrt(np.mean(dist ** 2))), err_max=float(dist.max()), lag=lag,
                qsize=float(qsize.mean()))


def main(argv=None) -> None:
    defaults = OneEuroParams()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-cutoff", type=float, default=defaults.min_cutoff)
    ap.add_argument("--beta", type=float, default=defaults.beta)
    ap.add_argument("--d-cutoff", type=float, default=defaults.d_cutoff)
    ap.add_argument("--fps", type=float, nargs="+", default=[30.0])
    args = ap.parse_args(argv)
    params = OneEuroParams(args.min_cutoff, args.beta, args.d_cutoff)
    print(f"One Euro filter: min_cutoff {params.min_cutoff} Hz, beta {params.beta}, "
          f"d_cutoff {params.d_cutoff} Hz; detection noise 1 px; crop side ~174 px")
    print(f"{'motion':26s} {'fps':>4s} | {'jitter true':>11s} {'raw':>6s} {'filtered':>8s} | "
          f"{'err raw':>7s} {'filtered rms':>12s} {'max':>5s} | {'lag (frames)':>12s}")
    for fps in args.fps:
        for name, amplitude, period, degrees, zoom in MOTIONS:
            r = evaluate(params, fps, amplitude, period, degrees, zoom)
            lag = f"{r['lag']:12d}" if amplitude or degrees else f"{'-':>12s}"
            print(f"{name:26s} {fps:4.0f} | {r['jitter_true']:11.2f} {r['jitter_raw']:6.2f} "
                  f"{r['jitter_smooth']:8.2f} | {r['err_raw']:7.2f} {r['err_rms']:12.2f} "
                  f"{r['err_max']:5.1f} | {lag}")


if __name__ == "__main__":
    main()
