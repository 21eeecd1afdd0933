"""The demo's models, its jitted functions (compiled once, at start-up) and its two paths.

    engine = make_engine(models, encoder, e4e_vars, DemoSettings(batch_size=4))
    engine.compile()                                  # logs "compiled ... for batch N in X s"
    prepared = engine.prepare(PhotoRequest("me.jpg", "them.png", truncation=0.7))
    [result] = engine.run_photos([prepared])          # crops, reenacted face, masks, pasted
    video = engine.run_video(VideoRequest("me.jpg", "clip.mp4"), out_dir, on_frames)

Compile once: every jitted function (e4e inversion, each offered refinement step count,
truncation and the reenactment with its masks) is traced and compiled at start-up for each
batch size in `settings.batch_sizes` (1 and the largest by default); a batch of k requests
runs padded to the smallest compiled size >= k (chunks of the largest otherwise:
`batching.run_batches` with the compiled sizes), so no request compiles. Truncation is an
argument of the compiled function (one psi per row), not a constant baked into it, so the
slider costs no compilation either. A driving video runs in batches of
the largest size through `photos.driving.reenact_video` with these compiled functions.

The photo path per batch: aligned crops of every source and target (`photos.pipeline`) ->
e4e codes (+ refinement, rows grouped by step count) -> the official real-image truncation
(`stylegan2.truncate`, row-wise, one psi per request) -> `reenact.reenact_only` plus the mask
network's masks.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax import images as images_lib
from stylemask_jax import reenact as method
from stylemask_jax.batching import compiled_sizes, run_batches
from stylemask_jax.compiling import jit
from stylemask_jax.errors import UserInputError
from stylemask_jax.inference import truncation_mean
from stylemask_jax.models.stylegan2 import truncate
from stylemask_jax.photos.align import paste_back
from stylemask_jax.photos.driving import reenact_video
from stylemask_jax.photos.landmarks import LandmarkDetector
from stylemask_jax.inversion import make_invert_fn
from stylemask_jax.photos.pipeline import prepare_faces
from stylemask_jax.photos.refine import make_refine_fn
from stylemask_jax.photos.settings import RefineSettings
from stylemask_jax.photos.video import count_frames, probe_video

log = logging.getLogger("stylemask.demo")


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """batch_size: the largest batch (requests per jitted call, frames per video batch);
    batch_sizes: more compiled sizes (1 and batch_size always are: a video's source is one); refine_steps: the step counts
    the page offers (each compiled; 0 = e4e alone); max_video_seconds: longer clips are refused;
    max_wait_s: how long the batcher waits for more requests."""
    batch_size: int = 4
    batch_sizes: tuple[int, ...] | None = None
    refine_steps: tuple[int, ...] = (0,)
    max_video_seconds: float = 20.0
    max_wait_s: float = 0.05

    def sizes(self) -> tuple[int, ...]:
        compiled_sizes(self.batch_size)    # at least 1
        sizes = tuple(sorted(set(self.batch_sizes or ()) | {1, self.batch_size}))
        if sizes[0] < 1 or sizes[-1] != self.batch_size:
            raise UserInputError(f"batch sizes {list(sizes)} must lie in [1, {self.batch_size}] "
                                 "(the largest batch size)")
        return sizes

    def check(self) -> "DemoSettings":
        self.sizes()
        if not self.refine_steps or min(self.refine_steps) < 0:
            raise UserInputError(f"refine steps must be step counts >= 0, got {self.refine_steps}")
        if not self.max_video_seconds > 0:
            raise UserInputError(f"the longest video must be > 0 seconds, got "
                                 f"{self.max_video_seconds}")
        return self


@dataclasses.dataclass
class PhotoRequest:
    """One source photo and one target photo (paths or uint8 arrays) and the page's options."""
    source: object
    target: object
    truncation: float = 0.7
    refine_steps: int = 0
    paste_back: bool = False


@dataclasses.dataclass
class VideoRequest:
    source: object
    driving: str
    truncation: float = 0.7
    refine_steps: int = 0
    paste_back: bool = False
    side_by_side: bool = False


@dataclasses.dataclass
class PhotoResult:
    """source_crop, target_crop: uint8 (256, 256, 3); reenacted: uint8 (R, R, 3) at the generator's
    resolution; masks: list over the controlled layers of (C_l,) in [0, 1]; pasted: uint8 source
    photo with the face pasted back, or None; batch: how many requests ran in its batch."""
    source_crop: np.ndarray
    target_crop: np.ndarray
    reenacted: np.ndarray
    masks: list
    pasted: np.ndarray | None
    batch: int = 1


class DemoEngine:
    """models: `inference.Models`; encoder/evars: e4e; refine_fns: {steps: jitted refinement from
    `photos.refine.make_refine_fn`} for every offered step count > 0; irse_vars for them."""

    def __init__(self, models, encoder, evars, settings: DemoSettings, refine_fns=None,
                 irse_vars=None, detector=None, mean=None):
        self.models, self.settings = models, settings.check()
        self.sizes = settings.sizes()
        self.evars, self.irse_vars = evars, irse_vars
        self.refine_fns = dict(refine_fns or {})
        missing = [s for s in settings.refine_steps if s and s not in self.refine_fns]
        if missing:
            raise ValueError(f"no refinement function for step counts {missing}")
        self.mean = jnp.asarray(truncation_mean(models) if mean is None else mean, jnp.float32)
        self._detector, self._video_detector = detector, None
        self._detect_lock = threading.Lock()
        self._video_lock = threading.Lock()
        gen, mask_net = models.generator, models.mask_net
        self._invert = make_invert_fn(encoder)
        self._truncate = jit(lambda codes, psi, mean: truncate(codes, mean, psi))

        chunk = method.synthesis_chunk(gen)

        @jit
        def reenact(gvars, mvars, src, tgt):
            images = method.reenact_only(gen, gvars, mask_net, mvars, src, tgt, chunk=chunk)
            masks = mask_net.apply(mvars, method.style_codes(gen, gvars, src),
                                   method.style_codes(gen, gvars, tgt))
            return images, masks
        self._reenact = reenact
        self.compile_seconds: dict[int, float] = {}

    # -- compiled functions ------------------------------------------------------------------
    @property
    def detector(self):
        if self._detector is None:
            self._detector = LandmarkDetector()
        return self._detector

    def invert(self, crops, steps: int) -> np.ndarray:
        """uint8 crops (B, 256, 256, 3), B a compiled size -> W+ codes (B, L, 512), refined.
        Every compiled function takes host (numpy) arrays, at start-up as in requests, so the
        jit cache holds one entry per batch size (tested)."""
        crops = np.asarray(crops)       # host arrays in, always: one jit cache entry per size
        codes = np.asarray(self._invert(self.evars, crops))
        if steps:
            codes, _ = self.refine_fns[steps](self.models.gvars, self.irse_vars, codes, crops)
        return np.asarray(codes)

    def encode(self, codes, psi) -> jax.Array:
        """W+ (B, L, D) and psi (B,) -> row-wise truncated W+ (the official real-image path)."""
        return self._truncate(np.asarray(codes, np.float32), np.asarray(psi, np.float32), self.mean)

    def reenact(self, src, tgt):
        """Truncated W+ sources and targets (B, L, D) -> (reenacted (B, R, R, 3) in [-1, 1],
        masks: list of (B, C_l))."""
        return self._reenact(self.models.gvars, self.models.mvars, np.asarray(src), np.asarray(tgt))

    def compile(self) -> dict[int, float]:
        """Runs every jitted function once per compiled batch size (zeros in); logs the times."""
        gen = self.models.generator
        for size in self.sizes:
            start = time.perf_counter()
            crops = np.zeros((size, 256, 256, 3), np.uint8)
            for steps in self.settings.refine_steps:
                codes = self.invert(crops, steps)
            wplus = np.asarray(self.encode(codes, np.ones(size, np.float32)))
            jax.block_until_ready(self.reenact(wplus, wplus))
            self.compile_seconds[size] = time.perf_counter() - start
            log.info("compiled invert%s, truncate and reenact (%d px) for batch %d in %.1f s",
                        "".join(f", refine {s}" for s in self.settings.refine_steps if s),
                        gen.size, size, self.compile_seconds[size])
        return self.compile_seconds

    # -- photos ------------------------------------------------------------------------------
    def check_options(self, truncation: float, refine_steps: int) -> None:
        if not 0.0 <= float(truncation) <= 1.0:
            raise UserInputError(f"truncation must be in [0, 1], got {truncation}")
        if int(refine_steps) not in self.settings.refine_steps:
            raise UserInputError(f"refine steps {refine_steps}: this server offers "
                                 f"{list(self.settings.refine_steps)}")

    def prepare(self, request: PhotoRequest, names=("source photo", "target photo")):
        """Checks one request and aligns its faces (in the caller's thread) -> (request, faces).
        A non-image or a photo without a face is a UserInputError naming the upload."""
        self.check_options(request.truncation, request.refine_steps)
        with self._detect_lock:
            faces = prepare_faces([request.source, request.target], self.detector, list(names),
                                  keep_photos=request.paste_back)
        return request, faces

    def run_photos(self, prepared: Sequence) -> list[PhotoResult]:
        """Prepared requests [(request, faces)] -> one PhotoResult each, in one batch."""
        requests = [r for r, _ in prepared]
        crops = np.concatenate([f.crops for _, f in prepared])          # src0, tgt0, src1, ...
        steps = np.repeat([r.refine_steps for r in requests], 2)
        codes = None
        for s in sorted(set(steps.tolist())):
            rows = np.flatnonzero(steps == s)
            part = run_batches(lambda c, s=s: self.invert(c, s), [crops[rows]], self.sizes)
            if codes is None:
                codes = np.empty((len(crops),) + part.shape[1:], np.float32)
            codes[rows] = part
        psi = np.repeat([float(r.truncation) for r in requests], 2).astype(np.float32)
        wplus = run_batches(self.encode, [codes, psi], self.sizes)
        faces, masks = run_batches(self.reenact, [wplus[0::2], wplus[1::2]], self.sizes)
        faces = images_lib.to_uint8(faces)
        results = []
        for k, (request, face_set) in enumerate(prepared):
            pasted = None
            if request.paste_back:
                pasted = paste_back(face_set.photos[0], faces[k], face_set.geometry[0])
            results.append(PhotoResult(face_set.crops[0], face_set.crops[1], faces[k],
                                       [np.asarray(m[k]) for m in masks], pasted, len(prepared)))
        return results

    # -- video -------------------------------------------------------------------------------
    def check_video(self, path: str, name: str = "driving video"):
        """-> its VideoInfo; an unreadable clip or one longer than max_video_seconds is an error."""
        info = probe_video(path)
        seconds = info.duration
        if seconds is None:
            seconds = count_frames(path) / info.fps
        limit = self.settings.max_video_seconds
        if seconds > limit:
            raise UserInputError(f"{name}: {seconds:.1f} s long; this demo takes videos up to "
                                 f"{limit:g} s")
        return info

    def run_video(self, request: VideoRequest, out_dir: str, on_frames=None):
        """A source photo driven by a clip -> `photos.driving.VideoResult` (OUT_DIR/reenacted.mp4),
        one video at a time; on_frames(done, total) after each batch of frames."""
        self.check_options(request.truncation, request.refine_steps)
        self.check_video(request.driving)
        size, steps = self.sizes[-1], int(request.refine_steps)
        psi = float(request.truncation)
        compiled = (lambda gvars, codes, mean: self.encode(codes, np.full(len(codes), psi)),
                    lambda gvars, mvars, src, tgt: self.reenact(src, tgt)[0])
        with self._video_lock:   # its own detector: photo requests go on meanwhile
            if self._video_detector is None:
                self._video_detector = LandmarkDetector()
            return reenact_video(self.models, lambda gvars, crops: self.invert(crops, steps),
                                 request.source, request.driving, out_dir,
                                 detector=self._video_detector, truncation=request.truncation,
                                 mean=self.mean, batch_size=size, paste_back=request.paste_back,
                                 side_by_side_view=request.side_by_side, progress=False,
                                 compiled=compiled, on_frames=on_frames)


def make_engine(models, encoder, evars, settings: DemoSettings, irse=None,
                detector=None) -> DemoEngine:
    """Loaded networks (inference.Models, the e4e module and variables, and `irse` = (IR-SE
    module, variables) or None for the refinement's identity term) -> DemoEngine."""
    settings = settings.check()
    irse_module, irse_vars = irse if irse is not None else (None, None)
    refine_fns = {s: make_refine_fn(models.generator, RefineSettings(steps=s), irse_module)
                  for s in settings.refine_steps if s}
    return DemoEngine(models, encoder, evars, settings, refine_fns, irse_vars, detector)
