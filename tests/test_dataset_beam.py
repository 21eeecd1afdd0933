"""Dataset builds on Apache Beam: worker processes, a build killed and resumed, runner options.

The stand-in aligner (tests/dataset_utils.py) keeps dlib out of these tests; Beam's worker
processes import it from this folder, so the builds run in subprocesses whose PYTHONPATH names
it.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("tensorflow_datasets")
pytest.importorskip("apache_beam")

from stylemask_jax import cli  # noqa: E402
from stylemask_jax.commands import dataset as dataset_command  # noqa: E402
from stylemask_jax.datasets import pipeline  # noqa: E402
from stylemask_jax.datasets.build import WORK_FOLDER  # noqa: E402
from stylemask_jax.errors import UserInputError  # noqa: E402

from dataset_utils import make_clips, make_source  # noqa: E402
from test_dataset import dataset_files  # noqa: E402

TESTS = os.path.dirname(os.path.abspath(__file__))
NUM_CLIPS, NUM_FRAMES = 8, 6


def start_build(src: str, out: str, workers: int) -> subprocess.Popen:
    """`build_dataset` with the slow stand-in aligner, in its own process group."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {TESTS!r})
        from dataset_utils import SlowStandIn
        from stylemask_jax.datasets import build_dataset, pipeline
        pipeline.IN_PROCESS_FRAMES = 0          # worker processes even for this small source
        report = build_dataset({src!r}, {out!r}, aligner=SlowStandIn(), workers={workers},
                               progress=False)
        print("report", report.items_reused, report.items_aligned, report.runner)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [TESTS] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> list[str]:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return out.split("report ", 1)[1].split()


def test_killed_multiprocess_build_resumes_to_the_same_bytes(tmp_path):
    src = make_clips(str(tmp_path), NUM_CLIPS, NUM_FRAMES)
    out = str(tmp_path / "data")
    work = os.path.join(out, WORK_FOLDER, "stride1_maxall")
    build = start_build(src, out, workers=2)
    deadline = time.monotonic() + 240
    while len(glob.glob(os.path.join(work, "*.npz"))) < 2:        # two items finished
        assert build.poll() is None and time.monotonic() < deadline, "build ended too soon"
        time.sleep(0.1)
    os.killpg(build.pid, signal.SIGKILL)                          # the build and its workers
    build.wait()
    finished = len(glob.glob(os.path.join(work, "*.npz")))
    assert 2 <= finished < NUM_CLIPS
    assert not glob.glob(os.path.join(out, "stylemask_faces", "*", "*", "dataset_info.json"))

    reused, aligned, *runner = finish(start_build(src, out, workers=2))
    assert int(reused) >= finished and int(reused) + int(aligned) == NUM_CLIPS
    assert " ".join(runner) == "DirectRunner, 2 worker processes"
    assert not os.path.exists(os.path.join(out, WORK_FOLDER))

    # byte for byte what a build that was never interrupted writes (here in one process)
    reference = str(tmp_path / "reference")
    assert finish(start_build(src, reference, workers=1)) == ["0", str(NUM_CLIPS), "in", "this",
                                                              "process"]
    path = os.path.join("stylemask_faces", "stride1_maxall", "1.0.0")
    assert dataset_files(os.path.join(out, path)) == dataset_files(os.path.join(reference, path))


def test_small_sources_run_in_process():
    assert pipeline.plan_runner(4, "", pipeline.IN_PROCESS_FRAMES - 1).workers == 1
    plan = pipeline.plan_runner(4, "", pipeline.IN_PROCESS_FRAMES)
    assert plan.local and plan.workers == 4 and plan.describe() == "DirectRunner, 4 worker processes"
    assert dataset_command.IN_PROCESS_FRAMES == pipeline.IN_PROCESS_FRAMES
    cluster = pipeline.plan_runner(4, "--runner=DataflowRunner --project=p", 10**6) \
        if _dataflow_installed() else pipeline.plan_runner(4, "--runner=PortableRunner", 10**6)
    assert not cluster.local and cluster.workers == 0


def _dataflow_installed() -> bool:
    return importlib.util.find_spec("apitools") is not None


@pytest.mark.parametrize("options, expected", [
    ("--no_such_option=3", "Beam does not know --no_such_option=3"),
    ("--runner=NoSuchRunner", "Unexpected pipeline runner: NoSuchRunner"),
    ("--direct_num_workers=many", "invalid int value: 'many'"),
    ("'--runner", "No closing quotation"),
])
def test_beam_options_beam_rejects_are_one_line_errors(options, expected, tmp_path, capsys):
    src = make_source(str(tmp_path))
    out = tmp_path / "data"
    code = cli.main(["dataset", "build", src, "--out", str(out), f"--beam-options={options}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"stylemask: error: --beam-options {options!r}: ") and expected in err[0]
    assert not out.exists()


def test_dataflow_without_its_extra_is_one_line_error():
    if _dataflow_installed():
        pytest.skip("apache-beam[gcp] is installed here")
    with pytest.raises(UserInputError, match=r"DataflowRunner is not installed: pip install"):
        pipeline.parse_beam_options("--runner=DataflowRunner")


def test_unwritable_out_and_bad_workers_are_one_line_errors(tmp_path, capsys):
    src = make_source(str(tmp_path))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for argv, expected in (([src, "--out", str(blocker)], "exists and is not a folder"),
                           ([src, "--out", str(blocker / "sub")], str(blocker)),
                           ([src, "--out", str(tmp_path / "d"), "--workers", "0"],
                            "--workers")):
        code = cli.main(["dataset", "build"] + argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0], err


def test_a_cluster_runner_aligns_and_writes_through_beam(tmp_path, monkeypatch):
    """The path of --runner=FlinkRunner etc., with Beam's in-process runner taken for a cluster
    runner: items aligned by the runner, records written by TFDS's shard writer on Beam."""
    from dataset_utils import build
    src = make_source(str(tmp_path))
    local = build(src, str(tmp_path / "local"))
    monkeypatch.setattr(pipeline, "LOCAL_RUNNERS", ())
    remote = build(src, str(tmp_path / "remote"), beam_options="--runner=FnApiRunner")
    assert remote.runner == "FnApiRunner" and remote.items_aligned == 5
    assert dataset_files(remote.path) == dataset_files(local.path)
