"""rosinality StyleGAN2 generator (`g_ema`, optional `latent_avg`) -> stylemask-jax variables.

    stylemask convert stylegan2 stylegan2-ffhq-config-f.pt weights/stylegan2

The architecture (size, channels, style_dim, n_mlp) is inferred from the tensor shapes; every
key is checked (a missing, unexpected or misshapen key is an error naming it), the stored blur
kernels are checked against `blur_kernel` and dropped. The written tree is
`{'params': ..., 'buffers': {'noise_i': (1, H, W, 1)}, 'latent_avg': (style_dim,)}` (the last
only when the checkpoint has one); see stylemask_jax/models/stylegan2.py for the layout and
`stylemask_jax.models.loading.load_generator` to load it back.
"""

from __future__ import annotations

import re

import numpy as np
from einops import rearrange

from convert_weights.common import ConversionError, StateDict, count_params
from convert_weights.torch_reader import load_torch_file
from stylemask_jax.ops.upfirdn import kernel_2d

KIND = "stylegan2"
_BLUR_TOL = 1e-6


def _nhwc(x: np.ndarray) -> np.ndarray:
    """A torch NCHW buffer -> NHWC, contiguous."""
    return np.ascontiguousarray(rearrange(x, "n c h w -> n h w c"))


def _hwio(weight: np.ndarray) -> np.ndarray:
    """A modulated conv's (1, O, I, kh, kw) weight -> (kh, kw, I, O), contiguous."""
    return np.ascontiguousarray(rearrange(weight, "1 o i h w -> h w i o"))


def _count(sd: StateDict, pattern: str) -> int:
    """Number of consecutive indices i = start.. for which the key pattern % i exists."""
    regex = re.compile(pattern)
    found = {int(m.group(1)) for k in sd.keys() for m in [regex.fullmatch(k)] if m}
    n = 0
    start = min(found) if found else 0
    while start + n in found:
        n += 1
    return n


def infer_arch(sd: StateDict, lr_mlp: float = 0.01, blur_kernel=(1, 3, 3, 1)) -> dict:
    """size / style_dim / n_mlp / channels from the shapes of a g_ema state dict."""
    n_mlp = _count(sd, r"style\.(\d+)\.weight")
    if n_mlp == 0 or "style.1.weight" not in sd:
        raise ConversionError(f"{sd.source}: missing key '{sd.prefix}style.1.weight' "
                              "(not a StyleGAN2 generator state dict?)")
    style_dim = sd.shape("style.1.weight")[0]
    n_rgbs = _count(sd, r"to_rgbs\.(\d+)\.conv\.weight")
    size = 2 ** (n_rgbs + 2)
    channels = [sd.shape("input.input")[1] if "input.input" in sd else None]
    if channels[0] is None:
        raise ConversionError(f"{sd.source}: missing key '{sd.prefix}input.input'")
    for k in range(n_rgbs):
        key = f"convs.{2 * k}.conv.weight"
        if key not in sd:
            raise ConversionError(f"{sd.source}: missing key '{sd.prefix}{key}'")
        channels.append(int(sd.shape(key)[1]))
    return dict(size=int(size), style_dim=int(style_dim), n_mlp=int(n_mlp), lr_mlp=float(lr_mlp),
                channels=[int(c) for c in channels], blur_kernel=[float(k) for k in blur_kernel])


def _modulation(sd: StateDict, prefix: str, cin: int, style_dim: int) -> dict:
    return {"kernel": sd.take(f"{prefix}.modulation.weight", (cin, style_dim)).T.copy(),
            "bias": sd.take(f"{prefix}.modulation.bias", (cin,))}


def _check_blur(sd: StateDict, key: str, blur_kernel) -> None:
    want = kernel_2d(blur_kernel, 4.0)
    got = sd.take(key, want.shape, dtype=np.float64)
    if np.max(np.abs(got - want)) > _BLUR_TOL:
        raise ConversionError(f"{sd.source}: key '{sd.prefix}{key}' is not the blur kernel of "
                              f"{list(blur_kernel)} (outer(k, k) / sum * 4)")


