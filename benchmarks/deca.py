"""Throughput of StyleMask's DECA stage: 256x256 image + 68 landmarks -> crop -> E_flame.

    python -m benchmarks.deca                      # batch 12, full ResNet-50, float32
    python -m benchmarks.deca --dtype bfloat16     # bfloat16 compute
    python -m benchmarks.deca --torch              # also the PyTorch reference formulation

Random weights (the speed does not depend on them), full depth (3, 4, 6, 3). "forward" is
crop + encoder; "forward+backward" also takes the gradient of a scalar of the 236 outputs with
respect to the input images (what the training step needs). Each function is jitted once and
timed after a warm-up call. `--torch` times the same computation in PyTorch the way the
reference does it (stylemask_jax/reference/deca.py: kornia-0.4.1-style affine_grid/grid_sample
crop, a ResNet-50 of the same layout with BatchNorm in eval mode), for a same-machine
comparison. Run from the repository root (the torch formulation is imported from tests/).
The JAX rows "... +FLAME" add the FLAME decode of the predicted parameters (a random head
with FLAME's real size, ~5000 vertices and 68 landmarks) to what is timed; the torch rows have
no FLAME.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness
from benchmarks.harness import timed
from stylemask_jax.compiling import jit
from stylemask_jax.models import flame as flame_lib
from stylemask_jax.models.deca import RESNET50_BLOCKS, init_deca, split_params
from stylemask_jax.ops.deca_crop import FFHQ_FIXED_BOX, deca_crop


def random_inputs(batch: int, size: int, seed: int = 0):
    """Images in [-1, 1] (B, size, size, 3) and landmarks (B, 68, 2) spread over a jittered
    FFHQ-like face box."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
    box = np.asarray(FFHQ_FIXED_BOX) * size / 256 + rng.normal(0, 4, (batch, 4))
    t = rng.uniform(0, 1, (batch, 68, 2))
    landmarks = box[:, None, :2] + t * (box[:, None, 2:] - box[:, None, :2])
    return images, landmarks.astype(np.float32)


def bench_jax(batch, size, iters, dtype):
    model, variables = init_deca(jax.random.key(0), RESNET50_BLOCKS, dtype=dtype)

    def forward(v, images, landmarks):
        return model.apply(v, deca_crop(images, landmarks))

    def loss(images, v, landmarks):
        return jnp.mean(forward(v, images, landmarks) ** 2)

    from stylemask_jax.training.networks import random_flame
    head = random_flame(jax.random.key(1), rings=70, segments=72)  # 5040 vertices (FLAME: 5023)

    def with_flame(v, images, landmarks):
        code = split_params(forward(v, images, landmarks))
        decoded = flame_lib.decode(head, code["shape"], code["exp"], code["pose"], code["cam"])
        return decoded.vertices, decoded.landmarks2d

    def loss_flame(images, v, landmarks):
        vertices, lmk = with_flame(v, images, landmarks)
        return jnp.mean(vertices ** 2) + jnp.mean(lmk ** 2)

    fwd = jit(forward)
    fwd_bwd = jit(jax.value_and_grad(loss))
    images, landmarks = (jnp.asarray(a) for a in random_inputs(batch, size))
    rows = []
    for name, fn, args in (("forward", fwd, (variables, images, landmarks)),
                           ("forward+backward", fwd_bwd, (images, variables, landmarks)),
                           ("forward +FLAME", jit(with_flame), (variables, images, landmarks)),
                           ("forward+backward +FLAME", jit(jax.value_and_grad(loss_flame)),
                            (images, variables, landmarks))):
        first, per_call = timed(fn, args, iters)
        rows.append((f"jax {jnp.dtype(dtype).name}", name, first, per_call))
    return rows


def bench_torch(batch, size, iters):
    import torch
    from stylemask_jax.reference.deca import RESNET50_BLOCKS as TORCH_BLOCKS
    from stylemask_jax.reference.deca import TorchDecaEncoder, deca_crop
    model = TorchDecaEncoder(TORCH_BLOCKS).eval()
    images, landmarks = (torch.from_numpy(a) for a in random_inputs(batch, size))
    images = images.permute(0, 3, 1, 2).contiguous()

    def forward():
        with torch.no_grad():
            return model(deca_crop(images, landmarks)[0])

    def forward_backward():
        x = images.clone().requires_grad_(True)
        loss = (model(deca_crop(x, landmarks)[0]) ** 2).mean()
        loss.backward()
        return x.grad

    rows = []
    for name, fn in (("forward", forward), ("forward+backward", forward_backward)):
        start = time.perf_counter()
        fn()
        first = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        rows.append((f"torch {torch.__version__} ({torch.get_num_threads()} thr)", name, first,
                     (time.perf_counter() - start) / iters))
    return rows


def add_arguments(parser):
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--size", type=int, default=256, help="input image side")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--torch", action="store_true", help="also time the PyTorch formulation")


def run(args):

    device = jax.devices()[0]
    print(f"DECA crop + E_flame (ResNet-50 {RESNET50_BLOCKS}), batch {args.batch}, "
          f"{args.size}x{args.size} input, {device.platform}: {device.device_kind}")
    rows = bench_jax(args.batch, args.size, args.iters, jnp.dtype(args.dtype))
    if args.torch:
        rows += bench_torch(args.batch, args.size, args.iters)
    print(f"| {'impl':<28} | {'pass':<16} | {'first call s':>12} | {'ms/batch':>9} | {'images/s':>8} |")
    print(f"|{'-' * 30}|{'-' * 18}|{'-' * 14}|{'-' * 11}|{'-' * 10}|")
    for impl, name, first, per_call in rows:
        print(f"| {impl:<28} | {name:<16} | {first:12.2f} | {per_call * 1e3:9.1f} | "
              f"{args.batch / per_call:8.1f} |")



def main(argv=None):
    return harness.main(__doc__, add_arguments, run, argv=argv)


if __name__ == "__main__":
    main()
