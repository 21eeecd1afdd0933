"""IR-SE (ArcFace), the identity loss and the e4e layout, in PyTorch (NCHW, eval mode).

Written from the layer description in the IR-SE fixture README; module names follow the
official state dict (`input_layer.0.weight`, `body.3.res_layer.5.fc1.weight`,
`output_layer.3.weight`), so `build_irse(state_dict)` loads a checkpoint read by the torch-free
reader as is. Used by the parity tests (float64) and by `benchmarks/irse.py --torch` (random
full-size weights, float32).

    irse = build_irse(state_dict)                   # units inferred from the keys
    emb = irse.embed(images)                        # (B, 3, 256, 256) in [-1, 1] -> (B, 512)
    loss = identity_loss(irse, reenacted, source)   # mean(1 - cos), source embedding detached
"""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (64, 128, 256, 512)
IRSE50_UNITS = (3, 4, 14, 3)


class SqueezeExcite(nn.Module):
    def __init__(self, d, reduction=16):
        super().__init__()
        self.fc1 = nn.Conv2d(d, d // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(d // reduction, d, 1, bias=False)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class Unit(nn.Module):
    """Residual BN-conv-PReLU-conv(stride)-BN-SE plus a strided identity or 1x1 conv shortcut."""

    def __init__(self, c, d, stride):
        super().__init__()
        self.shortcut_layer = (nn.MaxPool2d(1, stride) if c == d else
                               nn.Sequential(nn.Conv2d(c, d, 1, stride, bias=False), nn.BatchNorm2d(d)))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(c), nn.Conv2d(c, d, 3, 1, 1, bias=False), nn.PReLU(d),
            nn.Conv2d(d, d, 3, stride, 1, bias=False), nn.BatchNorm2d(d), SqueezeExcite(d))

    def forward(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


class IRSEBackbone(nn.Module):
    """Input stem and the units (`body.0..N`); `stages(x)` gives the four stage outputs."""

    def __init__(self, units=IRSE50_UNITS):
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64),
                                         nn.PReLU(64))
        layers, self.stage_ends, c = [], [], 64
        for d, n in zip(WIDTHS, units):
            for i in range(n):
                layers.append(Unit(c, d, 2 if i == 0 else 1))
                c = d
            self.stage_ends.append(len(layers) - 1)
        self.body = nn.Sequential(*layers)

    def stages(self, x):
        outs, x = [], self.input_layer(x)
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.stage_ends:
                outs.append(x)
        return outs


class TorchIRSE(IRSEBackbone):
    """(B, 3, 112, 112) -> (B, 512) unit norm; `embed` takes the (B, 3, 256, 256) images."""

    def __init__(self, units=IRSE50_UNITS, embedding_dim=512):
        super().__init__(units)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, embedding_dim),
                                          nn.BatchNorm1d(embedding_dim))

    def forward(self, x):
        x = self.output_layer(self.body(self.input_layer(x)))
        return x / x.norm(dim=1, keepdim=True)

    def embed(self, images):
        return self(arcface_input(images))


def arcface_input(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, 256, 256) -> rows 35..222, columns 32..219, adaptive average pool to 112."""
    return F.adaptive_avg_pool2d(images[:, :, 35:223, 32:220], 112)


def identity_loss(irse: TorchIRSE, reenacted, source, reduce: bool = True):
    """mean over the batch (or per sample) of 1 - cos(emb(reenacted), emb(source).detach())."""
    target = irse.embed(source).detach()
    loss = 1 - F.cosine_similarity(irse.embed(reenacted), target, dim=1, eps=1e-6)
    return loss.mean() if reduce else loss


def build_irse(state_dict: dict, dtype=torch.float64) -> TorchIRSE:
    """An eval-mode network holding an IR-SE state dict (numpy arrays or tensors)."""
    n_units = 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(r"body\.(\d+)\.", k)))
    widths = [int(np.shape(state_dict[f"body.{n}.res_layer.1.weight"])[0]) for n in range(n_units)]
    units = [widths.count(w) for w in WIDTHS]
    model = TorchIRSE(units, int(np.shape(state_dict["output_layer.3.weight"])[0]))
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state_dict.items()})
    return model.to(dtype).eval()


# ---------------------------------------------------------------------------------------------
# e4e (random weights for timing, or an official checkpoint through build_e4e)
# ---------------------------------------------------------------------------------------------

class _Style(nn.Module):
    def __init__(self, convs):
        super().__init__()
        self.convs = nn.Sequential(*[m for _ in range(convs) for m in
                                     (nn.Conv2d(512, 512, 3, 2, 1), nn.LeakyReLU(0.01))])
        self.linear = nn.Linear(512, 512)

    def forward(self, x):
        return self.linear(self.convs(x).flatten(1))


class TorchE4E(IRSEBackbone):
    """(B, 3, 256, 256) -> (B, n_styles, 512)."""

    def __init__(self, n_styles=18, units=IRSE50_UNITS):
        super().__init__(units)
        self.styles = nn.ModuleList([_Style(4 if i < 3 else 5 if i < 7 else 6) for i in range(n_styles)])
        self.lat1, self.lat2 = nn.Conv2d(256, 512, 1), nn.Conv2d(128, 512, 1)
        self.latent_avg = nn.Parameter(torch.zeros(n_styles, 512))

    def forward(self, x):
        _, c1, c2, c3 = self.stages(x)
        w0 = self.styles[0](c3)
        w = w0[:, None].repeat(1, len(self.styles), 1)
        features = c3
        for i in range(1, len(self.styles)):
            if i == 3:
                features = F.interpolate(features, size=c2.shape[2:], mode="bilinear",
                                         align_corners=True) + self.lat1(c2)
            elif i == 7:
                features = F.interpolate(features, size=c1.shape[2:], mode="bilinear",
                                         align_corners=True) + self.lat2(c1)
            w[:, i] += self.styles[i](features)
        return w + self.latent_avg


def build_e4e(encoder_state_dict: dict, latent_avg, dtype=torch.float64) -> TorchE4E:
    """An eval-mode TorchE4E holding the `encoder.*` entries of an official e4e checkpoint
    (prefix stripped; numpy arrays or tensors) and its `latent_avg` ((n_styles, 512) or (512,)).

    The official style heads end in an EqualLinear (weight scaled by 1/sqrt(512) at run time),
    folded here into the nn.Linear weight; `latlayer1/2` are our `lat1/2`."""
    sd = {k: np.asarray(v) for k, v in encoder_state_dict.items()}
    n_units = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.", k)))
    widths = [int(sd[f"body.{n}.res_layer.1.weight"].shape[0]) for n in range(n_units)]
    n_styles = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"styles\.(\d+)\.", k)))
    model = TorchE4E(n_styles, [widths.count(w) for w in WIDTHS])
    tensors = {}
    for key, value in sd.items():
        if re.match(r"styles\.\d+\.linear\.weight$", key):
            value = value / np.sqrt(value.shape[1])
        key = key.replace("latlayer1", "lat1").replace("latlayer2", "lat2")
        tensors[key] = torch.as_tensor(value)
    avg = np.asarray(latent_avg, np.float64).reshape(-1, 512)
    tensors["latent_avg"] = torch.as_tensor(np.broadcast_to(avg, (n_styles, 512)).copy())
    model.load_state_dict(tensors)
    return model.to(dtype).eval()
