"""Throughput of the IR-SE family, JAX vs the PyTorch formulation: ArcFace embeddings, e4e inversion.

    python -m benchmarks.irse                            # batches 1 and 8, embeddings + e4e, 2 passes
    python -m benchmarks.irse --batches 1 --passes 4 --rows e4e
    python -m benchmarks.irse --rows embeddings,identity,e4e --dtype bfloat16
    python -m benchmarks.irse --convs --batches 1,8         # IR-SE-50's convolutions alone

Random weights at full size (the speed does not depend on the values): IR-SE-50 (3, 4, 14, 3
units) and e4e for a 1024 generator (18 style blocks), float32 unless `--dtype`. Rows:

  embeddings   256x256 images -> crop -> adaptive pool to 112 -> IR-SE-50 -> unit 512-d
  identity     the identity loss and its gradient w.r.t. the reenacted batch (training; optional)
  e4e          256x256 images -> 18 W+ codes (`init_e4e`; torch: `TorchE4E` of
               stylemask_jax/reference/irse.py, the layout `build_e4e` loads official weights into)

JAX: each function jitted once (NHWC). torch: the same layouts written with torch.nn (NCHW,
eval mode, no_grad for the forward rows), all cores as threads (`harness.set_torch_threads`).

Fairness: JAX and torch run in separate worker processes (in one process the torch calls were
measured slower next to XLA's thread pool: see benchmarks/reenact.py on branch speed), and the
workers alternate pass by pass in A B, B A, ... order (`harness.alternating`), so both see the
same drift of a shared machine's load. Each worker makes `--warmup` untimed calls per row and
batch (the first one, for JAX, includes compilation), then `--iters` timed calls, recording wall
time and process CPU time (all threads). The table pools the timed calls of all passes: median
wall and median CPU seconds per call, images/s from the median, and JAX / torch speed ratios
(torch seconds / JAX seconds: above 1 means JAX is faster). The load average at the start of
each worker is printed with the table.

`--convs`: instead of the rows, every distinct convolution of IR-SE-50 on a 112 x 112 input (3x3
and the 1x1 shortcuts, PyTorch padding), each timed alone: JAX conv through `compiling.jit` and
torch `conv2d`, in separate workers alternating as above (next to torch in one process, XLA's
convs were measured up to 2x slower), each making `--iters` rounds over all shapes after
one warm-up round; the JAX worker also times XLA's float32 4096^3 matrix product
(benchmarks/generator.py) as the machine's roofline. Per shape: median ms per conv, GFLOP/s, and
the sum over the network (count x median): how close the network's convolutions are to the
roofline, and to torch's, apart from everything else the network does.
"""

from __future__ import annotations

import functools
import sys
import time

import numpy as np

from benchmarks import harness

MODULE = "benchmarks.irse"
ROWS = ("embeddings", "identity", "e4e")


def jax_calls(rows, batches, dtype_name, output_size):
    """{(row, batch): zero-argument call that blocks until the result is ready}."""
    import jax
    import jax.numpy as jnp
    from stylemask_jax.compiling import jit
    from stylemask_jax.faces import identity_loss
    from stylemask_jax.models.e4e import init_e4e, n_styles_for
    from stylemask_jax.models.irse import face_embeddings, init_irse

    dtype = jnp.bfloat16 if dtype_name == "bfloat16" else jnp.float32
    irse, irse_vars = init_irse(jax.random.key(0), dtype=dtype)
    e4e, e4e_vars = init_e4e(jax.random.key(1), n_styles=n_styles_for(output_size), dtype=dtype)
    fns = {"embeddings": (jit(functools.partial(face_embeddings, irse)), irse_vars, False),
           "identity": (jit(jax.value_and_grad(functools.partial(identity_loss, irse), argnums=1)),
                        irse_vars, True),
           "e4e": (jit(e4e.apply), e4e_vars, False)}
    calls, compile_s = {}, {}
    for b in batches:
        x = jnp.asarray(np.random.default_rng(b).uniform(-1, 1, (b, 256, 256, 3)), jnp.float32)
        for row in rows:
            fn, variables, pair = fns[row]
            args = (variables, x, x[::-1]) if pair else (variables, x)
            start = time.perf_counter()
            compiled = fn.lower(*args).compile()
            compile_s[row, b] = time.perf_counter() - start
            calls[row, b] = functools.partial(lambda f, a: jax.block_until_ready(f(*a)),
                                              compiled, args)
    return calls, compile_s


