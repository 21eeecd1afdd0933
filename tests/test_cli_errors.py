"""Every sub-command against bad input: exit 2, one `stylemask: error:` line, nothing written.

The table is a list of rows (name, argv, expected substring of the error line, output path),
built by one small function per command from placeholders that `env` fills in ({gen}, {file},
...; see `env`). A row passes when the CLI, called in-process, returns 2, prints exactly one
line starting with `stylemask: error:` that contains the expected text (case-insensitive), no
traceback, and leaves nothing at the output path (or leaves a pre-existing one unchanged). New
commands (photos, videos, datasets) add a function and list it in ROW_BUILDERS.

Not simulated here: a folder that exists but is not writable. The check uses os.access, which
is always true for root (the tests run as root), and a read-only bind mount needs privileges a
test should not take; the rows use an output under a regular file instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from stylemask_jax.cli import main

from conftest import flame_model_pkl
from video_utils import clip_frames, write_test_clip

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERATOR_PT = os.path.join(FIXTURES, "stylegan2", "generator_small.pt")
MASK_NET_PT = os.path.join(FIXTURES, "stylegan2", "mask_net_small.pt")
E4E_PT = os.path.join(FIXTURES, "e4e", "e4e_small.pt")
IRSE_PTH = os.path.join(FIXTURES, "irse", "model_ir_se_small.pth")
DECA_TAR = os.path.join(FIXTURES, "deca", "deca_model_small.tar")
FLAME_PKL = flame_model_pkl()
FLAME_EMB = os.path.join(FIXTURES, "flame", "landmark_embedding.npy")
FIXTURES_ALIGN = os.path.join(FIXTURES, "align")


def _truncated_copy(source, target, keep=0.5):
    with open(source, "rb") as f:
        data = f.read()
    with open(target, "wb") as f:
        f.write(data[: int(len(data) * keep)])
    return str(target)


def tiny_workdir(path, **overrides):
    """A training workdir without training: config.json and a step-0 checkpoint (tiny config)."""
    import configs.tiny
    from stylemask_jax.sharding import data_mesh
    from stylemask_jax.training import checkpoints, networks, state as state_lib
    config = configs.tiny.get_config()
    nets, _ = networks.build_networks(config)
    optimizer = state_lib.make_optimizer(config.learning_rate, config.weight_decay)
    state = state_lib.initial_state(nets, config, optimizer, data_mesh())
    manager = checkpoints.make_manager(str(path))
    checkpoints.save(manager, state)
    manager.wait_until_finished()
    manager.close()
    saved = json.loads(config.to_json_best_effort())
    saved.update(overrides)
    (path / "config.json").write_text(json.dumps(saved))
    return str(path)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The placeholders of the rows: converted weights, damaged and wrong files, workdirs."""
    root = tmp_path_factory.mktemp("inputs")
    e = {"root": str(root), "missing": str(root / "no_such")}
    e["gen"], e["mask"], e["e4e"] = str(root / "gen"), str(root / "mask"), str(root / "e4e")
    assert main(["convert", "stylegan2", GENERATOR_PT, e["gen"]]) == 0
    assert main(["convert", "mask-net", MASK_NET_PT, e["mask"], "--generator", e["gen"]]) == 0
    assert main(["convert", "e4e", E4E_PT, e["e4e"]]) == 0
    (root / "afile").write_text("a regular file\n")
    e["file"] = str(root / "afile")
    (root / "notes.txt").write_text("not an array, an image or a checkpoint\n")
    e["text"] = str(root / "notes.txt")
    (root / "full").mkdir()
    (root / "full" / "keep.txt").write_text("existing output\n")
    e["full"] = str(root / "full")
    for name, source in (("pt", GENERATOR_PT), ("mask_pt", MASK_NET_PT), ("e4e_pt", E4E_PT),
                         ("pth", IRSE_PTH), ("tar", DECA_TAR), ("pkl", FLAME_PKL)):
        e[f"trunc_{name}"] = _truncated_copy(source, root / f"trunc_{name}_{os.path.basename(source)}")
    np.save(root / "wrong_codes.npy", np.zeros((2, 7), np.float32))
    np.save(root / "str_codes.npy", np.array(["a", "b"]))
    np.save(root / "tiny_nan_codes.npy", np.full((2, 64), np.nan, np.float32))
    np.save(root / "tiny_inf_mean.npy", np.full((64,), np.inf, np.float32))
    e.update({k: str(root / f"{k}.npy") for k in ("wrong_codes", "str_codes", "tiny_nan_codes",
                                                   "tiny_inf_mean")})
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(root / "face.png")
    e["png_trunc"] = _truncated_copy(root / "face.png", root / "face_truncated.png", keep=0.6)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "small.png")
    e["png_small"] = str(root / "small.png")
    (root / "work").mkdir()
    e["work"] = tiny_workdir(root / "work")
    (root / "other").mkdir()  # a 5-layer config over the 7-layer checkpoint
    e["other"] = tiny_workdir(root / "other", num_layers_control=5)
    (root / "nockpt").mkdir()
    shutil.copy(root / "work" / "config.json", root / "nockpt" / "config.json")
    e["nockpt"] = str(root / "nockpt")
    e["clip"] = write_test_clip(str(root / "clip.mp4"), clip_frames(3, 96, 80), fps=10.0)
    e["astronaut"] = os.path.join(FIXTURES_ALIGN, "astronaut.png")
    (root / "badjson").mkdir()
    (root / "badjson" / "config.json").write_text("{not json")
    e["badjson"] = str(root / "badjson")
    return e


