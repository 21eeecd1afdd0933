"""The demo page (Gradio Blocks) and its request functions.

    handlers = Handlers(engine)                # the functions the page calls; tests call them too
    app = build_app(engine, handlers)          # gradio.Blocks
    serve(engine, host="127.0.0.1", port=7860, queue_size=64)

Layout: a source photo | [Target photo | Driving video] tabs; truncation, refine steps,
paste-back and side-by-side; Run. Results: source crop | target crop | reenacted (256 px
each), the masks of the controlled layers as a heat-map strip (row = layer, column = style
channel, bright = taken from the target), the face pasted back into the source photo when
asked, or the reenacted video (a progress bar counts its frames); a status line.

Photo requests go through `batcher.BatchQueue`: each request aligns its own faces in its own
thread (its errors are its own), then waits for the batch worker, which reenacts every request
that arrived within `max_wait_s` in one jitted call. Bad input (no face, not an image, a video
over the limit, a missing upload) is a `gr.Error` message on the page, never a stack trace.

Load: Run is the API endpoint "/run" (gradio_client). At most `concurrency_limit` requests run at
once (max(4, batch size)); up to `queue_size` more wait in Gradio's queue, and one beyond that is
refused at once with Gradio's own busy message, never left hanging.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
import time
import uuid
import warnings

import numpy as np

from stylemask_jax.demo import views
from stylemask_jax.demo.batcher import BatchQueue
from stylemask_jax.demo.engine import DemoEngine, PhotoRequest, VideoRequest
from stylemask_jax.errors import UserInputError

log = logging.getLogger("stylemask.demo")

EXAMPLE_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "align")
EXAMPLE_PAIRS = [("astronaut", "astronaut_tilt"), ("astronaut_small", "astronaut_edge"),
                 ("astronaut_tilt", "astronaut_large")]
HEAT_LABEL = "masks: a row per layer, bright = from the target"   # short: it sits on the image
QUEUE_SIZE = 64          # Run requests waiting (beyond the running ones) before "busy"


def _gradio():
    try:
        import gradio
    except ImportError:
        raise UserInputError('the demo needs Gradio: pip install -e ".[demo]"') from None
    return gradio


def upload_path(value, what: str) -> str | None:
    """A component's raw value (a path, {'path': ...} or {'video': {'path': ...}}) -> the path."""
    if value is None or isinstance(value, (str, os.PathLike)):
        return os.fspath(value) if value else None
    if isinstance(value, dict):
        if isinstance(value.get("video"), dict):
            value = value["video"]
        if value.get("path"):
            return value["path"]
        return None
    raise UserInputError(f"{what}: unexpected upload {type(value).__name__}")


