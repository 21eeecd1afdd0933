"""One face followed through a video, so that a second face (a person, a poster, a badge) never
takes over the crop because it is larger in some frames.

    tracker = FaceTracker(detector, fps=info.fps, face=None, initial=first_landmarks)
    landmarks, row = tracker(frame)     # smoothed float64 (68, 2) (None: no face yet); a TrackRow
    tracker.stats()                     # detected, carried, filled, resets, reacquired
    rows.append(dataclasses.replace(row, quad=align_face(frame, landmarks)[1].quad))
    write_track("out/track.csv", rows)  # one CSV row per frame (TRACK_COLUMNS), quads 3 decimals

The rules, per frame, on all the faces dlib finds (boxes (left, top, right, bottom), pixels):

1. The first frame with a face picks it: the largest box (the first of equal areas, as
   `LandmarkDetector.detect`), or with `face=(x, y)` the box that contains that pixel (the one
   whose centre is nearest when several do) or, when none does, the box nearest to it.
   `first_face_landmarks` applies the same rule to one frame (the pre-pass that finds what the
   frames before the first face use, `smoothing.find_first_face`: those frames are `filled`).
2. Later frames keep the box with the largest overlap (IoU) with the last tracked box, if that
   overlap is at least `TrackParams.min_iou`; a larger face elsewhere is ignored.
3. No box overlaps enough: the face is lost and the frame reuses the last smoothed landmarks
   (`carried`), the tracked box stays where the face was last seen. Once `reacquire_after`
   seconds have passed since it was last seen (a cut; a face that turned away and came back
   elsewhere), the next frame with a face takes the box whose centre is nearest the last
   tracked box (counted as `reacquired`); None never gives up the lost face.

The landmarks of the chosen box go through `smoothing.LandmarkSmoother` (One Euro filter).

TrackRow: frame index, status ("detected", "carried", "filled"; "missing" only without
`initial`, before the first face), faces (how many dlib found), box (the chosen detection, None
when none was taken) and quad (the crop's corners, float (4, 2); the caller fills it from
`align.AlignGeometry.quad`: pixel-edge coordinates, PIL QUAD order top-left, bottom-left,
bottom-right, top-right). The track file is CSV with the columns of TRACK_COLUMNS; cells of a
missing box or quad are empty.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Iterable, Optional, Sequence, Tuple

import numpy as np

from stylemask_jax.errors import UserInputError
from stylemask_jax.photos.smoothing import LandmarkSmoother, OneEuroParams

Box = Tuple[int, int, int, int]  # left, top, right, bottom (inclusive, as dlib's rectangles)

TRACK_COLUMNS = ("frame", "status", "faces", "box_left", "box_top", "box_right", "box_bottom",
                 "quad_x0", "quad_y0", "quad_x1", "quad_y1", "quad_x2", "quad_y2",
                 "quad_x3", "quad_y3")


@dataclasses.dataclass(frozen=True)
class TrackParams:
    """min_iou: the least overlap (intersection over union, 0-1) of a detection with the last
    tracked box for it to be the same face; reacquire_after: seconds since the tracked face was
    last seen after which the face nearest it is taken instead (None: never)."""
    min_iou: float = 0.3
    reacquire_after: Optional[float] = 1.0


@dataclasses.dataclass(frozen=True)
class TrackRow:
    """One frame of the track (see the module docstring)."""
    frame: int
    status: str
    faces: int
    box: Optional[Box] = None
    quad: Optional[np.ndarray] = None


def _area(box) -> float:
    left, top, right, bottom = box
    return max(right - left + 1, 0) * max(bottom - top + 1, 0)


def _centre(box) -> np.ndarray:
    return np.array([(box[0] + box[2]) * 0.5, (box[1] + box[3]) * 0.5])


def box_iou(a, b) -> float:
    """Intersection over union of two boxes (left, top, right, bottom), inclusive pixels: 0-1."""
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def check_point(face, width: int, height: int) -> Tuple[float, float]:
    """The user's face point (x, y) as floats, or a UserInputError when it is not two numbers
    inside a width x height frame."""
    try:
        x, y = (float(v) for v in face)
    except (TypeError, ValueError):
        raise UserInputError(f"face point {face!r}: expected two numbers x, y (pixels)") from None
    if not (0 <= x < width and 0 <= y < height):
        raise UserInputError(f"face point ({x:g}, {y:g}) is outside the first face frame "
                             f"({width}x{height})")
    return x, y


def pick_first(boxes: Sequence[Box], point=None) -> int:
    """Index of the face to follow among a frame's boxes (at least one): the largest (first of
    equal areas), or the one containing / nearest `point` (x, y)."""
    if point is None:
        return max(range(len(boxes)), key=lambda i: (_area(boxes[i]), -i))
    p = np.asarray(point, np.float64)

    def distance(i):
        left, top, right, bottom = boxes[i]
        outside = np.maximum([left - p[0], top - p[1]], 0) + np.maximum([p[0] - right,
                                                                         p[1] - bottom], 0)
        return float(np.hypot(*outside)), float(np.hypot(*(_centre(boxes[i]) - p)))
    return min(range(len(boxes)), key=distance)


def pick_next(boxes: Sequence[Box], previous: Box, min_iou: float) -> Optional[int]:
    """Index of the box that overlaps `previous` most, or None when none reaches min_iou."""
    overlaps = [box_iou(box, previous) for box in boxes]
    if not overlaps or max(overlaps) < min_iou or max(overlaps) == 0:
        return None
    return int(np.argmax(overlaps))


def pick_nearest(boxes: Sequence[Box], previous: Box) -> int:
    """Index of the box whose centre is nearest the centre of `previous` (at least one box)."""
    target = _centre(previous)
    return min(range(len(boxes)), key=lambda i: float(np.hypot(*(_centre(boxes[i]) - target))))


def _pick_in_first_frame(frame: np.ndarray, boxes: Sequence[Box], face) -> int:
    """Rule 1 in the first face frame; face: None or the user's (x, y), checked against it."""
    point = None if face is None else check_point(face, frame.shape[1], frame.shape[0])
    return pick_first(boxes, point)


