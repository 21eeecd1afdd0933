"""Reenactment throughput at the FFHQ-1024 layout: the jitted JAX batch vs the official per-pair loop.

    python -m benchmarks.reenact                       # JAX batches 1 and 8 vs the torch loops
    python -m benchmarks.reenact --batches 1,8,32 --impls jax
    python -m benchmarks.reenact --passes 1 --outputs all   # quicker: one pass, full pairs only

Random weights (speed does not depend on them), float32, 12 controlled layers, truncation 0.7.
A "pair" is one source and one target code; `--outputs all` makes the source, target and
reenacted 1024x1024 images of each pair, `reenacted` only the reenacted image.

  jax    `stylemask_jax.reenact.make_reenact_fn` on (B, 18, 512) W+ codes: style codes, masks,
         mixing, and one generator call on the 3B batch (source | target | reenacted), or on
         the B reenacted images only (`outputs='reenacted'`). The W+ codes are computed
         beforehand (the mapping network is ~0.1% of the work).
  torch  the official inference loop (run_inference.py of StelaBou/StyleMask: `reenact_pair`,
         one pair at a time) in its PyTorch formulation, stylemask_jax/reference/stylegan2.py
         (per-sample weights, grouped convs, conv_transpose + blur) and the torch mask network of
         stylemask_jax/reference/stylemask.py, under no_grad, batch 1: z -> truncated W+ for
         source and target, their style codes, the source image and the target image (the
         official loop always synthesizes both), the mask network, mixing, and the reenacted
         image. `torch-reenacted` is the same loop without the source and target images: the
         fairest comparison for the reenacted-only JAX path. (The official code also pools each
         1024 image to 256, and runs the mapping network twice per code; both are left out, a
         negligible share of the work.) Its per-pair cost does not depend on B, so it is timed
         per pair and every JAX batch is compared with it.

Each (implementation, outputs, batch) runs in its own worker process: nothing XLA allocated or
spun up is in the torch process and vice versa (measured: XLA's threads stay idle while torch runs
in the same process, and the torch cost per pair is unchanged; the old 0.037 pairs/s was the
load of a shared machine; see benchmarks/results/reenact.md). The worker makes the first call under the RSS
sampler (compile s, time to first result, peak memory: benchmarks/harness.py explains "RSS peak"
and "XLA total"), `--warmup` - 1 more untimed calls, then `--iters` timed calls (wall time and
process CPU time, all threads). The list of workers runs `--passes` times, so JAX and torch
processes alternate and see similar load on a shared machine; a row's best / median / CPU
figures are over the timed calls of all passes. Ratios (JAX / official loop, pairs/s) are given
from the best calls, the median calls and the median CPU times; on a loaded machine the CPU-time
ratio is the one that varies least. A JAX batch whose XLA total exceeds 85% of the available RAM
is compiled (for its memory figure) but not run, unless `--force`.
"""

from __future__ import annotations

import statistics
import sys
import time

from benchmarks import harness

MODULE = "benchmarks.reenact"
NUM_CONTROL, TRUNCATION = 12, 0.7
OUTPUTS = ("all", "reenacted")  # as stylemask_jax.reenact.OUTPUTS (not imported: no jax here)
JAX_WHOLE = "jax-whole-batch"


def build_jax(size: int, batch: int, outputs: str = "all", chunk: str = "auto"):
    """(call, compile seconds, XLA memory dict) for `make_reenact_fn` on B pairs of W+ codes
    (chunk "auto": the library's choice for this backend; "whole": the batch at once)."""
    import jax
    import jax.numpy as jnp
    from stylemask_jax.models.mask_net import MaskNet, init_mask_net
    from stylemask_jax.models.stylegan2 import Generator, init_variables, mean_latent
    from stylemask_jax.reenact import make_encode_fn, make_reenact_fn

    gen = Generator.from_arch(harness.arch_for(size))
    gvars = jax.jit(lambda key: init_variables(gen, key))(jax.random.key(0))
    mask_net = MaskNet(tuple(gen.style_dims[:NUM_CONTROL]))
    mvars = init_mask_net(mask_net, jax.random.key(1))
    latent = jax.jit(lambda v: mean_latent(gen, v, jax.random.key(2)))(gvars)
    encode = make_encode_fn(gen, "z", TRUNCATION)
    z = jax.random.normal(jax.random.key(3), (2, batch, gen.style_dim), jnp.float32)
    w_src, w_tgt = encode(gvars, z[0], latent), encode(gvars, z[1], latent)
    jax.block_until_ready((gvars, mvars, w_src, w_tgt))
    start = time.perf_counter()
    fn = make_reenact_fn(gen, mask_net, outputs=outputs, chunk=None if chunk == "whole" else "auto")
    compiled = fn.lower(gvars, mvars, w_src, w_tgt).compile()
    compile_s = time.perf_counter() - start
    call = lambda: jax.block_until_ready(compiled(gvars, mvars, w_src, w_tgt))  # noqa: E731
    return call, compile_s, harness.xla_memory(compiled)


