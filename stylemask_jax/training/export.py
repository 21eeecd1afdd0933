"""Export of a trained mask network: our weights directory and the official PyTorch layout."""

from __future__ import annotations

import os

import jax

from stylemask_jax.weights import save_weights


def export_mask_net(params, widths, step: int, out_dir: str, torch_path: str | None = None,
                    overwrite: bool = False) -> None:
    """Writes `out_dir` (for `stylemask reenact --mask-net`) and optionally `torch_path`
    ({'step', 'mask_net', 'num_layers_control'}, readable by the official code's torch.load;
    the format lives in convert_weights.mask_net, next to its reader)."""
    params = jax.device_get(params)
    arch = {"widths": [int(w) for w in widths], "num_layers_control": len(widths), "step": int(step)}
    save_weights(out_dir, "mask_net", {"params": params}, arch, overwrite=overwrite)
    if torch_path:
        from convert_weights.mask_net import official_checkpoint
        from convert_weights.torch_writer import save_torch_file
        os.makedirs(os.path.dirname(os.path.abspath(torch_path)), exist_ok=True)
        save_torch_file(official_checkpoint(params, step), torch_path)


def export_workdir(workdir: str, out_dir: str, torch_path: str | None = None,
                   overwrite: bool = False) -> int:
    """Exports the latest checkpoint of a training workdir (`stylemask export`); returns its step."""
    from stylemask_jax.training.checkpoints import restore_mask_params, workdir_config
    config = workdir_config(workdir)
    nets, _, params, step = restore_mask_params(workdir, config)
    export_mask_net(params, nets.mask_net.widths, step, out_dir, torch_path, overwrite)
    return step
