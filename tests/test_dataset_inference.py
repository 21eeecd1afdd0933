"""Inverting and evaluating a face dataset, sharded over processes and (simulated) devices.

The dataset is the small one of tests/dataset_utils.py (stand-in aligner, 2 frames per video:
6 faces). Inversion uses the e4e fixture (random weights, official layout); evaluation the tiny
config's random networks with random W+ codes. The 2-device runs are subprocesses with
XLA_FLAGS=--xla_force_host_platform_device_count=2 and must give the 1-device numbers. A run
killed with SIGKILL (a subprocess) must resume where its last checkpoint left off, and the
codes are read back row by row (`load_codes` views).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import flax.linen as nn
import numpy as np
import pytest

pytest.importorskip("tensorflow_datasets")
pytest.importorskip("array_record")

from stylemask_jax.datasets import load_dataset, make_pairs  # noqa: E402
from stylemask_jax.datasets.evaluate import pair_inputs  # noqa: E402
from stylemask_jax.datasets.invert import (CODES_DIR, DatasetCodes,  # noqa: E402
                                           invert_dataset, load_codes, save_codes)
from stylemask_jax.errors import UserInputError  # noqa: E402

from dataset_utils import build, make_source  # noqa: E402

E4E = os.path.join(os.path.dirname(__file__), "fixtures", "e4e", "e4e_small.pt")
# Same float32 functions on other batch shapes (2 rows per device instead of 4 on one): XLA may
# order the convolutions' sums differently, so agreement is to float32 rounding, not bits.
CODES_ATOL = 1e-5
METRICS_ATOL = 1e-5


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("faces"))
    report = build(make_source(root), os.path.join(root, "data"), max_frames=2)
    assert report.num_examples == 6
    return report.path


def _copy(dataset_path: str, tmp_path) -> str:
    """The dataset folder without its codes (so a run elsewhere starts from nothing)."""
    copy = str(tmp_path / "copy" / os.path.basename(dataset_path))
    shutil.copytree(dataset_path, copy, ignore=shutil.ignore_patterns(CODES_DIR))
    return copy


def _run_on_two_devices(body: str) -> str:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    script = ("import sys, jax\nassert jax.local_device_count() == 2\n"
              f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n" + textwrap.dedent(body))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


class TinyEncoder(nn.Module):
    """A stand-in for e4e with its interface ((B, 256, 256, 3) -> (B, n_styles, 512)), small
    enough for CPU tests; e4e itself runs in `test_invert_dataset_with_e4e` (slow)."""

    n_styles: int = 4

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(8, (4, 4), strides=(4, 4))(x)                          # (B, 64, 64, 8)
        x = nn.avg_pool(x, (8, 8), (8, 8)).reshape(x.shape[0], -1)         # (B, 512)
        return nn.Dense(self.n_styles * 512)(x).reshape(x.shape[0], self.n_styles, 512)


TINY_ENCODER = """
import jax, jax.numpy as jnp, flax.linen as nn
from test_dataset_inference import TinyEncoder
encoder = TinyEncoder()
variables = encoder.init(jax.random.key(0), jnp.zeros((1, 256, 256, 3)))
"""


def _tiny_encoder():
    scope: dict = {}
    exec(TINY_ENCODER, scope)
    return scope["encoder"], scope["variables"]


ENCODED: list[int] = []     # rows of each call of a CountingEncoder in this process


def _record(kill_at: int, rows) -> None:
    ENCODED.append(len(rows))
    if len(ENCODED) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)


class CountingEncoder(nn.Module):
    """TinyEncoder recording the rows of every call in ENCODED (a host callback in the jitted
    function); call number `kill_at` (0: none) kills the process with SIGKILL, as a crash or
    a preempted machine would."""

    n_styles: int = 4
    kill_at: int = 0

    @nn.compact
    def __call__(self, x):
        import functools
        from jax.experimental import io_callback
        io_callback(functools.partial(_record, self.kill_at), None, x[:, 0, 0, 0])
        return TinyEncoder(self.n_styles, name="encoder")(x)


def _counting_variables(n_styles: int = 4):
    import jax
    import jax.numpy as jnp
    variables = CountingEncoder(n_styles).init(jax.random.key(0), jnp.zeros((1, 256, 256, 3)))
    ENCODED.clear()
    return variables


def _check_inversion(dataset_path, encoder, variables, batch_size, tmp_path):
    """1 process x 1 device, then 2 processes x 2 devices on a copy: the same codes."""
    import jax
    import jax.numpy as jnp
    path = invert_dataset(dataset_path, encoder, variables, batch_size=batch_size,
                          process_index=0, process_count=1, progress=False)
    codes = load_codes(dataset_path)
    dataset = load_dataset(dataset_path)
    assert codes.shape == (len(dataset), encoder.n_styles, 512) and codes.dtype == np.float32
    crops = np.stack([dataset[i]["image"] for i in range(len(dataset))])
    direct = jax.jit(encoder.apply)(variables, jnp.asarray(crops / 127.5 - 1.0, jnp.float32))
    np.testing.assert_allclose(codes, np.asarray(direct), atol=CODES_ATOL, rtol=0)
    stamp = os.stat(path).st_mtime_ns
    assert invert_dataset(dataset_path, encoder, variables, process_index=0, process_count=1,
                          progress=False) == path and os.stat(path).st_mtime_ns == stamp

    copy = _copy(dataset_path, tmp_path)
    with pytest.raises(UserInputError, match="no complete set"):
        load_codes(copy)
    return codes, copy


def _two_processes_on_two_devices(copy: str, make_encoder: str, batch_size: int) -> None:
    _run_on_two_devices(make_encoder + f"""
