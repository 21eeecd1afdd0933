"""An independent PyTorch StyleGAN2 generator in the reference's formulation (tests, benchmarks).

Written from the equations (not the official code): per-sample modulated weights and grouped
convolutions, up-sampling as `conv_transpose2d(stride 2)` then a 4x4 FIR blur, FIR filtering as
zero insertion + padding + `conv2d` with the flipped kernel, equalized lr at run time. Module
and buffer names follow the official state dict (`style.1.weight`, `convs.0.conv.weight`,
`noises.noise_0`, ...), so `load_state_dict` takes a g_ema dict as is.

    gen = build_generator(state_dict, arch)                  # numpy/torch state dict, arch dict
    w = gen.mapping(z); wp = gen.wplus(z, truncation=0.7, truncation_latent=avg)
    styles = gen.style_codes(wp); img = gen.synthesize(styles, wp)   # NCHW
    img = forward(gen, z=..., truncation=0.7, truncation_latent=avg)  # NHWC numpy

`random_state_dict(arch, seed)` draws weights with the fixture README's recipe (numpy only).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def fir_kernel(blur_kernel, gain: float) -> torch.Tensor:
    k = torch.tensor(blur_kernel, dtype=torch.float32)
    k2 = k[:, None] * k[None, :]
    return k2 / k2.sum() * gain


def upfirdn(x: torch.Tensor, kernel: torch.Tensor, up: int, pad0: int, pad1: int) -> torch.Tensor:
    """Zero insertion by `up`, pad (pad0, pad1) on both axes, correlate with the flipped kernel."""
    b, c, h, w = x.shape
    x = x.reshape(b * c, 1, h, w)
    if up > 1:
        z = x.new_zeros(b * c, 1, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, [max(pad0, 0), max(pad1, 0), max(pad0, 0), max(pad1, 0)])
    x = x[:, :, max(-pad0, 0): x.shape[2] - max(-pad1, 0), max(-pad0, 0): x.shape[3] - max(-pad1, 0)]
    x = F.conv2d(x, torch.flip(kernel, [0, 1]).to(x.dtype)[None, None])
    return x.reshape(b, c, x.shape[2], x.shape[3])


class EqualLinear(nn.Module):
    def __init__(self, in_dim, out_dim, bias_init=0.0, lr_mul=1.0, activation=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale, self.lr_mul, self.activation = lr_mul / math.sqrt(in_dim), lr_mul, activation

    def forward(self, x):
        if self.activation:
            y = F.linear(x, self.weight * self.scale)
            return F.leaky_relu(y + self.bias * self.lr_mul, 0.2) * math.sqrt(2)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class ModConv(nn.Module):
    """Per-sample weights, grouped conv; `upsample`: conv_transpose2d(stride 2) then blur."""

    def __init__(self, cin, cout, k, style_dim, demodulate=True, upsample=False,
                 blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, cout, cin, k, k))
        self.modulation = EqualLinear(style_dim, cin, bias_init=1.0)
        self.cin, self.cout, self.k = cin, cout, k
        self.demodulate, self.upsample = demodulate, upsample
        if upsample:
            self.blur = _KernelHolder(fir_kernel(blur_kernel, 4.0))
            p = (len(blur_kernel) - 2) - (k - 1)
            self.blur_pad = ((p + 1) // 2 + 1, p // 2 + 1)

    def forward(self, x, style):
        b, _, h, w_ = x.shape
        weight = self.weight * (1 / math.sqrt(self.cin * self.k ** 2)) * style.view(b, 1, -1, 1, 1)
        if self.demodulate:
            d = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * d.view(b, self.cout, 1, 1, 1)
        x = x.reshape(1, b * self.cin, h, w_)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * self.cin, self.cout, self.k, self.k)
            y = F.conv_transpose2d(x, weight, stride=2, padding=0, groups=b)
            y = y.reshape(b, self.cout, y.shape[2], y.shape[3])
            return upfirdn(y, self.blur.kernel, 1, *self.blur_pad)
        weight = weight.reshape(b * self.cout, self.cin, self.k, self.k)
        y = F.conv2d(x, weight, padding=self.k // 2, groups=b)
        return y.reshape(b, self.cout, h, w_)


class _KernelHolder(nn.Module):
    def __init__(self, kernel):
        super().__init__()
        self.register_buffer("kernel", kernel)


class _Noise(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


class _Bias(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(c))


class StyledConv(nn.Module):
    def __init__(self, cin, cout, style_dim, upsample, blur_kernel):
        super().__init__()
        self.conv = ModConv(cin, cout, 3, style_dim, True, upsample, blur_kernel)
        self.noise = _Noise()
        self.activate = _Bias(cout)

    def forward(self, x, style, noise):
        y = self.conv(x, style)
        y = y + self.noise.weight * noise
        return F.leaky_relu(y + self.activate.bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)


class ToRGB(nn.Module):
    def __init__(self, cin, style_dim, upsample, blur_kernel):
        super().__init__()
        self.conv = ModConv(cin, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        if upsample:
            self.upsample = _KernelHolder(fir_kernel(blur_kernel, 4.0))
            p = len(blur_kernel) - 2
            self.up_pad = ((p + 1) // 2 + 1, p // 2)

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + upfirdn(skip, self.upsample.kernel, 2, *self.up_pad)
        return out


class _Input(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, c, 4, 4))


class TorchGenerator(nn.Module):
    def __init__(self, size, style_dim, n_mlp, channels, lr_mlp=0.01, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        log_size = int(math.log2(size))
        self.size, self.style_dim = size, style_dim
        self.num_layers, self.n_latent = 2 * log_size - 3, 2 * log_size - 2
        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)])
        self.input = _Input(channels[0])
        self.conv1 = StyledConv(channels[0], channels[0], style_dim, False, blur_kernel)
        self.to_rgb1 = ToRGB(channels[0], style_dim, False, blur_kernel)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        for r in range(1, len(channels)):
            self.convs.append(StyledConv(channels[r - 1], channels[r], style_dim, True, blur_kernel))
            self.convs.append(StyledConv(channels[r], channels[r], style_dim, False, blur_kernel))
            self.to_rgbs.append(ToRGB(channels[r], style_dim, True, blur_kernel))
        self.noises = nn.Module()
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))

    def layers(self):
        return [self.conv1] + list(self.convs)

    def mapping(self, z):
        return self.style(z)

    def wplus(self, codes, input_type="z", truncation=1.0, truncation_latent=None):
        w = self.mapping(codes) if input_type == "z" else codes
        if truncation < 1:
            w = truncation_latent + truncation * (w - truncation_latent)
        if w.ndim == 2:
            w = w.unsqueeze(1).repeat(1, self.n_latent, 1)
        return w

    def style_codes(self, wplus):
        return [layer.conv.modulation(wplus[:, i]) for i, layer in enumerate(self.layers())]

    def synthesize(self, styles, wplus, noise=None):
        if noise is None:
            noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        rgbs = [self.to_rgb1] + list(self.to_rgbs)
        layers = self.layers()
        x = self.input.input.repeat(wplus.shape[0], 1, 1, 1)
        x = layers[0](x, styles[0], noise[0])
        skip = rgbs[0](x, rgbs[0].conv.modulation(wplus[:, 1]))
        for k in range(1, len(rgbs)):
            x = layers[2 * k - 1](x, styles[2 * k - 1], noise[2 * k - 1])
            x = layers[2 * k](x, styles[2 * k], noise[2 * k])
            skip = rgbs[k](x, rgbs[k].conv.modulation(wplus[:, 2 * k + 1]), skip)
        return skip


def build_generator(state_dict: dict, arch: dict, dtype=torch.float32) -> TorchGenerator:
    """A TorchGenerator for `arch` (size, style_dim, n_mlp, channels, lr_mlp, blur_kernel)
    holding `state_dict` (numpy arrays or tensors with the official g_ema keys), in eval mode."""
    gen = TorchGenerator(arch["size"], arch["style_dim"], arch["n_mlp"], list(arch["channels"]),
                         arch.get("lr_mlp", 0.01), tuple(arch.get("blur_kernel", (1, 3, 3, 1))))
    tensors = {k: torch.from_numpy(np.asarray(v)) if not torch.is_tensor(v) else v
               for k, v in state_dict.items()}
    gen.load_state_dict(tensors, strict=True)
    return gen.to(dtype).eval()


@torch.no_grad()
def forward(gen: TorchGenerator, z=None, styles=None, wplus=None, input_type="z",
            truncation=1.0, truncation_latent=None, noise=None) -> np.ndarray:
    """Image as NHWC numpy. Either codes `z` (with `input_type` 'z'/'w'/'wplus'), or `styles`
    (list of (B, C_l)) with `wplus` (the decoder path)."""
    dtype = next(gen.parameters()).dtype
    as_t = lambda a: None if a is None else torch.as_tensor(np.array(a)).to(dtype)
    if styles is None:
        latent = as_t(truncation_latent)
        wp = gen.wplus(as_t(z), input_type, truncation, latent)
        styles = gen.style_codes(wp)
    else:
        wp, styles = as_t(wplus), [as_t(s) for s in styles]
    noise = None if noise is None else [as_t(n) for n in noise]
    return gen.synthesize(styles, wp, noise).permute(0, 2, 3, 1).numpy()


def random_state_dict(arch: dict, seed: int = 0) -> dict:
    """g_ema-style numpy state dict drawn with the fixture README's recipe (non-trivial biases,
    noise strengths and ToRGB scale so that every term is exercised; images about [-1, 1])."""
    rng = np.random.default_rng(seed)
    d, ch, lr = arch["style_dim"], list(arch["channels"]), arch.get("lr_mlp", 0.01)
    blur = fir_kernel(tuple(arch.get("blur_kernel", (1, 3, 3, 1))), 4.0).numpy()
    f32 = lambda a: np.asarray(a, np.float32)
    sd = {}
    for i in range(1, arch["n_mlp"] + 1):
        sd[f"style.{i}.weight"] = f32(rng.standard_normal((d, d)) / lr)
        sd[f"style.{i}.bias"] = f32(rng.standard_normal(d) * 0.2 / lr)
    sd["input.input"] = f32(rng.standard_normal((1, ch[0], 4, 4)))

    def styled(prefix, cin, cout, up):
        sd[f"{prefix}.conv.weight"] = f32(rng.standard_normal((1, cout, cin, 3, 3)))
        sd[f"{prefix}.conv.modulation.weight"] = f32(rng.standard_normal((cin, d)))
        sd[f"{prefix}.conv.modulation.bias"] = f32(1 + 0.3 * rng.standard_normal(cin))
        if up:
            sd[f"{prefix}.conv.blur.kernel"] = blur.copy()
        sd[f"{prefix}.noise.weight"] = f32([rng.choice([-1, 1]) * (0.1 + 0.25 * abs(rng.standard_normal()))])
        sd[f"{prefix}.activate.bias"] = f32(0.2 * rng.standard_normal(cout))

    def rgb(prefix, cin, up):
        sd[f"{prefix}.bias"] = f32(0.2 * rng.standard_normal((1, 3, 1, 1)))
        if up:
            sd[f"{prefix}.upsample.kernel"] = blur.copy()
        sd[f"{prefix}.conv.weight"] = f32(0.25 * rng.standard_normal((1, 3, cin, 1, 1)))
        sd[f"{prefix}.conv.modulation.weight"] = f32(rng.standard_normal((cin, d)))
        sd[f"{prefix}.conv.modulation.bias"] = f32(1 + 0.3 * rng.standard_normal(cin))

    styled("conv1", ch[0], ch[0], False)
    rgb("to_rgb1", ch[0], False)
    for r in range(1, len(ch)):
        styled(f"convs.{2 * r - 2}", ch[r - 1], ch[r], True)
        styled(f"convs.{2 * r - 1}", ch[r], ch[r], False)
        rgb(f"to_rgbs.{r - 1}", ch[r], True)
    for i in range(2 * len(ch) - 1):
        r = 2 ** ((i + 5) // 2)
        sd[f"noises.noise_{i}"] = f32(rng.standard_normal((1, 1, r, r)))
    return sd
