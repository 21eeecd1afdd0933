"""Export of a trained mask network: our weights directory and the official PyTorch layout.

Every output location is checked before anything is written, and both outputs are written under
temporary names beside their targets and renamed at the end (`outputs`), so a failure leaves
neither behind.
"""

from __future__ import annotations

import contextlib

import jax

from stylemask_jax.outputs import atomic_dir, atomic_file, check_output_dir, check_output_file
from stylemask_jax.weights import write_weights


def export_mask_net(params, widths, step: int, out_dir: str, torch_path: str | None = None,
                    overwrite: bool = False) -> None:
    """Writes `out_dir` (for `stylemask reenact --mask-net`) and optionally `torch_path`
    ({'step', 'mask_net', 'num_layers_control'}, readable by the official code's torch.load;
    the format lives in convert_weights.mask_net, next to its reader)."""
    check_output_dir(out_dir, "--out", must_be_empty=not overwrite)
    if torch_path:
        check_output_file(torch_path, "--torch")
    params = jax.device_get(params)
    arch = {"widths": [int(w) for w in widths], "num_layers_control": len(widths), "step": int(step)}
    with contextlib.ExitStack() as outputs:  # renamed into place only when both are complete
        folder = outputs.enter_context(atomic_dir(out_dir, overwrite=overwrite))
        write_weights(folder, "mask_net", {"params": params}, arch)
        if torch_path:
            from convert_weights.mask_net import official_checkpoint
            from convert_weights.torch_writer import write_torch_file
            tmp = outputs.enter_context(atomic_file(torch_path))
            write_torch_file(official_checkpoint(params, step), tmp, torch_path)


def export_workdir(workdir: str, out_dir: str, torch_path: str | None = None,
                   overwrite: bool = False, step: int | None = None) -> int:
    """Exports the newest restorable checkpoint (or `step`) of a training workdir
    (`stylemask export`); returns its step."""
    from stylemask_jax.training.checkpoints import restore_mask_params, workdir_config
    check_output_dir(out_dir, "--out", must_be_empty=not overwrite)  # before the restore
    if torch_path:
        check_output_file(torch_path, "--torch")
    config = workdir_config(workdir)
    nets, _, params, found = restore_mask_params(workdir, config, step=step)
    export_mask_net(params, nets.mask_net.widths, found, out_dir, torch_path, overwrite)
    return found
