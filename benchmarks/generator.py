"""StyleGAN2 generator throughput and memory: jitted JAX vs the PyTorch reference formulation.

    python -m benchmarks.generator                          # 256 and 1024 layouts, batch 1 and 8
    python -m benchmarks.generator --sizes 1024 --batches 1 --iters 2
    python -m benchmarks.generator --breakdown              # + where the JAX time goes

Random weights (speed does not depend on them), float32, z -> image (mapping, styles,
synthesis with the stored noise buffers), rosinality layouts with channel multiplier 2
(256: 7 resolutions, 1024: 9; style_dim 512, 8 mapping layers).

Measured:
  jax      `compiling.jit(gen.apply)` of stylemask_jax.models.stylegan2 (batched modulated conv,
           polyphase up-sampling conv + separable blur). "compile s" is lower + compile.
  torch    stylemask_jax/reference/stylegan2.py under no_grad: per-sample modulated weights and
           grouped convs, conv_transpose2d (stride 2) + FIR blur as a depthwise conv2d after zero
           insertion: the official code's formulation (its CUDA kernels aside).
  roofline the generator's convolutions alone, as plain convs with the generator's shapes,
           each timed alone and summed, in JAX and in torch: every 3x3 style conv as a
           stride-1 3x3 conv. An up-sampling layer (transposed 3x3 conv, stride 2, from H x H)
           is counted as a stride-1 3x3 conv on the *input* H x H with the same Cin -> Cout:
           the transposed conv multiplies every input pixel with the 9 taps once, so the FLOPs
           are equal (a 3x3 conv on the 2H output would be 4x the FLOPs). The ToRGB 1x1 convs
           (Cout = 3: 0.3% of the FLOPs, but memory-bound, ~150 ms as XLA convs at 1024) are
           left out, as are the blur, modulation, demodulation, noise, bias and activations:
           all of that is the overhead the roofline does not contain, so it is a strict bound.
           "% of roofline" = plain-conv time / generator time.
  matmul   one jitted float32 4096^3 matrix product in XLA per round: what the cores reach on
           the best-shaped work. The generator's 3x3-conv GFLOPs over its time is quoted as a
           fraction of it ("generator / matmul"); `--breakdown` gives every layer's GFLOP/s
           (modulated, XLA plain conv, torch conv2d) next to it.

Per configuration, one worker process per library makes the first call alone (compile time,
first-call time, peak memory: see benchmarks/harness.py for "RSS peak" and "XLA total"), then
one timing worker runs `--warmup` + `--iters` rounds of (JAX generator, torch generator, JAX
plain convs, torch plain convs), so that all of them see the same load on a shared machine.
Times are the best (fastest) round, the one least disturbed by other processes, and ratios are
of best rounds; the median round and the median process CPU time per call (all threads; it
varies much less with other processes' load than wall time) are printed too. torch is not run
at a batch where batch 1's RSS peak times the batch exceeds 85% of the available RAM (the
reference at 1024 needs ~2.5 GiB per image), unless `--force`.
"""

from __future__ import annotations

import statistics
import sys
import time

from benchmarks import harness

MODULE = "benchmarks.generator"


def conv_shapes(size: int) -> list[dict]:
    """The roofline convs: (resolution, cin, cout, k, what) with equal FLOPs to the generator's
    3x3 style convs (ToRGB's 1x1 convs are left out, see the module docstring)."""
    channels = harness.arch_for(size)["channels"]
    shapes = [dict(res=4, cin=channels[0], cout=channels[0], k=3, what="conv 4")]
    for r in range(1, len(channels)):
        res = 4 * 2 ** r
        shapes.append(dict(res=res // 2, cin=channels[r - 1], cout=channels[r], k=3,
                           what=f"up-conv {res // 2}->{res}"))
        shapes.append(dict(res=res, cin=channels[r], cout=channels[r], k=3, what=f"conv {res}"))
    return shapes


def conv_flops(shape: dict, batch: int) -> float:
    return 2.0 * batch * shape["res"] ** 2 * shape["cin"] * shape["cout"] * shape["k"] ** 2