# ---------------------------------------------------------------------------------------------
# the rows: (name, argv, expected substring, output path) with {placeholders} from `env`
# ---------------------------------------------------------------------------------------------

CONVERT_INPUTS = {  # network -> (good inputs, truncated inputs, extra options)
    "stylegan2": ([GENERATOR_PT], ["{trunc_pt}"], []),
    "mask-net": ([MASK_NET_PT], ["{trunc_mask_pt}"], []),
    "irse": ([IRSE_PTH], ["{trunc_pth}"], []),
    "e4e": ([E4E_PT], ["{trunc_e4e_pt}"], []),
    "deca": ([DECA_TAR], ["{trunc_tar}"], []),
    "flame": ([FLAME_PKL, FLAME_EMB], ["{trunc_pkl}", FLAME_EMB], []),
}


def convert_rows():
    rows = []
    for net, (good, truncated, extra) in CONVERT_INPUTS.items():
        other = good[1:]
        rows += [
            (f"convert-{net}-missing-input", ["convert", net, "{missing}.pt", *other, "{out}"],
             "no such", "{out}"),
            (f"convert-{net}-text-input", ["convert", net, "{text}", *other, "{out}"],
             "notes.txt", "{out}"),
            (f"convert-{net}-truncated-input", ["convert", net, *truncated, "{out}"], "trunc_",
             "{out}"),
            (f"convert-{net}-out-under-file", ["convert", net, *good, "{file}/G"],
             "is not a folder", "{file}/G"),
            (f"convert-{net}-out-not-empty", ["convert", net, *good, "{full}"], "not empty",
             "{full}"),
        ]
    rows += [
        ("convert-e4e-generator-out-under-file",
         ["convert", "e4e", E4E_PT, "{out}", "--generator-out", "{file}/G"], "--generator-out",
         "{out}"),
        ("convert-mask-net-generator-missing",
         ["convert", "mask-net", MASK_NET_PT, "{out}", "--generator", "{missing}"], "no such",
         "{out}"),
        ("convert-mask-net-for-another-generator",
         ["convert", "mask-net", MASK_NET_PT, "{out}", "--generator", "{e4e}"], "e4e", "{out}"),
        ("convert-flame-embedding-text",
         ["convert", "flame", FLAME_PKL, "{text}", "{out}"], "notes.txt", "{out}"),
    ]
    return rows


def generate_rows():
    base = ["generate", "--config", "tiny", "--out", "{out}"]
    return [
        ("generate-out-under-file", ["generate", "--config", "tiny", "--out", "{file}/g"],
         "is not a folder", "{file}/g"),
        ("generate-bad-seeds", base + ["--seeds", "a-b"], "--seeds", "{out}"),
        ("generate-out-not-empty", ["generate", "--config", "tiny", "--out", "{full}"],
         "not empty (use --overwrite)", "{full}"),
        ("generate-truncation-range", base + ["--truncation", "2"], "--truncation", "{out}"),
        ("generate-batch-size-zero", base + ["--batch-size", "0"], "--batch-size", "{out}"),
        ("generate-unknown-config", ["generate", "--config", "nosuch", "--out", "{out}"],
         "unknown config", "{out}"),
        ("generate-generator-missing", ["generate", "--generator", "{missing}", "--out", "{out}"],
         "no such directory", "{out}"),
        ("generate-generator-wrong-kind", ["generate", "--generator", "{mask}", "--out", "{out}"],
         "expected 'stylegan2'", "{out}"),
    ]


