"""One face followed through a video (stylemask_jax.photos.tracking): the choice rules on synthetic
boxes, lost / carried / reacquired faces with a scripted detector, and dlib on a clip with two faces
whose sizes cross (the old largest-face rule jumps between them; the tracker does not)."""

import csv
import os

import numpy as np
import pytest

from stylemask_jax.errors import UserInputError
from stylemask_jax.photos.smoothing import smooth_sequence
from stylemask_jax.photos.tracking import (TRACK_COLUMNS, FaceTracker, TrackParams, TrackRow,
                                           box_iou, check_point, first_face_landmarks, pick_first,
                                           pick_next, pick_nearest, write_track)
from video_utils import ALIGN

FPS = 10.0
BASE = np.load(os.path.join(ALIGN, "astronaut_landmarks.npy"))
FRAME = np.zeros((240, 320, 3), np.uint8)


class ScriptedDetector:
    """Returns the given boxes frame after frame; the landmarks are the astronaut's, moved and
    scaled into the asked box (so the smoother sees a face of the box's size)."""

    def __init__(self, script):
        self.script = iter(script)

    def boxes(self, frame):
        return list(next(self.script))

    def landmarks(self, frame, box):
        lo, hi = BASE.min(0), BASE.max(0)
        return (BASE - lo) / (hi - lo) * [box[2] - box[0], box[3] - box[1]] + box[:2]


def _run(script, **kwargs):
    tracker = FaceTracker(ScriptedDetector(script), FPS, **kwargs)
    rows = [tracker(FRAME)[1] for _ in script]
    return tracker, rows


def test_box_iou():
    assert box_iou((0, 0, 9, 9), (0, 0, 9, 9)) == 1.0
    assert box_iou((0, 0, 9, 9), (10, 0, 19, 9)) == 0.0
    assert box_iou((0, 0, 9, 9), (5, 0, 14, 9)) == pytest.approx(50 / 150)


def test_pick_first_largest_or_at_the_point():
    boxes = [(0, 0, 9, 9), (50, 50, 79, 79), (100, 0, 129, 29)]
    assert pick_first(boxes) == 1                        # the first of the two largest
    assert pick_first(boxes, (5, 5)) == 0                # inside the small one
    assert pick_first(boxes, (95, 10)) == 2              # nearest box, none contains it
    nested = [(0, 0, 99, 99), (10, 10, 29, 29)]
    assert pick_first(nested, (15, 15)) == 1             # both contain it: the nearer centre


def test_pick_next_follows_overlap_not_size():
    previous = (10, 10, 49, 49)
    boxes = [(100, 0, 199, 99), (14, 12, 52, 50)]        # a large face elsewhere, ours moved a bit
    assert pick_next(boxes, previous, 0.3) == 1
    assert pick_next([(100, 0, 199, 99), (40, 40, 79, 79)], previous, 0.3) is None
    assert pick_next([], previous, 0.3) is None
    assert pick_nearest([(100, 0, 199, 99), (60, 10, 99, 49)], previous) == 1


def test_face_point_outside_the_frame_is_a_user_error():
    with pytest.raises(UserInputError, match=r"face point \(900, 20\) is outside the first face "
                                             r"frame \(320x240\)"):
        check_point((900, 20), 320, 240)
    with pytest.raises(UserInputError, match="expected two numbers"):
        check_point("middle", 320, 240)
    tracker = FaceTracker(ScriptedDetector([[(0, 0, 9, 9)]]), FPS, face=(-1, 5))
    with pytest.raises(UserInputError, match=r"\(-1, 5\)"):
        tracker(FRAME)


def test_lost_face_is_carried_then_found_again_without_switching():
    ours, other = (20, 20, 79, 79), (150, 20, 249, 119)  # the other face is larger
    script = [[], [ours], [ours, other], [other], [other], [(22, 21, 81, 80), other]]
    tracker, rows = _run(script, initial=BASE)
    assert [r.status for r in rows] == ["filled", "detected", "detected", "carried", "carried",
                                        "detected"]
    assert [r.box for r in rows] == [None, ours, ours, None, None, (22, 21, 81, 80)]
    assert [r.faces for r in rows] == [0, 1, 2, 1, 1, 2]
    assert tracker.stats() == dict(detected=3, carried=2, filled=1, resets=0, reacquired=0)


