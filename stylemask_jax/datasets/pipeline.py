"""Apache Beam: where a build runs, and the pipeline that aligns the source items in parallel.

    plan = plan_runner(workers=4, beam_options="", estimated_frames=5000)
    # -> DirectRunner with 4 worker processes (in-process when the source is small)
    plan = plan_runner(1, "--runner=FlinkRunner --flink_master=host:8081", 0)
    align_items(todo, source.root, cache, settings, plan, progress=True)

`align_items` is the heavy, parallel half of a build: every item (photo, video, frame folder)
is one element, decoded, detected and aligned in a worker, and its faces land in the
`items.ItemCache` as the item finishes. The dataset's records are then written from that
cache by the TFDS builder (`builder.py`). Beam is imported here alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import logging
import os
import re
import shlex
import shutil
import sys
import threading

from stylemask_jax.datasets.items import AlignSettings, ItemCache, align_item
from stylemask_jax.datasets.sources import SourceItem
from stylemask_jax.errors import UserInputError
from stylemask_jax.progress import progress_bar


@contextlib.contextmanager
def _quiet_root_logger():
    """Beam's import logs a warning about Google Cloud clients on the root logger; hide it."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


try:  # the [datasets] extra
    with _quiet_root_logger():
        import apache_beam as beam
        from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner
        from apache_beam.runners.runner import create_runner
        from apache_beam.transforms.environments import SubprocessSDKEnvironment
except ImportError as err:
    raise UserInputError(f"dataset builds need apache-beam ({err}); install it with "
                         'pip install -e ".[datasets]"') from None

LOCAL_RUNNERS = ("DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner",
                 "FnApiRunner", "direct")
# Below this many frames a build aligns in the main process: starting Beam's worker processes
# costs more than they save (benchmarks/results/dataset.md: on 2 cores, 2 workers were slower
# up to 80 frames of 320 px and faster from 160).
IN_PROCESS_FRAMES = 150
JAVA_RUNNERS = ("FlinkRunner", "SparkRunner")
POLL_S = 0.5


@dataclasses.dataclass(frozen=True)
class BeamPlan:
    """runner: the Beam runner's name; flags: the Beam options of the alignment pipeline;
    workers: local worker processes (1: in the main process; 0: a cluster runner decides)."""

    runner: str
    flags: tuple[str, ...]
    workers: int

    @property
    def local(self) -> bool:
        return self.runner in LOCAL_RUNNERS

    def options(self) -> PipelineOptions:
        return PipelineOptions(list(self.flags))

    def describe(self) -> str:
        if not self.local:
            return self.runner
        return ("in this process" if self.workers == 1
                else f"DirectRunner, {self.workers} worker processes")


