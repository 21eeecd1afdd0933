"""`stylemask compare`: our JAX networks vs the PyTorch reference, on the user's checkpoints.

    stylemask compare --generator-pt stylegan2-ffhq-config-f.pt --mask-net-pt mask_network_1024.pt \
        --e4e-pt e4e_ffhq_encode.pt --irse-pt model_ir_se50.pth --deca-tar deca_model.tar

Each given file is converted in memory with the converter `stylemask convert` uses (nothing is
written) and loaded as is into the PyTorch reference formulation of `stylemask_jax.reference`
(written from the equations; needs the `[torch]` extra). Both run on the same seeded inputs:

  network     input (seeded)                                  output compared
  generator   z ~ N(0, 1) (B, style_dim), no truncation      image (B, H, W, 3)
  mask-net    source/target style codes ~ N(0, 1) per layer  masks, all controlled layers
  e4e         images ~ U(-1, 1) (B, 256, 256, 3)              W+ codes (B, n_styles, 512)
  irse        images ~ U(-1, 1) (B, 256, 256, 3)              embeddings (B, 512)
  deca        crops ~ U(0, 1) (B, 224, 224, 3)                parameters (B, 236)

JAX runs in float32 (matmuls at full precision); the reference runs in float64 (the values
compared against) and in float32 (the speed compared against, and the float32 rounding of the
reference itself on these inputs). A network fails when JAX's max abs difference from the
float64 reference exceeds its tolerance, max(TOLERANCES[network], 5 x the float32 reference's
own max abs difference), as the parity tests reason (TOLERANCES are their tolerances, on the
official reference vectors; random inputs can give larger outputs, e.g. DECA parameters up to
10 instead of 1, and so larger float32 rounding). `--tolerance NAME=VALUE` sets a tolerance
exactly. A failure exits 1. Times are one call after a warm-up call (JAX: after compilation).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax.compiling import jit
from stylemask_jax.errors import UserInputError

try:  # the [torch] extra: the reference modules below need it too
    import torch
except ImportError:
    raise UserInputError('stylemask compare needs PyTorch: pip install -e ".[torch]"') from None

from convert_weights import deca, e4e, irse, mask_net, stylegan2
from convert_weights.torch_reader import load_torch_file
from stylemask_jax.models.deca import DecaEncoder
from stylemask_jax.models.e4e import e4e_from_arch
from stylemask_jax.models.irse import face_embeddings, irse_from_arch
from stylemask_jax.models.mask_net import MaskNet
from stylemask_jax.models.stylegan2 import Generator
from stylemask_jax.reference import stylegan2 as ref
from stylemask_jax.reference.deca import build_deca
from stylemask_jax.reference.irse import build_e4e, build_irse
from stylemask_jax.reference.stylemask import build_mask_net

# Max abs difference allowed, float32 JAX vs the float64 reference: the tolerances of the parity
# tests on the official reference vectors (tests/test_stylegan2_torch.py full FFHQ-1024 layout,
# tests/test_reenact.py masks, tests/test_e4e.py, tests/test_irse.py, tests/test_deca.py).
TOLERANCES = {"generator": 1e-3, "mask-net": 1e-5, "e4e": 2e-5, "irse": 1e-6, "deca": 5e-6}
FLOAT32_FLOOR_FACTOR = 5.0  # x the float32 reference's own difference from float64
EXIT_ABOVE_TOLERANCE = 1
NETWORKS = ("generator", "mask-net", "e4e", "irse", "deca")


@dataclasses.dataclass
class Row:
    network: str
    output: str
    max_abs: float | None = None
    mean_abs: float | None = None
    tolerance: float | None = None
    torch32_max_abs: float | None = None
    jax_s: float | None = None
    torch_s: float | None = None
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.max_abs is not None and not self.max_abs <= self.tolerance


def _timed(fn):
    """(result of the second call, its seconds); the first call warms up (compiles)."""
    fn()
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _jax_call(fn):

    def call():
        with jax.default_matmul_precision("highest"):
            return np.asarray(jax.block_until_ready(fn()), np.float64)
    return call


def _torch_call(fn):
    def call():
        with torch.no_grad():
            return np.asarray(fn(), np.float64)
    return call


def _nchw(x, torch, dtype):
    return torch.as_tensor(np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))).to(dtype)


# ---------------------------------------------------------------------------------------------
# one function per network: (output name, jax call, torch call)
# ---------------------------------------------------------------------------------------------

def _generator(path, rng, batch, torch):
    checkpoint = load_torch_file(path)
    variables, arch, _ = stylegan2.convert_stylegan2(checkpoint, source=str(path))
    gen = Generator.from_arch(arch)
    state = checkpoint["g_ema"] if isinstance(checkpoint, dict) and "g_ema" in checkpoint else checkpoint
    z = rng.standard_normal((batch, arch["style_dim"])).astype(np.float32)
    fn = jit(lambda v, z: gen.apply(v, z))

    def reference(dtype):
        module = ref.build_generator(state, arch, dtype)
        return lambda: ref.forward(module, z=z)
    return "image", (lambda: fn(variables, z)), reference


def _mask_net(path, rng, batch, torch):
    variables, arch = mask_net.convert_mask_net(path)
    net = MaskNet(tuple(arch["widths"]))
    used = {f"network_{i:02d}" for i in range(arch["num_layers_control"])}
    state = {k: v for k, v in load_torch_file(path)["mask_net"].items() if k.split(".")[0] in used}
    src = [rng.standard_normal((batch, w)).astype(np.float32) for w in arch["widths"]]
    tgt = [rng.standard_normal((batch, w)).astype(np.float32) for w in arch["widths"]]
    fn = jit(lambda v, s, t: jnp.concatenate(net.apply(v, s, t), axis=1))

    def reference(dtype):
        module = build_mask_net(state, dtype)
        s, t = ([torch.as_tensor(x).to(dtype) for x in xs] for xs in (src, tgt))
        return lambda: torch.cat(module(s, t), 1)
    return "masks", (lambda: fn(variables, src, tgt)), reference


def _e4e(path, rng, batch, torch):
    variables, arch = e4e.convert_e4e(path)
    encoder = e4e_from_arch(arch)
    checkpoint = load_torch_file(path)
    state = {k[len("encoder."):]: v for k, v in checkpoint["state_dict"].items()
             if k.startswith("encoder.")}
    images = rng.uniform(-1, 1, (batch, 256, 256, 3)).astype(np.float32)
    fn = jit(encoder.apply)

    def reference(dtype):
        module, x = build_e4e(state, checkpoint["latent_avg"], dtype), _nchw(images, torch, dtype)
        return lambda: module(x)
    return "W+ codes", (lambda: fn(variables, images)), reference


def _irse(path, rng, batch, torch):
    variables, arch = irse.convert_irse(path)
    model = irse_from_arch(arch)
    state = load_torch_file(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    images = rng.uniform(-1, 1, (batch, 256, 256, 3)).astype(np.float32)
    fn = jit(lambda v, x: face_embeddings(model, v, x))

    def reference(dtype):
        module, x = build_irse(state, dtype), _nchw(images, torch, dtype)
        return lambda: module.embed(x)
    return "embeddings", (lambda: fn(variables, images)), reference


def _deca(path, rng, batch, torch):
    variables, arch = deca.convert_deca(path)
    model = DecaEncoder(blocks=tuple(arch["blocks"]))
    state = load_torch_file(path)["E_flame"]
    crops = rng.uniform(0, 1, (batch, 224, 224, 3)).astype(np.float32)
    fn = jit(model.apply)

    def reference(dtype):
        module, x = build_deca(state, dtype), _nchw(crops, torch, dtype)
        return lambda: module(x)
    return "parameters", (lambda: fn(variables, crops)), reference


_BUILDERS = {"generator": _generator, "mask-net": _mask_net, "e4e": _e4e, "irse": _irse,
             "deca": _deca}


def compare(files: dict, batch: int = 1, seed: int = 0, tolerances: dict | None = None) -> list[Row]:
    """files: {network: checkpoint path} for any of NETWORKS; tolerances: exact overrides.
    Returns one Row per given network, in NETWORKS order."""
    tolerances = tolerances or {}
    rows = []
    for network in NETWORKS:
        if not files.get(network):
            continue
        rng = np.random.default_rng(seed)
        output, jax_fn, reference = _BUILDERS[network](files[network], rng, batch, torch)
        ours, jax_s = _timed(_jax_call(jax_fn))
        theirs32, torch_s = _timed(_torch_call(reference(torch.float32)))
        theirs = _torch_call(reference(torch.float64))()
        if ours.shape != theirs.shape:  # torch gives NCHW images
            theirs, theirs32 = (np.transpose(x, (0, 2, 3, 1)) for x in (theirs, theirs32))
        diff = np.abs(ours - theirs)
        floor = float(np.abs(theirs32 - theirs).max())
        tol = tolerances.get(network, max(TOLERANCES[network], FLOAT32_FLOOR_FACTOR * floor))
        rows.append(Row(network, output, float(diff.max()), float(diff.mean()), tol, floor,
                        jax_s, torch_s))
    return rows


def format_table(rows: list[Row]) -> str:
    """A markdown table: JAX float32 vs the float64 reference, and the float32 reference's own
    difference; times of JAX float32 and torch float32."""
    head = ["network", "output", "max abs diff", "mean abs diff", "torch f32 max abs diff",
            "tolerance", "JAX s", "torch s", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.max_abs is None:
            cells = [r.network, r.output, "-", "-", "-", "-", "-", "-", r.note]
        else:
            cells = [r.network, r.output, f"{r.max_abs:.2e}", f"{r.mean_abs:.2e}",
                     f"{r.torch32_max_abs:.2e}", f"{r.tolerance:.1e}", f"{r.jax_s:.3f}", f"{r.torch_s:.3f}",
                     "FAIL" if r.failed else "ok"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the sub-command (torch is imported only when it runs)
# ---------------------------------------------------------------------------------------------