from stylemask_jax.datasets.invert import invert_dataset
for p in range(2):          # two processes, one after the other, each on 2 devices
    invert_dataset({copy!r}, encoder, variables, batch_size={batch_size}, process_index=p,
                   process_count=2, progress=False)
""")
    files = sorted(os.listdir(os.path.join(copy, CODES_DIR)))
    assert files == ["wplus-00000-of-00002.json", "wplus-00000-of-00002.npy",
                     "wplus-00001-of-00002.json", "wplus-00001-of-00002.npy"]


def test_invert_dataset_over_processes_and_devices(dataset_path, tmp_path):
    encoder, variables = _tiny_encoder()
    codes, copy = _check_inversion(dataset_path, encoder, variables, 4, tmp_path)
    _two_processes_on_two_devices(copy, TINY_ENCODER, batch_size=2)
    np.testing.assert_allclose(load_codes(copy), codes, atol=CODES_ATOL, rtol=0)


@pytest.mark.slow
def test_invert_dataset_with_e4e(tmp_path, capsys):
    """The same with the e4e fixture (125M random parameters in the official layout)."""
    from stylemask_jax import cli
    from stylemask_jax.models.e4e import load_e4e
    root = str(tmp_path / "faces")
    dataset_path = build(make_source(root), os.path.join(root, "data"), max_frames=2).path
    e4e_dir = str(tmp_path / "e4e")
    assert cli.main(["convert", "e4e", E4E, e4e_dir]) == 0
    encoder, variables = load_e4e(e4e_dir)
    codes, copy = _check_inversion(dataset_path, encoder, variables, 6, tmp_path)
    _two_processes_on_two_devices(copy, f"""