def reenact_rows():
    tiny = ["reenact", "--config", "tiny", "--out", "{out}"]
    weights = ["reenact", "--generator", "{gen}", "--mask-net", "{mask}", "--out", "{out}"]
    return [
        ("reenact-out-under-file", ["reenact", "--config", "tiny", "--out", "{file}/r"],
         "is not a folder", "{file}/r"),
        ("reenact-out-not-empty", ["reenact", "--config", "tiny", "--out", "{full}"],
         "not empty (use --overwrite)", "{full}"),
        ("reenact-nan-codes", tiny + ["--sources", "{tiny_nan_codes}", "--targets",
                                      "{tiny_nan_codes}"], "nan or inf", "{out}"),
        ("reenact-nan-codes-weights", weights + ["--sources", "{tiny_nan_codes}", "--targets",
                                                 "{tiny_nan_codes}"], "nan or inf", "{out}"),
        ("reenact-wrong-code-shape", weights + ["--sources", "{wrong_codes}"], "shape (2, 7)",
         "{out}"),
        ("reenact-string-codes", weights + ["--sources", "{str_codes}"], "str_codes", "{out}"),
        ("reenact-text-codes", weights + ["--sources", "{text}"], "notes.txt", "{out}"),
        ("reenact-missing-codes", weights + ["--sources", "{missing}.npy"], "no such", "{out}"),
        ("reenact-inf-mean-latent", tiny + ["--mean-latent", "{tiny_inf_mean}"], "nan or inf",
         "{out}"),
        ("reenact-inf-mean-latent-weights", weights + ["--mean-latent", "{tiny_inf_mean}"],
         "nan or inf", "{out}"),
        ("reenact-mean-latent-wrong-size", weights + ["--mean-latent", "{wrong_codes}"],
         "expected 64 floats", "{out}"),
        ("reenact-truncation-range", tiny + ["--truncation", "-1"], "--truncation", "{out}"),
        ("reenact-num-pairs-zero", tiny + ["--num-pairs", "0"], "--num-pairs", "{out}"),
        ("reenact-batch-size-zero", tiny + ["--batch-size", "0"], "--batch-size", "{out}"),
        ("reenact-mask-net-missing", ["reenact", "--generator", "{gen}", "--mask-net", "{missing}",
                                      "--out", "{out}"], "no such directory", "{out}"),
        ("reenact-mask-net-wrong-kind", ["reenact", "--generator", "{gen}", "--mask-net", "{gen}",
                                         "--out", "{out}"], "expected 'mask_net'", "{out}"),
    ]


def driving_rows():
    video = ["reenact", "--generator", "{gen}", "--mask-net", "{mask}", "--e4e", "{e4e}",
             "--out", "{out}", "--sources", "{astronaut}", "--driving", "{clip}"]
    tiny = ["reenact", "--config", "tiny", "--out", "{out}"]
    return [
        ("driving-without-sources", tiny + ["--driving", "{clip}"], "--driving needs --sources",
         "{out}"),
        ("photos-e4e-for-another-generator", video[:-2] + ["--targets", "{astronaut}"],
         "--generator: a 64px generator with style_dim 64", "{out}"),
        ("driving-with-targets", video + ["--targets", "{astronaut}"], "--driving replaces",
         "{out}"),
        ("driving-missing-clip", video[:-1] + ["{missing}.mp4"], "no_such", "{out}"),
        ("driving-text-clip", video[:-1] + ["{text}"], "notes.txt", "{out}"),
        ("driving-face-not-a-point", video + ["--face", "left"], "--face 'left'", "{out}"),
        ("driving-face-outside", video + ["--face", "500,20"], "outside the video's 96x80",
         "{out}"),
        ("driving-face-without-driving", tiny + ["--face", "10,10"], "--face is for --driving",
         "{out}"),
        ("driving-save-track-without-driving", tiny + ["--save-track"],
         "--save-track is for --driving", "{out}"),
        ("driving-side-by-side-without-driving", tiny + ["--side-by-side"],
         "--side-by-side is for --driving", "{out}"),
    ]


