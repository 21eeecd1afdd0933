"""ArcFace IR-SE (`model_ir_se50.pth`, a legacy-format plain state dict) -> `IRSE` variables.

`stylemask convert irse model_ir_se50.pth OUT_DIR` writes `{'params', 'batch_stats'}` of
`stylemask_jax.models.irse.IRSE` and `arch = {'units': [3, 4, 14, 3], 'embedding_dim': 512,
'input_size': 112}`; the number of units per stage is read from the keys, not assumed.

Key mapping (PyTorch -> Flax; BN = weight, bias -> params scale, bias and running_mean,
running_var -> batch_stats mean, var):

  input_layer.0 / .1 / .2                 body/input_conv, input_bn, input_prelu (alpha)
  body.{n}.res_layer.0 .. 5               body/body_{n}/bn1, conv1, prelu, conv2, bn2, se/fc1, fc2
  body.{n}.shortcut_layer.0 / .1          body/body_{n}/shortcut_conv, shortcut_bn
  output_layer.0 / .3 / .4                output_bn, output_dense, output_bn1d

`output_layer.3.weight` multiplies a (C, H, W) flatten in PyTorch; its columns are permuted
here to the (H, W, C) order of the NHWC flatten.
"""

from __future__ import annotations

import math
import re

import numpy as np
from einops import rearrange

from convert_weights.common import (ConversionError, StateDict, torch_batchnorm,
                                    torch_conv, torch_linear)
from convert_weights.torch_reader import load_torch_file

STAGE_WIDTHS = (64, 128, 256, 512)


def _put_bn(params: dict, stats: dict, name: str, sd: StateDict, prefix: str, channels: int):
    params[name], stats[name] = torch_batchnorm(sd, prefix, channels)


def infer_units(sd: StateDict, prefix: str = "body.") -> list[int]:
    """Units per stage from the `body.{n}.res_layer.1.weight` shapes; checks the stage rules."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = sorted({int(m.group(1)) for k in sd.keys() if (m := pattern.match(k))})
    if not indices:
        raise ConversionError(f"{sd.source}: no '{sd.prefix}{prefix}N.*' keys: not an IR-SE network")
    if indices != list(range(len(indices))):
        missing = sorted(set(range(indices[-1] + 1)) - set(indices))
        raise ConversionError(f"{sd.source}: missing key(s) '{sd.prefix}{prefix}{missing[0]}.*'")
    units = [0] * len(STAGE_WIDTHS)
    previous = STAGE_WIDTHS[0]
    for n in indices:
        key = f"{prefix}{n}.res_layer.1.weight"
        shape = sd.shape(key)
        if len(shape) != 4 or shape[0] not in STAGE_WIDTHS:
            raise ConversionError(f"{sd.source}: key '{sd.prefix}{key}' has shape {shape}, expected "
                                  f"(D, C, 3, 3) with D in {STAGE_WIDTHS}")
        stage = STAGE_WIDTHS.index(shape[0])
        if STAGE_WIDTHS.index(previous) not in (stage, stage - 1):
            raise ConversionError(f"{sd.source}: key '{sd.prefix}{key}' has {shape[0]} output "
                                  f"channels after a unit of {previous}: stages out of order")
        units[stage] += 1
        previous = shape[0]
    if 0 in units:
        raise ConversionError(f"{sd.source}: stage of width {STAGE_WIDTHS[units.index(0)]} has no "
                              f"units ('{sd.prefix}{prefix}N.*')")
    return units


def convert_body(sd: StateDict, units: list[int], body_prefix: str = "body.",
                 input_prefix: str = "input_layer.") -> tuple[dict, dict]:
    """The input stem and units -> (params, batch_stats) of `IRSEBody`."""
    params, stats = {}, {}
    params["input_conv"] = {"kernel": torch_conv(sd, f"{input_prefix}0.weight", 64, 3, 3)}
    _put_bn(params, stats, "input_bn", sd, f"{input_prefix}1", 64)
    params["input_prelu"] = {"alpha": sd.take(f"{input_prefix}2.weight", (64,))}
    n, c = 0, STAGE_WIDTHS[0]
    for d, count in zip(STAGE_WIDTHS, units):
        for _ in range(count):
            p = f"{body_prefix}{n}."
            up, us = {}, {}
            if c != d:
                up["shortcut_conv"] = {"kernel": torch_conv(sd, p + "shortcut_layer.0.weight", d, c, 1)}
                _put_bn(up, us, "shortcut_bn", sd, p + "shortcut_layer.1", d)
            _put_bn(up, us, "bn1", sd, p + "res_layer.0", c)
            up["conv1"] = {"kernel": torch_conv(sd, p + "res_layer.1.weight", d, c, 3)}
            up["prelu"] = {"alpha": sd.take(p + "res_layer.2.weight", (d,))}
            up["conv2"] = {"kernel": torch_conv(sd, p + "res_layer.3.weight", d, d, 3)}
            _put_bn(up, us, "bn2", sd, p + "res_layer.4", d)
            up["se"] = {
                "fc1": {"kernel": sd.take(p + "res_layer.5.fc1.weight", (d // 16, d, 1, 1))[:, :, 0, 0].T.copy()},
                "fc2": {"kernel": sd.take(p + "res_layer.5.fc2.weight", (d, d // 16, 1, 1))[:, :, 0, 0].T.copy()},
            }
            params[f"body_{n}"], stats[f"body_{n}"] = up, us
            n, c = n + 1, d
    return params, stats


def convert_state_dict(sd: StateDict) -> tuple[dict, dict]:
    """A flat IR-SE state dict -> ({'params', 'batch_stats'}, arch)."""
    units = infer_units(sd)
    body_params, body_stats = convert_body(sd, units)
    params, stats = {"body": body_params}, {"body": body_stats}
    _put_bn(params, stats, "output_bn", sd, "output_layer.0", 512)
    dense = torch_linear(sd, "output_layer.3")
    emb, n_in = dense["kernel"].shape[1], dense["kernel"].shape[0]
    side = math.isqrt(n_in // 512)
    if n_in != 512 * side * side:
        raise ConversionError(f"{sd.source}: key '{sd.prefix}output_layer.3.weight' has {n_in} input "
                              "features, expected 512 * S * S (the flattened final map)")
    # rows of the (in, out) kernel are indexed (c, h, w) in PyTorch; reorder them to (h, w, c)
    kernel = rearrange(dense["kernel"], "(c h w) e -> (h w c) e", c=512, h=side, w=side)
    params["output_dense"] = {"kernel": np.ascontiguousarray(kernel), "bias": dense["bias"]}
    _put_bn(params, stats, "output_bn1d", sd, "output_layer.4", emb)
    sd.finish()
    arch = {"units": units, "embedding_dim": int(emb), "input_size": int(16 * side)}
    return {"params": params, "batch_stats": stats}, arch


def convert_irse(path) -> tuple[dict, dict]:
    """Reads an IR-SE checkpoint (no torch needed) -> ({'params', 'batch_stats'}, arch)."""
    obj = load_torch_file(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    return convert_state_dict(StateDict(obj, str(path)))