from stylemask_jax.models.e4e import load_e4e
encoder, variables = load_e4e({e4e_dir!r})
""", batch_size=2)
    np.testing.assert_allclose(load_codes(copy), codes, atol=CODES_ATOL, rtol=0)
    other = _copy(dataset_path, tmp_path / "other")
    assert cli.main(["invert", "--dataset", other, "--e4e", e4e_dir, "--batch-size", "6"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("wrote W+ codes (10, 512) of examples [0, 6) of 6 to ")
    np.testing.assert_array_equal(load_codes(other), codes)


@pytest.mark.slow
def test_evaluate_dataset_on_one_and_two_devices(dataset_path, tmp_path):
    """One process with 2 simulated devices evaluates on a 1-device and a 2-device mesh (the
    tiny networks are built once: building and compiling them is most of the cost, 4.7 min of
    wall time on the shared 2-core machine, hence `slow`)."""
    copy = _copy(dataset_path, tmp_path)
    out = {n: str(tmp_path / f"metrics_{n}.json") for n in (1, 2)}
    _run_on_two_devices(f"""
        import numpy as np
        from configs import tiny
        from stylemask_jax.datasets import load_dataset, make_pairs
        from stylemask_jax.datasets.evaluate import evaluate_dataset
        from stylemask_jax.datasets.invert import save_codes
        from stylemask_jax.models.mask_net import init_mask_net
        from stylemask_jax.sharding import data_mesh
        from stylemask_jax.training.networks import build_networks
        config = tiny.get_config()
        nets, frozen = build_networks(config)
        params = init_mask_net(nets.mask_net, jax.random.key(0))["params"]
        dataset = load_dataset({copy!r})
        gen = nets.generator
        codes = np.random.default_rng(0).normal(size=(len(dataset), gen.n_latent, gen.style_dim))
        save_codes(dataset, codes.astype(np.float32))
        pairs = make_pairs(dataset, "cross", num_pairs=5, seed=0)      # 5: a padded batch
        for n, out in {out!r}.items():
            evaluate_dataset(dataset, pairs, nets, frozen, params, config, batch_size=4,
                             mesh=data_mesh(n, local=True), out=out, progress=False)
    """)
    one, two = (json.load(open(out[n])) for n in (1, 2))
    dataset = load_dataset(copy)
    pairs = make_pairs(dataset, "cross", num_pairs=5, seed=0)
    assert one["num_pairs"] == two["num_pairs"] == 5
    assert [[r["source"], r["target"]] for r in one["pairs"]] == pairs.tolist()
    for name in ("csim", "pose_error", "expression_error"):
        values = np.array([row[name] for row in one["pairs"]])
        assert np.all(np.isfinite(values)) and one[name] == pytest.approx(values.mean())
        np.testing.assert_allclose([row[name] for row in two["pairs"]], values,
                                   atol=METRICS_ATOL, rtol=0)
    assert all(abs(row["csim"]) <= 1 + 1e-6 for row in one["pairs"])


@pytest.mark.slow
def test_evaluate_dataset_command(dataset_path, tmp_path, capsys):
    """A 1-step tiny training run evaluated on dataset pairs; the written pair file replays."""
    from configs import tiny
    from stylemask_jax import cli
    from stylemask_jax.training import loop
    from stylemask_jax.training.networks import build_networks
    config = tiny.get_config()
    config.num_steps = 1
    config.checkpoint_every = 1
    workdir = str(tmp_path / "run")
    loop.train(config, workdir)
    copy = _copy(dataset_path, tmp_path)
    dataset = load_dataset(copy)
    gen = build_networks(config)[0].generator
    codes = np.random.default_rng(1).normal(size=(len(dataset), gen.n_latent, gen.style_dim))
    save_codes(dataset, codes.astype(np.float32))
    def evaluate(*args):
        assert cli.main(["evaluate", "--workdir", workdir, "--dataset", copy, *args]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    first = evaluate("--protocol", "self", "--num-pairs", "3", "--seed", "0")
    assert first["step"] == 1 and first["num_pairs"] == 3
    assert os.path.basename(first["pairs_file"]) == "pairs_self_3_seed0.json"
    assert os.path.isfile(first["metrics_file"])
    again = evaluate("--pairs", first["pairs_file"])
    for name in ("csim", "pose_error", "expression_error"):
        assert again[name] == first[name]


def _killed_run(copy: str, kill_at: int, batch_size: int) -> None:
    """Inverts `copy` in a subprocess (this process's devices) until the encoder's call number
    `kill_at` kills it; a checkpoint after every batch."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_dataset_inference import CountingEncoder, _counting_variables
        from stylemask_jax.datasets.invert import invert_dataset
        invert_dataset({copy!r}, CountingEncoder(kill_at={kill_at}), _counting_variables(),
                       batch_size={batch_size}, checkpoint_seconds=0, progress=False)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]


def _invert_counting(path: str, n_styles: int = 4) -> list[int]:
    """Inverts `path` in this process (2 faces a batch); returns the rows of each encoder call."""
    variables = _counting_variables(n_styles)
    invert_dataset(path, CountingEncoder(n_styles), variables, batch_size=2,
                   checkpoint_seconds=0, progress=False)
    return list(ENCODED)


