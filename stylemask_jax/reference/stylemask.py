"""StyleMask's mask network, 3-D face losses and the whole training objective, in PyTorch.

The objective is the one `stylemask_jax.training.objective.loss_fn` defines (see its docstring),
written again with the torch parts of this package (generator: `stylegan2`, DECA encoder and
crop: `deca`, FLAME: `flame`, ArcFace: `irse`), so that the JAX loss and its gradients with
respect to the mask network can be compared with an independent float64 computation:

    objective = Objective(gen, mask_net, deca, irse, flame, truncation_latent, **settings)
    total, metrics = objective(z_source, z_target, z_cycle)   # metrics: the JAX names,
                                                              # crop_fallback included
    total.backward()                                          # grads in mask_net.parameters()

Images are NCHW here. The losses follow the README formulation (eye/mouth: average over pairs
of per-pair L1 means), not the JAX one (one mean over pairs and coordinates).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import deca as deca_lib
from . import flame as flame_lib
from .irse import TorchIRSE, identity_loss

EYE_PAIRS = ((36, 39), (37, 41), (38, 40), (42, 45), (43, 47), (44, 46))
MOUTH_PAIRS = ((48, 54), (49, 59), (50, 58), (51, 57), (52, 56), (53, 55),
               (60, 64), (61, 67), (62, 66), (63, 65))
SHAPE_LOSS_CAM = (8.0, 0.0, 0.0)
LOSS_SIZE = 256


# ---------------------------------------------------------------------------------------------
# mask network
# ---------------------------------------------------------------------------------------------

class _LayerMask(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.masknet = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width),
                                     nn.Sigmoid())


class TorchMaskNet(nn.Module):
    """One MLP per controlled layer; state-dict keys `network_NN.masknet.{0,2}.{weight,bias}`."""

    def __init__(self, widths):
        super().__init__()
        self.nets = nn.ModuleDict({f"network_{i:02d}": _LayerMask(w) for i, w in enumerate(widths)})

    def forward(self, source, target):
        """Per-layer (B, C_l) lists -> masks for the first len(widths) layers."""
        return [net.masknet(s - t) for net, s, t in zip(self.nets.values(), source, target)]


def build_mask_net(state_dict: dict, dtype=torch.float64) -> TorchMaskNet:
    """From the official `mask_net` state dict (numpy arrays or tensors)."""
    n = len({k.split(".")[0] for k in state_dict})
    widths = [int(np.shape(state_dict[f"network_{i:02d}.masknet.0.weight"])[0]) for i in range(n)]
    net = TorchMaskNet(widths)
    net.nets.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state_dict.items()})
    return net.to(dtype)


def mix_styles(masks, source, target):
    """m * s_tgt + (1 - m) * s_src on the masked layers, s_src on the others."""
    n = len(masks)
    return [m * t + (1 - m) * s for m, s, t in zip(masks, source[:n], target[:n])] + list(source[n:])


# ---------------------------------------------------------------------------------------------
# 3-D face losses
# ---------------------------------------------------------------------------------------------

def _pairs_loss(gt, reenacted, pairs):
    """(1 / P) sum over pairs of mean over (B, 2) of | |a - b|_gt - |a - b|_reenacted |."""
    total = 0.0
    for a, b in pairs:
        total = total + torch.mean(torch.abs(torch.abs(gt[:, a] - gt[:, b])
                                             - torch.abs(reenacted[:, a] - reenacted[:, b])))
    return total / len(pairs)


def face_losses(flame, source: dict, target: dict, reenacted: dict, weight: float = 1.0):
    """(shape, eye, mouth), each times `weight`: FLAME(source shape, target exp and pose) vs
    FLAME(reenacted), both decoded with the trainer's camera (8, 0, 0)."""
    cam = torch.tensor([SHAPE_LOSS_CAM], dtype=source["shape"].dtype).expand(source["shape"].shape[0], 3)
    gt_lmk, _, gt_verts = flame_lib.decode(flame, source["shape"], target["exp"], target["pose"], cam)
    re_lmk, _, re_verts = flame_lib.decode(flame, reenacted["shape"], reenacted["exp"],
                                           reenacted["pose"], cam)
    shape = torch.mean(torch.abs(gt_verts - re_verts))
    return (weight * shape, weight * _pairs_loss(gt_lmk, re_lmk, EYE_PAIRS),
            weight * _pairs_loss(gt_lmk, re_lmk, MOUTH_PAIRS))


