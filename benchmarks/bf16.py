"""bfloat16 vs float32 at full size (random weights): one training step's loss, terms and
gradients, and 1024 x 1024 generator images.

    python -m benchmarks.bf16                    # batch 1 (global), the ffhq1024 config
    python -m benchmarks.bf16 --config tiny      # a quick check of this script

configs/NAME.py with every weights entry None (as benchmarks/train_step.py), compute_dtype
float32 and bfloat16 (parameters float32 in both), remat "blocks" (it does not change the values,
tests/test_microbatch.py). Prints the loss and each logged term in both dtypes, the relative L2
difference and the cosine between the two gradients of the mask parameters, and the max / mean
absolute difference of the generator's images (values nominally in [-1, 1]) from the same codes.
Everything runs in one process, one dtype after the other.
"""

from __future__ import annotations

import argparse
import sys
import time


def run(config_name: str, batch: int, dtype: str):
    import jax
    import numpy as np
    from benchmarks.train_step import full_size_config, random_flame_model
    from stylemask_jax import reenact as method
    from stylemask_jax.compiling import jit
    from stylemask_jax.sharding import data_mesh
    from stylemask_jax.training import loop, networks, objective, state as state_lib

    config = full_size_config(batch, True, config_name)
    config.compute_dtype = dtype
    mesh = data_mesh(1)
    nets, frozen = networks.build_networks(config)
    frozen = dict(frozen, flame=random_flame_model(config))
    optimizer = state_lib.make_optimizer(config.learning_rate, config.weight_decay)
    state = state_lib.initial_state(nets, config, optimizer, mesh)
    codes = loop.host_batch(state.key, 0, config, nets.generator.style_dim)
    grad_fn = jit(jax.value_and_grad(  # frozen is an argument: constants compile slowly
        lambda p, f, b: objective.loss_fn(p, f, b, nets, config), has_aux=True))
    start = time.perf_counter()
    (loss, metrics), grads = jax.device_get(grad_fn(state.params, frozen, codes))
    seconds = time.perf_counter() - start
    gen, gvars = nets.generator, frozen["generator"]

    @jit
    def images(gvars, latent, z):
        wplus = method.encode_wplus(gen, gvars, z, "z", config.truncation, latent)
        return method.synthesize(gen, gvars, method.style_codes(gen, gvars, wplus), wplus)

    pictures = np.asarray(jax.device_get(images(gvars, frozen["truncation_latent"],
                                                codes["z_source"])), np.float32)
    flat = np.concatenate([np.ravel(g) for g in jax.tree_util.tree_leaves(grads)])
    return dict(loss=float(loss), metrics={k: float(v) for k, v in metrics.items()}, grads=flat,
                images=pictures, seconds=seconds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=("ffhq1024", "tiny"), default="ffhq1024")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)
    import numpy as np
    f32 = run(args.config, args.batch, "float32")
    bf16 = run(args.config, args.batch, "bfloat16")
    print(f"configs/{args.config}.py, random weights, global batch {args.batch}, remat blocks")
    print("| quantity | float32 | bfloat16 | relative diff |\n|---|---|---|---|")
    for name in ["loss"] + sorted(f32["metrics"]):
        a = f32["loss"] if name == "loss" else f32["metrics"][name]
        b = bf16["loss"] if name == "loss" else bf16["metrics"][name]
        rel = abs(b - a) / abs(a) if a else float("nan")
        print(f"| {name} | {a:.6g} | {b:.6g} | {rel:.2e} |")
    g, h = f32["grads"], bf16["grads"]
    rel = np.linalg.norm(h - g) / np.linalg.norm(g)
    cosine = float(g @ h / (np.linalg.norm(g) * np.linalg.norm(h)))
    print(f"gradient of the mask parameters ({g.size} values): |g| f32 {np.linalg.norm(g):.4g}, "
          f"bf16 {np.linalg.norm(h):.4g}; relative L2 difference {rel:.3e}; cosine {cosine:.5f}")
    d = np.abs(bf16["images"] - f32["images"])
    size = f32["images"].shape[1]
    print(f"generator images {f32['images'].shape} ({size} px): max |bf16 - f32| {d.max():.4f}, "
          f"mean {d.mean():.5f}; image value range [{f32['images'].min():.2f}, "
          f"{f32['images'].max():.2f}]")
    print(f"loss+gradient call incl. compile: f32 {f32['seconds']:.0f} s, bf16 {bf16['seconds']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
