"""A small face source folder made of the shared alignment photos, and a stand-in aligner.

make_source(root): SRC/solo.png, SRC/alice/{portrait.png, clip/000..005.png} (shifted copies of
one photo), SRC/bob/{take.mp4, blank.png} (a 5-frame mp4 and a photo without a face) and a
notes.txt to ignore. `StandInAligner` crops the centre with template landmarks (no dlib), so
the pipeline is tested apart from the face detector.
"""

from __future__ import annotations

import os

import numpy as np

from stylemask_jax.datasets import build_dataset, crop_landmarks
from stylemask_jax.datasets.crops import FaceCrop

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "align")
CLIP_FRAMES = 6
VIDEO_FRAMES = 5


def photo(name: str) -> np.ndarray:
    from PIL import Image
    with Image.open(os.path.join(FIXTURES, name)) as img:
        return np.asarray(img.convert("RGB"))


def save(path, image) -> None:
    from PIL import Image
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image).save(path)


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The photo moved by (dy, dx) pixels, borders repeated: a camera that moves a little."""
    h, w, _ = image.shape
    padded = np.pad(image, ((dy, 0), (dx, 0), (0, 0)), mode="edge")
    return np.ascontiguousarray(padded[:h, :w])


def write_mp4(path: str, frames) -> None:
    from stylemask_jax.photos.video import VideoWriter
    with VideoWriter(path, fps=5) as writer:
        writer.write(np.stack(frames))


def make_source(root: str) -> str:
    """SRC/solo.png, SRC/alice/{portrait.png, clip/000..005.png}, SRC/bob/{take.mp4, blank.png}."""
    src = os.path.join(root, "src")
    save(os.path.join(src, "solo.png"), photo("astronaut_small.png"))
    save(os.path.join(src, "alice", "portrait.png"), photo("astronaut_edge.png"))
    astronaut = photo("astronaut.png")
    for k in range(CLIP_FRAMES):
        save(os.path.join(src, "alice", "clip", f"{k:03d}.png"), shifted(astronaut, 3 * k, 2 * k))
    tilt = photo("astronaut_tilt.png")[:688, :688]          # even sides for the encoder
    os.makedirs(os.path.join(src, "bob"), exist_ok=True)
    write_mp4(os.path.join(src, "bob", "take.mp4"),
               [shifted(tilt, 2 * k, 3 * k) for k in range(VIDEO_FRAMES)])
    save(os.path.join(src, "bob", "blank.png"), np.full((300, 300, 3), 128, np.uint8))
    with open(os.path.join(src, "notes.txt"), "w") as f:
        f.write("not a photo\n")
    return src


# What the source holds, in build order: (identity, video, frames with a face).
EXPECTED = [("alice", "alice/clip", list(range(CLIP_FRAMES))),
            ("alice", "alice/portrait", [0]),
            ("bob", "bob/take", list(range(VIDEO_FRAMES))),
            ("solo", "solo", [0])]


class StandInAligner:
    """A centre square resized to 256 with fixed template landmarks; None for a flat image.

    Counts its calls; `fail_at` makes call number `fail_at` raise (a crash mid-build).
    """

    def __init__(self, fail_at: int | None = None):
        self.calls = 0
        self.fail_at = fail_at
        self.template = np.load(os.path.join(FIXTURES, "astronaut_landmarks.npy")) / 512.0

    def __call__(self, frame: np.ndarray) -> FaceCrop | None:
        from PIL import Image
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError("stand-in aligner crashed")
        if frame.std() < 1.0:
            return None
        h, w, _ = frame.shape
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        crop = Image.fromarray(frame[top:top + side, left:left + side]).resize((256, 256))
        landmarks = (self.template * side + [left, top]).astype(np.float32)
        quad = np.array([[left, top], [left, top + side], [left + side, top + side],
                         [left + side, top]], np.float64)
        return FaceCrop(np.asarray(crop), crop_landmarks(landmarks, quad), landmarks)


def build(src, out, aligner=None, **kwargs):
    """build_dataset with the stand-in aligner (photos and videos read by stylemask_jax.photos)."""
    return build_dataset(src, out, aligner=aligner or StandInAligner(), progress=False, **kwargs)


def clip_frame(k: int) -> np.ndarray:
    return shifted(photo("astronaut.png"), 3 * k, 2 * k)


class SlowStandIn(StandInAligner):
    """The stand-in aligner taking `delay` seconds a frame: a build slow enough to be killed."""

    def __init__(self, delay: float = 0.25):
        super().__init__()
        self.delay = delay

    def __call__(self, frame: np.ndarray) -> FaceCrop | None:
        import time
        time.sleep(self.delay)
        return super().__call__(frame)


def make_clips(root: str, num_clips: int, num_frames: int, size: int = 128) -> str:
    """SRC/idK/clip/000..NNN.png: `num_clips` frame folders of shifted small photos."""
    from PIL import Image
    src = os.path.join(root, "clips")
    base = np.asarray(Image.fromarray(photo("astronaut.png")).resize((size, size)))
    for c in range(num_clips):
        for k in range(num_frames):
            save(os.path.join(src, f"id{c:02d}", "clip", f"{k:03d}.png"),
                 shifted(base, (c + k) % 7, (2 * c + k) % 5))
    return src
