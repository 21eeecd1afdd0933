"""`stylemask export`: a trained mask network for `stylemask reenact` (and the PyTorch layout).

    stylemask export --workdir runs/paper --out weights/mask_net --torch mask_net.pt

Both outputs are checked before the checkpoint is restored and written under temporary names,
renamed at the end: a failure leaves neither behind.
"""

from __future__ import annotations

from stylemask_jax.commands import library
from stylemask_jax.commands.args import check_new_output
from stylemask_jax.commands.evaluate import restore

export = library("stylemask_jax.training.export")
outputs = library("stylemask_jax.outputs")


def add_arguments(p) -> None:
    p.add_argument("--workdir", required=True, help="a training workdir")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="mask-net weights directory for `stylemask reenact --mask-net DIR`")
    p.add_argument("--torch", metavar="FILE.pt", default=None,
                   help="also write the official PyTorch checkpoint layout "
                        "{'step', 'mask_net', 'num_layers_control'} (written without torch)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--step", type=int, default=None, help="export this checkpoint step "
                   "(default: the newest that restores)")


def run(args) -> None:
    check_new_output(args.out, "--out", args.overwrite)     # before the restore
    if args.torch:
        outputs.check_output_file(args.torch, "--torch")
    nets, _, params, step, _ = restore(args)
    export.export_mask_net(params, nets.mask_net.widths, step, args.out, args.torch,
                           args.overwrite)
    print(f"exported step {step} to {args.out}" + (f" and {args.torch}" if args.torch else ""))
