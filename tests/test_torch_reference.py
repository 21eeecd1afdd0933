"""The torch reference parts (stylemask_jax/reference) against the official reference vectors.

Before `test_objective_torch.py` uses them as the reference of the training objective, each part
is checked here on the fixtures the official PyTorch code produced: FLAME (forward, contour row,
decode), the StyleMask shape/eye/mouth losses, DECA's encoder and crop, IR-SE and the identity
loss, and the mask network with the mixing rule (masks, mixed codes, reenacted image and the
gradients of a loss w.r.t. the mask network). The generator itself is checked in
`test_stylegan2_torch.py`. Everything runs in float64, as the reference vectors mostly were
computed; arrays the reference stored in float32 bound the tolerance by their rounding.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch

from convert_weights.stylegan2 import convert_stylegan2
from convert_weights.torch_reader import load_torch_file
from stylemask_jax.reference import deca as deca_ref
from stylemask_jax.reference import flame as flame_ref
from stylemask_jax.reference import irse as irse_ref
from stylemask_jax.reference import stylegan2 as sg_ref
from stylemask_jax.reference import stylemask as sm_ref

from conftest import flame_model_pkl

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
F64 = torch.float64


def _t(a):
    return torch.from_numpy(np.asarray(a, np.float64))


@pytest.fixture(scope="module")
def flame_cases():
    return dict(np.load(FIXTURES / "flame" / "cases.npz"))


@pytest.fixture(scope="module")
def flame():
    return flame_ref.load_flame(flame_model_pkl(),
                                FIXTURES / "flame" / "landmark_embedding.npy", F64)


def _flame_inputs(c):
    return _t(c["shape_params"]), _t(c["expression_params"]), _t(c["pose_params"])


def test_flame_forward_contour_and_decode(flame, flame_cases):
    c = flame_cases
    shape, exp, pose = _flame_inputs(c)
    vertices, lmk2d, lmk3d = flame(shape, exp, pose)
    # float64 against the official float64 run: summation order only (measured <= 3e-17 m)
    for ours, name in ((vertices, "vertices"), (lmk2d, "landmarks2d"), (lmk3d, "landmarks3d")):
        np.testing.assert_allclose(ours.numpy(), c[name], rtol=0, atol=1e-13, err_msg=name)
    full = torch.cat([pose[:, :3], torch.zeros(4, 3, dtype=F64), pose[:, 3:],
                      torch.zeros(4, 6, dtype=F64)], 1)
    yaw = flame.head_yaw_degrees(full)
    np.testing.assert_allclose(yaw.numpy(), c["head_yaw_deg"], rtol=0, atol=1e-10)  # degrees
    np.testing.assert_array_equal(flame.contour_row(yaw).numpy(), c["dyn_row"])
    for cam, suffix in ((torch.tensor([[8.0, 0, 0]], dtype=F64).expand(4, 3), ""),
                        (_t(c["cam_random"]), "_camrandom")):
        projected = flame_ref.decode(flame, shape, exp, pose, cam)
        for ours, name in zip(projected, ("proj_landmarks2d", "proj_landmarks3d", "proj_vertices")):
            # pixels ~200: float64 rounding (measured <= 6e-14 px)
            np.testing.assert_allclose(ours.numpy(), c[name + suffix], rtol=0, atol=1e-10,
                                       err_msg=name + suffix)


def test_shape_eye_mouth_losses(flame, flame_cases):
    """The reference's case: 'ground truth' = cases 0, 1 and 'reenacted' = cases 2, 3."""
    shape, exp, pose = _flame_inputs(flame_cases)
    gt = {"shape": shape[:2], "exp": exp[:2], "pose": pose[:2]}
    reenacted = {"shape": shape[2:], "exp": exp[2:], "pose": pose[2:]}
    losses = sm_ref.face_losses(flame, gt, gt, reenacted)
    for ours, name in zip(losses, ("loss_shape", "loss_eye", "loss_mouth")):
        np.testing.assert_allclose(float(ours), flame_cases[name], rtol=1e-12, err_msg=name)


@pytest.fixture(scope="module")
def deca_cases():
    return dict(np.load(FIXTURES / "deca" / "cases.npz"))