def invert_rows():
    def invert(*images, out="{out}", e4e="{e4e}", extra=()):
        return ["invert", *images, "--e4e", e4e, "--out", out, *extra]
    return [
        ("invert-missing-image", invert("{missing}.png"), "no such", "{out}"),
        ("invert-truncated-png", invert("{png_trunc}"), "face_truncated.png", "{out}"),
        ("invert-small-image", invert("{png_small}"), "64x64", "{out}"),
        ("invert-text-image", invert("{text}"), "notes.txt", "{out}"),
        ("invert-e4e-missing", invert("{png_trunc}", e4e="{missing}", extra=("--aligned",)),
         "no such directory",
         "{out}"),
        ("invert-e4e-wrong-kind", invert("{png_trunc}", e4e="{gen}", extra=("--aligned",)),
         "expected 'e4e'", "{out}"),
        ("invert-out-under-file", invert("{png_trunc}", out="{file}/i"), "is not a folder",
         "{file}/i"),
        ("invert-out-not-empty", invert("{png_trunc}", out="{full}"), "not empty (use --overwrite)",
         "{full}"),
        ("invert-batch-size-zero", invert("{png_trunc}", extra=["--batch-size", "0"]),
         "--batch-size", "{out}"),
        ("invert-generator-wrong-kind", invert("{png_trunc}", extra=["--aligned", "--generator",
                                                                      "{mask}"]),
         "expected 'stylegan2'", "{out}"),
    ]


TRAIN_FIELDS = [  # (override, expected) refused by the config check
    ("batch_size=0", "batch_size"), ("num_steps=-1", "num_steps"), ("log_every=0", "log_every"),
    ("eval_pairs=-3", "eval_pairs"), ("keep_checkpoints=0", "keep_checkpoints"),
    ("learning_rate=-1e-4", "learning_rate"), ("learning_rate=inf", "learning_rate"),
    ("weight_decay=nan", "weight_decay"), ("lambda_identity=-1.0", "lambda_identity"),
    ("lambda_shape=nan", "lambda_shape"), ("truncation=0.0", "truncation"),
    ("truncation=1.5", "truncation"), ("eval_batch_size=0", "eval_batch_size"),
    ("num_layers_control=0", "num_layers_control"), ("num_devices=-2", "num_devices"),
    ("deca_box_size_range=[2.0, 1.0]", "deca_box_size_range"),
    ("generator.size=48", "generator.size"), ("nosuch=1", "no field"),
    ("batch_size=[1]", "batch_size"), ("microbatch=sometimes", "microbatch"),
    ("memory_limit_gib=-2", "memory_limit_gib"),
]


def train_rows():
    rows = [(f"train-config-{o.split('=')[0]}-{i}",
             ["train", "--config", "tiny", "--workdir", "{out}", f"--config.{o}"], want, "{out}")
            for i, (o, want) in enumerate(TRAIN_FIELDS)]
    rows += [
        ("train-unknown-config", ["train", "--config", "nosuch", "--workdir", "{out}"],
         "unknown config", "{out}"),
        ("train-config-file-missing", ["train", "--config", "{missing}.py", "--workdir", "{out}"],
         "unknown config", "{out}"),
        ("train-workdir-under-file", ["train", "--config", "tiny", "--workdir", "{file}/w",
                                      "--config.num_steps=1"], "is not a folder", "{file}/w"),
        ("train-bad-override", ["train", "--config", "tiny", "--workdir", "{out}", "--config.x"],
         "unrecognised argument", "{out}"),
    ]
    return rows


def evaluate_rows():
    rows = [(f"evaluate-config-{o.split('=')[0]}-{i}",
             ["evaluate", "--workdir", "{work}", f"--config.{o}"], want, "{work}/eval")
            for i, (o, want) in enumerate(TRAIN_FIELDS)]
    rows += [
        ("evaluate-workdir-missing", ["evaluate", "--workdir", "{missing}"], "no config.json",
         "{missing}"),
        ("evaluate-no-checkpoints", ["evaluate", "--workdir", "{nockpt}"], "no checkpoint",
         "{nockpt}/checkpoints"),
        ("evaluate-bad-config-json", ["evaluate", "--workdir", "{badjson}"], "unreadable",
         "{badjson}/eval"),
        ("evaluate-step-missing", ["evaluate", "--workdir", "{work}", "--step", "99"],
         "--step 99", "{work}/eval"),
        ("evaluate-other-config", ["evaluate", "--workdir", "{other}"], "network_05",
         "{other}/eval"),
    ]
    return rows


