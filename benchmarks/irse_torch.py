"""The IR-SE-50 / e4e layouts written with torch.nn, for same-machine timing comparisons only.

Written from the layer description in the reference READMEs (random initialisation, NCHW,
eval mode); it mirrors how the official code runs these networks (grouped the same way, the
same convolutions), not its source. Used by `benchmarks/irse.py --torch`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (64, 128, 256, 512)


class _Unit(nn.Module):
    def __init__(self, c, d, stride):
        super().__init__()
        self.stride = stride
        self.shortcut = None if c == d else nn.Sequential(nn.Conv2d(c, d, 1, stride, bias=False),
                                                          nn.BatchNorm2d(d))
        self.res = nn.Sequential(nn.BatchNorm2d(c), nn.Conv2d(c, d, 3, 1, 1, bias=False), nn.PReLU(d),
                                 nn.Conv2d(d, d, 3, stride, 1, bias=False), nn.BatchNorm2d(d))
        self.fc1 = nn.Conv2d(d, d // 16, 1, bias=False)
        self.fc2 = nn.Conv2d(d // 16, d, 1, bias=False)

    def forward(self, x):
        short = x[:, :, ::self.stride, ::self.stride] if self.shortcut is None else self.shortcut(x)
        r = self.res(x)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(r.mean((2, 3), keepdim=True)))))
        return r * s + short


class _Body(nn.Module):
    def __init__(self, units=(3, 4, 14, 3)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        stages, c = [], 64
        for d, n in zip(WIDTHS, units):
            stages.append(nn.Sequential(*[_Unit(c if i == 0 else d, d, 2 if i == 0 else 1) for i in range(n)]))
            c = d
        self.stages = nn.ModuleList(stages)

    def forward(self, x):
        outs = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


class TorchIRSE(nn.Module):
    """(B, 3, 112, 112) -> (B, 512) unit-norm; `embed` takes the (B, 3, 256, 256) images."""

    def __init__(self):
        super().__init__()
        self.body = _Body()
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512 * 7 * 7, 512)
        self.bn1d = nn.BatchNorm1d(512)

    def forward(self, x):
        x = self.bn(self.body(x)[-1]).flatten(1)
        x = self.bn1d(self.linear(x))
        return x / x.norm(dim=1, keepdim=True)

    def embed(self, images):
        return self(F.adaptive_avg_pool2d(images[:, :, 35:223, 32:220], 112))


def torch_identity_loss(irse, reenacted, source):
    with torch.no_grad():
        target = irse.embed(source)
    return (1 - F.cosine_similarity(irse.embed(reenacted), target, dim=1, eps=1e-6)).mean()


class _Style(nn.Module):
    def __init__(self, convs):
        super().__init__()
        self.convs = nn.Sequential(*[m for _ in range(convs) for m in
                                     (nn.Conv2d(512, 512, 3, 2, 1), nn.LeakyReLU(0.01))])
        self.linear = nn.Linear(512, 512)

    def forward(self, x):
        return self.linear(self.convs(x).flatten(1))


class TorchE4E(nn.Module):
    """(B, 3, 256, 256) -> (B, n_styles, 512)."""

    def __init__(self, n_styles=18):
        super().__init__()
        self.body = _Body()
        self.styles = nn.ModuleList([_Style(4 if i < 3 else 5 if i < 7 else 6) for i in range(n_styles)])
        self.lat1, self.lat2 = nn.Conv2d(256, 512, 1), nn.Conv2d(128, 512, 1)
        self.latent_avg = nn.Parameter(torch.zeros(n_styles, 512))

    def forward(self, x):
        _, c1, c2, c3 = self.body(x)
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
