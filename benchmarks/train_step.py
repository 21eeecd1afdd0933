"""One StyleMask training step at the FFHQ-1024 layout: time and peak memory, JAX vs PyTorch.

    python -m benchmarks.train_step                          # batch 1, remat off and on, torch
    python -m benchmarks.train_step --batches 1,4 --impls jax,jax-remat
    python -m benchmarks.train_step --batches 12 --impls jax --memory-only   # XLA's figure only

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

Each configuration runs in a fresh worker process (see benchmarks/harness.py: "RSS peak" and
"XLA total"). JAX: lower + compile, `--warmup` steps, `--iters` timed steps (median). A JAX batch
whose XLA total exceeds 85% of the available RAM, or every batch with `--memory-only`, is compiled
for its memory figure but not run. A torch batch > 1 is skipped when batch 1's RSS peak times the
batch exceeds 85% of the available RAM (unless `--force`).
"""

from __future__ import annotations

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


WORKERS = {"jax": worker_jax, "jax-remat": worker_jax, "torch": worker_torch}


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
    parser.add_argument("--batches", type=harness.parse_ints, default=[1],
                        help="global batch sizes, comma-separated (default 1; the issue asks "
                             "for 1,4,12: on a 2-core CPU batch 4 is minutes per step and "
                             "batch 12 needs more RAM than such a machine has)")
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


def run_all(args):
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
