"""W+ codes at scale: inverting a dataset and reading evaluation pairs, time and peak memory.

    python -m benchmarks.dataset_scale                      # 500 and 4000 faces, 10000 pairs
    python -m benchmarks.dataset_scale --sizes 500,4000,16000 --evaluate-pairs 200,800

1. `invert_dataset` on stand-in datasets of each of `--sizes` faces (synthetic 128x128 photos in
   20 identity folders, aligned by `benchmarks.dataset.ResizeAligner`: a resize), with the tests'
   small random encoder (`TinyEncoder` of tests/test_dataset_inference.py with 18 W+ rows: e4e's
   interface and output, a fraction of its cost; the tiny config's e4e takes about 1 s a face
   on 2 cores). Seconds (wall and CPU), milliseconds per face, the worker's peak RSS (the whole
   process) and its growth during the call, next to the size of the codes written.
2. `--pairs` cross pairs of the largest dataset read as `evaluate_dataset` reads them
   (`datasets.evaluate.pair_inputs`, `--batch-size` pairs a batch: both codes and both crops),
   after one pass that gathers the codes alone, with the codes as (`--passes` alternating
   passes over the three, one worker each):
   view    `load_codes(...)`, each batch's rows read from the files (what evaluate does);
   all     `np.asarray(load_codes(...))`, every code in memory (what load_codes returned before);
   memmap  `np.load(block, mmap_mode="r")`, rows gathered from a memory map.
   Seconds of each pass (and CPU seconds of the second) and the peak RSS growth from before the
   codes are opened.
3. With `--evaluate-pairs N,M,..`: the whole `evaluate_dataset` (configs/tiny.py's random
   networks, generator widened to 512 as in the demo) on N (then M, ...) cross pairs of the
   largest dataset, with random codes of its generator's shape saved over that dataset's codes
   (after part 2; in 16 blocks, as 16 processes would): seconds, and peak RSS against the
   number of pairs.
Every measurement runs in a fresh worker process (`benchmarks.harness`); datasets are built
(in their own workers) under `--workdir`, kept there for the next run if it is given.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from benchmarks import harness

IDENTITIES = 20
PHOTO_SIDE = 128
N_STYLES = 18                         # e4e's W+ rows for a 1024 generator
READ_MODES = ("view", "all", "memmap")
BLOCKS = 16                           # the evaluation's codes: as written by 16 processes


def _dataset_dir(workdir: str, num: int) -> str:
    return os.path.join(workdir, f"faces_{num}")


def build_worker(spec: dict) -> dict:
    """Writes `num` synthetic photos and builds them (or finds the earlier build)."""
    import numpy as np
    from PIL import Image
    from benchmarks.dataset import ResizeAligner
    from stylemask_jax.datasets import build_dataset, load_dataset
    root = spec["root"]
    src = os.path.join(root, "src")
    rng = np.random.default_rng(spec["num"])
    for k in range(spec["num"]):
        path = os.path.join(src, f"id{k % IDENTITIES:02d}", f"{k:05d}.png")
        if not os.path.isfile(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            blocks = rng.integers(0, 256, (PHOTO_SIDE // 8, PHOTO_SIDE // 8, 3))
            Image.fromarray(np.kron(blocks, np.ones((8, 8, 1))).astype(np.uint8)).save(path)
    start = time.perf_counter()
    report = build_dataset(src, os.path.join(root, "data"), aligner=ResizeAligner(),
                           progress=False)
    seconds = time.perf_counter() - start
    load_dataset(report.path).table                     # cached on disk, for make_pairs
    return {"path": report.path, "num_examples": report.num_examples, "build_s": seconds,
            "skipped": report.skipped, "runner": report.runner}


def _tiny_encoder():
    import jax
    import jax.numpy as jnp
    tests = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
    sys.path.insert(0, tests)
    from test_dataset_inference import TinyEncoder
    encoder = TinyEncoder(n_styles=N_STYLES)
    return encoder, encoder.init(jax.random.key(0), jnp.zeros((1, 256, 256, 3)))


def invert_worker(spec: dict) -> dict:
    """invert_dataset from nothing (earlier codes removed) on one dataset."""
    from stylemask_jax.datasets import load_dataset
    from stylemask_jax.datasets.invert import CODES_DIR, invert_dataset
    dataset = load_dataset(spec["path"])
    shutil.rmtree(os.path.join(dataset.path, CODES_DIR), ignore_errors=True)
    encoder, variables = _tiny_encoder()
    with harness.RssSampler() as rss:
        start, cpu = time.perf_counter(), harness.cpu_seconds()
        path = invert_dataset(dataset, encoder, variables, batch_size=spec["batch_size"],
                              progress=False)
        seconds, cpu = time.perf_counter() - start, harness.cpu_seconds() - cpu
    return {"num_examples": len(dataset), "invert_s": seconds, "cpu_s": cpu,
            "rss_start": rss.baseline,
            "rss_peak": rss.peak, "rss_growth": rss.peak_delta,
            "codes_bytes": os.path.getsize(path)}


def read_worker(spec: dict) -> dict:
    """Cross pairs of one dataset read batch by batch, the codes opened as spec['mode']."""
    import numpy as np
    from stylemask_jax.datasets import load_codes, load_dataset, make_pairs
    from stylemask_jax.datasets.evaluate import pair_inputs
    from stylemask_jax.datasets.invert import CODES_DIR
    dataset = load_dataset(spec["path"])
    pairs = make_pairs(dataset, "cross", spec["pairs"], seed=0)
    batch = spec["batch_size"]
    with harness.RssSampler() as rss:
        start = time.perf_counter()
        if spec["mode"] == "view":
            codes = load_codes(dataset)
        elif spec["mode"] == "all":
            codes = np.asarray(load_codes(dataset))
        else:
            codes = np.load(os.path.join(dataset.path, CODES_DIR, "wplus-00000-of-00001.npy"),
                            mmap_mode="r")
        opened = time.perf_counter()
        for k in range(0, len(pairs), batch):
            np.asarray(codes[pairs[k:k + batch, 0]]), np.asarray(codes[pairs[k:k + batch, 1]])
        gathered, codes_growth = time.perf_counter(), max(rss.peak, harness.current_rss())
        cpu = harness.cpu_seconds()
        for k in range(0, len(pairs), batch):
            pair_inputs(dataset, codes, pairs[k:k + batch])
        done, cpu = time.perf_counter(), harness.cpu_seconds() - cpu
    return {"open_s": opened - start, "codes_s": gathered - opened, "pairs_s": done - gathered,
            "pairs_cpu_s": cpu,
            "rss_start": rss.baseline, "codes_growth": codes_growth - rss.baseline,
            "rss_growth": rss.peak_delta, "codes_bytes": int(np.prod(codes.shape)) * 4,
            "num_pairs": len(pairs)}


def evaluate_worker(spec: dict) -> dict:
    """The whole evaluate_dataset with the tiny config's random networks."""
    import jax
    import ml_collections
    import numpy as np
    from configs import tiny
    from stylemask_jax.datasets import (evaluate_dataset, load_dataset, make_pairs, save_codes,
                                        shard_bounds)
    from stylemask_jax.datasets.invert import CODES_DIR
    from stylemask_jax.models.mask_net import init_mask_net
    from stylemask_jax.training.networks import build_networks
    config = ml_collections.ConfigDict(tiny.get_config().to_dict())
    config.generator.style_dim = 512
    nets, frozen = build_networks(config)
    params = init_mask_net(nets.mask_net, jax.random.key(0))["params"]
    dataset = load_dataset(spec["path"])
    gen = nets.generator
    shutil.rmtree(os.path.join(dataset.path, CODES_DIR), ignore_errors=True)
    rng = np.random.default_rng(0)
    for p in range(BLOCKS):
        start, stop = shard_bounds(len(dataset), p, BLOCKS)
        codes = rng.normal(size=(stop - start, gen.n_latent, gen.style_dim)).astype(np.float32)
        save_codes(dataset, codes, process_index=p, process_count=BLOCKS)
    pairs = make_pairs(dataset, "cross", spec["pairs"], seed=0)
    with harness.RssSampler() as rss:
        start = time.perf_counter()
        evaluate_dataset(dataset, pairs, nets, frozen, params, config,
                         batch_size=spec["batch_size"], progress=False)
        seconds = time.perf_counter() - start
    return {"evaluate_s": seconds, "num_pairs": len(pairs), "rss_start": rss.baseline,
            "rss_growth": rss.peak_delta,
            "codes_bytes": len(dataset) * gen.n_latent * gen.style_dim * 4}


