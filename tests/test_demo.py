"""`stylemask demo`: the engine and the page's request functions with the tiny random networks
(no browser), every path and error; and one end-to-end run in headless Chromium (skipped when
Chromium or its driver is absent)."""

import contextlib
import os
import shutil
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from browser_utils import HAVE_CHROMIUM, NO_CHROMIUM, free_port, headless_chromium
from photo_utils import clip_with_gaps, fixture_photo, write_test_clip

gr = pytest.importorskip("gradio")

from stylemask_jax import cli  # noqa: E402
from stylemask_jax.demo.app import Handlers, build_app  # noqa: E402
import configs.tiny  # noqa: E402
from stylemask_jax import reenact as method  # noqa: E402
from stylemask_jax.demo.engine import DemoSettings, PhotoRequest, make_engine  # noqa: E402
from stylemask_jax.demo.tiny import tiny_photo_models  # noqa: E402
from stylemask_jax.images import to_uint8  # noqa: E402
from stylemask_jax.photos.pipeline import prepare_faces  # noqa: E402
from stylemask_jax.photos.video import count_frames, probe_video  # noqa: E402


@pytest.fixture(scope="module")
def engine():
    engine = make_engine(*tiny_photo_models(configs.tiny.get_config()),
                         DemoSettings(batch_size=2, refine_steps=(0, 1), max_video_seconds=1.0))
    engine.compile()
    return engine


@pytest.fixture(scope="module")
def handlers(engine, tmp_path_factory):
    return Handlers(engine, str(tmp_path_factory.mktemp("demo_work")))


TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"   # each jit cache miss: a new trace


@contextlib.contextmanager
def no_recompilation(engine):
    """Fails the test when one of the engine's jitted functions traces again inside the block
    (a jit cache miss), seen through `jax.monitoring`'s public listeners."""
    fns = [engine._invert, engine._truncate, engine._reenact, *engine.refine_fns.values()]
    names = {fn.__name__ for fn in fns}
    traced = []

    def listener(event, duration, **kwargs):
        if event == TRACE_EVENT and kwargs.get("fun_name") in names:
            traced.append(kwargs["fun_name"])
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert not traced, f"traced again during the request: {traced}"


def test_photo_path_compiles_nothing_and_matches_the_library(engine, handlers):
    with no_recompilation(engine):                     # nothing compiled for a request
        strip, heat, pasted, status = handlers.photo(fixture_photo("astronaut"),
                                                     fixture_photo("astronaut_tilt"), 0.7, 1, True)
    assert strip.shape == (256, 3 * 256, 3) and strip.dtype == np.uint8
    layers = len(engine.models.mask_net.widths)
    assert heat.shape == (layers * 12 + (layers - 1) * 2, 512, 3)
    assert pasted.shape == (512, 512, 3)               # the source photo's size
    assert "reenacted in" in status and "mean mask per layer" in status

    # the same pair through the library's photo path (pipeline + reenact.reenact_only)
    request, faces = engine.prepare(PhotoRequest(fixture_photo("astronaut"),
                                                 fixture_photo("astronaut_tilt"), 0.5, 0))
    [result] = engine.run_photos([(request, faces)])
    crops = prepare_faces([fixture_photo("astronaut"), fixture_photo("astronaut_tilt")]).crops
    np.testing.assert_array_equal(result.source_crop, crops[0])
    codes = np.asarray(engine._invert(engine.evars, crops))
    m = engine.models
    wplus = np.asarray(method.make_encode_fn(m.generator, "wplus", 0.5)(m.gvars, codes, engine.mean))
    image = method.reenact_only(m.generator, m.gvars, m.mask_net, m.mvars,
                                jnp.asarray(wplus[:1]), jnp.asarray(wplus[1:]))
    assert np.abs(result.reenacted.astype(int) - to_uint8(image[0]).astype(int)).max() <= 1
    masks = m.mask_net.apply(m.mvars, method.style_codes(m.generator, m.gvars, wplus[:1]),
                             method.style_codes(m.generator, m.gvars, wplus[1:]))
    for ours, ref in zip(result.masks, masks):
        np.testing.assert_allclose(ours, np.asarray(ref)[0], atol=1e-5)


def test_requests_arriving_together_run_as_one_batch(engine, handlers):
    pairs = [("astronaut", "astronaut_tilt", 0.7), ("astronaut_small", "astronaut", 0.4)]
    prepared = [engine.prepare(PhotoRequest(fixture_photo(s), fixture_photo(t), psi))
                for s, t, psi in pairs]
    alone = [engine.run_photos([p])[0] for p in prepared]
    before = len(handlers.queue.batch_sizes)
    results = [None] * len(prepared)
    gate = threading.Barrier(len(prepared))

    def submit(k):
        gate.wait()
        results[k] = handlers.queue.submit(prepared[k])
    threads = [threading.Thread(target=submit, args=(k,)) for k in range(len(prepared))]
    handlers.queue.max_wait_s = 2.0       # both surely arrive within the batcher's window
    try:
        [t.start() for t in threads]
        [t.join() for t in threads]
    finally:
        handlers.queue.max_wait_s = engine.settings.max_wait_s
    assert handlers.queue.batch_sizes[before:] == [2]
    for got, want in zip(results, alone):    # a row of a batch equals the request run alone
        assert np.abs(got.reenacted.astype(int) - want.reenacted.astype(int)).max() <= 1