def torch_calls(rows, batches, output_size):
    import torch
    from stylemask_jax.models.e4e import n_styles_for
    from stylemask_jax.reference.irse import TorchE4E, TorchIRSE
    from stylemask_jax.reference.irse import identity_loss as torch_identity_loss

    harness.set_torch_threads()
    torch.manual_seed(0)
    irse, e4e = TorchIRSE().eval(), TorchE4E(n_styles_for(output_size)).eval()
    for p in irse.parameters():
        p.requires_grad_(False)

    def embed(x):
        with torch.no_grad():
            return irse.embed(x)

    def loss_grad(x):
        y = x.clone().requires_grad_(True)
        torch_identity_loss(irse, y, x.flip(0)).backward()
        return y.grad

    def invert(x):
        with torch.no_grad():
            return e4e(x)

    fns = {"embeddings": embed, "identity": loss_grad, "e4e": invert}
    calls = {}
    for b in batches:
        x = torch.from_numpy(np.random.default_rng(b).uniform(-1, 1, (b, 3, 256, 256)).astype(np.float32))
        for row in rows:
            calls[row, b] = functools.partial(fns[row], x)  # synchronous on CPU
    return calls


def worker_run(spec: dict) -> dict:
    """One implementation, every (row, batch): warm-up calls, then timed calls."""
    out = {"load_begin": harness.load_average(), "rows": {}}
    if spec["lib"] == "jax":
        calls, compile_s = jax_calls(spec["rows"], spec["batches"], spec["dtype"],
                                     spec["output_size"])
    else:
        calls, compile_s = torch_calls(spec["rows"], spec["batches"], spec["output_size"]), {}
    for (row, b), call in calls.items():
        timing = harness.time_calls(call, max(spec["warmup"], 1), spec["iters"])
        out["rows"][f"{row}/{b}"] = {"first_s": timing["first_s"], "times": timing["times_s"],
                                     "cpu": timing["cpu_times_s"],
                                     "compile_s": compile_s.get((row, b))}
    return out


def irse_convs() -> list[dict]:
    """IR-SE-50's convolutions on a 112 input, distinct shapes with their counts:
    {res (input), cin, cout, k, stride, count}."""
    from stylemask_jax.models.irse import ARCFACE_SIZE, STAGE_WIDTHS, UNITS_BY_DEPTH
    counts = {}

    def add(res, cin, cout, k, stride):
        key = (res, cin, cout, k, stride)
        counts[key] = counts.get(key, 0) + 1

    res, width = ARCFACE_SIZE, STAGE_WIDTHS[0]
    add(res, 3, width, 3, 1)
    for depth, n in zip(STAGE_WIDTHS, UNITS_BY_DEPTH[50]):
        add(res, width, depth, 3, 1)  # the first unit: conv1 at the input resolution,
        add(res, depth, depth, 3, 2)  # conv2 with stride 2,
        if width != depth:
            add(res, width, depth, 1, 2)  # and the 1x1 shortcut
        res, width = res // 2, depth
        for _ in range(2 * (n - 1)):
            add(res, depth, depth, 3, 1)
    return [dict(zip(("res", "cin", "cout", "k", "stride"), key), count=c)
            for key, c in counts.items()]