def _message(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text


def _required(source, other: tuple) -> tuple[str, str]:
    """The source upload and (value, what, message if missing) -> their two paths."""
    value, what, missing = other
    src, path = upload_path(source, "source photo"), upload_path(value, what)
    if not src:
        raise UserInputError("upload a source photo (the face whose identity is kept)")
    if not path:
        raise UserInputError(missing)
    return src, path


class Handlers:
    """The page's request functions, usable without a browser (tests call them directly)."""

    def __init__(self, engine: DemoEngine, work_dir: str | None = None):
        self.engine = engine
        self.queue = BatchQueue(engine.run_photos, engine.sizes[-1], engine.settings.max_wait_s)
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="stylemask-demo-")

    # one photo pair (batched with whatever arrives at the same time)
    def photo(self, source, target, truncation=0.7, refine_steps=0, paste_back=False,
              progress=None) -> tuple:
        """-> (strip (256, 768, 3), mask heat-map, pasted photo or None, status text)."""
        src, tgt = _required(source, (target, "target photo", "upload a target photo (or a "
                                                               "driving video in its tab)"))
        start = time.perf_counter()
        if progress is not None:
            progress(0.1, desc="finding and aligning the faces")
        prepared = self.engine.prepare(PhotoRequest(src, tgt, float(truncation), int(refine_steps),
                                                    bool(paste_back)))
        if progress is not None:
            progress(0.5, desc="reenacting")
        result = self.queue.submit(prepared)
        strip = views.pair_strip(result.source_crop, result.target_crop, result.reenacted)
        status = (f"reenacted in {time.perf_counter() - start:.1f} s (batch of "
                  f"{result.batch} request(s)); mean mask per layer: "
                  f"{views.mask_summary(result.masks)}")
        return strip, views.mask_heatmap(result.masks), result.pasted, status

    def video(self, source, driving, truncation=0.7, refine_steps=0, paste_back=False,
              side_by_side=False, progress=None) -> tuple[str, str]:
        """-> (path of the reenacted .mp4, status text)."""
        src, clip = _required(source, (driving, "driving video", "upload a driving video"))
        out = tempfile.mkdtemp(prefix="video-", dir=self.work_dir)

        def on_frames(done, total):
            if progress is not None:
                progress((done, total), desc="reenacting frames", unit="frames")
        start = time.perf_counter()
        request = VideoRequest(src, clip, float(truncation), int(refine_steps), bool(paste_back),
                               bool(side_by_side))
        result = self.engine.run_video(request, out, on_frames)
        st = result.stats
        seconds = time.perf_counter() - start
        status = (f"{st['frames']} frames in {seconds:.1f} s ({st['frames'] / seconds:.1f} "
                  f"frames/s), {result.size[0]}x{result.size[1]} at {result.fps:g} fps; face found "
                  f"in {st['detected']}, {st['carried']} carried over, {st['filled']} filled")
        return result.path, status

    def run(self, source, target, driving, mode, truncation, refine_steps, paste_back,
            side_by_side, progress=None) -> tuple:
        """The Run button: (strip, heat-map, pasted, video, status); errors become gr.Error."""
        gr = _gradio()
        try:
            if mode == "video":
                path, status = self.video(source, driving, truncation, refine_steps, paste_back,
                                          side_by_side, progress)
                return None, None, None, path, status
            strip, heat, pasted, status = self.photo(source, target, truncation, refine_steps,
                                                     paste_back, progress)
            return strip, heat, pasted, None, status
        except UserInputError as err:
            raise gr.Error(_message(err), print_exception=False) from None
        except Exception as err:  # logged in full on the server; one line on the page
            log.exception("request failed")
            raise gr.Error(f"the reenactment failed ({type(err).__name__}: {_message(err)}); "
                           "the server log has the details", print_exception=False) from None


    def run_on_page(self, *args) -> tuple:
        """`run` for the page: a bad request gives a toast and its reason in the status line,
        which stays until the next run (the outputs are cleared instead of showing 'Error');
        the pictures are PIL images tagged with the request (`views.tagged`)."""
        gr = _gradio()
        try:
            outputs = self.run(*args)
        except gr.Error as err:
            with warnings.catch_warnings():  # outside a page request gr.Warning only warns
                warnings.simplefilter("ignore")
                gr.Warning(err.message)
            return None, None, None, None, f"**Error:** {err.message}"
        tag = uuid.uuid4().hex           # each request's pictures are files of their own
        return tuple(views.tagged(x, tag) if isinstance(x, np.ndarray) else x for x in outputs)


def example_pairs(folder: str = EXAMPLE_DIR, dest: str | None = None) -> list[list[str]]:
    """The test photos as [source, target] examples, copied to a temporary folder (Gradio serves
    files from there); [] when the folder is absent (an installed package without tests/)."""
    names = {os.path.splitext(os.path.basename(p))[0]: p
             for p in glob.glob(os.path.join(folder, "*.png")) if "_aligned" not in p}
    pairs = [(s, t) for s, t in EXAMPLE_PAIRS if s in names and t in names]
    if not pairs:
        return []
    dest = dest or tempfile.mkdtemp(prefix="stylemask-demo-examples-")
    for name in {n for pair in pairs for n in pair}:
        shutil.copy(names[name], os.path.join(dest, f"{name}.png"))
    return [[os.path.join(dest, f"{s}.png"), os.path.join(dest, f"{t}.png")] for s, t in pairs]