def test_killed_inversion_resumes_inside_its_block(dataset_path, tmp_path):
    """Killed during its 2nd batch of 3, the run leaves 2 rows recorded; the rerun encodes
    the other 4 only and gives exactly the codes of a run never killed (the same batches
    through the same compiled function). A progress file of another dataset (fingerprint), or
    an encoder with another row shape, starts the block over."""
    whole = _copy(dataset_path, tmp_path / "whole")
    assert _invert_counting(whole) == [2, 2, 2]
    expected = np.asarray(load_codes(whole))

    killed = _copy(dataset_path, tmp_path / "killed")
    _killed_run(killed, kill_at=2, batch_size=2)
    folder = os.path.join(killed, CODES_DIR)
    assert sorted(os.listdir(folder)) == ["wplus-00000-of-00001.progress.json",
                                          "wplus-00000-of-00001.tmp.npy"]
    with open(os.path.join(folder, "wplus-00000-of-00001.progress.json")) as f:
        progress = json.load(f)
    assert progress["rows"] == 2 and progress["shape"] == [6, 4, 512]
    for name in ("rebuilt", "reshaped"):
        shutil.copytree(killed, str(tmp_path / name / "data"))

    assert _invert_counting(killed) == [2, 2]
    assert sorted(os.listdir(folder)) == ["wplus-00000-of-00001.json",
                                          "wplus-00000-of-00001.npy"]
    np.testing.assert_array_equal(load_codes(killed), expected)

    rebuilt = str(tmp_path / "rebuilt" / "data")
    progress_file = os.path.join(rebuilt, CODES_DIR, "wplus-00000-of-00001.progress.json")
    with open(progress_file, "w") as f:
        json.dump(dict(progress, fingerprint="another build"), f)
    assert _invert_counting(rebuilt) == [2, 2, 2]
    np.testing.assert_array_equal(load_codes(rebuilt), expected)
    reshaped = str(tmp_path / "reshaped" / "data")
    assert _invert_counting(reshaped, n_styles=3) == [2, 2, 2]
    assert load_codes(reshaped).shape == (6, 3, 512)


def test_codes_are_read_row_by_row(dataset_path, tmp_path, monkeypatch):
    """8 processes' blocks of the 6 examples (two of them empty): indexing the view reads
    those rows only and gives what indexing the array gives; a truncated block fails at
    `load_codes` with its name."""
    copy = _copy(dataset_path, tmp_path)
    dataset = load_dataset(copy)
    codes = np.random.default_rng(0).normal(size=(6, 3, 512)).astype(np.float32)
    for p in range(8):
        start, stop = p * 6 // 8, (p + 1) * 6 // 8
        save_codes(dataset, codes[start:stop], process_index=p, process_count=8)
    view = load_codes(copy)
    assert isinstance(view, DatasetCodes)
    assert (view.shape, view.dtype, len(view), view.nbytes) == ((6, 3, 512), np.float32, 6,
                                                                codes.nbytes)
    np.testing.assert_array_equal(np.asarray(view), codes)
    for key in (3, -1, np.int64(5), [5, 0, 5], np.array([[1, 2], [4, 0]]), slice(1, 6, 2),
                slice(None, None, -1), np.array([], np.int64)):
        np.testing.assert_array_equal(view[key], codes[key])
    pairs = make_pairs(dataset, "cross", num_pairs=5, seed=0)
    for got, want in zip(pair_inputs(dataset, view, pairs), pair_inputs(dataset, codes, pairs)):
        np.testing.assert_array_equal(got, want)

    read, real_preadv = [], os.preadv

    def counted_preadv(fd, buffers, position):
        read.append(real_preadv(fd, buffers, position))
        return read[-1]
    monkeypatch.setattr(os, "preadv", counted_preadv)
    view[[4, 1]]
    assert read == [3 * 512 * 4] * 2            # two rows' bytes, nothing else
    monkeypatch.undo()

    for bad in (6, [-7]):
        with pytest.raises(IndexError):
            view[bad]
    for bad in ((0, 1), np.ones(6, bool)):
        with pytest.raises(TypeError):
            view[bad]
    last = os.path.join(copy, CODES_DIR, "wplus-00007-of-00008.npy")
    os.truncate(last, os.path.getsize(last) - 4)
    with pytest.raises(UserInputError, match="wplus-00007-of-00008.npy: W\\+ codes"):
        load_codes(copy)
