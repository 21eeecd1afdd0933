"""`stylemask compare`: the JAX networks vs the PyTorch reference, on your checkpoints.

    stylemask compare --generator-pt stylegan2-ffhq-config-f.pt --mask-net-pt mask_network_1024.pt

Prints one row per network (max and mean abs difference, tolerance, times) and exits 1 when a
network is above its tolerance (`stylemask_jax.reference.compare` says how they are set).
"""

from __future__ import annotations

import math

from stylemask_jax.commands import library
from stylemask_jax.commands.args import at_least
from stylemask_jax.errors import UserInputError

compare = library("stylemask_jax.reference.compare")

OPTIONS = {"generator": "generator_pt", "mask-net": "mask_net_pt", "e4e": "e4e_pt",
           "irse": "irse_pt", "deca": "deca_tar"}
TOLERANCE_NAMES = tuple(OPTIONS)  # the networks whose tolerance --tolerance may set

DESCRIPTION = """Compare the JAX networks with the PyTorch reference on your checkpoints: each
given file is converted in memory (nothing is written), loaded into the PyTorch reference
formulation (needs the [torch] extra) and both run on the same seeded inputs. A network fails
when JAX's max abs difference from the float64 reference exceeds its tolerance (the parity tests'
tolerance, or 5x the float32 reference's own difference when that is larger); a failure exits 1."""


def add_arguments(p) -> None:
    p.description = " ".join(DESCRIPTION.split())
    p.add_argument("--generator-pt", metavar="FILE.pt", help="official StyleGAN2 checkpoint")
    p.add_argument("--mask-net-pt", metavar="FILE.pt", help="official StyleMask mask network")
    p.add_argument("--e4e-pt", metavar="FILE.pt", help="official e4e encoder (e4e_ffhq_encode.pt)")
    p.add_argument("--irse-pt", metavar="FILE.pth", help="ArcFace IR-SE (model_ir_se50.pth)")
    p.add_argument("--deca-tar", metavar="FILE.tar", help="DECA checkpoint (deca_model.tar)")
    p.add_argument("--batch-size", type=int, default=1, action=at_least(1),
                   help="inputs per network")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs (numpy)")
    p.add_argument("--tolerance", action="append", default=[], metavar="NAME=VALUE",
                   help="set a network's max abs tolerance exactly (no float32 floor), "
                        "e.g. generator=1e-4; repeatable")


def parse_tolerances(items) -> dict:
    """['generator=1e-4', ...] -> {'generator': 1e-4, ...}."""
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            if name not in TOLERANCE_NAMES:
                raise ValueError
            out[name] = float(value)
            if not 0.0 < out[name] < math.inf:
                raise ValueError
        except ValueError:
            raise UserInputError(f"--tolerance {item!r}: expected NAME=VALUE with NAME one of "
                                 f"{', '.join(TOLERANCE_NAMES)} and VALUE a finite number > 0"
                                 ) from None
    return out


def run(args) -> int:
    files = {net: getattr(args, option) for net, option in OPTIONS.items()}
    if not any(files.values()):
        raise UserInputError("give at least one checkpoint: --generator-pt, --mask-net-pt, "
                             "--e4e-pt, --irse-pt or --deca-tar")
    tolerances = parse_tolerances(args.tolerance)
    rows = compare.compare(files, args.batch_size, args.seed, tolerances)
    print(compare.format_table(rows))
    failed = [r for r in rows if r.failed]
    if failed:
        print("stylemask compare: above tolerance: " + ", ".join(
            f"{r.network} ({r.max_abs:.2e} > {r.tolerance:.1e})" for r in failed))
        return compare.EXIT_ABOVE_TOLERANCE
    print(f"stylemask compare: all {len(rows)} networks within tolerance")
    return 0