def first_face_landmarks(detector, frame: np.ndarray, face=None) -> Optional[np.ndarray]:
    """The landmarks (68, 2) of the face rule 1 picks in one frame, or None without a face.
    face: the user's (x, y), checked against this frame's size (UserInputError outside)."""
    boxes = detector.boxes(frame)
    if not boxes:
        return None
    return detector.landmarks(frame, boxes[_pick_in_first_frame(frame, boxes, face)])


class FaceTracker:
    """Follows one face through the frames of a video; call it once per frame, in order.

    detector: a `landmarks.LandmarkDetector` (or anything with its `boxes` and `landmarks`);
    fps: the clip's frame rate; face: optional (x, y) pixel of the first face frame naming the
    face to follow; initial: the landmarks for the frames before the first face (from
    `first_face_landmarks` on a first read of the clip); smoothing: the One Euro parameters.
    """

    def __init__(self, detector, fps: float, face=None, initial=None,
                 smoothing: OneEuroParams = OneEuroParams(), params: TrackParams = TrackParams()):
        self.detector = detector
        self.face = face
        self.params = params
        self.smoother = LandmarkSmoother(fps, smoothing, initial=initial)
        self._reacquire = (None if params.reacquire_after is None
                           else max(int(math.ceil(params.reacquire_after * fps)), 1))
        self._box: Optional[Box] = None   # last tracked box
        self._lost = 0                    # frames since the tracked face was last seen
        self._frame = 0
        self.reacquired = 0

    def _choose(self, frame: np.ndarray, boxes: Sequence[Box]) -> Optional[int]:
        if not boxes:
            return None
        if self._box is None:
            return _pick_in_first_frame(frame, boxes, self.face)
        index = pick_next(boxes, self._box, self.params.min_iou)
        if index is None and self._reacquire is not None and self._lost + 1 >= self._reacquire:
            self.reacquired += 1
            index = pick_nearest(boxes, self._box)
        return index

    def __call__(self, frame: np.ndarray) -> Tuple[Optional[np.ndarray], TrackRow]:
        """uint8 (H, W, 3) RGB frame -> (smoothed float64 (68, 2) or None, TrackRow)."""
        boxes = [tuple(int(v) for v in box) for box in self.detector.boxes(frame)]
        index = self._choose(frame, boxes)
        box = None if index is None else boxes[index]
        started = self._box is not None
        points = None if box is None else self.detector.landmarks(frame, box)
        landmarks = self.smoother(points)
        if box is not None:
            status, self._box, self._lost = "detected", box, 0
        else:
            self._lost += 1
            status = "carried" if started else "filled" if landmarks is not None else "missing"
        row = TrackRow(self._frame, status, len(boxes), box)
        self._frame += 1
        return landmarks, row

    def stats(self) -> dict:
        """The smoother's counters (detected, carried, filled, resets) and `reacquired`."""
        return dict(self.smoother.stats(), reacquired=self.reacquired)


def _csv_cells(rows: Iterable[TrackRow]) -> list[list[str]]:
    """TrackRows -> the CSV cells under TRACK_COLUMNS (empty cells for a missing box or quad)."""
    table = []
    for row in rows:
        box = [""] * 4 if row.box is None else [str(int(v)) for v in row.box]
        quad = ([""] * 8 if row.quad is None
                else [f"{v:.3f}" for v in np.asarray(row.quad, np.float64).reshape(8)])
        table.append([str(row.frame), row.status, str(row.faces), *box, *quad])
    return table


def write_track(path: str, rows: Iterable[TrackRow]) -> str:
    """Writes the track as CSV (a header of TRACK_COLUMNS, one line per frame) -> path."""
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(TRACK_COLUMNS)
        writer.writerows(_csv_cells(rows))
    return path