# -- the timed functions -----------------------------------------------------------------------

def build_jax(size: int, batch: int):
    """(call, compiled, compile seconds): the jitted JAX generator z -> image, random weights."""
    import jax
    import jax.numpy as jnp
    from stylemask_jax.compiling import jit
    from stylemask_jax.models.stylegan2 import Generator, init_variables

    gen = Generator.from_arch(harness.arch_for(size))
    variables = jit(lambda key: init_variables(gen, key))(jax.random.key(0))
    z = jax.random.normal(jax.random.key(1), (batch, 512), jnp.float32)
    jax.block_until_ready((variables, z))
    start = time.perf_counter()
    compiled = jit(lambda v, codes: gen.apply(v, codes)).lower(variables, z).compile()
    compile_s = time.perf_counter() - start
    return (lambda: jax.block_until_ready(compiled(variables, z))), compiled, compile_s


def build_torch(size: int, batch: int):
    """call(): the PyTorch reference generator z -> image under no_grad, random weights."""
    import numpy as np
    import torch
    harness.set_torch_threads()
    from stylemask_jax.reference.stylegan2 import build_generator, random_state_dict

    arch = harness.arch_for(size)
    gen = build_generator(random_state_dict(arch, 0), arch)
    z = torch.from_numpy(np.random.default_rng(1).standard_normal((batch, 512)).astype(np.float32))

    def call():
        with torch.no_grad():
            wplus = gen.wplus(z)
            return gen.synthesize(gen.style_codes(wplus), wplus)
    return call