def test_video_path_with_progress(engine, handlers, tmp_path):
    clip = write_test_clip(tmp_path / "clip.mp4", clip_with_gaps(4, blank=[]), 10)
    calls = []

    def progress(value, desc=None, unit=None):
        calls.append(value)
    with no_recompilation(engine):
        _, _, _, path, status = handlers.run(fixture_photo("astronaut"), None, clip, "video", 0.7,
                                             0, False, True, progress)
    assert count_frames(path) == 4 and probe_video(path).size == (80 + 64, 64)
    assert calls == [(2, 4), (4, 4)] and "4 frames" in status


def _grey(path):
    Image.fromarray(np.full((200, 240, 3), 90, np.uint8)).save(path)
    return str(path)


def _error_cases(tmp_path):
    photo = fixture_photo("astronaut")
    notes = tmp_path / "notes.png"
    notes.write_text("these are notes")
    long_clip = write_test_clip(tmp_path / "long.mp4", clip_with_gaps(16, blank=[]), 10)
    return {
        "no_face": (("photo", photo, _grey(tmp_path / "wall.png"), None, 0), "no face found"),
        "not_an_image": (("photo", str(notes), photo, None, 0), "not an image"),
        "no_source": (("photo", None, photo, None, 0), "upload a source photo"),
        "no_target": (("photo", photo, None, None, 0), "upload a target photo"),
        "refine_not_offered": (("photo", photo, photo, None, 7), "offers [0, 1]"),
        "no_video": (("video", photo, None, None, 0), "upload a driving video"),
        "long_video": (("video", photo, None, long_clip, 0), "1.6 s long; this demo takes videos "
                                                             "up to 1 s"),
    }


def test_bad_input_is_a_one_line_page_message(handlers, tmp_path):
    for case, ((mode, src, tgt, clip, steps), expected) in _error_cases(tmp_path).items():
        with pytest.raises(gr.Error) as err:
            handlers.run(src, tgt, clip, mode, 0.7, steps, False, False)
        message = err.value.message
        assert expected in message and "\n" not in message and "Traceback" not in message, \
            (case, message)


def test_a_bad_request_leaves_its_reason_on_the_page(handlers, tmp_path):
    """The page's Run: no exception (no bare 'Error' badges), the outputs cleared and the reason
    in the status line, where it stays until the next run."""
    (mode, src, tgt, clip, steps), expected = next(iter(_error_cases(tmp_path).values()))
    outputs = handlers.run_on_page(src, tgt, clip, mode, 0.7, steps, False, False)
    assert outputs[:4] == (None, None, None, None)
    assert outputs[4].startswith("**Error:** ") and expected in outputs[4]


def test_build_app_and_cli_arguments(engine, handlers, capsys):
    app = build_app(engine, handlers)
    ids = {block.elem_id for block in app.blocks.values()}
    assert {"source", "target", "driving", "run", "result", "masks", "video_out"} <= ids
    assert cli.main(["demo", "--config", "tiny", "--e4e", "x"]) == 2
    assert "--config gives random networks" in capsys.readouterr().err
    assert cli.main(["demo", "--config", "tiny", "--refine-steps", "a,b"]) == 2
    assert "--refine-steps: cannot parse" in capsys.readouterr().err


@pytest.mark.skipif(not HAVE_CHROMIUM, reason=NO_CHROMIUM)
def test_in_a_real_browser(engine, handlers, tmp_path):
    pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    port = free_port()
    app = build_app(engine, handlers, title="Random networks (--config tiny).", prefill=False)
    app.queue()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    browser = headless_chromium(tmp_path / "profile")
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, 120)
        for elem_id, name in (("source", "astronaut"), ("target", "astronaut_tilt")):
            field = wait.until(lambda b: b.find_element(By.CSS_SELECTOR,
                                                        f"#{elem_id} input[type=file]"))
            field.send_keys(os.path.abspath(fixture_photo(name)))
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, f"#{elem_id} img"))
        browser.find_element(By.CSS_SELECTOR, "#run").click()
        image = wait.until(lambda b: next(iter(b.find_elements(By.CSS_SELECTOR, "#result img")),
                                          None))
        wait.until(lambda b: b.execute_script("return arguments[0].complete && "
                                              "arguments[0].naturalWidth > 0", image))
        size = browser.execute_script("return [arguments[0].naturalWidth, "
                                      "arguments[0].naturalHeight]", image)
        assert size == [3 * 256, 256]
        assert "reenacted in" in browser.find_element(By.CSS_SELECTOR, "#status").text
        time.sleep(0.5)
        shot = tmp_path / "demo.png"
        browser.save_screenshot(str(shot))
        assert Image.open(shot).size[0] > 0
        if os.environ.get("STYLEMASK_DEMO_SCREENSHOT"):       # docs/demo.png for the README
            shutil.copy(shot, os.environ["STYLEMASK_DEMO_SCREENSHOT"])
    finally:
        browser.quit()
        app.close()


def test_identical_results_are_separate_files(handlers):
    """Gradio writes an image result to a file named by its content, in place; two requests with
    the same result would share that file, and one's write would truncate it under the other's
    download. The page's results carry their request's own tag, so each is a file of its own."""
    photos = (fixture_photo("astronaut_small"), fixture_photo("astronaut_edge"))
    first, second = (handlers.run_on_page(*photos, None, "photo", 0.7, 0, True, False)
                     for _ in range(2))
    component = gr.Image(format="png")
    for a, b in zip(first[:3], second[:3]):
        assert np.array_equal(np.asarray(a), np.asarray(b))
        path_a, path_b = component.postprocess(a).path, component.postprocess(b).path
        assert path_a != path_b
        assert Image.open(path_a).size == Image.open(path_b).size
