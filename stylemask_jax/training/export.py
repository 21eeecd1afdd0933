"""Export of a trained mask network: our weights directory and the official PyTorch layout.

Every output location is checked before anything is written, and both outputs are written under
temporary names beside their targets and renamed at the end (`outputs`), so a failure leaves
neither behind.
"""

from __future__ import annotations

import contextlib

import jax

from convert_weights import torch_writer
from convert_weights.mask_net import official_checkpoint
from stylemask_jax.outputs import atomic_dir, atomic_file, check_output_dir, check_output_file
from stylemask_jax.weights import write_weights


def export_mask_net(params, widths, step: int, out_dir: str, torch_path: str | None = None,
                    overwrite: bool = False) -> None:
    """Writes `out_dir` (for `stylemask reenact --mask-net`) and optionally `torch_path`
    ({'step', 'mask_net', 'num_layers_control'}, readable by the official code's torch.load;
    the format lives in convert_weights.mask_net, next to its reader)."""
    check_output_dir(out_dir, "mask-net folder", must_be_empty=not overwrite)
    if torch_path:
        check_output_file(torch_path, "torch file")
    params = jax.device_get(params)
    arch = {"widths": [int(w) for w in widths], "num_layers_control": len(widths), "step": int(step)}
    with contextlib.ExitStack() as outputs:  # renamed into place only when both are complete
        folder = outputs.enter_context(atomic_dir(out_dir, overwrite=overwrite))
        write_weights(folder, "mask_net", {"params": params}, arch)
        if torch_path:
            tmp = outputs.enter_context(atomic_file(torch_path))
            torch_writer.write_torch_file(official_checkpoint(params, step), tmp, torch_path)
