"""DECA `deca_model.tar` -> the `E_flame` encoder's Flax variables (stylemask_jax.models.deca).

    stylemask convert deca deca_model.tar OUT_DIR

Only `E_flame` (the coarse ResNet-50 encoder regressing FLAME, camera and light parameters) is
read; `E_detail` and `D_detail` are ignored (StyleMask never uses their outputs). Block counts
per stage are inferred from the keys (the real file has 3, 4, 6, 3) and every `E_flame` tensor
is checked: a missing, misshapen or unknown key is an error that names it. BatchNorm's
`num_batches_tracked` counters are skipped.
"""

from __future__ import annotations

import os
import re

from convert_weights.common import (ConversionError, StateDict, torch_batchnorm, torch_conv,
                                    torch_linear)
from convert_weights.torch_reader import load_torch_file

KIND = "deca"
STAGE_WIDTHS = (64, 128, 256, 512)  # the same as stylemask_jax.models.deca.STAGE_WIDTHS
EXPANSION = 4
NUM_PARAMS = 236


def _block_counts(sd: StateDict) -> list[int]:
    """Blocks per stage, from the `encoder.layer{L}.{i}.conv1.weight` keys (must be 0..n-1)."""
    found: dict[int, set[int]] = {1: set(), 2: set(), 3: set(), 4: set()}
    pattern = re.compile(r"encoder\.layer([1-4])\.(\d+)\.conv1\.weight")
    for key in sd.keys():
        match = pattern.fullmatch(key)
        if match:
            found[int(match.group(1))].add(int(match.group(2)))
    counts = []
    for stage, indices in found.items():
        if not indices:
            raise ConversionError(f"{sd.source}: missing key '{sd.prefix}encoder.layer{stage}.0.conv1.weight'")
        count = max(indices) + 1
        missing = sorted(set(range(count)) - indices)
        if missing:
            raise ConversionError(f"{sd.source}: missing key "
                                  f"'{sd.prefix}encoder.layer{stage}.{missing[0]}.conv1.weight'")
        counts.append(count)
    return counts


def _bottleneck(sd: StateDict, prefix: str, cin: int, planes: int, downsample: bool):
    """One bottleneck block -> (params, batch_stats) subtrees."""
    out = planes * EXPANSION
    convs = [("conv1", "conv1", planes, cin, 1), ("conv2", "conv2", planes, planes, 3),
             ("conv3", "conv3", out, planes, 1)]
    norms = [("bn1", "bn1", planes), ("bn2", "bn2", planes), ("bn3", "bn3", out)]
    if downsample:
        convs.append(("downsample_conv", "downsample.0", out, cin, 1))
        norms.append(("downsample_bn", "downsample.1", out))
    params, stats = {}, {}
    for name, key, o, i, k in convs:
        params[name] = {"kernel": torch_conv(sd, f"{prefix}.{key}.weight", o, i, k)}
    for name, key, channels in norms:
        params[name], stats[name] = torch_batchnorm(sd, f"{prefix}.{key}", channels)
    return params, stats


def convert_e_flame(state: dict, source: str) -> tuple[dict, dict]:
    """An `E_flame` state dict -> (variables {'params', 'batch_stats'}, arch {'blocks'})."""
    sd = StateDict(state, source, prefix="E_flame.")
    blocks = _block_counts(sd)
    trunk_p, trunk_s = {"conv1": {"kernel": torch_conv(sd, "encoder.conv1.weight", 64, 3, 7)}}, {}
    trunk_p["bn1"], trunk_s["bn1"] = torch_batchnorm(sd, "encoder.bn1", 64)
    cin = 64
    for stage, (count, planes) in enumerate(zip(blocks, STAGE_WIDTHS), start=1):
        for i in range(count):
            name = f"layer{stage}_{i}"
            trunk_p[name], trunk_s[name] = _bottleneck(sd, f"encoder.layer{stage}.{i}", cin,
                                                       planes, downsample=(i == 0))
            cin = planes * EXPANSION
    params = {"trunk": trunk_p,
              "fc1": torch_linear(sd, "layers.0", cin, 1024),
              "fc2": torch_linear(sd, "layers.2", 1024, NUM_PARAMS)}
    sd.finish()
    return {"params": params, "batch_stats": {"trunk": trunk_s}}, {"blocks": blocks}


def convert_deca(path: str | os.PathLike) -> tuple[dict, dict]:
    """Reads `deca_model.tar` (zip or legacy torch container, no torch, no pickled code run).

    Returns (variables, arch): variables = {'params': ..., 'batch_stats': ...} with float32
    numpy leaves laid out as stylemask_jax.models.deca.DecaEncoder expects; arch = {'blocks':
    [n1, n2, n3, n4]}. Raises CheckpointError/ConversionError naming the file and key.
    """
    source = os.fspath(path)
    checkpoint = load_torch_file(source)
    if not isinstance(checkpoint, dict):
        raise ConversionError(f"{source}: expected a dict with an 'E_flame' entry, found "
                              f"{type(checkpoint).__name__}")
    if "E_flame" not in checkpoint:
        entries = ", ".join(repr(k) for k in list(checkpoint)[:5]) or "none"
        raise ConversionError(f"{source}: no 'E_flame' entry (found {entries}); "
                              "is this DECA's deca_model.tar?")
    return convert_e_flame(checkpoint["E_flame"], source)
