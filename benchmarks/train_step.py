"""One StyleMask training step at the FFHQ-1024 layout: time and peak memory, JAX vs PyTorch.

    python -m benchmarks.train_step                          # batch 1, remat off and on, torch
    python -m benchmarks.train_step --batches 1,4 --impls jax,jax-remat
    python -m benchmarks.train_step --batches 12 --impls jax --memory-only   # XLA's figure only
    python -m benchmarks.train_step --microbatches 1 2 4 12 --warmup 0 --iters 1

The paper's objective with random weights at full size: configs/ffhq1024.py with every
`config.weights.*` set to None (StyleGAN2 1024, DECA ResNet-50, IR-SE-50 at full size), 12
controlled layers, recurrent cycle on, two-pass DECA crop, lambda_identity 10. FLAME is a random
head of FLAME's size (`random_flame` with 71 x 71 = 5041 vertices, FLAME has 5023), the same
arrays in JAX and torch. The step: 3B frozen generator + DECA passes (source, target, cycle
target), 3B gradient-carrying reenactments through the mask network, generator, DECA (two passes)
and ArcFace, the losses, backward, Adam with coupled weight decay.

  jax        `stylemask_jax.training.loop.make_train_step` (jit, state donated), config.remat
             "none", config.microbatch 0 (benchmarks/train_memory.py measures the other settings)
  jax-remat  the same with config.remat "blocks" (activations recomputed per block)
  torch      stylemask_jax/reference/stylemask.py `Objective` (the same objective written with the
             torch references: grouped per-sample convs, conv_transpose + blur, kornia-style
             crop) in float32, `total.backward()` and torch.optim.Adam(lr 1e-4, weight_decay
             5e-4) on the mask network; frozen networks have requires_grad False.

`--microbatches M ...`: the step of configs/NAME.py as it is (its remat, its batch_size on one
device unless --batches gives one batch) with config.microbatch M, every M compiled in ONE worker
(compile time, XLA total) and run in `--iters` interleaved rounds (M1 M2 .. then back), so each M
sees the same drift in the machine's load; a step whose XLA total exceeds 85% of the available RAM
is compiled but not run. Also prints the limit `config.microbatch=auto` would use here.

Each configuration runs in a fresh worker process (see benchmarks/harness.py: "RSS peak" and
"XLA total"). JAX: lower + compile, `--warmup` steps, `--iters` timed steps (median). A JAX batch
whose XLA total exceeds 85% of the available RAM, or every batch with `--memory-only`, is compiled
for its memory figure but not run. A torch batch > 1 is skipped when batch 1's RSS peak times the
batch exceeds 85% of the available RAM (unless `--force`).
"""

from __future__ import annotations

import os
import sys
import time

from benchmarks import harness

MODULE = "benchmarks.train_step"
FLAME_GRID = (71, 71)  # random_flame rings x segments: 5041 vertices (FLAME: 5023)
IMPLS = ("jax", "jax-remat", "torch")


def full_size_config(batch: int, remat: bool, name: str = "ffhq1024"):
    """configs/NAME.py with every weights entry None (random networks), batch and remat set."""
    import importlib
    config = importlib.import_module(f"configs.{name}").get_config()
    for name in ("generator", "deca", "irse", "flame"):
        config.weights[name] = None
    config.batch_size, config.remat, config.microbatch = batch, "blocks" if remat else "none", 0
    config.eval_every = 0
    return config


def random_flame_model(config):
    import jax
    from stylemask_jax.training.networks import random_flame
    return random_flame(jax.random.key(config.seed + 7), *FLAME_GRID)


