"""A source photo driven by a video: `stylemask reenact --sources PHOTO --driving CLIP.mp4`.

    result = reenact_video(models, inverter, "me.jpg", "clip.mp4", "out/", batch_size=8)
    result.path, result.stats        # out/reenacted.mp4; frames, detected, carried, filled, resets

Per frame, in a stream (nothing holds more than one batch of frames):

1. landmarks with dlib (`LandmarkDetector`) of one face followed through the clip
   (`tracking.FaceTracker`: the first frame with a face picks the largest, or the one at
   `face=(x, y)`; later frames keep the detection overlapping it), smoothed over time by the One
   Euro filter of `smoothing.LandmarkSmoother`: a frame where that face is not found reuses the
   last smoothed landmarks (`carried`), frames before the first face use the first detection
   (`filled`); with `track_path`, a CSV of what each frame used (`tracking.write_track`);
2. the FFHQ crop of the frame (`align.align_face`);
3. in fixed-size batches (`batching.stream_batches`, one compiled shape for the whole clip): e4e
   inversion, optional refinement (`refine`), the official real-image truncation, and the
   reenactment of the source with the frame as target, synthesising only the reenacted image
   (`reenact.make_reenact_fn(outputs='reenacted')`);
4. the output frame: the reenacted face at the generator's resolution, or with `paste_back`
   that face pasted into the source photo (the source photo's size); with `side_by_side` the
   driving frame, resized to the output frame's height (aspect kept, bilinear), on its left.

DIR/reenacted.mp4 has the clip's frame rate and its audio track (when it has one). A progress bar
counts frames (frames/s and an ETA from the exact frame count).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

import jax.numpy as jnp
import numpy as np
from PIL import Image

from stylemask_jax import images as images_lib
from stylemask_jax import reenact as method
from stylemask_jax.batching import compiled_sizes, stream_batches
from stylemask_jax.errors import UserInputError
from stylemask_jax.photos.align import align_face, paste_back as paste_face
from stylemask_jax.photos.landmarks import LandmarkDetector
from stylemask_jax.inversion import Inverter
from stylemask_jax.photos.pipeline import prepare_faces
from stylemask_jax.photos.smoothing import OneEuroParams, find_first_face
from stylemask_jax.photos.tracking import FaceTracker, first_face_landmarks, write_track
from stylemask_jax.photos.video import VideoWriter, count_frames, probe_video, read_frames

VIDEO_NAME = "reenacted.mp4"


@dataclasses.dataclass
class VideoResult:
    path: str
    fps: float
    size: tuple[int, int]     # (width, height) of the written frames
    stats: dict               # frames, detected, carried, filled, resets


def side_by_side(driving: np.ndarray, output: np.ndarray) -> np.ndarray:
    """uint8 driving frame (H, W, 3) and output frame (h, w, 3) -> (h, w' + w, 3), the driving
    frame resized to height h (w' = round(W h / H), bilinear) on the left."""
    h = output.shape[0]
    width = max(int(round(driving.shape[1] * h / driving.shape[0])), 1)
    if driving.shape[:2] != (h, width):
        driving = np.asarray(Image.fromarray(driving).resize((width, h), Image.Resampling.BILINEAR))
    return np.concatenate([driving, output], axis=1)


def _first_face(clip: str, detector: LandmarkDetector, info, face) -> np.ndarray:
    """The landmarks of the face followed in the clip's first frame with a face (reads only that
    far); face: None (the largest) or the user's (x, y)."""
    detections = (first_face_landmarks(detector, frame, face) for frame in read_frames(clip, info))
    try:
        _, landmarks = find_first_face(detections, clip)
    finally:
        detections.close()
    return landmarks


def reenact_video(models, inverter: Inverter, source, driving: str, out_dir: str, *,
                  detector: LandmarkDetector | None = None, truncation: float = 0.7,
                  mean=None, batch_size: int = 8, paste_back: bool = False,
                  side_by_side_view: bool = False, smoothing: OneEuroParams = OneEuroParams(),
                  progress: bool = True, compiled=None, on_frames=None,
                  face: tuple[float, float] | None = None,
                  track_path: str | None = None) -> VideoResult:
    """Reenacts the source photo with every frame of `driving`; writes OUT_DIR/reenacted.mp4.

    models: `inference.Models` (generator + mask network); inverter: `inversion.Inverter`; source: a photo
    path or uint8 array; mean: the truncation mean W (D,) (needed when truncation < 1).
    Every input is checked (source face, readable clip, a face somewhere in it) before anything is
    written; the video appears only when complete (`VideoWriter` is atomic).
    compiled: optional (encode, reenact) functions already jitted for `batch_size`, with the
    signatures of `reenact.make_encode_fn` and `make_reenact_fn(outputs='reenacted')` (a server
    that compiles once); on_frames(done, total): called after each batch (a page's progress).
    face: None follows the largest face of the first frame with a face, (x, y) the face at that
    pixel of it (`tracking.FaceTracker`); track_path: where to write the per-frame track as CSV
    (`tracking.write_track`: frame, status, faces, the chosen box, the crop quad), or None.
    """
    compiled_sizes(batch_size)   # a batch size below 1 is an error before any work
    detector = detector or LandmarkDetector()
    gen = models.generator
    source_face = prepare_faces([source], detector, keep_photos=paste_back)
    info = probe_video(driving)
    total = count_frames(driving)
    if total == 0:
        raise UserInputError(f"{driving}: the video has no frames")
    first = _first_face(driving, detector, info, face)

    encode, reenact = compiled or (method.make_encode_fn(gen, "wplus", truncation),
                                   method.make_reenact_fn(gen, models.mask_net, outputs="reenacted"))
    if mean is None and truncation != 1.0:
        raise ValueError("truncation < 1 needs the mean W (`codes.truncation_mean`)")
    mean = jnp.zeros((gen.style_dim,), jnp.float32) if mean is None else jnp.asarray(mean)
    src_wplus = encode(models.gvars, inverter(models.gvars, source_face.crops), mean)
    src_batch = jnp.repeat(src_wplus, batch_size, axis=0)
    tracker = FaceTracker(detector, info.fps, face=face, initial=first, smoothing=smoothing)
    track = []

    def crop(frame: np.ndarray) -> np.ndarray:
        landmarks, row = tracker(frame)
        image, geometry = align_face(frame, landmarks)
        track.append(dataclasses.replace(row, quad=geometry.quad))
        return image

    def crops_of(frames: np.ndarray) -> list[np.ndarray]:
        """uint8 frames (b, H, W, 3) -> [their FFHQ crops (b, 256, 256, 3)] of the followed face."""
        return [np.stack([crop(f) for f in frames])]

    def reenact_faces(crops):
        """uint8 crops (batch_size, 256, 256, 3) -> reenacted faces, uint8 (batch_size, R, R, 3)."""
        tgt = encode(models.gvars, inverter(models.gvars, crops), mean)
        return images_lib.to_uint8(reenact(models.gvars, models.mvars, src_batch, tgt))

    def output_frames(frames: np.ndarray, faces: np.ndarray) -> np.ndarray:
        if paste_back:
            photo, geometry = source_face.photos[0], source_face.geometry[0]
            faces = np.stack([paste_face(photo, face, geometry) for face in faces])
        if side_by_side_view:
            faces = np.stack([side_by_side(d, o) for d, o in zip(frames, faces)])
        return faces

    path = os.path.join(out_dir, VIDEO_NAME)
    batches = stream_batches(reenact_faces, read_frames(driving, info), batch_size, load=crops_of,
                             desc="reenact video" if progress else None, unit="frame", total=total)
    done = 0
    with VideoWriter(path, info.fps, audio_from=driving) as writer, contextlib.closing(batches):
        for frames, faces in batches:
            writer.write(output_frames(frames, faces))
            done += len(frames)
            if on_frames is not None:
                on_frames(done, total)
    if track_path is not None:
        write_track(track_path, track)
    stats = dict(frames=writer.frames_written, **tracker.stats())
    return VideoResult(path, info.fps, writer.size, stats)