def export_rows():
    export = ["export", "--workdir", "{work}"]
    return [
        ("export-out-under-file", export + ["--out", "{file}/mask"], "is not a folder",
         "{file}/mask"),
        ("export-torch-under-file", export + ["--out", "{out}", "--torch", "{file}/mask.pt"],
         "--torch", "{out}"),
        ("export-torch-is-folder", export + ["--out", "{out}", "--torch", "{full}"], "is a folder",
         "{out}"),
        ("export-out-not-empty", export + ["--out", "{full}"], "not empty", "{full}"),
        ("export-no-checkpoints", ["export", "--workdir", "{nockpt}", "--out", "{out}"],
         "no checkpoint", "{out}"),
        ("export-no-checkpoints-dir", ["export", "--workdir", "{nockpt}", "--out", "{out}"],
         "no checkpoint", "{nockpt}/checkpoints"),
        ("export-workdir-missing", ["export", "--workdir", "{missing}", "--out", "{out}"],
         "no config.json", "{out}"),
        ("export-step-missing", export + ["--out", "{out}", "--step", "99"], "--step 99", "{out}"),
        ("export-other-config", ["export", "--workdir", "{other}", "--out", "{out}"],
         "network_05", "{out}"),
    ]


def compare_rows():
    return [
        ("compare-nothing-given", ["compare"], "at least one checkpoint", None),
        ("compare-missing-file", ["compare", "--generator-pt", "{missing}.pt"], "no such", None),
        ("compare-text-file", ["compare", "--irse-pt", "{text}"], "notes.txt", None),
        ("compare-truncated-file", ["compare", "--mask-net-pt", "{trunc_mask_pt}"], "trunc_",
         None),
        ("compare-batch-zero", ["compare", "--mask-net-pt", MASK_NET_PT, "--batch-size", "0"],
         "--batch-size", None),
        ("compare-tolerance-nan", ["compare", "--mask-net-pt", MASK_NET_PT, "--tolerance",
                                   "mask-net=nan"], "--tolerance", None),
    ]


def dataset_rows():
    build = ["dataset", "build"]
    return [
        ("dataset-missing-source", build + ["{missing}", "--out", "{out}"], "not a folder",
         "{out}"),
        ("dataset-source-is-a-file", build + ["{text}", "--out", "{out}"], "not a folder", "{out}"),
        ("dataset-source-without-faces", build + ["{full}", "--out", "{out}"], "no photos",
         "{out}"),
        ("dataset-out-under-file", build + [FIXTURES_ALIGN, "--out", "{file}/data"], "afile",
         "{file}"),
        ("dataset-frame-stride-zero", build + [FIXTURES_ALIGN, "--out", "{out}", "--frame-stride",
                                               "0"], "--frame-stride", "{out}"),
        ("dataset-max-frames-negative", build + [FIXTURES_ALIGN, "--out", "{out}", "--max-frames",
                                                 "-1"], "--max-frames", "{out}"),
        ("invert-dataset-missing", ["invert", "--dataset", "{missing}", "--e4e", "{e4e}"],
         "no_such", "{missing}"),
        ("evaluate-dataset-missing", ["evaluate", "--workdir", "{work}", "--dataset", "{missing}"],
         "no_such", "{missing}"),
    ]


def demo_rows():
    tiny = ["demo", "--config", "tiny"]
    return [
        ("demo-no-models", ["demo"], "--config tiny", None),
        ("demo-refine-steps-text", tiny + ["--refine-steps", "a"], "--refine-steps", None),
        ("demo-batch-size-zero", tiny + ["--batch-size", "0"], "--batch-size", None),
        ("demo-video-limit-negative", tiny + ["--max-video-seconds", "-1"],
         "--max-video-seconds", None),
        ("demo-unknown-config", ["demo", "--config", "nosuch"], "unknown config", None),
        ("demo-generator-missing", ["demo", "--generator", "{missing}", "--mask-net", "{mask}",
                                    "--e4e", "{e4e}"], "no such directory", None),
    ]


ROW_BUILDERS = [convert_rows, generate_rows, reenact_rows, driving_rows, invert_rows, train_rows,
                evaluate_rows, export_rows, compare_rows, dataset_rows, demo_rows]
