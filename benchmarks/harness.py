"""Shared machinery of the benchmarks: one `main()`, worker processes, timing, tables.

`main(__doc__, add_arguments, run, workers)` is every benchmark's entry point: it builds the
parser from the module docstring, and either runs one worker configuration (`--worker JSON`,
the `impl` key picks the function in `workers`) or `run(args)`, the parent.

Every configuration runs in its own worker process (`python -m benchmarks.NAME --worker JSON`),
so that peak memory is that configuration's alone and nothing compiled or allocated by one
configuration helps or hurts the next. The worker prints one `@@RESULT {json}` line; the parent
collects the results, computes the ratios and prints the table.

Peak memory as measured here:
  - "RSS peak": the largest resident set size of the worker process sampled every 2 ms (from
    /proc/self/statm) while the timed calls run, minus its RSS just before the first call (so
    weights, inputs and, for JAX, the compiled executable are excluded; activations and
    temporaries are what is counted). Freed memory that the allocator keeps is counted once.
  - "XLA total" (JAX only): from `compiled.memory_analysis()` of the executable, arguments +
    outputs + temporaries - aliased (donated) bytes: what XLA's buffer assignment allocates for one
    call (weights included, as arguments). "XLA temp" is the temporaries alone (activations and
    scratch). (On XLA:CPU `peak_memory_in_bytes` can be below the temporaries, so it is not used.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Callable

RESULT_TAG = "@@RESULT "
MIB = 1024 * 1024
CHANNELS_1024 = (512, 512, 512, 512, 512, 256, 128, 64, 32)  # generator resolutions 4 .. 1024


def main(doc: str, add_arguments: Callable, run: Callable, workers: dict | None = None,
         argv=None) -> int:
    """Parses the command line (description and epilog from `doc`) and dispatches: with
    `--worker JSON` (when `workers` is given) prints `workers[spec['impl']](spec)` as one
    `@@RESULT` line; otherwise calls `run(args)`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0],
                                     epilog="\n".join(doc.splitlines()[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    if workers:
        parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if workers and args.worker:
        spec = json.loads(args.worker)
        emit(workers[spec["impl"]](spec))
        return 0
    run(args)
    return 0


def parse_ints(text: str) -> list[int]:
    """'1,8' -> [1, 8] (for comma-separated options)."""
    return [int(t) for t in text.replace(" ", "").split(",") if t]


def parse_choices(allowed):
    """An argparse `type` for a comma-separated subset of `allowed`."""
    def parse(text: str) -> list[str]:
        items = [t for t in text.split(",") if t]
        bad = [t for t in items if t not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {','.join(allowed)}")
        return items
    return parse


def arch_for(size: int) -> dict:
    """The rosinality layout (channel multiplier 2) of a `size` generator."""
    import math
    n = int(math.log2(size)) - 1
    return dict(size=size, style_dim=512, n_mlp=8, lr_mlp=0.01, channels=list(CHANNELS_1024[:n]),
                blur_kernel=[1, 3, 3, 1])


def timed(fn, args, iters: int) -> tuple[float, float]:
    """(first call incl. compile in s, mean seconds per call afterwards) of a JAX function."""
    import jax
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(iters):
        out = fn(*args)
    jax.block_until_ready(out)
    return first, (time.perf_counter() - start) / iters


def load_average() -> str:
    """The 1/5/15-minute load averages, e.g. '1.92 2.40 2.71'."""
    return " ".join(open("/proc/loadavg").read().split()[:3])


# /proc/cpuinfo flag -> name, widest first
VECTOR_EXTENSIONS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"))


def cpu_model() -> str:
    """The CPU's model name and its widest vector extension (AVX2 vs AVX-512 changes the
    convolution throughput of XLA and torch differently, so figures of two machines differ)."""
    name, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    vector = next((label for flag, label in VECTOR_EXTENSIONS if flag in flags), None)
    return f"{name} ({vector})" if vector else name


def available_bytes() -> int:
    """MemAvailable of /proc/meminfo (bytes)."""
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def machine_header(title: str) -> str:
    """Lines describing the machine and the library versions (printed above each table)."""
    import jax
    lines = [title,
             f"machine: {cpu_model()}, {os.cpu_count()} cores, "
             f"{available_bytes() / 2**30:.1f} GiB available at start",
             f"jax {jax.__version__} ({jax.default_backend()}: "
             f"{', '.join(sorted({d.device_kind for d in jax.devices()}))} x{jax.device_count()})"]
    try:
        import torch
        lines.append(f"torch {torch.__version__} ({os.cpu_count()} threads)")
    except ImportError:
        lines.append("torch not installed")
    return "\n".join(lines)


def set_torch_threads() -> None:
    import torch
    torch.set_num_threads(os.cpu_count() or 1)


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (s). On a shared machine the CPU time
    of a call varies much less with other processes' load than its wall time does."""
    t = os.times()
    return t.user + t.system


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssSampler:
    """Context manager: samples this process's RSS every `interval` seconds in a thread.

    `peak_delta` (bytes) = max sampled RSS - RSS at entry."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.baseline, self.peak = interval, 0, 0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss())
            time.sleep(self.interval)

    def __enter__(self):
        self.baseline = self.peak = current_rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss())

    @property
    def peak_delta(self) -> int:
        return self.peak - self.baseline


def time_calls(fn: Callable[[], Any], warmup: int, iters: int,
               sync: Callable[[Any], Any] = lambda x: x) -> dict:
    """Calls `fn` `warmup` times, then `iters` timed times; `sync` waits for the result
    (jax.block_until_ready for JAX; torch on CPU is synchronous).

    Returns {'first_s': first warm-up call, 'times_s': [...], 'median_s', 'min_s',
    'cpu_times_s': [...] process CPU time of each timed call, 'cpu_s': their median} (seconds).
    """
    first = None
    for _ in range(warmup):
        start = time.perf_counter()
        sync(fn())
        first = time.perf_counter() - start if first is None else first
    times, cpu = [], []
    for _ in range(iters):
        start, cpu_start = time.perf_counter(), cpu_seconds()
        sync(fn())
        times.append(time.perf_counter() - start)
        cpu.append(cpu_seconds() - cpu_start)
    return {"first_s": first, "times_s": times, "median_s": statistics.median(times),
            "min_s": min(times), "cpu_times_s": cpu, "cpu_s": statistics.median(cpu)}


def alternating(configs: list, passes: int) -> list:
    """The worker order of `passes` passes over `configs`, every other pass reversed
    (A B, B A, A B, ...): each implementation runs first as often as last, so that on a shared
    machine both see the same drift in load."""
    order = []
    for p in range(passes):
        order += configs if p % 2 == 0 else configs[::-1]
    return order


def pooled_medians(runs: list[dict], per: float = 1.0) -> dict:
    """Median wall and median CPU seconds over the timed calls of all `runs` (worker results
    with 'times' and 'cpu' lists), divided by `per` (items per call); n = calls pooled."""
    wall = [t / per for r in runs for t in r.get("times", [])]
    cpu = [t / per for r in runs for t in r.get("cpu", [])]
    return {"median": statistics.median(wall) if wall else None,
            "cpu_median": statistics.median(cpu) if cpu else None, "n": len(wall)}


def xla_memory(compiled) -> dict:
    """Byte counts from a compiled executable's memory analysis (0 where unavailable); the
    total is what config.microbatch=auto compares with the memory limit."""
    from stylemask_jax.training.microbatch import step_bytes
    stats = compiled.memory_analysis()
    get = lambda name: int(getattr(stats, name, 0) or 0)  # noqa: E731
    return {"xla_total": step_bytes(compiled), "xla_temp": get("temp_size_in_bytes"),
            "xla_args": get("argument_size_in_bytes"), "xla_out": get("output_size_in_bytes"),
            "xla_alias": get("alias_size_in_bytes")}


def emit(result: dict) -> None:
    """Worker side: print the result line the parent parses."""
    result = dict(result, process_max_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  load_end=load_average())
    print(RESULT_TAG + json.dumps(result), flush=True)


def run_worker(module: str, spec: dict, timeout: float | None = None, echo: bool = True) -> dict:
    """Parent side: runs `python -m module --worker JSON` and returns its result dict.

    A worker that fails (out of memory, time-out, exception) gives {'error': reason}.
    """
    cmd = [sys.executable, "-m", module, "--worker", json.dumps(spec)]
    load = load_average()
    if echo:
        print(f"  [{time.strftime('%H:%M:%S')} load {load}] {json.dumps(spec)}", flush=True,
              file=sys.stderr)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "load_start": load}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return dict(json.loads(line[len(RESULT_TAG):]), load_start=load)
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    killed = " (killed: out of memory?)" if proc.returncode in (-9, 137) else ""
    return {"error": f"exit {proc.returncode}{killed}: {tail[:200]}", "load_start": load}


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; floats are printed as given (format them before)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = lambda row: "| " + " | ".join(c.rjust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in cells])


def fmt(value, spec: str = ".2f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def times(value) -> str:
    """A speed ratio cell: '4.20x', or '-' when there is none."""
    return fmt(value, ".2f") + ("x" if value else "")


def mib(value) -> str:
    return "-" if not value else f"{value / MIB:,.0f}"


def torch_stylemask(size: int, num_control: int = 12, seed: int = 0):
    """The torch reference models of one reenactment benchmark: (generator with random weights
    of the `size` layout, random mask network of the first `num_control` conv layers, the
    truncation mean W (512,) from 4096 mapped Gaussian codes), float32, eval mode."""
    import numpy as np
    import torch
    from stylemask_jax.reference.stylegan2 import build_generator, random_state_dict
    from stylemask_jax.reference.stylemask import TorchMaskNet

    arch = arch_for(size)
    gen = build_generator(random_state_dict(arch, seed), arch)
    torch.manual_seed(seed)
    widths = [arch["channels"][i // 2] for i in range(min(num_control, 2 * len(arch["channels"]) - 1))]
    mask_net = TorchMaskNet(widths).float().eval()
    z = np.random.default_rng(seed + 3).standard_normal((4096, 512)).astype(np.float32)
    with torch.no_grad():
        mean = gen.mapping(torch.from_numpy(z)).mean(0)
    return gen, mask_net, mean