def test_deca_encoder(deca_cases):
    state = load_torch_file(FIXTURES / "deca" / "deca_model_small.tar")["E_flame"]
    encoder = deca_ref.build_deca(state, F64)
    with torch.no_grad():
        params = encoder(_t(deca_cases["crops"]))
        features = encoder.encoder(_t(deca_cases["crops"]))
    # float64 on both sides, values ~1 (measured 1.5e-15)
    np.testing.assert_allclose(features.numpy(), deca_cases["features"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(params.numpy(), deca_cases["params"], rtol=0, atol=1e-12)
    code = deca_ref.split_params(params)
    for name in ("shape", "tex", "exp", "pose", "cam", "light"):
        np.testing.assert_allclose(code[name].numpy(), deca_cases["code_" + name], rtol=0, atol=1e-12)

    # End to end (crop from the detector landmarks, then encode) against the reference's float32
    # run: the README puts its float32 parameters ~1e-6 from float64, and the reference's float32
    # warp adds ~1e-5 to the crop (below); measured 4.4e-6.
    crops, size = deca_ref.deca_crop(_t(deca_cases["gan_images"]), _t(deca_cases["kpt68"]))
    with torch.no_grad():
        e2e = deca_ref.split_params(encoder(crops))
    for name, key in (("pose", "e2e_pose"), ("shape", "e2e_alpha_shp"), ("exp", "e2e_alpha_exp"),
                      ("cam", "e2e_cam")):
        np.testing.assert_allclose(e2e[name].numpy(), deca_cases[key], rtol=0, atol=2e-5, err_msg=key)


def test_deca_crop(deca_cases):
    images, landmarks = _t(deca_cases["gan_images"]), _t(deca_cases["kpt68"])
    box = torch.cat([landmarks.min(1).values, landmarks.max(1).values], 1)
    np.testing.assert_array_equal(box.numpy(), deca_cases["crop_bbox"])
    matrix, size = deca_ref.box_transform(box)
    np.testing.assert_array_equal(size.numpy(), deca_cases["crop_size"])
    # the closed form vs the reference's least-squares estimate (README: equal to 3e-14)
    np.testing.assert_allclose(matrix.numpy(), deca_cases["crop_tform"], rtol=0, atol=1e-12)
    crops, _ = deca_ref.deca_crop(images, landmarks)
    # [0, 1] crops; the reference warped in float32, ~1e-5 from exact (README; measured 1.04e-5)
    np.testing.assert_allclose(crops.numpy(), deca_cases["crops"], rtol=0, atol=3e-5)


@pytest.mark.parametrize("variant", ["", "_2unit"])
def test_irse_embeddings_and_identity_loss(variant):
    cases = dict(np.load(FIXTURES / "irse" / f"cases{variant}.npz"))
    irse = irse_ref.build_irse(load_torch_file(FIXTURES / "irse" / f"model_ir_se_small{variant}.pth"), F64)
    source, generated = _t(cases["source_images"]), _t(cases["generated_images"])
    with torch.no_grad():
        pooled = irse_ref.arcface_input(source)
        emb_source, emb_generated = irse.embed(source), irse.embed(generated)
        loss = irse_ref.identity_loss(irse, generated, source)
    # float64 on both sides (measured <= 1e-15)
    np.testing.assert_allclose(pooled[0].numpy(), cases["pooled_input_source0"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(emb_source.numpy(), cases["source_embeddings"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(emb_generated.numpy(), cases["generated_embeddings"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(float(loss), cases["loss"], rtol=1e-12)


def test_mask_net_mixing_and_its_gradients():
    """The reenactment case of the StyleGAN2 fixture: masks, mixed codes, reenacted image and
    d sum(reenacted * R) / d mask-net parameters. Expected values were computed in float64 and
    stored in float32: tolerances are a few float32 ulps of each quantity's scale."""
    c = dict(np.load(FIXTURES / "stylegan2" / "cases.npz"))
    checkpoint = load_torch_file(FIXTURES / "stylegan2" / "generator_small.pt")
    _, arch, latent_avg = convert_stylegan2(checkpoint)
    gen = sg_ref.build_generator(checkpoint["g_ema"], arch, F64).requires_grad_(False)
    mask_net = sm_ref.build_mask_net(load_torch_file(FIXTURES / "stylegan2" / "mask_net_small.pt")["mask_net"])
    z = torch.cat([_t(c["z_source"]), _t(c["z_target"])])
    wplus = gen.wplus(z, "z", float(c["truncation_psi"]), _t(latent_avg))
    styles = gen.style_codes(wplus)
    s_src, s_tgt = [s[:3] for s in styles], [s[3:] for s in styles]
    masks = mask_net(s_src, s_tgt)
    mixed = sm_ref.mix_styles(masks, s_src, s_tgt)
    image = gen.synthesize(mixed, wplus[:3])
    loss = (image * _t(c["R"])).sum()
    loss.backward()
    np.testing.assert_allclose(torch.cat(masks, 1).detach().numpy(), c["mask_concat"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(torch.cat(mixed, 1).detach().numpy(), c["new_style_concat"], rtol=0, atol=2e-6)
    np.testing.assert_allclose(image.detach().numpy(), c["reenacted_image"], rtol=0, atol=2e-6)
    np.testing.assert_allclose(float(loss.detach()), c["loss"], rtol=1e-6)  # f32 storage of 167.66
    checked = 0
    for key in c:
        if key.startswith("grad_network_"):
            _, _, index, _, layer, leaf = key.split("_")  # grad_network_00_masknet_0_weight
            net = f"network_{index}"
            grad = getattr(mask_net.nets[net].masknet[int(layer)], leaf).grad.numpy()
            # measured 3e-8 x max|grad|; float32 storage allows ~1e-7
            np.testing.assert_allclose(grad, c[key], rtol=0, atol=1e-6 * np.abs(c[key]).max(),
                                       err_msg=key)
            checked += 1
    assert checked == 5
