"""e4e checkpoint (`e4e_ffhq_encode.pt`) -> `Encoder4Editing` variables (and its generator).

The checkpoint is `{'state_dict': {'encoder.*', 'decoder.*'}, 'latent_avg', 'opts'}`.
`stylemask convert e4e e4e_ffhq_encode.pt OUT_DIR` writes `{'params', 'batch_stats'}` of
`stylemask_jax.models.e4e.Encoder4Editing` with `arch = {'n_styles': 18, 'units': [3, 4, 14, 3]}`
(both read from the keys); `--generator-out DIR` also converts the embedded StyleGAN2 generator
(`decoder.*`, the rosinality layout) through the `stylegan2` converter.

Key mapping (within `encoder.`; the IR-SE body as in `convert_weights.irse`):

  input_layer.*, body.{n}.*        body/...  (IRSEBody)
  styles.{i}.convs.{2k}            conv_{k} of the group of block i (OIHW -> HWIO, bias)
  styles.{i}.linear                linear of the group of block i (EqualLinear: kernel = W^T / sqrt(512))
  latlayer1, latlayer2             latlayer1, latlayer2  (1x1 convs, bias)
  latent_avg (top level)           latent_avg (n_styles, 512); a (512,) average is repeated

The style blocks are read one by one (`styles_{i}/conv_{k}`, `styles_{i}/linear`) and then
stacked into the groups of `GradualStyleGroup` (`styles_coarse`, `styles_middle`, `styles_fine`:
blocks 0-2, 3-6, 7-; `models.e4e.group_style_blocks`).
"""

from __future__ import annotations

import re

import numpy as np

from convert_weights import stylegan2
from convert_weights.common import ConversionError, StateDict, torch_conv
from convert_weights.irse import convert_body, infer_units
from convert_weights.torch_reader import load_torch_file
from stylemask_jax.models.e4e import COARSE_END, MIDDLE_END, group_style_blocks, style_block_convs

WIDTH = 512


def _split_checkpoint(obj, source: str) -> tuple[dict, dict, object]:
    """-> (encoder entries without the prefix, decoder entries with it, latent_avg)."""
    if not isinstance(obj, dict) or "state_dict" not in obj:
        raise ConversionError(f"{source}: expected an e4e checkpoint, a dict with 'state_dict', "
                              "'latent_avg' and 'opts'")
    if not isinstance(obj["state_dict"], dict):
        raise ConversionError(f"{source}: 'state_dict' is a {type(obj['state_dict']).__name__}, "
                              "expected a dict of tensors")
    if "latent_avg" not in obj:
        raise ConversionError(f"{source}: missing entry 'latent_avg' (the average W+ code)")
    encoder, decoder, other = {}, {}, []
    for key, value in obj["state_dict"].items():
        if key.startswith("encoder."):
            encoder[key[len("encoder."):]] = value
        elif key.startswith("decoder."):
            decoder[key] = value
        else:
            other.append(key)
    if other:
        raise ConversionError(f"{source}: unexpected key(s) '{other[0]}'"
                              + (f" and {len(other) - 1} more" if len(other) > 1 else "")
                              + "; expected 'encoder.*' and 'decoder.*'")
    if not encoder:
        raise ConversionError(f"{source}: no 'encoder.*' keys in 'state_dict'")
    return encoder, decoder, obj["latent_avg"]


def _count_styles(sd: StateDict) -> int:
    pattern = re.compile(r"styles\.(\d+)\.")
    indices = sorted({int(m.group(1)) for k in sd.keys() if (m := pattern.match(k))})
    if not indices:
        raise ConversionError(f"{sd.source}: no '{sd.prefix}styles.N.*' keys: not an e4e encoder")
    if indices != list(range(len(indices))):
        missing = sorted(set(range(indices[-1] + 1)) - set(indices))[0]
        raise ConversionError(f"{sd.source}: missing key(s) '{sd.prefix}styles.{missing}.*'")
    return len(indices)


def _conv_with_bias(sd: StateDict, prefix: str, out_ch: int, in_ch: int, k: int) -> dict:
    return {"kernel": torch_conv(sd, f"{prefix}.weight", out_ch, in_ch, k),
            "bias": sd.take(f"{prefix}.bias", (out_ch,))}