def worker_jax(spec: dict) -> dict:
    import jax
    from stylemask_jax.sharding import data_mesh
    from stylemask_jax.training import loop, networks, state as state_lib

    config = full_size_config(spec["batch"], spec["impl"] == "jax-remat", spec["config"])
    nets, frozen = networks.build_networks(config)
    frozen = dict(frozen, flame=random_flame_model(config))
    mesh = data_mesh()
    optimizer = state_lib.make_optimizer(config.learning_rate, config.weight_decay)
    state = state_lib.initial_state(nets, config, optimizer, mesh)
    batch = loop.global_batch(loop.host_batch(state.key, 0, config, nets.generator.style_dim), mesh)
    jax.block_until_ready((frozen, state, batch))
    step = loop.make_train_step(nets, config, optimizer, mesh)
    start = time.perf_counter()
    compiled = step.lower(state, frozen, batch).compile()
    compile_s = time.perf_counter() - start
    memory = harness.xla_memory(compiled)
    if spec.get("memory_only"):
        return dict(compile_s=compile_s, skipped="--memory-only: compiled, not run", **memory)
    if memory["xla_total"] > 0.85 * harness.available_bytes() and not spec.get("force"):
        return dict(compile_s=compile_s, skipped=f"XLA total {memory['xla_total'] / 2**30:.1f} GiB > "
                    f"85% of {harness.available_bytes() / 2**30:.1f} GiB available", **memory)
    holder = {"state": state}

    def one_step():
        holder["state"], metrics = compiled(holder["state"], frozen, batch)
        return holder["state"], metrics

    with harness.RssSampler() as rss:
        timing = harness.time_calls(one_step, spec["warmup"], spec["iters"], jax.block_until_ready)
    loss = float(jax.device_get(one_step()[1]["loss"]))
    return dict(timing, compile_s=compile_s, rss_peak=rss.peak_delta, loss=loss, **memory)


def worker_microbatch(spec: dict) -> dict:
    """Compiles the step once per micro-batch of spec['microbatches'], then times `iters`
    interleaved rounds of the ones that fit the RAM (wall and process CPU time per step). The
    result so far is rewritten to the JSON file spec['partial'] after every compile and step,
    for the parent to report when the worker dies (a full-size round takes most of an hour)."""
    import json
    import importlib
    import statistics

    import jax
    from stylemask_jax.outputs import atomic_file
    from stylemask_jax.sharding import data_mesh
    from stylemask_jax.training import loop, microbatch, networks, state as state_lib

    config = importlib.import_module(f"configs.{spec['config']}").get_config()
    remat = config.remat
    config = full_size_config(spec["batch"] or config.batch_size, False, spec["config"])
    config.remat = remat
    nets, frozen = networks.build_networks(config)
    frozen = dict(frozen, flame=random_flame_model(config))
    mesh = data_mesh(1)
    optimizer = state_lib.make_optimizer(config.learning_rate, config.weight_decay)
    state = state_lib.initial_state(nets, config, optimizer, mesh)
    batch = loop.global_batch(loop.host_batch(state.key, 0, config, nets.generator.style_dim), mesh)
    limit, source = microbatch.memory_limit(config, jax.local_devices())
    rows, steps = {}, {}
    result = dict(rows=rows, batch=config.batch_size, remat=config.remat, limit=limit,
                  limit_source=source, load_start=harness.load_average())

    def save():
        for r in rows.values():
            if r["times"]:
                r.update(median_s=statistics.median(r["times"]), cpu_s=statistics.median(r["cpu"]))
        with atomic_file(spec["partial"]) as tmp, open(tmp, "w") as f:  # never half written
            json.dump(dict(result, rows={str(m): r for m, r in rows.items()},
                           load_end=harness.load_average()), f)

    for m in spec["microbatches"]:
        state = state_lib.initial_state(nets, config, optimizer, mesh)  # one per m: donated
        step = loop.make_train_step(nets, config, optimizer, mesh, size=m)
        start, cpu_start = time.perf_counter(), harness.cpu_seconds()
        compiled = step.lower(state, frozen, batch).compile()
        rows[m] = dict(compile_s=time.perf_counter() - start,
                       compile_cpu_s=harness.cpu_seconds() - cpu_start,
                       **harness.xla_memory(compiled), times=[], cpu=[])
        if rows[m]["xla_total"] > 0.85 * harness.available_bytes():
            rows[m]["skipped"] = (f"XLA total {rows[m]['xla_total'] / 2**30:.1f} GiB > 85% of "
                                  f"{harness.available_bytes() / 2**30:.1f} GiB available: not run")
        else:
            steps[m] = [compiled, state]
        save()

    def one_step(m):
        compiled, state = steps[m]
        steps[m][1], metrics = compiled(state, frozen, batch)
        return metrics

    for m in list(steps) * spec["warmup"]:
        jax.block_until_ready(one_step(m))
    for m in harness.alternating(list(steps), spec["iters"]):
        # Checked again before every step: other processes may have taken the memory since.
        available = harness.available_bytes() + harness.current_rss()
        if rows[m]["xla_total"] > 0.85 * available:
            rows[m]["skipped"] = (f"a step skipped at {time.strftime('%H:%M')}: XLA total > 85% "
                                  f"of {available / 2**30:.1f} GiB available + this worker's RSS")
            save()
            continue
        start, cpu_start = time.perf_counter(), harness.cpu_seconds()
        metrics = jax.block_until_ready(one_step(m))
        rows[m]["times"].append(time.perf_counter() - start)
        rows[m]["cpu"].append(harness.cpu_seconds() - cpu_start)
        rows[m]["loss"] = float(metrics["loss"])
        save()
    with open(spec["partial"]) as f:
        return json.load(f)