WORKERS = {"build": build_worker, "invert": invert_worker, "read": read_worker,
           "evaluate": evaluate_worker}


def add_arguments(parser) -> None:
    parser.add_argument("--sizes", type=harness.parse_ints, default=[500, 4000],
                        help="dataset sizes (faces), comma-separated")
    parser.add_argument("--pairs", type=int, default=10000, help="pairs read (part 2)")
    parser.add_argument("--batch-size", type=int, default=8, help="faces / pairs per batch")
    parser.add_argument("--passes", type=int, default=2, help="passes over the codes modes "
                        "of part 2 (alternating order)")
    parser.add_argument("--evaluate-pairs", type=harness.parse_ints, default=[],
                        help="pair counts for the whole evaluate_dataset (part 3; default: "
                             "skip it)")
    parser.add_argument("--workdir", default=None,
                        help="where the datasets are built and kept (default: a temporary "
                             "folder, removed at the end)")


def _check(result: dict) -> dict:
    if "error" in result:
        raise SystemExit(f"worker failed: {result['error']}")
    return result


def run(args) -> None:
    workdir = args.workdir or tempfile.mkdtemp(prefix="dataset-scale-")
    try:
        _run(args, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(args, workdir: str) -> None:
    module = "benchmarks.dataset_scale"
    mib = lambda b: f"{b / harness.MIB:,.1f}"  # noqa: E731
    print(harness.machine_header("W+ codes at scale: invert_dataset and pair reading"))
    print(f"load average at start: {harness.load_average()}\n")
    paths, rows = {}, []
    for num in args.sizes:
        built = _check(harness.run_worker(module, {"impl": "build", "num": num,
                                                   "root": _dataset_dir(workdir, num)}))
        paths[num] = built["path"]
        print(f"{built['num_examples']} faces: " + ("built before" if built["skipped"] else
              f"built in {built['build_s']:.0f} s ({built['runner']})"))
    for num in args.sizes:
        r = _check(harness.run_worker(module, {"impl": "invert", "path": paths[num],
                                               "batch_size": args.batch_size}))
        rows.append([r["num_examples"], f"{r['invert_s']:.1f}", f"{r['cpu_s']:.1f}",
                     f"{r['invert_s'] / r['num_examples'] * 1e3:.1f}",
                     mib(r["process_max_rss"]), mib(r["rss_growth"]), mib(r["codes_bytes"]),
                     r["load_start"]])
    print("\n1. invert_dataset (tests' TinyEncoder, 18 W+ rows; batch "
          f"{args.batch_size})\n")
    print(harness.markdown_table(["faces", "seconds", "CPU s", "ms/face", "peak RSS MiB",
                                  "RSS growth MiB", "codes MiB", "load at start"], rows))

    largest = max(args.sizes)
    rows = []
    for mode in harness.alternating(list(READ_MODES), args.passes):
        r = _check(harness.run_worker(module, {"impl": "read", "mode": mode,
                                               "path": paths[largest], "pairs": args.pairs,
                                               "batch_size": args.batch_size}))
        rows.append([mode, f"{r['open_s']:.2f}", f"{r['codes_s']:.2f}", f"{r['pairs_s']:.1f}",
                     f"{r['pairs_cpu_s']:.1f}", mib(r["process_max_rss"]), mib(r["codes_growth"]),
                     mib(r["rss_growth"]), mib(r["codes_bytes"]), r["load_start"]])
    print(f"\n2. {args.pairs} cross pairs of the {largest}-face dataset read as "
          f"evaluate_dataset reads them ({args.batch_size} pairs a batch)\n")
    print(harness.markdown_table(["codes as", "open s", "codes s", "codes+crops s",
                                  "codes+crops CPU s", "peak RSS MiB", "growth after codes MiB",
                                  "growth after crops MiB", "all codes MiB", "load at start"],
                                 rows))
    print("open: load_codes (or np.load); codes: the pass gathering both codes of every pair; "
          "codes+crops: the pass of pair_inputs (both codes and both 256px crops, decoded), "
          "wall and process CPU time (CPU time varies less with the other processes' load); "
          "growth: peak RSS so far minus the RSS before the codes are opened.")

    if args.evaluate_pairs:
        rows = []
        for num_pairs in args.evaluate_pairs:
            r = _check(harness.run_worker(module, {"impl": "evaluate", "path": paths[largest],
                                                   "pairs": num_pairs,
                                                   "batch_size": args.batch_size}))
            rows.append([r["num_pairs"], f"{r['evaluate_s']:.0f}",
                         mib(r["process_max_rss"]), mib(r["rss_growth"]),
                         mib(r["codes_bytes"]), r["load_start"]])
        print(f"\n3. evaluate_dataset with configs/tiny networks on the {largest}-face dataset "
              f"({args.batch_size} pairs a batch; seconds include compiling)\n")
        print(harness.markdown_table(["pairs", "seconds", "peak RSS MiB", "RSS growth MiB",
                                      "all codes MiB", "load at start"], rows))
    print(f"\nload average at end: {harness.load_average()}")


if __name__ == "__main__":
    sys.exit(harness.main(__doc__, add_arguments, run, WORKERS))
