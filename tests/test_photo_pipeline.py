"""The photo library path on the fixture photographs with random networks: prepare_faces (detect +
align), e4e inversion in fixed batches, the official truncation, and the W+ refinement."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from photo_utils import e4e_net, fixture_photo, irse_net, photo_models
from stylemask_jax import inversion
from stylemask_jax.errors import UserInputError
from stylemask_jax.photos import LandmarkDetector, pipeline
from stylemask_jax.photos.refine import make_refine_fn, reconstruct
from stylemask_jax.photos.settings import RefineSettings
from stylemask_jax.reenact import make_encode_fn

NAMES = ["astronaut", "astronaut_tilt", "astronaut_small"]


@pytest.fixture(scope="module")
def detector():
    return LandmarkDetector()


@pytest.fixture(scope="module")
def faces(detector):
    return pipeline.prepare_faces([fixture_photo(n) for n in NAMES], detector, keep_photos=True)


def test_prepare_faces_matches_the_official_crops(faces):
    assert faces.crops.shape == (3, 256, 256, 3) and faces.crops.dtype == np.uint8
    assert faces.landmarks.shape == (3, 68, 2)
    for k, name in enumerate(NAMES):
        # dlib's landmarks here are within 0.5 px of the stored ones (test_landmarks), so the
        # crops equal the official crop of the stored landmarks up to that shift
        expected = np.asarray(Image.open(fixture_photo(f"{name}_aligned")))
        diff = np.abs(faces.crops[k].astype(int) - expected.astype(int))
        assert np.mean(diff) < 4, name
        assert faces.geometry[k].photo_hw == faces.photos[k].shape[:2]


def test_prepare_faces_errors(tmp_path, detector):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
    with pytest.raises(UserInputError, match="blank.png: no face found"):
        pipeline.prepare_faces([fixture_photo("astronaut"), str(blank)], detector)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(UserInputError, match="notes.png: not an image"):
        pipeline.prepare_faces([str(text)], detector)


def test_input_files_rule(tmp_path):
    (tmp_path / "p").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "p" / "a.JPG")
    assert pipeline.input_files(str(tmp_path / "p"), "--sources") == (
        "photos", [str(tmp_path / "p" / "a.JPG")])
    np.save(tmp_path / "p" / "c.npy", np.zeros(4))
    with pytest.raises(UserInputError, match="mixes photos and .npy"):
        pipeline.input_files(str(tmp_path / "p"), "--sources")
    (tmp_path / "e").mkdir()
    with pytest.raises(UserInputError, match="holds no photos"):
        pipeline.input_files(str(tmp_path / "e"), "--targets")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(UserInputError, match="expected a photo"):
        pipeline.input_files(str(tmp_path / "x.txt"), "--targets")


def test_invert_batches_fixed_batches_and_truncation(faces):
    encoder, evars = e4e_net()
    inverter = inversion.Inverter(encoder, evars)
    codes = inversion.invert_all(inverter, None, faces.crops, batch_size=2)  # 2 + 1 padded
    assert codes.shape == (3, 10, 512) and codes.dtype == np.float32
    x = jnp.asarray(faces.crops, jnp.float32) / 255 * 2 - 1  # the official image_to_tensor
    np.testing.assert_allclose(codes, np.asarray(encoder.apply(evars, x)), rtol=0, atol=1e-5)
    mean = np.random.default_rng(0).normal(size=512).astype(np.float32)
    models = photo_models()        # the official truncation, as the reenactment commands run it
    truncated = make_encode_fn(models.generator, "wplus", 0.7)(models.gvars, codes, mean)
    np.testing.assert_allclose(truncated, mean + 0.7 * (codes - mean), rtol=0, atol=1e-6)
    untruncated = make_encode_fn(models.generator, "wplus", 1.0)(models.gvars, codes, mean)
    np.testing.assert_array_equal(untruncated, codes)


def test_chunked_inversion_is_the_same_codes(faces):
    """On a CPU the encoder runs a batch one crop at a time (`encoder_chunk`); the codes equal the
    whole batch's up to float rounding, and the graph's image batch is the chunk."""
    encoder, evars = e4e_net()
    crops = np.concatenate([faces.crops, faces.crops[:1]])                  # 4 crops
    whole = np.asarray(inversion.make_invert_fn(encoder, chunk=None)(evars, crops))
    assert inversion.encoder_chunk() == inversion.ENCODER_CPU_CHUNK == 1
    for chunk in ("auto", 2):
        codes = inversion.make_invert_fn(encoder, chunk=chunk)(evars, crops)
        np.testing.assert_allclose(codes, whole, rtol=0, atol=1e-5)
    jaxpr = str(jax.make_jaxpr(inversion.make_invert_fn(encoder, chunk=2))(evars, crops))
    assert "scan" in jaxpr and "f32[2,256,256,3]" in jaxpr
    odd = np.asarray(inversion.make_invert_fn(encoder, chunk=2)(evars, crops[:3]))  # runs whole
    np.testing.assert_allclose(odd, whole[:3], rtol=0, atol=1e-5)


def test_refine_lowers_the_loss(faces, capsys):
    models = photo_models()
    encoder, evars = e4e_net()
    irse, ivars = irse_net()
    crops = faces.crops[:2]
    codes = inversion.invert_all(inversion.Inverter(encoder, evars), None, crops, batch_size=2)
    steps = 6
    refine = make_refine_fn(models.generator, RefineSettings(steps=steps, lr=0.02), irse)
    refined, losses = refine(models.gvars, ivars, jnp.asarray(codes), crops)
    losses = np.asarray(losses)
    assert losses.shape == (steps, 2) and np.all(np.isfinite(losses))
    falls = np.diff(losses, axis=0) < 0
    def error(wplus):   # the refinement's image term: mean squared error at 256 in [-1, 1]
        recon = reconstruct(models.generator, models.gvars, jnp.asarray(wplus))
        return np.asarray(jnp.mean((recon - pipeline.crops_to_unit(crops)) ** 2, axis=(1, 2, 3)))
    before, after = error(codes), error(refined)
    with capsys.disabled():
        print(f"\nrefine {steps} steps: loss {losses[0].round(4)} -> {losses[-1].round(4)}, "
              f"{falls.mean():.0%} of steps lower; reconstruction MSE {before.round(4)} -> "
              f"{after.round(4)}")
    assert np.all(losses[-1] < losses[0])
    assert falls.mean() >= 0.8       # mostly decreasing, not only at the end
    assert np.all(after < before)
