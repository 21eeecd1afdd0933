"""The official StyleMask mask-network checkpoint format, both directions.

The official file is `{'step': int, 'mask_net': state_dict, 'num_layers_control': int}` with
keys `network_NN.masknet.0.{weight,bias}` and `network_NN.masknet.2.{weight,bias}`, square
(d, d) weights in torch (out, in) layout (index 1 of the Sequential is the ReLU).

    convert_mask_net(path)                   official file -> ({'params': {'network_NN': {'fc1',
                                             'fc2'}}}, arch)            (stylemask convert mask-net)
    official_checkpoint(params, step)        our params -> the official dict    (stylemask export)
"""

from __future__ import annotations

import collections
import re

import numpy as np

from convert_weights.common import ConversionError, StateDict, torch_linear
from convert_weights.torch_reader import load_torch_file


_KEY = re.compile(r"network_(\d+)\.masknet\.[02]\.(weight|bias)$")
_DENSE_INDEX = (("fc1", "0"), ("fc2", "2"))  # our Dense name -> index in the torch Sequential


def convert_mask_net(path: str, expected_widths=None) -> tuple[dict, dict]:
    """Reads a StyleMask checkpoint; returns ({'params': ...}, arch).

    arch = {'widths': [d_0, ...], 'num_layers_control': n, 'step': step or None}.
    `expected_widths` (the generator's style widths) makes a mismatch an error.
    """
    checkpoint = load_torch_file(path)
    if not isinstance(checkpoint, dict) or "mask_net" not in checkpoint:
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ConversionError(f"{path}: expected a StyleMask checkpoint with a 'mask_net' entry, "
                              f"found {found}")
    sd = StateDict(checkpoint["mask_net"], str(path), prefix="mask_net.")
    indices = set()
    for key in sd.keys():
        match = _KEY.match(key)
        if not match:
            raise ConversionError(f"{path}: unexpected key 'mask_net.{key}'")
        indices.add(int(match.group(1)))
    count = len(indices)
    if indices != set(range(count)) or count == 0:
        raise ConversionError(f"{path}: mask networks must be numbered network_00.. without gaps, "
                              f"found {sorted(indices)}")
    declared = checkpoint.get("num_layers_control", count)
    declared = int(declared)
    if declared > count:
        raise ConversionError(f"{path}: num_layers_control is {declared} but only {count} "
                              "mask networks are stored")
    params, widths = {}, []
    for index in range(count):
        prefix = f"network_{index:02d}.masknet"
        width = sd.shape(f"{prefix}.0.weight")[0]
        params[f"network_{index:02d}"] = {
            dense: torch_linear(sd, f"{prefix}.{torch_index}", width, width)
            for dense, torch_index in _DENSE_INDEX}
        widths.append(int(width))
    sd.finish()
    # The official code builds num_layers_control nets; extra stored ones are never used.
    params = {k: v for k, v in params.items() if int(k[-2:]) < declared}
    widths = widths[:declared]
    check_widths(widths, expected_widths, str(path))
    step = checkpoint.get("step")
    arch = {"widths": widths, "num_layers_control": declared,
            "step": int(step) if step is not None else None}
    return {"params": params}, arch


def official_state_dict(params) -> collections.OrderedDict:
    """Mask params {'network_NN': {'fc1', 'fc2'}} (numpy or jax arrays) -> the official
    `mask_net` state dict (float32 torch (out, in) weights), the inverse of convert_mask_net."""
    state = collections.OrderedDict()
    for name in sorted(params):
        for dense, torch_index in _DENSE_INDEX:
            layer = params[name][dense]
            state[f"{name}.masknet.{torch_index}.weight"] = np.asarray(layer["kernel"], np.float32).T.copy()
            state[f"{name}.masknet.{torch_index}.bias"] = np.asarray(layer["bias"], np.float32)
    return state


def official_checkpoint(params, step: int) -> dict:
    """{'step', 'mask_net', 'num_layers_control'}: what the official code's torch.load reads."""
    return {"step": int(step), "mask_net": official_state_dict(params),
            "num_layers_control": len(params)}


def check_widths(widths, generator_widths, source: str) -> None:
    """Raises ConversionError when the mask widths are not the generator's first style widths."""
    if generator_widths is None:
        return
    generator_widths = [int(w) for w in generator_widths]
    if len(widths) > len(generator_widths) or list(widths) != generator_widths[: len(widths)]:
        raise ConversionError(
            f"{source}: mask network widths {list(widths)} do not match the generator's style "
            f"widths {generator_widths[: max(len(widths), 1)]}... (a mask network for another generator?)")
