"""StyleMask shape/eye/mouth losses and the head-pose/expression metrics vs the official code.

Loss references (float64) used "ground truth" = cases 0, 1 and "reenacted" = cases 2, 3 of the
cam (8, 0, 0) decode. Our float32 decode is within 3e-5 px of theirs on coordinates of ~200 px,
and the losses are means of |differences| of such coordinates (values 10-22 px), so a relative
tolerance of 1e-5 covers the input gap plus the float32 mean; a wrong pair or a missing
coordinate changes them by far more.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from stylemask_jax import faces, losses, metrics
from stylemask_jax.models import flame as flame_lib


FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "flame")




def _params(flame_cases, rows):
    return {"shape": jnp.asarray(flame_cases["shape_params"][rows]),
            "exp": jnp.asarray(flame_cases["expression_params"][rows]),
            "pose": jnp.asarray(flame_cases["pose_params"][rows])}


def test_face_losses_match_reference(flame_model, flame_cases):
    gt, reenacted = _params(flame_cases, slice(0, 2)), _params(flame_cases, slice(2, 4))
    out = jax.jit(losses.face_losses)(flame_model, gt, gt, reenacted)
    np.testing.assert_allclose(out.shape, flame_cases["loss_shape"], rtol=1e-5)   # see module docstring
    np.testing.assert_allclose(out.eye, flame_cases["loss_eye"], rtol=1e-5)
    np.testing.assert_allclose(out.mouth, flame_cases["loss_mouth"], rtol=1e-5)
    dec = flame_lib.decode(flame_model, flame_cases["shape_params"], flame_cases["expression_params"],
                           flame_cases["pose_params"], np.tile(np.float32([8, 0, 0]), (4, 1)))
    np.testing.assert_allclose(losses.shape_loss(dec.vertices[:2], dec.vertices[2:], normalize=True),
                               flame_cases["loss_shape_normalized"], rtol=1e-5)


def test_face_losses_mix_source_shape_with_target_expression_and_pose(flame_model, flame_cases):
    """gt = FLAME(source shape, target exp/pose): swapping which sample gives the shape matters,
    and reenacting exactly that combination gives zero loss."""
    src, tgt = _params(flame_cases, slice(0, 2)), _params(flame_cases, slice(2, 4))
    exact = {"shape": src["shape"], "exp": tgt["exp"], "pose": tgt["pose"]}
    face_losses = jax.jit(losses.face_losses)
    out = face_losses(flame_model, src, tgt, exact)
    assert float(out.shape) == 0 and float(out.eye) == 0 and float(out.mouth) == 0
    assert float(face_losses(flame_model, tgt, tgt, exact).shape) > 0.1


def test_weight_scales_every_loss(flame_model, flame_cases):
    gt, reenacted = _params(flame_cases, slice(0, 2)), _params(flame_cases, slice(2, 4))
    face_losses = jax.jit(losses.face_losses)
    one = face_losses(flame_model, gt, gt, reenacted)
    three = face_losses(flame_model, gt, gt, reenacted, weight=3.0)
    np.testing.assert_allclose(np.array(three), 3 * np.array(one), rtol=1e-6)  # one f32 multiply


def test_gradients_reach_flame_parameters(flame_model, flame_cases):
    gt, reenacted = _params(flame_cases, slice(0, 2)), _params(flame_cases, slice(2, 4))
    jac = jax.jit(jax.jacrev(lambda p: jnp.stack(losses.face_losses(flame_model, gt, gt, p))))(reenacted)
    for i, name in enumerate(("shape", "eye", "mouth")):
        for key in ("exp", "pose") + (("shape",) if name == "shape" else ()):
            g = np.asarray(jac[key][i])
            assert np.all(np.isfinite(g)) and np.abs(g).max() > 0, (name, key)


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------

def test_head_angles_match_reference(flame_cases):
    pose = flame_cases["pose_params"][:, :3]
    rot = faces.axis_angle_to_matrix(jnp.asarray(pose))
    # entries of a rotation (|x| <= 1): a few float32 ulps (1.2e-7)
    np.testing.assert_allclose(rot, flame_cases["axis2matrix_f32"], rtol=0, atol=5e-7)
    np.testing.assert_allclose(rot, flame_cases["axis2matrix"], rtol=0, atol=5e-7)
    rad = faces.matrix_to_euler(rot)
    np.testing.assert_allclose(rad, flame_cases["euler_rad_f32"], rtol=0, atol=5e-7)
    # the reference's batch call returns only the last sample's angles
    np.testing.assert_allclose(rad[-1:], flame_cases["euler_rad_batchcall_f32"], rtol=0, atol=5e-7)
    deg = faces.head_angles_degrees(pose)
    # degrees up to ~53: float32 ulp 3.8e-6; a few ulps
    np.testing.assert_allclose(deg, flame_cases["euler_deg_f32"], rtol=0, atol=2e-5)
    np.testing.assert_allclose(deg, flame_cases["euler_deg"], rtol=0, atol=2e-5)


def test_head_angles_match_deca_fixture():
    ref = np.load(os.path.join(FIXTURES, "deca_angles.npz"))
    for pose, angles in (("code_pose", "angles_deg_from_code"), ("e2e_pose", "e2e_angles_deg")):
        deg = jax.jit(faces.head_angles_degrees)(ref[pose][:, :3].astype(np.float32))
        np.testing.assert_allclose(deg, ref[angles], rtol=0, atol=2e-5)  # float32 ulps, as above


def test_head_angles_finite_where_reference_fails():
    """|yaw| near 90 degrees (the reference raises there) and zero rotation stay finite."""
    pose = jnp.array([[0.0, np.pi / 2, 0.0], [0.0, -np.pi / 2 + 1e-4, 0.0], [0.0, 0.0, 0.0]])
    deg = faces.head_angles_degrees(pose)
    assert np.all(np.isfinite(deg))
    np.testing.assert_allclose(deg[2], 0.0, atol=0)  # the identity gives exactly zero angles
    grad = jax.grad(lambda p: faces.head_angles_degrees(p).sum())(jnp.zeros((1, 3)))
    assert np.all(np.isfinite(grad))


def test_pose_error():
    a = jnp.array([[10.0, -5.0, 2.0], [0.0, 0.0, 0.0]])
    b = jnp.array([[7.0, -5.0, 5.0], [1.0, -2.0, 3.0]])
    np.testing.assert_allclose(metrics.pose_error(a, b), [2.0, 2.0], rtol=1e-6)  # float32 mean


def test_ffhq_ranges_package_data():
    ranges = metrics.ffhq_ranges()
    assert ranges.shape == (54, 2) and ranges.dtype == np.float64
    assert np.all(ranges[:, 0] < ranges[:, 1])


def test_expression_error(flame_cases):
    ranges = metrics.ffhq_ranges()
    pose, exp = flame_cases["pose_params"], flame_cases["expression_params"]
    ours = jax.jit(metrics.expression_error)(pose[:2], exp[:2], pose[2:], exp[2:])
    # the README's definition in float64 numpy: jaw pose[3] with row 3, exp[:20] with rows 4..23
    lo, hi = ranges[3:24, 0], ranges[3:24, 1]
    feats = lambda p, e: (np.concatenate([p[:, 3:4], e[:, :20]], 1).astype(np.float64) - lo) / (hi - lo)  # noqa: E731
    expected = np.abs(feats(pose[:2], exp[:2]) - feats(pose[2:], exp[2:])).mean(1)
    # float32 normalisation of values ~1-100 (normalised), then a mean: 1e-5 relative
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
    np.testing.assert_array_equal(metrics.expression_error(pose, exp, pose, exp), np.zeros(4))