def parse_beam_options(text: str) -> list[str]:
    """`--beam-options` -> Beam's flags; a one-line error for what Beam would not take."""
    try:
        flags = shlex.split(text)
    except ValueError as err:
        raise UserInputError(f"{text!r}: {err}") from None
    options = PipelineOptions(flags)
    discarded: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record):
            if "Discarding unparseable args" in record.getMessage():
                discarded.extend(record.args[0] if record.args else [])

    logger = logging.getLogger("apache_beam.options.pipeline_options")
    handler, propagate = Catch(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            values = options.get_all_options()
    except SystemExit:
        reason = stderr.getvalue().strip().splitlines()[-1].split("error: ", 1)[-1]
        raise UserInputError(f"{text!r}: Beam rejects it: {reason}") from None
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    if discarded:
        raise UserInputError(f"{text!r}: Beam does not know {', '.join(map(str, discarded))}")
    check_runner(values.get("runner") or "DirectRunner", text)
    return flags


def check_runner(name: str, text: str) -> None:
    """A one-line error for a runner Beam does not know or that cannot start here (`text`:
    the options that name it, for the message)."""
    try:
        create_runner(name)
    except ValueError as err:
        raise UserInputError(f"{text!r}: {str(err).split(' Valid values', 1)[0]} "
                             "(e.g. DirectRunner, FlinkRunner, SparkRunner, DataflowRunner)"
                             ) from None
    except ImportError as err:
        raise UserInputError(f"{text!r}: runner {name} is not installed ({err})") from None
    if name == "DataflowRunner" and importlib.util.find_spec("apitools") is None:
        # apitools (Dataflow's API client) comes with apache-beam[gcp]
        raise UserInputError(f"{text!r}: runner DataflowRunner is not installed: "
                             "pip install 'apache-beam[gcp]'")
    if name in JAVA_RUNNERS and shutil.which("java") is None:
        raise UserInputError(f"{text!r}: runner {name} starts a Java job server, and java is "
                             "not on PATH; install a JRE (see docs/datasets.md)")


def plan_runner(workers: int | None, beam_options: str, estimated_frames: int) -> BeamPlan:
    """Where the alignment runs.

    workers: local worker processes (None: every core); ignored for a cluster runner.
    beam_options: extra Beam options ("" for none); a `--runner` other than DirectRunner
        hands the build to that runner as it is.
    estimated_frames: the frames to align (an estimate); fewer than IN_PROCESS_FRAMES run in
        this process whatever `workers` says.
    """
    flags = parse_beam_options(beam_options) if beam_options else []
    runner = PipelineOptions(flags).view_as(StandardOptions).runner or "DirectRunner"
    if runner not in LOCAL_RUNNERS:
        return BeamPlan(runner, tuple(flags), 0)
    workers = workers or len(os.sched_getaffinity(0))
    if estimated_frames < IN_PROCESS_FRAMES:
        workers = 1
    own = [f for f in flags if not f.startswith(("--direct_running_mode", "--direct_num_workers",
                                                  "--runner"))]
    return BeamPlan(runner, tuple([f"--direct_num_workers={workers}"] + own), workers)


def _local_runner(workers: int, log_path: str):
    """Beam's own local runner (what DirectRunner runs): in this process for one worker, else
    `workers` worker processes whose log lines go to `log_path` instead of the terminal."""
    if workers == 1:
        return FnApiRunner()
    worker = (f"{shlex.quote(sys.executable)} -m apache_beam.runners.worker.sdk_worker_main "
              f">>{shlex.quote(log_path)} 2>&1")
    return FnApiRunner(default_environment=SubprocessSDKEnvironment.from_command_string(worker))


class _AlignItems(beam.DoFn):
    """(key, SourceItem) -> its faces in the cache (or its error note); yields the key."""

    def __init__(self, root: str, cache_folder: str, settings: AlignSettings):
        self._root = root
        self._cache_folder = cache_folder
        self._settings = settings
        self._align = None

    def setup(self):
        self._align = self._settings.make_aligner()

    def process(self, element):
        key, item = element
        cache = ItemCache(self._cache_folder)
        if cache.has(key):
            return
        try:
            faces = align_item(self._root, item, self._settings, self._align)
        except UserInputError as err:
            cache.put_error(key, str(err))
            return
        cache.put(key, faces)
        yield key


def align_items(todo: list[tuple[str, SourceItem]], root: str, cache: ItemCache,
                settings: AlignSettings, plan: BeamPlan, progress: bool = True) -> None:
    """Aligns the items of `todo` ((cache key, item) pairs) into `cache` with Beam."""
    if not todo:
        return
    keys = [key for key, _ in todo]
    bar = progress_bar(total=len(todo), desc="aligning", unit="item", disable=not progress)
    done = threading.Event()

    def poll():
        while not done.wait(POLL_S):
            bar.n = cache.count_finished(keys)
            bar.refresh()

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        runner = (_local_runner(plan.workers, os.path.join(cache.folder, "workers.log"))
                  if plan.local else None)
        os.makedirs(cache.folder, exist_ok=True)
        with _quiet_root_logger(), beam.Pipeline(runner, options=plan.options()) as pipeline:
            items = pipeline | "Items" >> beam.Create(todo)
            if plan.workers != 1:         # spread the items over the workers
                items = items | "Spread" >> beam.Reshuffle()
            _ = items | "Align" >> beam.ParDo(_AlignItems(root, cache.folder, settings))
    except RuntimeError as err:
        staged = re.search(r"stage the jar at (\S+)", str(err))
        if staged is None:
            raise
        raise UserInputError(f"runner {plan.runner} could not download its job server jar "
                             f"(no network?); put the jar at {staged.group(1)} or name it with "
                             f"--{plan.runner[:-len('Runner')].lower()}_job_server_jar") from None
    finally:
        done.set()
        watcher.join()
        bar.n = cache.count_finished(keys)
        bar.close()