def torch_flame(model, torch):
    """A TorchFlame holding the arrays of a JAX FlameModel (raw FLAME/embedding layouts)."""
    import numpy as np
    from stylemask_jax.reference.flame import EXP_OFFSET, N_EXP, N_SHAPE, TorchFlame
    a = lambda x: np.asarray(x)  # noqa: E731
    v = a(model.v_template).shape[0]
    shapedirs = np.zeros((v, 3, EXP_OFFSET + N_EXP), np.float32)
    shapedirs[..., :N_SHAPE] = a(model.shapedirs)[..., :N_SHAPE]
    shapedirs[..., EXP_OFFSET:] = a(model.shapedirs)[..., N_SHAPE:]
    raw = {"v_template": a(model.v_template), "shapedirs": shapedirs,
           "posedirs": a(model.posedirs).T.reshape(v, 3, -1), "J_regressor": a(model.J_regressor),
           "weights": a(model.lbs_weights), "f": a(model.faces),
           "kintree_table": np.stack([np.array(model.parents), np.arange(len(model.parents))])}
    embedding = {name: a(getattr(model, name)) for name in (
        "static_lmk_faces_idx", "static_lmk_bary_coords", "dynamic_lmk_faces_idx",
        "dynamic_lmk_bary_coords")}
    embedding["full_lmk_faces_idx"] = a(model.full_lmk_faces_idx)[None]
    embedding["full_lmk_bary_coords"] = a(model.full_lmk_bary_coords)[None]
    return TorchFlame(raw, embedding, dtype=torch.float32)


