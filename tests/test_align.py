"""FFHQ alignment vs the official `align_crop_image` outputs, and pasting a crop back.

The expected crops in tests/fixtures/align were made by the official function (README there);
given the same landmarks ours must be equal to the last bit.
"""

import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from stylemask_jax.errors import UserInputError
from stylemask_jax.photos.align import AlignGeometry, align_face, face_quad, paste_back

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "align")
CASES = json.load(open(os.path.join(FIXTURES, "cases.json")))["cases"]


def _case(name):
    case = CASES[name]
    photo = np.asarray(Image.open(os.path.join(FIXTURES, case["photo"])).convert("RGB"))
    landmarks = np.load(os.path.join(FIXTURES, case["landmarks"]))
    return case, photo, landmarks


def _crop_coords(geometry, hw):
    """(H, W, 2) normalised crop coordinates (s, t) of every photo pixel centre."""
    q = geometry.quad
    ys, xs = np.mgrid[:hw[0], :hw[1]]
    to_st = np.linalg.inv(np.stack([q[3] - q[0], q[1] - q[0]], axis=1))
    return (np.stack([xs + 0.5, ys + 0.5], -1) - q[0]) @ to_st.T


@pytest.mark.parametrize("name", sorted(CASES))
def test_crop_equals_official(name):
    pytest.importorskip("scipy")  # the padding branch blurs with scipy.ndimage
    case, photo, landmarks = _case(name)
    crop, geometry = align_face(photo, landmarks)
    expected = np.asarray(Image.open(os.path.join(FIXTURES, case["aligned"])).convert("RGB"))
    assert crop.dtype == np.uint8 and crop.shape == (256, 256, 3)
    assert np.array_equal(crop, expected), f"{name}: {np.count_nonzero(crop != expected)} values differ"
    assert face_quad(landmarks)[1] == pytest.approx(case["qsize"], abs=1e-3)
    assert geometry.photo_hw == tuple(case["size_hw"])


@pytest.mark.parametrize("name", ["astronaut", "astronaut_edge", "astronaut_large"])
def test_geometry_is_the_quad_in_photo_coordinates(name):
    """Shrink, crop and pad offsets are undone: the quad is face_quad's, in edge coordinates."""
    pytest.importorskip("scipy")
    case, photo, landmarks = _case(name)
    _, geometry = align_face(photo, landmarks)
    quad, _ = face_quad(landmarks)
    if case["shrink"] > 1:  # the reference divides pixel-centre coordinates by the factor
        s = case["shrink"]
        expected = (quad / s + 0.5) * s
    else:
        expected = quad + 0.5
    np.testing.assert_allclose(geometry.quad, expected, atol=1e-9)


def test_paste_back_gradient_round_trip_is_exact_up_to_rounding():
    """On a linear ramp bilinear resampling is exact, so any offset error would show."""
    case, _, landmarks = _case("astronaut_tilt")
    h, w = case["size_hw"]
    ys, xs = np.mgrid[:h, :w]
    photo = np.rint(np.stack([xs * 0.3 + 20, ys * 0.3 + 20, (xs + ys) * 0.15 + 10], -1)).astype(np.uint8)
    crop, geometry = align_face(photo, landmarks)
    out = paste_back(photo, crop, geometry, feather=0.1)
    st = _crop_coords(geometry, (h, w))
    inner = (st.min(-1) >= 0.1) & (st.max(-1) <= 0.9)
    assert np.abs(out.astype(int) - photo)[inner].max() <= 1


@pytest.mark.parametrize("side", [256, 1024])
def test_paste_back_photo_round_trip(side):
    _, photo, landmarks = _case("astronaut")
    crop, geometry = align_face(photo, landmarks)
    face = crop if side == 256 else np.asarray(
        Image.fromarray(crop).resize((side, side), Image.Resampling.LANCZOS))
    out = paste_back(photo, face, geometry, feather=0.1)
    assert out.shape == photo.shape and out.dtype == np.uint8
    st = _crop_coords(geometry, photo.shape[:2])
    inner = (st.min(-1) >= 0.1) & (st.max(-1) <= 0.9)
    outside = (st.min(-1) < 0) | (st.max(-1) > 1)
    error = np.abs(out.astype(int) - photo)
    # measured: mean 2.27 (256) / 1.55 (1024) levels; two bilinear resamplings blur detail
    assert error[inner].mean() < 3.0
    assert np.array_equal(out[outside], photo[outside])


def test_paste_back_float_face_and_mask():
    _, photo, landmarks = _case("astronaut_small")
    crop, geometry = align_face(photo, landmarks)
    as_float = crop.astype(np.float32) / 127.5 - 1.0
    a = paste_back(photo, crop, geometry)
    b = paste_back(photo, as_float, geometry)
    assert np.abs(a.astype(int) - b).max() <= 1
    # a zero mask pastes nothing; a new face changes the inside
    assert np.array_equal(paste_back(photo, crop, geometry, mask=np.zeros((256, 256))), photo)
    grey = np.full((256, 256, 3), 128, np.uint8)
    st = _crop_coords(geometry, photo.shape[:2])
    centre = (st.min(-1) >= 0.2) & (st.max(-1) <= 0.8)
    assert np.all(paste_back(photo, grey, geometry, feather=0.1)[centre] == 128)


def test_bad_inputs():
    _, photo, landmarks = _case("astronaut_small")
    with pytest.raises(UserInputError, match="68"):
        align_face(photo, landmarks[:60])
    with pytest.raises(UserInputError, match="degenerate"):
        align_face(photo, np.full((68, 2), 50.0))
    with pytest.raises(UserInputError, match="uint8"):
        align_face(photo.astype(np.float32), landmarks)
    crop, geometry = align_face(photo, landmarks)
    with pytest.raises(UserInputError, match="alignment was of a 200x200"):
        paste_back(photo[:150], crop, geometry)
    with pytest.raises(UserInputError, match="square"):
        paste_back(photo, crop[:200], geometry)
    assert isinstance(geometry, AlignGeometry)


def test_missing_scipy_names_the_install_command(monkeypatch):
    _, photo, landmarks = _case("astronaut_edge")  # needs the padding branch
    monkeypatch.setitem(sys.modules, "scipy.ndimage", None)
    with pytest.raises(UserInputError, match=r'scipy.*pip install -e "\.\[photos\]"'):
        align_face(photo, landmarks)