def test_reacquire_after_a_long_loss_takes_the_nearest_face():
    ours, far, near = (20, 20, 79, 79), (200, 100, 299, 199), (100, 20, 159, 79)
    script = [[ours]] + [[]] * 9 + [[far, near], [far, (102, 21, 161, 80)]]
    tracker, rows = _run(script, params=TrackParams(reacquire_after=1.0))   # 10 frames at 10 fps
    assert [r.status for r in rows][9:] == ["carried", "detected", "detected"]
    assert rows[10].box == near and rows[11].box == (102, 21, 161, 80)
    assert tracker.stats()["reacquired"] == 1
    # never reacquire: the lost face stays lost
    tracker, rows = _run(script, params=TrackParams(reacquire_after=None))
    assert [r.status for r in rows][10:] == ["carried", "carried"] and tracker.reacquired == 0
    # without `initial`, frames before the first face have no landmarks
    assert _run([[], [ours]])[1][0].status == "missing"


def test_track_file_has_a_row_per_frame(tmp_path):
    quad = np.arange(8.0).reshape(4, 2) + 0.25
    rows = [TrackRow(0, "filled", 0), TrackRow(1, "detected", 2, (1, 2, 30, 40), quad),
            TrackRow(2, "carried", 1, None, quad)]
    path = write_track(str(tmp_path / "out" / "track.csv"), rows)
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == TRACK_COLUMNS == (
        "frame", "status", "faces", "box_left", "box_top", "box_right", "box_bottom",
        "quad_x0", "quad_y0", "quad_x1", "quad_y1", "quad_x2", "quad_y2", "quad_x3", "quad_y3")
    assert [r["status"] for r in table] == ["filled", "detected", "carried"]
    assert table[0]["box_left"] == "" and table[0]["quad_x0"] == ""
    assert [table[1][k] for k in ("frame", "faces", "box_left", "box_bottom")] == [
        "1", "2", "1", "40"]
    assert float(table[2]["quad_y3"]) == 7.25 and table[2]["box_top"] == ""


# --- dlib on a clip with two faces ------------------------------------------------------------

WIDTH, HEIGHT, FRAMES = 384, 256, 20
LEFT_X, RIGHT_X = 96, 280                                  # the faces' centres


def two_face_frames() -> np.ndarray:
    """uint8 (FRAMES, 256, 384, 3): the astronaut's head twice, side by side on a grey ground;
    the left one steady (150 px tall), the right one growing from 110 to 230 px and back, so that
    the right face's box is the larger one in frames 2-17."""
    from PIL import Image
    head = Image.open(os.path.join(ALIGN, "astronaut.png")).convert("RGB").crop((140, 30, 310, 220))
    frames = []
    for i in range(FRAMES):
        canvas = Image.new("RGB", (WIDTH, HEIGHT), (90, 100, 110))
        right = int(round(110 + 120 * np.sin(np.pi * i / (FRAMES - 1))))
        for cx, h in ((LEFT_X, 150), (RIGHT_X, right)):
            w = int(round(h * head.width / head.height))
            canvas.paste(head.resize((w, h), Image.BILINEAR), (cx - w // 2, HEIGHT // 2 - h // 2))
        frames.append(np.asarray(canvas))
    return np.stack(frames)


@pytest.fixture(scope="module")
def clip():
    from stylemask_jax.photos import LandmarkDetector
    return LandmarkDetector(), two_face_frames()


def _side(box):
    return "left" if (box[0] + box[2]) / 2 < WIDTH / 2 else "right"


def test_the_largest_face_rule_would_switch(clip):
    detector, frames = clip
    largest = [_side(max(detector.boxes(f), key=lambda b: (b[2] - b[0]) * (b[3] - b[1])))
               for f in frames]
    assert largest[0] == "left" and largest.count("right") >= 10
    _, stats = smooth_sequence([detector.detect(f) for f in frames], FPS, "two faces")
    assert stats["resets"] >= 2                             # the crop jumps there and back


def test_the_tracker_stays_on_the_first_face(clip):
    detector, frames = clip
    tracker = FaceTracker(detector, FPS)
    out = [tracker(f) for f in frames]
    assert all(row.status == "detected" and row.faces == 2 for _, row in out)
    assert {_side(row.box) for _, row in out} == {"left"}
    assert all(abs(lm[:, 0].mean() - LEFT_X) < 40 for lm, _ in out)
    assert tracker.stats() == dict(detected=FRAMES, carried=0, filled=0, resets=0, reacquired=0)


def test_a_face_point_picks_the_other_face(clip):
    detector, frames = clip
    first = first_face_landmarks(detector, frames[0], face=(RIGHT_X, HEIGHT // 2))
    assert abs(first[:, 0].mean() - RIGHT_X) < 40
    tracker = FaceTracker(detector, FPS, face=(RIGHT_X, HEIGHT // 2), initial=first)
    rows = [tracker(f)[1] for f in frames[::2]]
    assert {_side(row.box) for row in rows} == {"right"}
    assert tracker.stats()["resets"] == 0