def worker_torch(spec: dict) -> dict:
    import numpy as np
    import torch
    harness.set_torch_threads()
    from stylemask_jax.reference.deca import TorchDecaEncoder
    from stylemask_jax.reference.irse import TorchIRSE
    from stylemask_jax.reference.stylegan2 import build_generator, random_state_dict
    from stylemask_jax.reference.stylemask import Objective, TorchMaskNet

    if spec["config"] != "ffhq1024":
        raise SystemExit("the torch step is only set up for --config ffhq1024")
    config = full_size_config(spec["batch"], False)
    arch = dict(config.generator)
    torch.manual_seed(0)
    gen = build_generator(random_state_dict(arch, 0), arch)
    deca = TorchDecaEncoder(tuple(config.random_deca_blocks)).eval()
    irse = TorchIRSE(tuple(config.random_irse_units)).eval()
    for net in (gen, deca, irse):
        net.requires_grad_(False)
    widths = [arch["channels"][i // 2] for i in range(config.num_layers_control)]
    mask_net = TorchMaskNet(widths).float()
    rng = np.random.default_rng(config.seed)
    with torch.no_grad():
        latent = gen.mapping(torch.from_numpy(rng.standard_normal((4096, 512)).astype(np.float32))).mean(0)
    objective = Objective(gen, mask_net, deca, irse, torch_flame(random_flame_model(config), torch),
                          latent.numpy(), truncation=config.truncation,
                          fixed_box=tuple(config.deca_fixed_box), two_pass=config.deca_two_pass,
                          lambda_shape=config.lambda_shape, lambda_identity=config.lambda_identity,
                          recurrent_cycle=config.recurrent_cycle)
    optimizer = torch.optim.Adam(mask_net.parameters(), lr=config.learning_rate,
                                 weight_decay=config.weight_decay)
    z = rng.standard_normal((3, spec["batch"], 512)).astype(np.float32)

    def one_step():
        optimizer.zero_grad(set_to_none=True)
        total, _ = objective(z[0], z[1], z[2])
        total.backward()
        optimizer.step()
        objective.trace = {k: [] for k in objective.trace}
        return total

    with harness.RssSampler() as rss:
        timing = harness.time_calls(one_step, spec["warmup"], spec["iters"])
    return dict(timing, rss_peak=rss.peak_delta, loss=float(one_step().detach()))


WORKERS = {"jax": worker_jax, "jax-remat": worker_jax, "torch": worker_torch,
           "microbatch": worker_microbatch}


def microbatch_report(args, r: dict) -> str:
    """The table of a --microbatches run (one worker result)."""
    out = [harness.machine_header(f"StyleMask training step, configs/{args.config}.py with every "
                                  "weights entry None (random networks), float32, remat "
                                  f"{r['remat']}, global batch {r['batch']} on one device"),
           f"{args.warmup} warm-up + {args.iters} timed step(s) per micro-batch, interleaved "
           f"rounds in one process; load average (1/5/15 min) at the start {r['load_start']}, "
           f"at the end {r['load_end']}"]
    if "stopped" in r:
        out.append(f"THE WORKER STOPPED EARLY ({r['stopped']}): the figures it had written")
    out.append("")
    rows = r["rows"]
    base = rows.get("1", {}).get("cpu_s")
    table = []
    for m, row in rows.items():
        timed = "median_s" in row
        table.append([m, r["batch"] // int(m), harness.fmt(row["compile_s"], ".0f"),
                      harness.fmt(row["compile_cpu_s"], ".0f"),
                      f"{row['xla_total'] / 2**30:.2f}", f"{row['xla_temp'] / 2**30:.2f}",
                      len(row["times"]), harness.fmt(row.get("median_s"), ".1f"),
                      harness.fmt(row.get("cpu_s"), ".1f"),
                      harness.times(row["cpu_s"] / base) if timed and base else "-",
                      harness.fmt(r["batch"] / row["cpu_s"], ".3f") if timed else "-",
                      "yes" if row["xla_total"] <= r["limit"] else "no",
                      row.get("skipped", "")])
    out.append(harness.markdown_table(
        ["micro-batch", "chunks", "compile s", "compile CPU s", "XLA total GiB", "XLA temp GiB",
         "steps timed", "median s/step", "median CPU s/step", "CPU / micro-batch 1",
         "pairs per CPU s", "fits auto's limit", "note"], table))
    out += ["", f"config.microbatch=auto's limit here: {r['limit'] / 2**30:.2f} GiB "
                f"({r['limit_source']}). XLA total: memory_analysis() of the compiled step "
                "(arguments + outputs + temporaries - donated). CPU s: process CPU time (all "
                "threads) of one step; on a shared machine it varies less with the others' load "
                "than the wall time. compile s: lower + compile, wall (CPU)."]
    return "\n".join(out)


def report(args, results: dict) -> str:
    loads = sorted({r.get("load_start", "?") for r in results.values()})
    out = [harness.machine_header(f"StyleMask training step, configs/{args.config}.py with every "
                                  "weights entry None (random networks), float32"),
           f"{args.warmup} warm-up + {args.iters} timed steps; load average (1/5/15 min) "
           f"before each configuration: {', '.join(loads)}", ""]
    rows = []
    for (batch, impl), r in results.items():
        if "error" in r or "skipped" in r:
            rows.append([batch, impl, harness.fmt(r.get("compile_s")), "-", "-", "-", "-", "-", "-",
                         harness.mib(r.get("xla_total")), harness.mib(r.get("xla_temp")), "-",
                         r.get("error") or r["skipped"]])
            continue
        torch_r = results.get((batch, "torch"), {})
        both = impl.startswith("jax") and "min_s" in torch_r
        ratio = torch_r["min_s"] / r["min_s"] if both else None
        rows.append([batch, impl, harness.fmt(r.get("compile_s")), harness.fmt(r["first_s"], ".1f"),
                     harness.fmt(r["min_s"], ".1f"), harness.fmt(r["median_s"], ".1f"),
                     harness.fmt(r["cpu_s"], ".1f"), harness.fmt(batch / r["min_s"], ".3f"),
                     harness.mib(r.get("rss_peak")), harness.mib(r.get("xla_total")),
                     harness.mib(r.get("xla_temp")),
                     harness.times(ratio), ""])
    out.append(harness.markdown_table(
        ["batch", "impl", "compile s", "first step s", "best s/step", "median s", "CPU s",
         "pairs/s", "RSS peak MiB", "XLA total MiB", "XLA temp MiB", "JAX/torch", "note"], rows))
    out += ["", "best: the fastest timed step (least disturbed by other processes); pairs/s and "
                "JAX/torch use it. CPU s: median process CPU time per step (all threads). "
                "first step: the first call after compiling. RSS peak: worker RSS during the "
                "steps minus RSS before them (weights, state, compiled code excluded). XLA total / "
                "temp: memory_analysis() of the compiled step (arguments + outputs + temporaries - "
                "donated; the temporaries alone)."]
    return "\n".join(out)


def add_arguments(parser):
    parser.add_argument("--batches", type=harness.parse_ints, default=None,
                        help="global batch sizes, comma-separated (default 1; the issue asks "
                             "for 1,4,12: on a 2-core CPU batch 4 is minutes per step and "
                             "batch 12 needs more RAM than such a machine has); with "
                             "--microbatches one batch, default the config's batch_size")
    parser.add_argument("--microbatches", type=int, nargs="+", metavar="M",
                        help="time the config's own step with each config.microbatch M, "
                             "interleaved in one worker (e.g. 1 2 4 12)")
    parser.add_argument("--impls", type=harness.parse_choices(IMPLS), default=list(IMPLS),
                        help="jax,jax-remat,torch (default all)")
    parser.add_argument("--config", choices=("ffhq1024", "tiny"), default="ffhq1024",
                        help="configs/NAME.py (tiny: a quick JAX-only check of this script)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after compiling")
    parser.add_argument("--iters", type=int, default=2, help="timed steps (default 2)")
    parser.add_argument("--memory-only", action="store_true",
                        help="JAX: compile and report XLA's memory figures without running")
    parser.add_argument("--force", action="store_true",
                        help="run even when the memory estimate exceeds the available RAM")
    parser.add_argument("--timeout", type=float, default=7200, help="seconds per configuration")


def run_microbatches(args):
    if args.batches and len(args.batches) > 1:
        raise SystemExit("--microbatches takes one batch (--batches N)")
    import json
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        partial = os.path.join(folder, "partial.json")
        spec = dict(impl="microbatch", config=args.config, batch=(args.batches or [0])[0],
                    microbatches=args.microbatches, warmup=args.warmup, iters=args.iters,
                    partial=partial)
        result = harness.run_worker(MODULE, spec, args.timeout)
        if "error" in result:
            if not os.path.exists(partial):
                raise SystemExit(f"the worker failed: {result['error']}")
            with open(partial) as f:
                result = dict(json.load(f), stopped=result["error"])
    print(microbatch_report(args, result))


def run_all(args):
    if args.microbatches:
        return run_microbatches(args)
    args.batches = args.batches or [1]
    if args.memory_only:
        args.impls = [i for i in args.impls if i != "torch"]
    results = {}
    for batch in args.batches:
        for impl in args.impls:
            spec = dict(impl=impl, config=args.config, batch=batch, warmup=args.warmup,
                        iters=args.iters, memory_only=args.memory_only, force=args.force)
            one = results.get((1, "torch"), {})
            if impl == "torch" and batch > 1 and "rss_peak" in one and not args.force:
                estimate = one["rss_peak"] * batch
                if estimate > 0.85 * harness.available_bytes():
                    results[(batch, impl)] = {"skipped": (
                        f"batch 1 RSS peak x {batch} = {estimate / 2**30:.1f} GiB > 85% of "
                        f"{harness.available_bytes() / 2**30:.1f} GiB available")}
                    continue
            results[(batch, impl)] = harness.run_worker(MODULE, spec, args.timeout)
    print(report(args, results))


def main(argv=None):
    return harness.main(__doc__, add_arguments, run_all, WORKERS, argv)


if __name__ == "__main__":
    sys.exit(main())