ROWS = [row for build in ROW_BUILDERS for row in build()]


def _fill(template, values):
    return None if template is None else template.format(**values)


def _snapshot(path):
    if path is None or not os.path.lexists(path):
        return None
    if os.path.isfile(path):
        return ["<file>"]
    return sorted(os.path.relpath(os.path.join(d, f), path)
                  for d, _, files in os.walk(path) for f in files)


def test_every_command_is_in_the_table():
    from stylemask_jax.cli import COMMANDS
    from stylemask_jax.commands.convert import NETWORKS
    commands = {row[1][0] for row in ROWS}
    assert commands == {name for name, *_ in COMMANDS}
    assert {row[1][1] for row in ROWS if row[1][0] == "convert"} == set(NETWORKS)


@pytest.mark.parametrize("name,argv,expected,out", ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_is_one_line_error(env, tmp_path, capsys, name, argv, expected, out):
    values = dict(env, out=str(tmp_path / "out"))
    argv = [_fill(a, values) for a in argv]
    out = _fill(out, values)
    before = _snapshot(out)
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("stylemask: error:")]
    assert code == 2, err
    assert len(lines) == 1, err
    assert expected.lower() in lines[0].lower(), lines[0]
    assert "Traceback" not in err, err
    assert _snapshot(out) == before, f"{out} changed"
    leftovers = [n for n in os.listdir(env["root"]) + os.listdir(tmp_path) if n.startswith(".tmp-")]
    assert not leftovers


def test_export_torch_failure_leaves_neither_output(env, tmp_path, monkeypatch):
    """A failure while writing the second output (the .pt) leaves neither output behind."""
    from convert_weights import torch_writer

    def broken(*args, **kwargs):
        raise OSError("disk full (simulated)")
    monkeypatch.setattr(torch_writer, "write_torch_file", broken)
    out, pt = tmp_path / "mask", tmp_path / "mask.pt"
    with pytest.raises(OSError, match="simulated"):
        main(["export", "--workdir", env["work"], "--out", str(out), "--torch", str(pt)])
    assert sorted(os.listdir(tmp_path)) == []


def test_truncated_png_error_is_on_its_own_line(env, tmp_path, capfd):
    """The progress bar of the failed batch is closed before the error line is printed."""
    code = main(["invert", env["png_trunc"], "--e4e", env["e4e"], "--out", str(tmp_path / "o")])
    err = capfd.readouterr().err
    assert code == 2
    error_lines = [line for line in err.splitlines() if "stylemask: error:" in line]
    assert len(error_lines) == 1 and error_lines[0].startswith("stylemask: error:"), err
    assert not os.path.exists(tmp_path / "o")


@pytest.mark.parametrize("module,argv,expected", [
    ("stylemask_jax.cli", ["export", "--workdir", "{missing}", "--out", "{file}/x"],
     "is not a folder"),
    ("convert_weights", ["stylegan2", "{trunc_pt}", "{out}"], "trunc_"),
    ("stylemask_jax.cli", ["train", "--config", "tiny", "--workdir", "{out}",
                           "--config.eval_pairs=-3"], "eval_pairs"),
])
def test_as_a_subprocess(env, tmp_path, module, argv, expected):
    values = dict(env, out=str(tmp_path / "out"))
    argv = [_fill(a, values) for a in argv]
    result = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True,
                            cwd=ROOT, env=dict(os.environ), timeout=600)
    lines = [line for line in result.stderr.splitlines() if line.startswith("stylemask: error:")]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "out")


def test_driving_error_is_the_only_line_on_stderr(env, tmp_path):
    """A --driving run starts ffmpeg after JAX's threads exist: no fork warning may join the
    error line (imageio-ffmpeg's reader runs without a preexec_fn, `photos.video`)."""
    argv = ["reenact", "--config", "tiny", "--e4e", env["e4e"], "--sources", env["astronaut"],
            "--driving", env["clip"], "--face", "500,20", "--out", str(tmp_path / "out")]
    result = subprocess.run([sys.executable, "-m", "stylemask_jax.cli", *argv],
                            capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "stylemask: error: --face 500,20: outside the video's 96x80 frames"], result.stderr
    assert not os.path.exists(tmp_path / "out")


def test_usage_error_is_argparse_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--workdir"])
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err
