"""Throughput of StyleMask's DECA stage: 256x256 image + 68 landmarks -> crop -> E_flame.

    python -m benchmarks.deca                      # batch 12, full ResNet-50, float32
    python -m benchmarks.deca --dtype bfloat16     # bfloat16 compute
    python -m benchmarks.deca --torch              # also the PyTorch reference formulation

Random weights (the speed does not depend on them), full depth (3, 4, 6, 3). "forward" is
crop + encoder; "forward+backward" also takes the gradient of a scalar of the 236 outputs with
respect to the input images (what the training step needs). Each function is jitted once and
timed after a warm-up call. `--torch` times the same computation in PyTorch the way the
reference does it (kornia-0.4.1-style affine_grid/grid_sample crop, a ResNet-50 of the same
layout with BatchNorm in eval mode), for a same-machine comparison.
FLAME (cheap next to the ResNet) is not included yet.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax.models.deca import RESNET50_BLOCKS, init_deca
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


def timed(fn, args, iters: int) -> tuple[float, float]:
    """(first call incl. compile in s, mean seconds per call afterwards)."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(iters):
        out = fn(*args)
    jax.block_until_ready(out)
    return first, (time.perf_counter() - start) / iters


def bench_jax(batch, size, iters, dtype):
    model, variables = init_deca(jax.random.key(0), RESNET50_BLOCKS, dtype=dtype)

    def forward(v, images, landmarks):
        return model.apply(v, deca_crop(images, landmarks))

    def loss(images, v, landmarks):
        return jnp.mean(forward(v, images, landmarks) ** 2)

    fwd = jax.jit(forward)
    fwd_bwd = jax.jit(jax.value_and_grad(loss))
    images, landmarks = (jnp.asarray(a) for a in random_inputs(batch, size))
    rows = []
    for name, fn, args in (("forward", fwd, (variables, images, landmarks)),
                           ("forward+backward", fwd_bwd, (images, variables, landmarks))):
        first, per_call = timed(fn, args, iters)
        rows.append((f"jax {jnp.dtype(dtype).name}", name, first, per_call))
    return rows


def _torch_model(torch):
    """A ResNet-50 (+ regressor) of the reference's layout, eval mode, random weights."""
    nn = torch.nn

    class Bottleneck(nn.Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            out = planes * 4
            self.body = nn.Sequential(
                nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(True),
                nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes),
                nn.ReLU(True), nn.Conv2d(planes, out, 1, bias=False), nn.BatchNorm2d(out))
            self.down = (nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False),
                                       nn.BatchNorm2d(out)) if stride != 1 or cin != out else None)

        def forward(self, x):
            return torch.relu(self.body(x) + (x if self.down is None else self.down(x)))

    layers, cin = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(True),
                   nn.MaxPool2d(3, 2, 1)], 64
    for stage, (count, planes) in enumerate(zip(RESNET50_BLOCKS, (64, 128, 256, 512))):
        for i in range(count):
            layers.append(Bottleneck(cin, planes, 2 if stage > 0 and i == 0 else 1))
            cin = planes * 4
    layers += [nn.AvgPool2d(7, 1), nn.Flatten(), nn.Linear(2048, 1024), nn.ReLU(),
               nn.Linear(1024, 236)]
    return nn.Sequential(*layers).eval()


def _torch_crop(torch, images, landmarks):
    """The reference's crop: bbox -> similarity -> kornia-0.4.1 warp (float32), then /255."""
    import torch.nn.functional as F
    x255 = (images.clamp(-1, 1) + 1) / (2 + 1e-5) * 255
    lo, hi = landmarks.min(1).values, landmarks.max(1).values
    old_size = ((hi - lo).sum(1)) / 2 * 1.1
    center = hi - (hi - lo) / 2
    size = torch.floor(old_size * 1.25)
    s = 223 / size
    m = torch.zeros(images.shape[0], 3, 3)
    m[:, 0, 0] = m[:, 1, 1] = s
    m[:, :2, 2] = -s[:, None] * (center - size[:, None] / 2)
    m[:, 2, 2] = 1

    def normal(n):
        return torch.tensor([[2 / (n - 1), 0, -1], [0, 2 / (n - 1), -1], [0, 0, 1.0]])
    theta = torch.inverse(normal(224) @ m @ torch.inverse(normal(images.shape[-1])))[:, :2]
    grid = F.affine_grid(theta, [images.shape[0], 3, 224, 224], align_corners=False)
    return F.grid_sample(x255, grid, align_corners=False) / 255


def bench_torch(batch, size, iters):
    import torch
    model = _torch_model(torch)
    images, landmarks = (torch.from_numpy(a) for a in random_inputs(batch, size))
    images = images.permute(0, 3, 1, 2).contiguous()

    def forward():
        with torch.no_grad():
            return model(_torch_crop(torch, images, landmarks))

    def forward_backward():
        x = images.clone().requires_grad_(True)
        loss = (model(_torch_crop(torch, x, landmarks)) ** 2).mean()
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--size", type=int, default=256, help="input image side")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--torch", action="store_true", help="also time the PyTorch formulation")
    args = parser.parse_args(argv)

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


if __name__ == "__main__":
    main()
