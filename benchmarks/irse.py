"""Throughput of the IR-SE family: ArcFace embeddings, the identity loss, e4e inversion.

    python -m benchmarks.irse                       # batch 1 and 12, float32
    python -m benchmarks.irse --batches 1 4 12 --dtype bfloat16
    python -m benchmarks.irse --torch               # also a PyTorch formulation, same machine

Random weights at full size (the speed does not depend on the values): IR-SE-50 (3, 4, 14, 3
units) and e4e for a 1024 generator (18 style blocks). Rows:

  embeddings         256x256 image -> crop -> adaptive pool to 112 -> IR-SE-50 -> unit 512-d
  identity loss f+b  the identity loss and its gradient w.r.t. the reenacted batch (training)
  e4e inversion      256x256 image -> 18 W+ codes

Each function is jitted once and timed after a warm-up call. `--torch` times the same layouts
written with torch.nn (stylemask_jax/reference/irse.py; eval mode, no_grad for the forward rows),
the way the reference runs them, with torch's default thread count. Run from the repository
root (the torch formulation is imported from tests/).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness
from benchmarks.harness import timed as seconds_per_call  # (first call, mean s per later call)
from stylemask_jax.faces import identity_loss
from stylemask_jax.models.e4e import init_e4e, n_styles_for
from stylemask_jax.models.irse import face_embeddings, init_irse


def jax_rows(batches, dtype, iters, output_size):
    irse, irse_vars = init_irse(jax.random.key(0), dtype=dtype)
    e4e, e4e_vars = init_e4e(jax.random.key(1), n_styles=n_styles_for(output_size), dtype=dtype)
    embed = jax.jit(functools.partial(face_embeddings, irse))
    loss_grad = jax.jit(jax.value_and_grad(functools.partial(identity_loss, irse), argnums=1))
    invert = jax.jit(e4e.apply)
    rows = []
    for b in batches:
        x = jnp.asarray(np.random.default_rng(b).uniform(-1, 1, (b, 256, 256, 3)), jnp.float32)
        for name, fn, args in (("embeddings", embed, (irse_vars, x)),
                               ("identity loss f+b", loss_grad, (irse_vars, x, x[::-1])),
                               ("e4e inversion", invert, (e4e_vars, x))):
            first, per_call = seconds_per_call(fn, args, iters)
            rows.append(("jax", name, b, first, per_call))
    return rows


def torch_rows(batches, iters, output_size):
    import torch
    from stylemask_jax.reference.irse import TorchE4E, TorchIRSE
    from stylemask_jax.reference.irse import identity_loss as torch_identity_loss
    torch.manual_seed(0)
    irse, e4e = TorchIRSE().eval(), TorchE4E(n_styles_for(output_size)).eval()
    for p in irse.parameters():
        p.requires_grad_(False)
    rows = []
    for b in batches:
        x = torch.from_numpy(np.random.default_rng(b).uniform(-1, 1, (b, 3, 256, 256)).astype(np.float32))

        def embed():
            with torch.no_grad():
                return irse.embed(x)

        def loss_grad():
            y = x.clone().requires_grad_(True)
            loss = torch_identity_loss(irse, y, x.flip(0))
            loss.backward()
            return y.grad

        def invert():
            with torch.no_grad():
                return e4e(x)

        for name, fn in (("embeddings", embed), ("identity loss f+b", loss_grad), ("e4e inversion", invert)):
            first, per_call = seconds_per_call(fn, (), iters)  # torch runs synchronously on CPU
            rows.append(("torch", name, b, first, per_call))
    return rows


def add_arguments(parser):
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 12])
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--iters", type=int, default=3, help="timed calls after the warm-up")
    parser.add_argument("--output-size", type=int, default=1024, help="generator size for e4e")
    parser.add_argument("--torch", action="store_true", help="also time a PyTorch formulation")


def run(args):
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    rows = jax_rows(args.batches, dtype, args.iters, args.output_size)
    if args.torch:
        rows += torch_rows(args.batches, args.iters, args.output_size)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), compute {args.dtype}, "
          f"IR-SE-50, e4e with {n_styles_for(args.output_size)} codes, {args.iters} timed calls")
    print(f"{'impl':6} {'what':18} {'batch':>5} {'first call s':>12} {'ms/call':>10} {'images/s':>9}")
    for impl, name, b, first, per_call in rows:
        print(f"{impl:6} {name:18} {b:5d} {first:12.2f} {per_call * 1e3:10.1f} {b / per_call:9.2f}")



def main(argv=None):
    return harness.main(__doc__, add_arguments, run, argv=argv)


if __name__ == "__main__":
    main()