def build_app(engine: DemoEngine, handlers: Handlers | None = None, title: str = "",
              examples: list | None = None, prefill: bool = True):
    """-> gradio.Blocks: the page described in the module docstring; with `prefill` the first
    example pair is already in the inputs (a first visit needs only Run)."""
    gr = _gradio()
    handlers = handlers or Handlers(engine)
    examples = example_pairs() if examples is None else examples
    settings = engine.settings
    gen = engine.models.generator
    with gr.Blocks(title="StyleMask reenactment") as app:
        gr.Markdown(f"## StyleMask face reenactment\n{title}\nThe source photo gives the identity, "
                    "the target photo (or each frame of the driving video) the head pose and "
                    f"expression. Generator: {gen.size} px; batches of up to {settings.batch_size} "
                    "requests. The mask image has one row per controlled layer (top = first) and "
                    "one column per style channel: bright = taken from the target, dark = kept "
                    "from the source.")
        mode = gr.State("photo")
        first = examples[0] if examples and prefill else [None, None]
        with gr.Row():
            source = gr.Image(value=first[0], label="source photo (identity)", type="filepath",
                              sources=["upload"], height=300, elem_id="source")
            with gr.Tabs():
                with gr.Tab("Target photo", id="photo") as photo_tab:
                    target = gr.Image(value=first[1], label="target photo (pose, expression)",
                                      type="filepath", sources=["upload"], height=300,
                                      elem_id="target")
                with gr.Tab("Driving video", id="video") as video_tab:
                    driving = gr.Video(label=f"driving video (up to "
                                       f"{settings.max_video_seconds:g} s)", sources=["upload"],
                                       height=300, elem_id="driving")
        with gr.Row():
            truncation = gr.Slider(0.0, 1.0, value=0.7, step=0.05, label="truncation psi "
                                   "(1 = the inverted codes unchanged)", elem_id="truncation")
            refine = gr.Radio(list(settings.refine_steps), value=settings.refine_steps[0],
                              label="refine steps (W+ refinement of the inversions)")
            paste = gr.Checkbox(label="paste back into the source photo", elem_id="paste")
            side = gr.Checkbox(label="side by side (video: driving | reenacted)")
        run = gr.Button("Run", variant="primary", elem_id="run")
        status = gr.Markdown(elem_id="status")
        result = gr.Image(label="source crop | target crop | reenacted", format="png",
                          interactive=False, elem_id="result")
        heat = gr.Image(label=HEAT_LABEL, format="png", interactive=False, elem_id="masks")
        with gr.Row():
            pasted = gr.Image(label="pasted back into the source photo", format="png",
                              interactive=False, elem_id="pasted")
            video_out = gr.Video(label="reenacted video", interactive=False, elem_id="video_out")
        if examples:
            gr.Examples(examples, inputs=[source, target], label="examples (the test photos)")
        photo_tab.select(lambda: "photo", None, mode)
        video_tab.select(lambda: "video", None, mode)

        def on_run(source, target, driving, mode, truncation, refine, paste, side,
                   progress=gr.Progress()):
            return handlers.run_on_page(source, target, driving, mode, truncation, refine, paste,
                                        side, progress)
        run.click(on_run, [source, target, driving, mode, truncation, refine, paste, side],
                  [result, heat, pasted, video_out, status], preprocess=False,
                  show_progress_on=[status],   # one progress bar, not one per output
                  concurrency_limit=max(4, settings.batch_size), concurrency_id="reenact",
                  api_name="run")
    return app


def serve(engine: DemoEngine, host: str = "127.0.0.1", port: int = 7860, title: str = "",
          block: bool = True, queue_size: int = QUEUE_SIZE):
    """Builds the page and serves it; block=False returns the running app. Gradio's queue holds
    up to `queue_size` Run requests waiting behind the ones running; a request beyond that is
    refused at once (the page says the app is busy, gradio_client raises QueueError)."""
    if queue_size < 1:
        raise ValueError(f"queue_size must be >= 1, got {queue_size}")
    app = build_app(engine, title=title)
    app.queue(max_size=queue_size)
    log.info("serving on http://%s:%d (Ctrl+C stops)", host, port)
    app.launch(server_name=host, server_port=port, prevent_thread_lock=not block,
               show_error=True, quiet=True)       # quiet: no public-link ("share") hint
    return app


def launch(engine: DemoEngine, host: str = "127.0.0.1", port: int = 7860, title: str = "",
           queue_size: int = QUEUE_SIZE) -> None:
    """Compiles every jitted function of `engine` once (logged), then serves the page until
    interrupted."""
    _gradio()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s",
                        force=True)
    log.setLevel(logging.INFO)            # the demo's own lines; other libraries' warnings only
    engine.compile()
    serve(engine, host, port, title=title, queue_size=queue_size)