def convert_encoder(sd: StateDict, latent_avg) -> tuple[dict, dict]:
    """Encoder entries (prefix stripped) + latent_avg -> ({'params', 'batch_stats'}, arch)."""
    units = infer_units(sd)
    body_params, body_stats = convert_body(sd, units)
    params, stats = {"body": body_params}, {"body": body_stats}
    n_styles = _count_styles(sd)
    for i in range(n_styles):
        block = {}
        for k in range(style_block_convs(i)):
            block[f"conv_{k}"] = _conv_with_bias(sd, f"styles.{i}.convs.{2 * k}", WIDTH, WIDTH, 3)
        weight = sd.take(f"styles.{i}.linear.weight", (WIDTH, WIDTH))
        block["linear"] = {"kernel": np.ascontiguousarray(weight.T / np.float32(np.sqrt(WIDTH))),
                           "bias": sd.take(f"styles.{i}.linear.bias", (WIDTH,))}
        params[f"styles_{i}"] = block
    # lateral layers are only read when there are codes past 3 (p2) and past 7 (p1)
    for name, in_ch, first_code in (("latlayer1", 256, COARSE_END), ("latlayer2", 128, MIDDLE_END)):
        if n_styles > first_code:
            params[name] = _conv_with_bias(sd, name, WIDTH, in_ch, 1)
        else:
            for suffix in (".weight", ".bias"):
                if name + suffix in sd:
                    sd.skip(name + suffix)
    sd.finish()
    if not isinstance(latent_avg, np.ndarray) or not np.issubdtype(latent_avg.dtype, np.floating):
        raise ConversionError(f"{sd.source}: 'latent_avg' is not a float tensor")
    if latent_avg.shape == (WIDTH,):
        latent_avg = np.tile(latent_avg[None], (n_styles, 1))
    if latent_avg.shape != (n_styles, WIDTH):
        raise ConversionError(f"{sd.source}: 'latent_avg' has shape {tuple(latent_avg.shape)}, "
                              f"expected ({n_styles}, {WIDTH}) or ({WIDTH},)")
    params["latent_avg"] = latent_avg.astype(np.float32)
    params = group_style_blocks(params, n_styles)
    return {"params": params, "batch_stats": stats}, {"n_styles": n_styles, "units": units}


def convert_e4e(path) -> tuple[dict, dict]:
    """Reads an e4e checkpoint (no torch needed) -> ({'params', 'batch_stats'}, arch).
    The generator entries (`decoder.*`) are ignored here (`convert_e4e_checkpoint` reads them)."""
    return convert_e4e_checkpoint(path)[0]


def convert_e4e_checkpoint(path, with_generator: bool = False):
    """-> ((encoder variables, arch), (generator tree, generator arch) or None): the generator
    (`decoder.*`) is converted too with `with_generator` when the checkpoint has one."""
    source = str(path)
    obj = load_torch_file(path)
    encoder, decoder, latent_avg = _split_checkpoint(obj, source)
    converted = convert_encoder(StateDict(encoder, source, prefix="encoder."), latent_avg)
    generator = None
    if with_generator and decoder:
        generator = convert_generator(obj, source, converted[0]["params"]["latent_avg"])
    return converted, generator


def convert_generator(obj, source: str, wplus_avg: np.ndarray) -> tuple[dict, dict]:
    """The checkpoint's `decoder.*` generator -> (tree, arch) as `stylemask convert stylegan2`
    writes them. The e4e average code (n_styles, 512) repeats the generator's mean latent, so
    when its rows agree that row becomes the generator's `latent_avg` (for truncation)."""
    gen_vars, gen_arch, _ = stylegan2.convert_stylegan2(obj, prefix="decoder.", source=source)
    n_latent = 2 * (int(gen_arch["size"]).bit_length() - 1) - 2
    if gen_arch["style_dim"] != wplus_avg.shape[1]:
        raise ConversionError(f"{source}: the decoder's style_dim is {gen_arch['style_dim']}, the "
                              f"encoder's codes have {wplus_avg.shape[1]} channels")
    if n_latent != wplus_avg.shape[0]:
        raise ConversionError(f"{source}: the decoder ({gen_arch['size']} px) takes {n_latent} W+ "
                              f"codes but the encoder produces {wplus_avg.shape[0]}")
    tree = dict(gen_vars)
    has_avg = bool(np.all(wplus_avg == wplus_avg[:1])) and wplus_avg.shape[1] == gen_arch["style_dim"]
    if has_avg:
        tree["latent_avg"] = np.ascontiguousarray(wplus_avg[0])
    return tree, dict(gen_arch, has_latent_avg=has_avg)