def plain_convs(size: int, batch: int, library: str):
    """one_pass() -> (wall s, CPU s): every conv of conv_shapes run once, each timed alone and
    summed (inputs of ones created untimed; the speed of a conv does not depend on the values)."""
    if library == "jax":
        import jax
        import jax.numpy as jnp
        from stylemask_jax.compiling import jit
        conv = jit(lambda x, w: jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
        make = lambda s: (jnp.ones((batch, s["res"], s["res"], s["cin"]), jnp.float32),  # noqa: E731
                          jnp.full((s["k"], s["k"], s["cin"], s["cout"]), 0.01, jnp.float32))
        run = lambda x, w, s: jax.block_until_ready(conv(x, w))  # noqa: E731
    else:
        import torch
        harness.set_torch_threads()
        make = lambda s: (torch.ones(batch, s["cin"], s["res"], s["res"]),  # noqa: E731
                          torch.full((s["cout"], s["cin"], s["k"], s["k"]), 0.01))

        def run(x, w, s):
            with torch.no_grad():
                return torch.nn.functional.conv2d(x, w, padding=s["k"] // 2)

    def one_pass():
        wall = cpu = 0.0
        for s in conv_shapes(size):
            x, w = make(s)
            if library == "jax":
                jax.block_until_ready((x, w))
            start, cpu_start = time.perf_counter(), harness.cpu_seconds()
            run(x, w, s)
            wall += time.perf_counter() - start
            cpu += harness.cpu_seconds() - cpu_start
            del x, w
        return wall, cpu
    return one_pass


MATMUL_N = 4096


def matmul_roofline():
    """one_pass() -> (wall s, CPU s) of one jitted float32 MATMUL_N^3 matrix product in XLA:
    what this machine's cores reach on the best-shaped work (2 N^3 FLOPs)."""
    import jax
    import jax.numpy as jnp
    from stylemask_jax.compiling import jit
    a = jnp.full((MATMUL_N, MATMUL_N), 0.01, jnp.float32)
    product = jit(jnp.dot)
    jax.block_until_ready(product(a, a))

    def one_pass():
        start, cpu_start = time.perf_counter(), harness.cpu_seconds()
        jax.block_until_ready(product(a, a))
        return time.perf_counter() - start, harness.cpu_seconds() - cpu_start
    return one_pass


def matmul_gflops(seconds: float) -> float:
    return 2.0 * MATMUL_N ** 3 / seconds / 1e9


# -- workers ---------------------------------------------------------------------------------

def worker_memory(spec: dict) -> dict:
    """One configuration's first call alone: compile time, first-call time, peak memory."""
    out = {}
    if spec["lib"] == "jax":
        call, compiled, out["compile_s"] = build_jax(spec["size"], spec["batch"])
        out.update(harness.xla_memory(compiled))
    else:
        call = build_torch(spec["size"], spec["batch"])
    with harness.RssSampler() as rss:
        start = time.perf_counter()
        call()
        out["first_s"] = time.perf_counter() - start
    return dict(out, rss_peak=rss.peak_delta)


def worker_timing(spec: dict) -> dict:
    """Rounds of (JAX generator, torch generator, JAX plain convs, torch plain convs), so that
    every figure of a round sees the same machine load; one warm-up round first."""
    size, batch = spec["size"], spec["batch"]
    calls = {"jax": build_jax(size, batch)[0], "roof_jax": plain_convs(size, batch, "jax"),
             "roof_torch": plain_convs(size, batch, "torch"), "roof_matmul": matmul_roofline()}
    if spec["torch"]:
        calls["torch"] = build_torch(size, batch)
    times = {name: [] for name in calls}
    cpu = {name: [] for name in calls}
    for round_ in range(spec["warmup"] + spec["iters"]):
        for name, call in calls.items():
            start, cpu_start = time.perf_counter(), harness.cpu_seconds()
            result = call()
            elapsed = (time.perf_counter() - start, harness.cpu_seconds() - cpu_start)
            elapsed = result if name.startswith("roof") else elapsed
            if round_ >= spec["warmup"]:
                times[name].append(elapsed[0])
                cpu[name].append(elapsed[1])
    return {"times": times, "cpu": cpu}


def worker_breakdown(spec: dict) -> dict:
    """Per style layer: the JAX modulated conv (incl. up-sampling + blur) vs its plain conv."""
    import jax
    import jax.numpy as jnp
    from stylemask_jax.compiling import jit
    import numpy as np
    from stylemask_jax.models.stylegan2_layers import style_layer_channels
    from stylemask_jax.ops.modulated_conv import modulated_conv2d
    from stylemask_jax.ops.upfirdn import upsample2d

    batch, rng = spec["batch"], np.random.default_rng(0)
    channels = harness.arch_for(spec["size"])["channels"]
    plain = jit(lambda x, w: jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    modconv = {up: jit(lambda x, w, s, up=up: modulated_conv2d(x, w, s, upsample=up))
               for up in (False, True)}
    skip_up = jit(lambda x: upsample2d(x, (1, 3, 3, 1)))
    timed = lambda f: harness.time_calls(f, spec["warmup"], spec["iters"],  # noqa: E731
                                         jax.block_until_ready)["min_s"]
    import torch
    harness.set_torch_threads()

    def torch_conv(x, w):
        xt, wt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()), \
            torch.from_numpy(np.asarray(w).transpose(3, 2, 0, 1).copy())

        def call():
            with torch.no_grad():
                return torch.nn.functional.conv2d(xt, wt, padding=1)
        return call

    matmul = matmul_roofline()
    rows, res = [], 4
    for i, (cin, cout, up) in enumerate(style_layer_channels(channels)):
        x = jnp.asarray(rng.standard_normal((batch, res, res, cin)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((3, 3, cin, cout)), jnp.float32)
        s = jnp.asarray(1 + 0.1 * rng.standard_normal((batch, cin)), jnp.float32)
        row = dict(layer=i, res_in=res, cin=cin, cout=cout, up=up,
                   modconv_s=timed(lambda: modconv[up](x, w, s)), plain_s=timed(lambda: plain(x, w)),
                   torch_s=harness.time_calls(torch_conv(x, w), spec["warmup"], spec["iters"])["min_s"])
        if up:
            skip = jnp.asarray(rng.standard_normal((batch, res, res, 3)), jnp.float32)
            row["skip_up_s"] = timed(lambda: skip_up(skip))
            res *= 2
        rows.append(row)
    passes = [matmul()[0] for _ in range(spec["warmup"] + spec["iters"])][spec["warmup"]:]
    return dict(layers=rows, matmul_gflops=matmul_gflops(min(passes)))


ABLATIONS = (
    ("full generator", ()),
    ("up-conv without the blur (4 phase convs, interleaved)", ("no_blur",)),
    ("up-conv as one 3x3 conv on the input grid + nearest 2x", ("roof_up",)),
    ("  ... and the ToRGB skip up-sampled by nearest 2x", ("roof_up", "nearest_skip")),
    ("  ... and no modulation / demodulation (plain convs)", ("roof_up", "nearest_skip", "plain")),
)


def _ablated(parts):
    """Context manager patching the generator's ops for one ablation (benchmark only)."""
    import contextlib

    import jax.numpy as jnp
    from jax import lax
    from stylemask_jax.models import stylegan2_layers
    from stylemask_jax.ops import modulated_conv as mc

    nearest = lambda x: jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # noqa: E731

    def no_blur(x, weight, blur_kernel=None):
        phases = mc._transposed_phases(x, weight)
        h, w = x.shape[1:3]
        rows = [jnp.stack([phases[a][0][:, :h, :w], phases[a][1][:, :h, :w]], axis=3)
                for a in (0, 1)]
        y = jnp.stack(rows, axis=2)                    # (B, H, 2, W, 2, C)
        return y.reshape(x.shape[0], 2 * h, 2 * w, -1)

    def roof_up(x, weight, blur_kernel=None):
        return nearest(lax.conv_general_dilated(x, weight, (1, 1), "SAME",
                                                dimension_numbers=("NHWC", "HWIO", "NHWC")))

    original = mc.modulated_conv2d

    def plain(x, weight, style, *, demodulate=True, upsample=False, blur_kernel=(1, 3, 3, 1),
              eps=1e-8, dtype=None):
        if weight.shape[0] == 1:
            return original(x, weight, style, demodulate=demodulate, dtype=dtype)
        if upsample:
            return mc.upsample_conv_blur(x, weight, blur_kernel)
        return lax.conv_general_dilated(x, weight, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    stack = contextlib.ExitStack()
    patch = lambda obj, name, value: stack.enter_context(  # noqa: E731
        __import__("unittest.mock", fromlist=["patch"]).patch.object(obj, name, value))
    if "no_blur" in parts:
        patch(mc, "upsample_conv_blur", no_blur)
    if "roof_up" in parts:
        patch(mc, "upsample_conv_blur", roof_up)
    if "nearest_skip" in parts:
        patch(stylegan2_layers, "upsample2d", lambda x, kernel, factor=2: nearest(x))
    if "plain" in parts:
        patch(stylegan2_layers, "modulated_conv2d", plain)
    return stack


def worker_ablation(spec: dict) -> dict:
    """The whole jitted generator with parts replaced (see ABLATIONS), in timed rounds: the
    in-graph cost of each part, unlike per-op timings that miss fusion and overlap."""
    calls = {}
    for name, parts in ABLATIONS:
        with _ablated(parts):
            calls[name] = build_jax(spec["size"], spec["batch"])[0]  # traced under the patch
    times = {name: [] for name in calls}
    for round_ in range(spec["warmup"] + spec["iters"]):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if round_ >= spec["warmup"]:
                times[name].append(time.perf_counter() - start)
    return {"best": {name: min(v) for name, v in times.items()}}


def ablation_table(r: dict, size: int, batch: int) -> str:
    if "error" in r:
        return f"ablations failed: {r['error']}"
    full = r["best"]["full generator"]
    gflop = sum(conv_flops(s, batch) for s in conv_shapes(size)) / 1e9
    rows = [[name, f"{t * 1e3:,.0f}", f"{(t - full) * 1e3:+,.0f}", f"{gflop / t:.0f}"]
            for name, t in r["best"].items()]
    return (f"in-graph ablations, {size} layout, batch {batch} (the whole jitted generator with "
            "parts replaced, best of the timed rounds; the last row keeps only the 3x3 convs at "
            "roofline shapes, ToRGB, noise, bias and activations):\n"
            + harness.markdown_table(["variant", "ms/batch", "vs full ms", "3x3-conv GFLOP/s"], rows))


WORKERS = {"memory": worker_memory, "timing": worker_timing, "breakdown": worker_breakdown,
           "ablation": worker_ablation}


# -- parent ----------------------------------------------------------------------------------

def run_all(args) -> None:
    memory, timing = {}, {}
    for size in args.sizes:
        for batch in sorted(args.batches):
            for lib in ("jax", "torch"):
                one = memory.get((size, 1, lib), {})
                estimate = one.get("rss_peak", 0) * batch
                if batch > 1 and estimate > 0.85 * harness.available_bytes() and not args.force:
                    memory[(size, batch, lib)] = {"skipped": (
                        f"not run: batch-1 RSS peak x {batch} = {estimate / 2**30:.1f} GiB > 85% "
                        f"of the {harness.available_bytes() / 2**30:.1f} GiB available")}
                    continue
                spec = dict(impl="memory", lib=lib, size=size, batch=batch)
                memory[(size, batch, lib)] = harness.run_worker(MODULE, spec, args.timeout)
            spec = dict(impl="timing", size=size, batch=batch, warmup=args.warmup, iters=args.iters,
                        torch="first_s" in memory[(size, batch, "torch")])
            timing[(size, batch)] = harness.run_worker(MODULE, spec, args.timeout)
    breakdown = None
    if args.breakdown:
        spec = dict(size=max(args.sizes), batch=min(args.batches), warmup=args.warmup,
                    iters=args.iters)
        breakdown = {kind: harness.run_worker(MODULE, dict(spec, impl=kind), args.timeout)
                     for kind in ("ablation", "breakdown")}
    print(report(args, memory, timing, breakdown))


def _median(values):
    return statistics.median(values) if values else None


def summarize(t: dict) -> dict:
    """Best (min) and median wall times, median CPU times of a timing worker's rounds, and
    the ratios: 'speedup' (torch / JAX) and 'roof_pct_*' (plain convs / generator, %) from the
    best wall times, '*_cpu' the same from the median CPU times."""
    times, cpu = t.get("times", {}), t.get("cpu", {})
    out = {"best": {k: min(v) for k, v in times.items() if v},
           "median": {k: _median(v) for k, v in times.items() if v},
           "cpu": {k: _median(v) for k, v in cpu.items() if v}}
    ratio = lambda d, a, b, f=1.0: f * d[a] / d[b] if a in d and b in d else None  # noqa: E731
    out["speedup"], out["speedup_cpu"] = (ratio(out[k], "torch", "jax") for k in ("best", "cpu"))
    for lib in ("jax", "torch"):
        out[f"roof_pct_{lib}"] = ratio(out["best"], f"roof_{lib}", lib, 100.0)
        out[f"roof_pct_{lib}_cpu"] = ratio(out["cpu"], f"roof_{lib}", lib, 100.0)
    return out


def report(args, memory: dict, timing: dict, breakdown) -> str:
    loads = sorted({r.get("load_start", "?") for r in list(memory.values()) + list(timing.values())
                    if "load_start" in r})
    out = [harness.machine_header("StyleGAN2 generator, z -> image, float32, random weights"),
           f"timing: {args.warmup} warm-up + {args.iters} timed rounds per configuration, each round "
           "= JAX generator, torch generator, JAX plain convs, torch plain convs (one process). "
           "'best' = fastest round (least disturbed by other processes); images/s, JAX/torch and "
           "% of roofline use the best rounds; CPU s = median process CPU time per call (all "
           "threads)",
           f"load average (1/5/15 min) at the start of each worker: {'; '.join(loads)}", ""]
    rows, roof_rows = [], []
    for (size, batch), t in timing.items():
        sm = summarize(t)
        for lib in ("jax", "torch"):
            m = memory.get((size, batch, lib), {})
            note = t.get("error") or m.get("error") or m.get("skipped") or ""
            best, med, cpu = (sm[k].get(lib) for k in ("best", "median", "cpu"))
            ratio = sm["speedup"] if lib == "jax" else None
            pct = sm[f"roof_pct_{lib}"]
            rows.append([size, batch, lib, harness.fmt(m.get("compile_s")), harness.fmt(m.get("first_s")),
                         harness.fmt(best and best * 1e3, ",.0f"), harness.fmt(med and med * 1e3, ",.0f"),
                         harness.fmt(cpu), harness.fmt(best and batch / best, ".3f"),
                         harness.mib(m.get("rss_peak")), harness.mib(m.get("xla_total")),
                         harness.times(ratio),
                         harness.fmt(pct, ".0f") + ("%" if pct else ""), note])
        if "roof_jax" in sm["best"]:
            gflop = sum(conv_flops(s, batch) for s in conv_shapes(size)) / 1e9
            rj, rt = sm["best"]["roof_jax"], sm["best"]["roof_torch"]
            mm = matmul_gflops(sm["best"]["roof_matmul"])
            gen = gflop / sm["best"]["jax"] if "jax" in sm["best"] else None
            roof_rows.append([size, batch, f"{gflop / batch:.1f}", f"{rj * 1e3:,.0f}", f"{gflop / rj:.0f}",
                              harness.fmt(sm["cpu"]["roof_jax"]), f"{rt * 1e3:,.0f}", f"{gflop / rt:.0f}",
                              harness.fmt(sm["cpu"]["roof_torch"]), f"{mm:.0f}", harness.fmt(gen, ".0f"),
                              harness.fmt(gen and 100 * gen / mm, ".0f") + ("%" if gen else "")])
    out.append(harness.markdown_table(
        ["layout", "batch", "impl", "compile s", "first call s", "best ms/batch", "median ms",
         "CPU s", "images/s", "RSS peak MiB", "XLA total MiB", "JAX/torch", "% of roofline",
         "note"], rows))
    if roof_rows:
        out += ["", "roofline: the generator's convolutions alone as plain convs of the same shapes "
                    "and FLOPs (the 3x3 style convs; up-sampling layers as 3x3 convs on their input grid; "
                    "ToRGB left out), "
                    "each timed alone and summed (best round); '% of roofline' above = this time / "
                    "the generator's time (JAX vs JAX plain convs, torch vs torch plain convs)",
                harness.markdown_table(["layout", "batch", "conv GFLOP/image", "JAX ms", "JAX GFLOP/s",
                                        "JAX CPU s", "torch ms", "torch GFLOP/s", "torch CPU s",
                                        "matmul GFLOP/s", "generator GFLOP/s", "generator / matmul"],
                                       roof_rows),
                f"matmul: one jitted float32 {MATMUL_N}^3 product in XLA per round (best round), the "
                "machine's roofline for this work; generator GFLOP/s = the conv GFLOPs above / the "
                "JAX generator's best time (everything else it does counts as overhead)"]
    out += targets(timing)
    if breakdown is not None:
        out += ["", ablation_table(breakdown["ablation"], max(args.sizes), min(args.batches)),
                "", breakdown_table(breakdown["breakdown"], max(args.sizes), min(args.batches))]
    out += ["", "compile s, first call s, RSS peak and XLA total come from a separate worker per "
                "row that makes only the first call. RSS peak: worker RSS sampled every 2 ms "
                "during that call minus RSS before it (weights, inputs, compiled code excluded). "
                "XLA total: the JAX executable's memory_analysis(), arguments (weights) + outputs "
                "+ temporaries."]
    return "\n".join(out)


def targets(timing: dict) -> list[str]:
    """The targets of issue 23: JAX >= 5x torch at batch 1 and >= 6x at batch 4 (1024), and the
    generator's conv GFLOP/s >= 50% of the matmul roofline."""
    lines = []
    for batch, goal in ((1, 5.0), (4, 6.0), (8, None)):
        s = summarize(timing.get((1024, batch), {}))
        if s["speedup"] and goal:
            lines.append(f"target 1024 batch {batch}: JAX >= {goal:.0f}x torch -> {s['speedup']:.2f}x "
                         f"best rounds, {s['speedup_cpu']:.2f}x CPU time "
                         f"({'met' if min(s['speedup'], s['speedup_cpu']) >= goal else 'NOT met'})")
        if "jax" in s["best"] and "roof_matmul" in s["best"]:
            gflop = sum(conv_flops(c, batch) for c in conv_shapes(1024)) / 1e9
            pct = 100 * gflop / s["best"]["jax"] / matmul_gflops(s["best"]["roof_matmul"])
            lines.append(f"target 1024 batch {batch}: generator >= 50% of the matmul roofline -> "
                         f"{pct:.0f}% ({'met' if pct >= 50 else 'NOT met'})")
    return [""] + lines if lines else []


def breakdown_table(r: dict, size: int, batch: int) -> str:
    if "error" in r:
        return f"per-layer breakdown failed: {r['error']}"
    rows, total_mod, total_plain = [], 0.0, 0.0
    mm = r["matmul_gflops"]
    for layer in r["layers"]:
        total_mod += layer["modconv_s"] + layer.get("skip_up_s", 0.0)
        total_plain += layer["plain_s"]
        gflop = 2.0 * batch * layer["res_in"] ** 2 * layer["cin"] * layer["cout"] * 9 / 1e9
        rate = lambda seconds, g=gflop: f"{g / seconds:.0f}"  # noqa: E731
        rows.append([layer["layer"], f"{layer['res_in']}{'->' + str(2 * layer['res_in']) if layer['up'] else ''}",
                     f"{layer['cin']}->{layer['cout']}", harness.fmt(layer["modconv_s"] * 1e3, ".1f"),
                     rate(layer["modconv_s"]), f"{100 * gflop / layer['modconv_s'] / mm:.0f}%",
                     harness.fmt(layer["plain_s"] * 1e3, ".1f"), rate(layer["plain_s"]),
                     rate(layer["torch_s"]),
                     harness.fmt(layer.get("skip_up_s", 0) * 1e3 if layer["up"] else None, ".1f")])
    rows.append(["all", "", "", f"{total_mod * 1e3:.0f}", "", "", f"{total_plain * 1e3:.0f}", "", "", ""])
    return (f"per-layer breakdown, {size} layout, batch {batch} (each op jitted alone, best of the "
            "timed calls; GFLOP/s of the layer's 3x3 products, at the input grid for up-sampling "
            f"layers; matmul roofline {mm:.0f} GFLOP/s, an XLA float32 {MATMUL_N}^3 product; "
            "'plain' = XLA's stride-1 3x3 conv of the same shapes, 'torch' = torch's conv2d):\n"
            + harness.markdown_table(["layer", "grid", "channels", "modulated conv ms",
                                      "modulated GFLOP/s", "of matmul", "plain ms", "plain GFLOP/s",
                                      "torch GFLOP/s", "ToRGB skip up ms"], rows))


def add_arguments(parser):
    parser.add_argument("--sizes", type=harness.parse_ints, default=[256, 1024],
                        help="generator layouts, comma-separated (default 256,1024)")
    parser.add_argument("--batches", type=harness.parse_ints, default=[1, 8],
                        help="batch sizes, comma-separated (default 1,8)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default 1)")
    parser.add_argument("--iters", type=int, default=3, help="timed calls (default 3)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also where the JAX time goes (largest size, smallest batch): the "
                             "whole generator with parts replaced, and per-layer op timings")
    parser.add_argument("--force", action="store_true",
                        help="run torch even where batch 1's memory times the batch exceeds the RAM")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per configuration")


def main(argv=None):
    return harness.main(__doc__, add_arguments, run_all, WORKERS, argv)


if __name__ == "__main__":
    sys.exit(main())
