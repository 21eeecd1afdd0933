"""Memory of the full FFHQ-1024 training step: remat, micro-batching and bfloat16 (XLA's figures).

    python -m benchmarks.train_memory                 # the default list below (compile only)
    python -m benchmarks.train_memory --only 12:1:blocks:1:float32 --time

The step of configs/ffhq1024.py with every weights entry None (random networks at full size, the
FLAME-sized random head of benchmarks/train_step.py). Each configuration
`GLOBAL_BATCH:DEVICES:REMAT:MICROBATCH:DTYPE` is lowered and compiled in its own worker process
(DEVICES > 1: `XLA_FLAGS=--xla_force_host_platform_device_count=DEVICES`, the batch sharded on
'data'), and `compiled.memory_analysis()` is reported per device: arguments (state, frozen
weights, batch), outputs, temporaries (activations, scratch) and total = arguments + outputs +
temporaries - donated aliases. These figures are deterministic (the same on a loaded machine);
nothing is run except with `--time`, which times one step after a warm-up step (wall and process
CPU time) for the configurations given.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from benchmarks import harness

MODULE = "benchmarks.train_memory"
GIB = 2 ** 30

# GLOBAL_BATCH:DEVICES:REMAT:MICROBATCH:DTYPE; ordered by how much each row answers.
DEFAULT = (
    "12:1:blocks:1:float32", "12:1:none:1:float32", "12:1:blocks:0:float32",
    "12:1:blocks:1:bfloat16", "12:4:blocks:1:float32", "12:4:none:0:float32",
    "12:4:blocks:1:bfloat16", "1:1:none:0:float32", "1:1:blocks:0:float32",
    "4:1:blocks:1:float32", "12:1:blocks:3:float32", "12:1:none:0:float32",
)


def parse_spec(text: str) -> dict:
    batch, devices, remat, microbatch, dtype = text.split(":")
    return dict(batch=int(batch), devices=int(devices), remat=remat, microbatch=int(microbatch),
                dtype=dtype)


# LLVM code generation without its expensive optimisations: buffer assignment (hence every
# memory figure) is decided on the HLO before code generation, so only compile time and the
# generated code's speed change. Not for --time.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def worker(spec: dict) -> dict:
    flags = [os.environ.get("XLA_FLAGS", "")]
    if spec["devices"] > 1:
        flags.append(f"--xla_force_host_platform_device_count={spec['devices']}")
    if spec.get("fast_compile"):
        flags.append(FAST_COMPILE)
    if "jax" in sys.modules:
        raise RuntimeError("XLA_FLAGS must be set before jax is imported")
    os.environ["XLA_FLAGS"] = " ".join(f for f in flags if f)
    import jax
    from benchmarks.train_step import full_size_config, random_flame_model
    from stylemask_jax.sharding import data_mesh
    from stylemask_jax.training import loop, networks, state as state_lib

    config = full_size_config(spec["batch"], False, spec.get("config", "ffhq1024"))
    config.remat, config.microbatch = spec["remat"], spec["microbatch"]
    config.compute_dtype = spec["dtype"]
    mesh = data_mesh()
    loop.check_config(config, mesh)
    nets, frozen = networks.build_networks(config)
    frozen = dict(frozen, flame=random_flame_model(config))
    optimizer = state_lib.make_optimizer(config.learning_rate, config.weight_decay)
    state = state_lib.initial_state(nets, config, optimizer, mesh)
    batch = loop.global_batch(loop.host_batch(state.key, 0, config, nets.generator.style_dim), mesh)
    step = loop.make_train_step(nets, config, optimizer, mesh)
    start = time.perf_counter()
    compiled = step.lower(state, frozen, batch).compile()
    out = dict(compile_s=time.perf_counter() - start, devices=jax.device_count(),
               **harness.xla_memory(compiled))
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    # XLA's operation count of the compiled step (a while loop's body is counted once: only
    # comparable between configurations without micro-batching)
    out["flops"] = float((cost or {}).get("flops", 0.0))
    if spec.get("time"):
        holder = {"state": state}

        def one_step():
            holder["state"], metrics = compiled(holder["state"], frozen, batch)
            return metrics

        out.update(harness.time_calls(one_step, 1, spec.get("iters", 1), jax.block_until_ready))
        out["loss"] = float(jax.device_get(one_step()["loss"]))
    return out


def gib(value) -> str:
    return "-" if value is None else f"{value / GIB:.2f}"


def report(results: dict) -> str:
    out = [harness.machine_header("StyleMask training step, configs/ffhq1024.py with every weights "
                                  "entry None (random networks); XLA memory_analysis() per device"),
           ""]
    rows = []
    for text, r in results.items():
        s = parse_spec(text)
        per_device = s["batch"] // s["devices"]
        common = [s["batch"], s["devices"], per_device, s["remat"], s["microbatch"] or "off",
                  s["dtype"]]
        if "error" in r:
            rows.append(common + ["-"] * 8 + [r["error"]])
            continue
        timed = "median_s" in r
        rows.append(common + [gib(r["xla_args"]), gib(r["xla_out"]), gib(r["xla_temp"]),
                              gib(r["xla_total"]), harness.fmt(r["compile_s"], ".0f"),
                              harness.fmt(r.get("median_s"), ".1f") if timed else "-",
                              harness.fmt(r.get("cpu_s"), ".1f") if timed else "-",
                              f"{r['flops'] / 1e12:.2f}" if r.get("flops") else "-", ""])
    out.append(harness.markdown_table(
        ["global batch", "devices", "per device", "remat", "microbatch", "dtype", "args GiB",
         "out GiB", "temp GiB", "total GiB", "compile s", "step s", "step CPU s", "XLA TFLOP",
         "note"], rows))
    out += ["", "total = args + out + temp - donated (the state is donated); per device. step s / "
                "CPU s: one timed step after one warm-up step (wall / process CPU time), only "
                "with --time. XLA TFLOP: cost_analysis() of the compiled step (a micro-batch loop's body is "
                "counted once, so compare it only between rows without micro-batching)."]
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="\n".join(__doc__.splitlines()[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=lambda t: t.split(","), default=list(DEFAULT),
                        help="comma-separated GLOBAL_BATCH:DEVICES:REMAT:MICROBATCH:DTYPE")
    parser.add_argument("--time", action="store_true", help="also time one step of each")
    parser.add_argument("--fast-compile", action="store_true",
                        help=f"compile with XLA_FLAGS {FAST_COMPILE} (the same memory figures, "
                             "faster compiles; not with --time)")
    parser.add_argument("--config", choices=("ffhq1024", "tiny"), default="ffhq1024",
                        help="configs/NAME.py (tiny: a quick check of this script)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per configuration")
    parser.add_argument("--out", help="also write the table to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.time and args.fast_compile:
        parser.error("--fast-compile generates slower code: do not combine it with --time")
    if args.worker:
        import json
        harness.emit(worker(json.loads(args.worker)))
        return
    results = {}
    for text in args.only:
        spec = dict(parse_spec(text), time=args.time, config=args.config,
                    fast_compile=args.fast_compile)
        results[text] = harness.run_worker(MODULE, spec, args.timeout)
        print(f"  {text}: {results[text]}", file=sys.stderr, flush=True)
    table = report(results) + ("\n(compiled with --fast-compile: XLA_FLAGS " + FAST_COMPILE + ")"
                               if args.fast_compile else "")
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    sys.exit(main())