def convert_state_dict(sd: StateDict, arch: dict) -> dict:
    """Consumes every key of a g_ema state dict; returns {'params', 'buffers'} (numpy)."""
    d, channels, blur = arch["style_dim"], arch["channels"], arch["blur_kernel"]
    params: dict = {"mapping_network": {}}
    for i in range(arch["n_mlp"]):
        params["mapping_network"][f"dense_{i}"] = {
            "kernel": sd.take(f"style.{i + 1}.weight", (d, d)).T.copy(),
            "bias": sd.take(f"style.{i + 1}.bias", (d,))}
    params["const"] = _nhwc(sd.take("input.input", (1, channels[0], 4, 4)))

    layers = [(channels[0], channels[0], False)]
    for r in range(1, len(channels)):
        layers += [(channels[r - 1], channels[r], True), (channels[r], channels[r], False)]
    for i, (cin, cout, up) in enumerate(layers):
        prefix = "conv1" if i == 0 else f"convs.{i - 1}"
        params[f"conv_{i}"] = {
            "weight": _hwio(sd.take(f"{prefix}.conv.weight", (1, cout, cin, 3, 3))),
            "modulation": _modulation(sd, f"{prefix}.conv", cin, d),
            "noise_strength": sd.take(f"{prefix}.noise.weight", (1,)).reshape(()),
            "bias": sd.take(f"{prefix}.activate.bias", (cout,)),
        }
        if up:
            _check_blur(sd, f"{prefix}.conv.blur.kernel", blur)
    for k, cin in enumerate(channels):
        prefix = "to_rgb1" if k == 0 else f"to_rgbs.{k - 1}"
        params[f"to_rgb_{k}"] = {
            "weight": _hwio(sd.take(f"{prefix}.conv.weight", (1, 3, cin, 1, 1))),
            "modulation": _modulation(sd, f"{prefix}.conv", cin, d),
            "bias": sd.take(f"{prefix}.bias", (1, 3, 1, 1)).reshape(3),
        }
        if k > 0:
            _check_blur(sd, f"{prefix}.upsample.kernel", blur)
    buffers = {}
    for i in range(len(layers)):
        r = 2 ** ((i + 5) // 2)
        buffers[f"noise_{i}"] = sd.take(f"noises.noise_{i}", (1, 1, r, r)).reshape(1, r, r, 1)
    sd.finish()
    return {"params": params, "buffers": buffers}


def _split_checkpoint(obj, source: str, prefix: str):
    """Finds the generator's flat state dict (and latent_avg) in a loaded checkpoint object."""
    latent_avg = None
    if isinstance(obj, dict) and "g_ema" in obj and isinstance(obj["g_ema"], dict):
        latent_avg = obj.get("latent_avg")
        flat = obj["g_ema"]
    elif isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        flat = obj["state_dict"]  # e.g. an e4e/pSp checkpoint; its latent_avg is the encoder's
    else:
        flat = obj
    if not isinstance(flat, dict):
        raise ConversionError(f"{source}: expected a checkpoint dict with 'g_ema', "
                              f"found {type(flat).__name__}")
    if prefix:
        flat = {k[len(prefix):]: v for k, v in flat.items()
                if isinstance(k, str) and k.startswith(prefix)}
        if not flat:
            raise ConversionError(f"{source}: no keys start with '{prefix}'")
    return flat, latent_avg


def convert_stylegan2(checkpoint, prefix: str = "", lr_mlp: float = 0.01,
                      blur_kernel=(1, 3, 3, 1), source: str | None = None):
    """A rosinality StyleGAN2 checkpoint -> (variables, arch, latent_avg or None).

    checkpoint: a path to a torch.save file ({'g_ema': ..., 'latent_avg': ...}), or an already
    loaded object (that dict, or a flat state dict of numpy arrays). `prefix` selects keys of a
    larger state dict (e4e: 'decoder.'); only those keys are converted and checked. lr_mlp and
    blur_kernel cannot be read from shapes and default to the official values.
    Returns numpy trees: variables {'params', 'buffers'}, arch (see Generator.from_arch),
    latent_avg (style_dim,) float32 or None.
    """
    if isinstance(checkpoint, (str, bytes)) or hasattr(checkpoint, "__fspath__"):
        source = source or str(checkpoint)
        checkpoint = load_torch_file(checkpoint)
    source = source or "state dict"
    flat, latent_avg = _split_checkpoint(checkpoint, source, prefix)
    sd = StateDict(flat, source, prefix)
    arch = infer_arch(sd, lr_mlp, blur_kernel)
    variables = convert_state_dict(sd, arch)
    if latent_avg is not None:
        latent_avg = np.asarray(latent_avg)
        if latent_avg.size != arch["style_dim"] or not np.issubdtype(latent_avg.dtype, np.floating):
            raise ConversionError(f"{source}: 'latent_avg' has shape {latent_avg.shape}, "
                                  f"expected ({arch['style_dim']},) or (1, {arch['style_dim']})")
        latent_avg = latent_avg.astype(np.float32).reshape(arch["style_dim"])
    return variables, arch, latent_avg


def summary(arch: dict, variables: dict, latent_avg) -> str:
    n_layers = 2 * (arch["size"].bit_length() - 1) - 3
    return (f"stylegan2: size {arch['size']}, style_dim {arch['style_dim']}, n_mlp {arch['n_mlp']}, "
            f"{n_layers} style layers, channels {arch['channels']}, "
            f"{count_params(variables['params']):,} parameters, "
            f"latent_avg {'present' if latent_avg is not None else 'absent'}")