def conv_gflop(shape: dict, batch: int) -> float:
    """GFLOP of one conv of `irse_convs` (benchmarks/generator.py's count at the output size)."""
    from benchmarks.generator import conv_flops
    return conv_flops(dict(shape, res=shape["res"] // shape["stride"]), batch) / 1e9


def worker_convs(spec: dict) -> dict:
    """One library's convs (spec["lib"]) in rounds over every shape, one warm-up round; the JAX
    worker also times the matmul roofline in each round."""
    if spec["lib"] == "jax":
        import jax
        import jax.numpy as jnp
        from benchmarks.generator import matmul_roofline
        from stylemask_jax.compiling import jit
        conv = jit(lambda x, w, pad, stride: jax.lax.conv_general_dilated(
            x, w, (stride, stride), ((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC")), static_argnums=(2, 3))

        def make(b, s, pad):
            x = jnp.full((b, s["res"], s["res"], s["cin"]), 0.5, jnp.float32)
            w = jnp.full((s["k"], s["k"], s["cin"], s["cout"]), 0.01, jnp.float32)
            compiled = conv.lower(x, w, pad, s["stride"]).compile()
            return lambda: jax.block_until_ready(compiled(x, w))
    else:
        import torch
        harness.set_torch_threads()
        torch.set_grad_enabled(False)

        def make(b, s, pad):
            x = torch.full((b, s["cin"], s["res"], s["res"]), 0.5)
            w = torch.full((s["cout"], s["cin"], s["k"], s["k"]), 0.01)
            return lambda: torch.nn.functional.conv2d(x, w, stride=s["stride"], padding=pad)
    calls = {f"{b}/{i}": make(b, s, s["k"] // 2)
             for b in spec["batches"] for i, s in enumerate(irse_convs())}
    if spec["lib"] == "jax":
        calls["matmul"] = matmul_roofline()
    times = {name: [] for name in calls}
    for round_ in range(1 + spec["iters"]):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if round_:
                times[name].append(time.perf_counter() - start)
    return {"times": times}


WORKERS = {"run": worker_run, "convs": worker_convs}


def convs_report(args, results: dict, loads: list) -> str:
    import statistics
    from benchmarks.generator import matmul_gflops

    t = {(lib, name): statistics.median([x for r in runs for x in r["times"][name]])
         for lib, runs in results.items() for name in runs[0]["times"]}
    roof = matmul_gflops(t["jax", "matmul"])
    order = " ".join(harness.alternating(list(results), args.passes))
    lines = [harness.machine_header("IR-SE-50's convolutions alone (112 x 112 input), float32"),
             f"{args.passes} passes, worker order {order}; per worker: {args.iters} rounds over "
             "all shapes after one warm-up round",
             "load average (1/5/15 min) at the start of each worker: " + "; ".join(loads),
             f"roofline: XLA float32 matrix product 4096^3, {roof:.0f} GFLOP/s (median)", ""]
    rows, totals, shapes = [], {}, irse_convs()
    for b in args.batches:
        for i, s in enumerate(shapes):
            gf = conv_gflop(s, b)
            jx, tc = t["jax", f"{b}/{i}"], t["torch", f"{b}/{i}"]
            for lib, sec in (("jax", jx), ("torch", tc)):
                totals[b, lib] = totals.get((b, lib), 0.0) + s["count"] * sec
            rows.append([b, f"{s['res']}", f"{s['cin']} -> {s['cout']}", f"{s['k']}x{s['k']}",
                         s["stride"], s["count"], f"{jx * 1e3:.3f}", f"{tc * 1e3:.3f}",
                         f"{gf / jx:.0f}", f"{gf / tc:.0f}", f"{100 * gf / jx / roof:.0f}%",
                         harness.times(tc / jx)])
        gf = sum(conv_gflop(s, b) * s["count"] for s in shapes)
        jx, tc = totals[b, "jax"], totals[b, "torch"]
        rows.append([b, "all", "", "", "", sum(s["count"] for s in shapes),
                     f"{jx * 1e3:.1f}", f"{tc * 1e3:.1f}", f"{gf / jx:.0f}", f"{gf / tc:.0f}",
                     f"{100 * gf / jx / roof:.0f}%", harness.times(tc / jx)])
    lines.append(harness.markdown_table(
        ["batch", "input px", "channels", "kernel", "stride", "count", "JAX ms", "torch ms",
         "JAX GFLOP/s", "torch GFLOP/s", "JAX % of roofline", "JAX/torch"], rows))
    lines += ["", "ms: median per conv; 'all': count x median summed over the network (its "
                  "convolutions only). JAX/torch: torch seconds / JAX seconds (above 1: JAX "
                  "faster)."]
    return "\n".join(lines)


def run_all(args):
    if args.convs:
        results, loads = {"jax": [], "torch": []}, []
        for lib in harness.alternating(list(results), args.passes):
            spec = dict(impl="convs", lib=lib, batches=args.batches, iters=args.iters)
            results[lib].append(harness.run_worker(MODULE, spec, args.timeout))
            loads.append(f"{lib} {results[lib][-1].get('load_start')}")
        errors = [f"{lib}: {r['error']}" for lib, runs in results.items() for r in runs if "error" in r]
        print("\n".join(["worker failed:", *errors]) if errors else convs_report(args, results, loads))
        return
    libs = ["jax", "torch"] if args.torch else ["jax"]
    results = {lib: [] for lib in libs}
    loads = []
    for lib in harness.alternating(libs, args.passes):
        spec = dict(impl="run", lib=lib, rows=args.rows, batches=args.batches, dtype=args.dtype,
                    output_size=args.output_size, warmup=args.warmup, iters=args.iters)
        result = harness.run_worker(MODULE, spec, args.timeout)
        results[lib].append(result)
        loads.append(f"{lib} {result.get('load_start')}" + (f" ({result['error']})" if "error" in result else ""))
    print(report(args, libs, results, loads))


def report(args, libs, results, loads) -> str:
    from stylemask_jax.models.e4e import n_styles_for
    header = harness.machine_header(
        f"IR-SE-50 embeddings and e4e ({n_styles_for(args.output_size)} W+ codes), random weights, "
        f"compute {args.dtype}")
    lines = [header,
             f"{args.passes} passes, worker order {' '.join(harness.alternating(libs, args.passes))}; "
             f"per worker and (row, batch): {max(args.warmup, 1)} untimed + {args.iters} timed calls",
             "load average (1/5/15 min) at the start of each worker: " + "; ".join(loads), ""]
    table = []
    for row in args.rows:
        for b in args.batches:
            stats = {}
            for lib in libs:
                runs = [r["rows"][f"{row}/{b}"] for r in results[lib] if f"{row}/{b}" in r.get("rows", {})]
                stats[lib] = dict(harness.pooled_medians(runs),
                                  first=runs[0]["first_s"] if runs else None,
                                  compile=runs[0].get("compile_s") if runs else None)
            for lib in libs:
                s, t = stats[lib], stats.get("torch", {})
                ratio = lambda k: (t.get(k) / s[k] if lib == "jax" and t.get(k) and s.get(k) else None)  # noqa: E731
                table.append([row, b, lib, harness.fmt(s["compile"]), harness.fmt(s["first"]),
                              harness.fmt(s["median"] and s["median"] * 1e3, ".0f"),
                              harness.fmt(s["cpu_median"] and s["cpu_median"] * 1e3, ".0f"),
                              harness.fmt(s["median"] and b / s["median"]), s["n"],
                              harness.times(ratio("median")), harness.times(ratio("cpu_median"))])
    lines.append(harness.markdown_table(
        ["row", "batch", "impl", "compile s", "first call s", "median ms/call", "median CPU ms/call",
         "images/s (median)", "timed calls", "JAX/torch (median wall)", "JAX/torch (median CPU)"],
        table))
    lines += ["", "compile s: JAX's lower + compile of the row's function in the first pass; "
                  "first call s: the first call of the first pass after it (torch: the first call). "
                  "Ratios: torch seconds / JAX seconds per call (above 1: JAX faster); CPU = process "
                  "CPU time of the call, all threads, which varies least with other processes' load."]
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("--batches", type=harness.parse_ints, default=[1, 8],
                        help="images per call, comma-separated (default 1,8)")
    parser.add_argument("--rows", type=harness.parse_choices(ROWS), default=["embeddings", "e4e"],
                        help="embeddings,identity,e4e (default embeddings,e4e)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--passes", type=int, default=2, help="alternating passes (default 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per row (default 1)")
    parser.add_argument("--iters", type=int, default=3, help="timed calls per row and pass (default 3)")
    parser.add_argument("--output-size", type=int, default=1024, help="generator size for e4e")
    parser.add_argument("--no-torch", dest="torch", action="store_false",
                        help="JAX only (default: JAX and the PyTorch formulation)")
    parser.add_argument("--convs", action="store_true",
                        help="IR-SE-50's convolutions alone vs torch's and the matmul roofline "
                             "(--batches, --iters rounds)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per worker")


def main(argv=None):
    return harness.main(__doc__, add_arguments, run_all, WORKERS, argv)


if __name__ == "__main__":
    sys.exit(main())