# ---------------------------------------------------------------------------------------------
# the objective
# ---------------------------------------------------------------------------------------------

def loss_resolution(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, N, N) -> (B, 3, 256, 256): 4x4 mean pooling at 1024, nearest repetition below."""
    n = images.shape[-1]
    if n > LOSS_SIZE:
        return torch.nn.functional.adaptive_avg_pool2d(images, LOSS_SIZE)
    factor = LOSS_SIZE // n
    return images.repeat_interleave(factor, 2).repeat_interleave(factor, 3)


class Objective:
    """The StyleMask loss of one batch of (z_source, z_target, z_cycle) codes (see module doc).

    `trace` collects (over all calls; reset it between calls) the quantities whose rounding picks
    a discrete branch: the unfloored crop sizes `old_size * 1.25` of the fixed and every
    second-pass box and the head yaws (degrees) of every FLAME evaluation, so a test can check
    that they are far from a rounding boundary.
    """

    def __init__(self, generator, mask_net: TorchMaskNet, deca, irse: TorchIRSE, flame,
                 truncation_latent, truncation=0.7, fixed_box=(62.0, 100.0, 194.0, 232.0),
                 two_pass=True, box_size_range=(0.5, 2.0), lambda_shape=1.0, lambda_identity=10.0,
                 recurrent_cycle=True):
        self.gen, self.mask_net, self.deca, self.irse, self.flame = generator, mask_net, deca, irse, flame
        self.dtype = next(mask_net.parameters()).dtype
        self.latent = torch.as_tensor(np.asarray(truncation_latent)).to(self.dtype).reshape(-1)
        self.truncation, self.fixed_box, self.two_pass = truncation, fixed_box, two_pass
        self.box_size_range = box_size_range
        self.lambda_shape, self.lambda_identity = lambda_shape, lambda_identity
        self.recurrent_cycle = recurrent_cycle
        self.trace = {"crop_size_raw": [], "yaw_deg": []}

    def _record_yaw(self, pose):
        full = torch.cat([pose[:, :3], torch.zeros_like(pose[:, :3]), pose[:, 3:],
                          torch.zeros_like(pose)], 1)
        self.trace["yaw_deg"].append(self.flame.head_yaw_degrees(full).detach())

    def _record_size(self, box):
        left, top, right, bottom = box.detach().unbind(1)
        self.trace["crop_size_raw"].append((right - left + bottom - top) / 2 * 1.1 * 1.25)

    def _crop_and_encode(self, images, box):
        crops, _ = deca_lib.deca_crop_from_box(images, box)
        return deca_lib.split_params(self.deca(crops))

    def deca_parameters(self, images):
        """(B, 3, 256, 256) in [-1, 1] -> DECA parameter dict plus 'crop_fallback' (B,): the
        two-pass crop of the JAX code, with its fallback to the fixed box when the second box's
        crop size is outside `box_size_range` times the fixed box's."""
        batch = images.shape[0]
        fixed = torch.tensor([self.fixed_box], dtype=images.dtype).expand(batch, 4)
        self._record_size(fixed)
        code = self._crop_and_encode(images, fixed)
        if not self.two_pass:
            return dict(code, crop_fallback=torch.zeros(batch, dtype=images.dtype))
        self._record_yaw(code["pose"])
        landmarks, _, _ = flame_lib.decode(self.flame, code["shape"], code["exp"], code["pose"],
                                           code["cam"])
        matrix, fixed_size = deca_lib.box_transform(fixed)          # 256 pixels -> crop pixels
        landmarks = ((landmarks - matrix[:, None, :2, 2]) / matrix[:, None, :1, 0]).detach()
        box = torch.cat([landmarks.min(1).values, landmarks.max(1).values], 1)
        self._record_size(box)  # decides the fallback and, if kept, the crop size
        _, size = deca_lib.box_transform(box)
        low, high = self.box_size_range
        ok = (size >= low * fixed_size) & (size <= high * fixed_size)
        code = self._crop_and_encode(images, torch.where(ok[:, None], box, fixed))
        return dict(code, crop_fallback=(~ok).to(images.dtype))

    def faces(self, styles, wplus):
        images = loss_resolution(self.gen.synthesize(styles, wplus))
        return images, self.deca_parameters(images)

    def _face_losses(self, source, target, reenacted):
        for params in (target, reenacted):
            self._record_yaw(params["pose"])
        return face_losses(self.flame, source, target, reenacted, self.lambda_shape)

    def __call__(self, z_source, z_target, z_cycle):
        as_t = lambda z: torch.as_tensor(np.asarray(z)).to(self.dtype)  # noqa: E731
        batch = len(z_source)
        with torch.no_grad():
            z = torch.cat([as_t(z_source), as_t(z_target), as_t(z_cycle)], 0)
            wplus = self.gen.wplus(z, "z", self.truncation, self.latent)
            styles = self.gen.style_codes(wplus)
            images, params = self.faces(styles, wplus)
        w_src = wplus[:batch]
        s_src, s_tgt, s_cyc = ([s[i * batch:(i + 1) * batch] for s in styles] for i in range(3))
        p_src, p_tgt, p_cyc = ({k: v[i * batch:(i + 1) * batch] for k, v in params.items()}
                               for i in range(3))
        img_src = images[:batch]

        masks = self.mask_net(s_src, s_tgt)
        mixed = mix_styles(masks, s_src, s_tgt)
        branches = [mixed]
        if self.recurrent_cycle:
            branches.append(mix_styles(self.mask_net(s_src, s_cyc), s_src, s_cyc))
            branches.append(mix_styles(self.mask_net(mixed, s_cyc), mixed, s_cyc))
        n = len(branches)
        images_r, params_r = self.faces([torch.cat(layer, 0) for layer in zip(*branches)],
                                        torch.cat([w_src] * n, 0))
        ids = identity_loss(self.irse, images_r, img_src.repeat(n, 1, 1, 1), reduce=False)
        ids = ids.view(n, batch).mean(1)                    # per branch
        reen = [{k: v[i * batch:(i + 1) * batch] for k, v in params_r.items()} for i in range(n)]

        shape, eye, mouth = self._face_losses(p_src, p_tgt, reen[0])
        metrics = {"loss_shape": shape, "loss_eye": eye, "loss_mouth": mouth,
                   "loss_identity": self.lambda_identity * ids[0]}
        total = shape + eye + mouth + metrics["loss_identity"]
        if self.recurrent_cycle:
            hat = self._face_losses(p_src, p_cyc, reen[1])
            hat2 = self._face_losses(p_src, p_cyc, reen[2])
            metrics.update(loss_shape_cycle=hat[0] + hat2[0], loss_eye_cycle=hat[1] + hat2[1],
                           loss_mouth_cycle=hat[2] + hat2[2],
                           loss_identity_cycle=self.lambda_identity * (ids[1] + ids[2]))
            total = total + sum(metrics[k] for k in ("loss_shape_cycle", "loss_eye_cycle",
                                                     "loss_mouth_cycle", "loss_identity_cycle"))
        metrics["mask_mean"] = torch.cat([m.reshape(-1) for m in masks]).mean()
        metrics["crop_fallback"] = 0.5 * (params["crop_fallback"].mean()
                                          + params_r["crop_fallback"].mean())
        return total, metrics

