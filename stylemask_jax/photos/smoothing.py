"""Temporal smoothing of per-frame 68-point landmarks, so that the FFHQ crop of a video does not jitter.

A landmark detector run frame by frame has about a pixel of independent error per point and
frame; the FFHQ crop (an oriented square built from the eye centres and the mouth corners)
inherits it and wobbles visibly at the output's 256 px, even on a still head.

The filter: a One Euro filter (Casiez, Roussel and Vogel, CHI 2012), causal and streaming
(constant state: the last output and a speed estimate). Each frame it moves the output toward
the new detection by alpha = 1 / (1 + tau / dt), tau = 1 / (2 pi f_c), with a cutoff that rises
with the speed of the head: f_c = min_cutoff + beta * speed. A still head is smoothed hard
(f_c = min_cutoff), a moving one followed closely, which trades jitter for lag where it matters.
Choices made here:

- One alpha for all 68 points of a frame (the points move together with the head; per-point
  speeds would mostly measure each point's noise).
- The speed is that of the head, seen at the crop: the similarity (scale, rotation, shift)
  that best maps the last output onto the new detection, fitted to all 68 points (which
  averages their noise away, ~8x), is applied to the FFHQ quad; the RMS displacement of its
  4 corners per second, low-passed at d_cutoff and divided by the crop side (qsize), is the
  speed in crop sides per second, so the parameters do not depend on the video's resolution
  or the face's size.
- dt is the real time since the last detection (frames without a face do not update the state);
  a jump of more than `reset_jump` crop sides between two detections (a cut) restarts the
  filter at the new detection instead of sliding across the frame.

Frames without a face (`None`) get the last output (counted as `carried`); frames before the
first detection get that first detection once it is known (`initial`, e.g. from
`find_first_face`; counted as `filled`). A clip with no face at all is a UserInputError.

Defaults (min_cutoff 0.5 Hz, beta 2, d_cutoff 1 Hz) favour a steady crop: at 30 fps with 1 px
detection noise they cut the crop's jitter ~5x on a moving head and ~12x on a still one, for a
lag of about 2 frames (`python -m benchmarks.smoothing` prints the figures).

Landmarks: float (68, 2), x then y in pixels, iBUG 300-W order (dlib's 68 points).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Optional, Tuple

import numpy as np

from stylemask_jax.errors import UserInputError
from stylemask_jax.photos.align import face_quad


@dataclasses.dataclass(frozen=True)
class OneEuroParams:
    """min_cutoff: Hz, the cutoff for a still head; beta: Hz added per crop side per second of
    head speed; d_cutoff: Hz, the low-pass on the speed estimate; reset_jump: crop sides between
    two detections above which the filter restarts."""
    min_cutoff: float = 0.5
    beta: float = 2.0
    d_cutoff: float = 1.0
    reset_jump: float = 0.5


def crop_quad(landmarks) -> Tuple[np.ndarray, np.ndarray]:
    """The FFHQ crop of the official alignment (`align.face_quad`) for landmarks (..., 68, 2).

    Returns (quad (..., 4, 2), qsize (...,)): the oriented square's corners in the order
    (c - x - y, c - x + y, c + x + y, c + x - y) and its side 2 |x|, in pixels (float64).
    """
    lm = np.asarray(landmarks, np.float64)
    flat = lm.reshape(-1, 68, 2)
    quads, sizes = zip(*(face_quad(points) for points in flat)) if len(flat) else ((), ())
    return (np.asarray(quads, np.float64).reshape(lm.shape[:-2] + (4, 2)),
            np.asarray(sizes, np.float64).reshape(lm.shape[:-2]))


def jitter(landmarks_seq) -> float:
    """How much the FFHQ crop shakes over a sequence (T >= 3, 68, 2): the RMS over frames and the
    crop's 4 corners of the corner's second temporal difference (acceleration), in pixels per
    frame squared. A smooth head motion gives nearly 0; independent 1 px noise on every point
    gives about 2-3 px."""
    quad, _ = crop_quad(np.asarray(landmarks_seq, np.float64))
    if quad.shape[0] < 3:
        raise ValueError(f"jitter needs at least 3 frames, got {quad.shape[0]}")
    acc = quad[2:] - 2.0 * quad[1:-1] + quad[:-2]
    return float(np.sqrt(np.mean(np.sum(acc ** 2, -1))))


def _similarity(src: np.ndarray, dst: np.ndarray):
    """The least-squares similarity (scale, rotation, shift) taking points src (N, 2) to dst (N, 2),
    as a function of points (..., 2)."""
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    ms, md = zs.mean(), zd.mean()
    a = np.vdot(zs - ms, zd - md) / max(np.vdot(zs - ms, zs - ms).real, 1e-12)

    def apply(points):
        z = a * (points[..., 0] + 1j * points[..., 1] - ms) + md
        return np.stack([z.real, z.imag], -1)
    return apply


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class LandmarkSmoother:
    """Streaming One Euro filter over per-frame landmarks; call it once per frame, in order.

    smoother = LandmarkSmoother(fps=info.fps, initial=first_landmarks)
    smoothed = smoother(landmarks_or_None)      # float64 (68, 2), or None before any face

    Counters: `detected` (frames with landmarks), `carried` (no face: the last output reused),
    `filled` (before the first detection: `initial` used), `resets` (restarts after a jump).
    """

    def __init__(self, fps: float, params: OneEuroParams = OneEuroParams(), initial=None):
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.dt = 1.0 / float(fps)
        self.params = params
        self.initial = None if initial is None else self._check(initial)
        self._out: Optional[np.ndarray] = None   # last output (68, 2)
        self._speed = 0.0                         # low-passed crop speed, crop sides / s
        self._since = 0                           # frames since the last detection
        self.detected = self.carried = self.filled = self.resets = 0

    @staticmethod
    def _check(landmarks) -> np.ndarray:
        lm = np.asarray(landmarks, np.float64)
        if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
            raise ValueError(f"landmarks must be finite (68, 2), got {lm.shape}")
        return lm

    def __call__(self, landmarks) -> Optional[np.ndarray]:
        self._since += 1
        if landmarks is None:
            if self._out is not None:
                self.carried += 1
                return self._out.copy()
            if self.initial is not None:
                self.filled += 1
                return self.initial.copy()
            return None
        lm = self._check(landmarks)
        self.detected += 1
        if self._out is None:
            return self._restart(lm)
        p = self.params
        dt = self._since * self.dt
        prev_quad, side = crop_quad(self._out)
        moved = _similarity(self._out, lm)(prev_quad)
        shift = np.sqrt(np.mean(np.sum((moved - prev_quad) ** 2, -1)))
        if shift > p.reset_jump * side:
            self.resets += 1
            return self._restart(lm)
        raw_speed = shift / dt / side
        self._speed += _alpha(p.d_cutoff, dt) * (raw_speed - self._speed)
        a = _alpha(p.min_cutoff + p.beta * self._speed, dt)
        self._out = self._out + a * (lm - self._out)
        self._since = 0
        return self._out.copy()

    def _restart(self, lm: np.ndarray) -> np.ndarray:
        self._out, self._speed, self._since = lm.copy(), 0.0, 0
        return lm.copy()

    def stats(self) -> dict:
        return dict(detected=self.detected, carried=self.carried, filled=self.filled,
                    resets=self.resets)


def find_first_face(landmarks_seq: Iterable, name: str) -> Tuple[int, np.ndarray]:
    """(index, landmarks) of the first entry that is not None; consumes the iterable only that far.

    Give it a lazy iterator (landmarks detected on a fresh read of the clip) to learn, before the
    real pass, what the frames before the first face should use (`LandmarkSmoother(initial=...)`).
    No face in any frame: UserInputError naming `name` (the clip).
    """
    n = 0
    for n, lm in enumerate(landmarks_seq, 1):
        if lm is not None:
            return n - 1, LandmarkSmoother._check(lm)
    raise UserInputError(f"{name}: no face found in any of its {n} frames")


def smooth_sequence(landmarks_seq, fps: float, name: str,
                    params: OneEuroParams = OneEuroParams()) -> Tuple[np.ndarray, dict]:
    """A whole in-memory sequence (entries (68, 2) or None) -> (T, 68, 2) float64 and the counters.

    The same causal filter as the streaming LandmarkSmoother, with the frames before the first
    face filled with the first detection. No face at all: UserInputError naming `name`.
    """
    seq = list(landmarks_seq)
    _, first = find_first_face(seq, name)
    smoother = LandmarkSmoother(fps, params, initial=first)
    out = np.stack([smoother(lm) for lm in seq])
    return out, smoother.stats()