def build_torch(size: int, outputs: str = "all"):
    """one_pair(): the official per-pair inference step with the torch references, batch 1
    (`outputs='reenacted'`: without the source and target images)."""
    import numpy as np
    import torch
    harness.set_torch_threads()
    from stylemask_jax.reference.stylegan2 import build_generator, random_state_dict
    from stylemask_jax.reference.stylemask import TorchMaskNet, mix_styles

    arch = harness.arch_for(size)
    gen = build_generator(random_state_dict(arch, 0), arch)
    torch.manual_seed(0)
    widths = [arch["channels"][i // 2] for i in range(min(NUM_CONTROL, 2 * len(arch["channels"]) - 1))]
    mask_net = TorchMaskNet(widths).float().eval()
    rng = np.random.default_rng(3)
    with torch.no_grad():
        latent = gen.mapping(torch.from_numpy(rng.standard_normal((4096, 512)).astype(np.float32))).mean(0)
    z = torch.from_numpy(rng.standard_normal((2, 1, 512)).astype(np.float32))

    def one_pair():
        with torch.no_grad():
            w_src = gen.wplus(z[0], "z", TRUNCATION, latent)
            w_tgt = gen.wplus(z[1], "z", TRUNCATION, latent)
            s_src, s_tgt = gen.style_codes(w_src), gen.style_codes(w_tgt)
            images = ()
            if outputs == "all":
                images = gen.synthesize(s_src, w_src), gen.synthesize(s_tgt, w_tgt)
            mixed = mix_styles(mask_net(s_src, s_tgt), s_src, s_tgt)
            return images + (gen.synthesize(mixed, w_src),)
    return one_pair


def process_threads() -> int:
    import os
    return len(os.listdir("/proc/self/task"))


def worker_run(spec: dict) -> dict:
    """One implementation in this process alone: the first call (memory, time to first result),
    `warmup` - 1 more untimed calls, `iters` timed calls (wall and process CPU seconds)."""
    out = {"load_begin": harness.load_average()}
    if spec["lib"].startswith("jax"):
        call, out["compile_s"], memory = build_jax(spec["size"], spec["batch"], spec["outputs"],
                                                   "whole" if spec["lib"] == JAX_WHOLE else "auto")
        out.update(memory)
        if memory["xla_total"] > 0.85 * harness.available_bytes() and not spec.get("force"):
            return dict(out, skipped=f"not run: XLA total {memory['xla_total'] / 2**30:.1f} GiB > "
                        f"85% of the {harness.available_bytes() / 2**30:.1f} GiB available")
    else:
        import torch
        call = build_torch(spec["size"], spec["outputs"])
        out["torch_threads"] = torch.get_num_threads()
    with harness.RssSampler() as rss:
        start = time.perf_counter()
        call()
        first = time.perf_counter() - start
    out.update(first_s=first, first_result_s=first + out.get("compile_s", 0.0),
               rss_peak=rss.peak_delta, threads=process_threads())
    timing = harness.time_calls(call, max(spec["warmup"] - 1, 0), spec["iters"])
    return dict(out, times=timing["times_s"], cpu=timing["cpu_times_s"])


WORKERS = {"run": worker_run}


# -- parent ----------------------------------------------------------------------------------

def configurations(args) -> list[tuple[str, str, int]]:
    """(lib, outputs, batch) in the order one pass runs them: each torch loop next to the JAX
    batches it is compared with, so that JAX and torch processes alternate."""
    configs = []
    for out in args.outputs:
        for batch in args.batches:
            for lib in ("jax", JAX_WHOLE):
                if lib in args.impls:
                    configs.append((lib, out, batch))
            if "torch" in args.impls and batch == args.batches[0]:
                configs.append(("torch", out, 1))
    return configs


def run_all(args):
    results = {}
    for _ in range(args.passes):
        for lib, out, batch in configurations(args):
            spec = dict(impl="run", lib=lib, outputs=out, size=args.size, batch=batch,
                        warmup=args.warmup, iters=args.iters, force=args.force)
            results.setdefault((lib, out, batch), []).append(
                harness.run_worker(MODULE, spec, args.timeout))
    print(report(args, results))


def summarize(runs: list[dict], batch: int) -> dict:
    """Per-pair seconds over the timed calls of all passes: best (min), median wall, median
    CPU; the first pass's first-call figures; errors and loads."""
    times = [t / batch for r in runs for t in r.get("times", [])]
    cpu = [t / batch for r in runs for t in r.get("cpu", [])]
    first = next((r for r in runs if "first_s" in r), runs[0] if runs else {})
    note = "; ".join(sorted({r.get("error") or r.get("skipped") or "" for r in runs} - {""}))
    return dict(first, best=min(times) if times else None,
                median=statistics.median(times) if times else None,
                cpu_median=statistics.median(cpu) if cpu else None, n=len(times), note=note,
                loads=[r.get("load_start") for r in runs])


def report(args, results: dict) -> str:
    sm = {key: summarize(runs, key[2]) for key, runs in results.items()}
    official = sm.get(("torch", "all", 1), {})
    loads = [f"{lib}/{out}/B{b}: {', '.join(s['loads'])}" for (lib, out, b), s in sm.items()]
    out = [harness.machine_header(f"StyleMask reenactment, {args.size} layout, float32, random "
                                  f"weights, {NUM_CONTROL} controlled layers"),
           f"each row: its own worker process per pass ({args.passes} passes, alternating JAX and "
           f"torch processes); per worker {max(args.warmup, 1)} untimed call(s) (the first one "
           f"measures compile, first result and memory), then {args.iters} timed call(s)",
           "load average (1/5/15 min) at the start of each worker:", *("  " + line for line in loads), ""]
    rows = []
    for (lib, outs, batch), s in sm.items():
        name = lib if lib.startswith("jax") else ("torch official loop" if outs == "all" else "torch reenacted-only loop")
        ratios = []
        for ref in (official, sm.get(("torch", "reenacted", 1), {})):
            cell = "-"
            if lib.startswith("jax") and s.get("best") and ref.get("best") and (ref is official or outs == "reenacted"):
                cell = " / ".join(harness.times(ref[k] / s[k]) for k in ("best", "median", "cpu_median"))
            ratios.append(cell)
        rows.append([batch, name, outs, harness.fmt(s.get("compile_s")), harness.fmt(s.get("first_result_s")),
                     harness.fmt(s.get("best"), ".2f"), harness.fmt(s.get("median"), ".2f"),
                     harness.fmt(s.get("cpu_median"), ".2f"), harness.fmt(s.get("best") and 1 / s["best"], ".3f"),
                     harness.fmt(s.get("median") and 1 / s["median"], ".3f"), s.get("n", 0),
                     harness.mib(s.get("rss_peak")), harness.mib(s.get("xla_total")), *ratios, s["note"]])
    out.append(harness.markdown_table(
        ["batch", "impl", "outputs", "compile s", "first result s", "best s/pair", "median s/pair",
         "CPU s/pair", "pairs/s best", "pairs/s median", "timed calls", "RSS peak MiB",
         "XLA total MiB", "vs official loop (best / median / CPU)",
         "vs torch reenacted-only loop (best / median / CPU)", "note"], rows))
    out += ["", "s/pair: seconds per call / pairs per call (JAX: batch B; torch: one pair per call). "
                "best: the fastest timed call over all passes (least disturbed by other processes); "
                "median: the median timed call; CPU: the median process CPU time (all threads), which "
                "varies least with other processes' load. Ratios: torch s/pair / JAX s/pair. compile s, "
                "first result s, RSS peak and XLA total are from the first pass: JAX = lower + compile "
                "+ first call; torch = the first pair (no compilation). RSS peak: worker RSS during the "
                "first call minus RSS before it (weights, inputs, compiled code excluded). XLA total: "
                "the JAX executable's memory_analysis(), arguments (weights) + outputs + temporaries."]
    return "\n".join(out)


def add_arguments(parser):
    parser.add_argument("--batches", type=harness.parse_ints, default=[1, 8],
                        help="JAX pairs per call, comma-separated (default 1,8)")
    parser.add_argument("--size", type=int, default=1024,
                        help="generator layout (default 1024, the paper's; smaller for a quick check)")
    parser.add_argument("--impls", type=harness.parse_choices(("jax", JAX_WHOLE, "torch")),
                        default=["jax", "torch"],
                        help=f"jax,{JAX_WHOLE},torch (default jax,torch); {JAX_WHOLE}: JAX with the "
                             "whole batch through the generator at once (no chunks on a CPU: the "
                             "formulation before reenact.synthesis_chunk)")
    parser.add_argument("--outputs", type=harness.parse_choices(OUTPUTS), default=list(OUTPUTS),
                        help="all,reenacted (default both)")
    parser.add_argument("--passes", type=int, default=2,
                        help="times the list of worker processes runs, alternating (default 2)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed calls per worker, the first one included (default 1)")
    parser.add_argument("--iters", type=int, default=2, help="timed calls per worker and pass (default 2)")
    parser.add_argument("--force", action="store_true",
                        help="run JAX batches even when XLA's memory estimate exceeds the RAM")
    parser.add_argument("--timeout", type=float, default=5400, help="seconds per worker")


def main(argv=None):
    return harness.main(__doc__, add_arguments, run_all, WORKERS, argv)


if __name__ == "__main__":
    sys.exit(main())
