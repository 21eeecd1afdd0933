"""Export of a trained mask network: our weights directory and the official PyTorch layout."""

from __future__ import annotations

import collections
import os

import jax
import numpy as np

from stylemask_jax.weights import save_weights


def official_state_dict(params) -> collections.OrderedDict:
    """Mask params -> the official `mask_net` state dict (torch (out, in) weights)."""
    params = jax.device_get(params)
    state = collections.OrderedDict()
    for name in sorted(params):
        for torch_index, dense in (("0", "fc1"), ("2", "fc2")):
            state[f"{name}.masknet.{torch_index}.weight"] = np.asarray(params[name][dense]["kernel"], np.float32).T.copy()
            state[f"{name}.masknet.{torch_index}.bias"] = np.asarray(params[name][dense]["bias"], np.float32)
    return state


def export_mask_net(params, widths, step: int, out_dir: str, torch_path: str | None = None,
                    overwrite: bool = False) -> None:
    """Writes `out_dir` (for `stylemask reenact --mask-net`) and optionally `torch_path`
    ({'step', 'mask_net', 'num_layers_control'}, readable by the official code's torch.load)."""
    params = jax.device_get(params)
    arch = {"widths": [int(w) for w in widths], "num_layers_control": len(widths), "step": int(step)}
    save_weights(out_dir, "mask_net", {"params": params}, arch, overwrite=overwrite)
    if torch_path:
        from convert_weights.torch_writer import save_torch_file
        os.makedirs(os.path.dirname(os.path.abspath(torch_path)), exist_ok=True)
        save_torch_file({"step": int(step), "mask_net": official_state_dict(params),
                         "num_layers_control": len(widths)}, torch_path)
