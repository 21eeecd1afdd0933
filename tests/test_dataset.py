"""The real-face dataset: TFDS builder (no TensorFlow), read-back, shards, pairs, re-runs.

The source folder is made of the shared alignment photos (tests/fixtures/align, copies of
../shared/reference/align): a clip of shifted copies of one photo stored as frames, a short
mp4 of another, single photos and a photo without a face. Most tests use a stand-in aligner
(a centre crop with template landmarks, and "no face" for a flat image) so that they test the
pipeline, not dlib; `test_real_alignment` runs the project's dlib + FFHQ alignment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("array_record")

from stylemask_jax.commands.dataset import summary as build_summary  # noqa: E402
from stylemask_jax.datasets import (build_dataset, crop_landmarks,  # noqa: E402
                                    load_dataset, make_pairs, read_pairs, shard_indices,
                                    write_pairs)
from stylemask_jax.errors import UserInputError  # noqa: E402

from dataset_utils import (CLIP_FRAMES, EXPECTED, FIXTURES,  # noqa: E402
                           StandInAligner, build, clip_frame, make_source, photo, save)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_source(str(tmp_path_factory.mktemp("faces")))


@pytest.fixture(scope="module")
def built(source, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("data"))
    report = build(source, out)
    return out, report


def test_build_counts_shapes_and_ids(built):
    out, report = built
    meta = report.metadata
    num_faces = sum(len(frames) for _, _, frames in EXPECTED)
    assert not report.skipped
    assert report.num_examples == num_faces == meta["num_faces"]
    assert meta["num_items"] == 5 and meta["num_frames"] == num_faces + 1
    assert meta["num_no_face"] == 1 and meta["no_face"] == ["bob/blank.png"]
    assert meta["ignored_files"] == ["notes.txt"]
    assert report.path.endswith(os.path.join("stylemask_faces", "stride1_maxall", "1.0.0"))
    summary = build_summary(report).splitlines()
    assert summary[0] == f"wrote {num_faces} faces from 5 photos/videos ({num_faces + 1} frames " \
        f"read) to {report.path}"
    assert summary[1:] == ["aligned 5 photos/videos in this process",
                           "no face found in 1 frame: bob/blank.png",
                           "ignored 1 file, neither photo nor video: notes.txt"]

    dataset = load_dataset(out)
    assert len(dataset) == num_faces
    expected = [(ident, video, frame) for ident, video, frames in EXPECTED for frame in frames]
    got = [(ex["identity"].decode(), ex["video"].decode(), int(ex["frame"]))
           for ex in dataset.examples(range(len(dataset)))]
    assert got == expected
    identities = sorted({ident for ident, _, _ in EXPECTED})
    for i, (ident, video, frame) in enumerate(expected):
        ex = dataset[i]
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (256, 256, 3)
        assert ex["landmarks"].dtype == np.float32 and ex["landmarks"].shape == (68, 2)
        assert ex["landmarks_frame"].shape == (68, 2)
        assert ex["identity_id"] == identities.index(ident)
        assert dataset.table["video"][i] == video and dataset.table["frame"][i] == frame
    paths = [dataset[i]["path"].decode() for i in range(len(dataset))]
    assert paths[:CLIP_FRAMES] == [f"alice/clip/{k:03d}.png" for k in range(CLIP_FRAMES)]
    assert paths[CLIP_FRAMES + 1] == "bob/take.mp4" and paths[-1] == "solo.png"
    # the video's frames are distinct (read one by one, not one frame repeated)
    video_rows = [i for i, (_, v, _) in enumerate(expected) if v == "bob/take"]
    assert not np.array_equal(dataset[video_rows[0]]["image"], dataset[video_rows[1]]["image"])
    # the stored crop is what the aligner produced for that frame
    first = StandInAligner()(clip_frame(0))
    np.testing.assert_array_equal(dataset[0]["image"], first.image)
    np.testing.assert_array_equal(dataset[0]["landmarks"], first.landmarks)


def test_crop_landmarks_through_the_quad():
    """A landmark at a crop corner's pixel centre maps to (0, 0); the map is the quad's."""
    quad = np.array([[10.0, 20.0], [-30.0, 120.0], [70.0, 160.0], [110.0, 60.0]])  # rotated
    corners = quad[[0, 3, 1]]           # top-left, top-right, bottom-left (pixel edges)
    side = 256
    centre_of_first_pixel = corners[0] + ((corners[1] - corners[0]) + (corners[2] - corners[0])
                                          ) * 0.5 / side - 0.5
    points = np.stack([centre_of_first_pixel, quad.mean(0) - 0.5])
    mapped = crop_landmarks(points, quad, side)
    np.testing.assert_allclose(mapped, [[0.0, 0.0], [127.5, 127.5]], atol=1e-4)


def test_tfds_data_source_reads_it(built):
    out, report = built
    source = tfds.data_source("stylemask_faces/stride1_maxall", data_dir=out, split="train")
    dataset = load_dataset(out)
    assert len(source) == len(dataset)
    np.testing.assert_array_equal(source[3]["image"], dataset[3]["image"])


def test_rerun_skips_a_finished_build(built, source):
    out, first = built
    aligner = StandInAligner()
    again = build(source, out, aligner=aligner)
    assert again.skipped and aligner.calls == 0
    assert build_summary(again).startswith("already built: ")
    assert again.path == first.path and again.num_examples == first.num_examples


def test_frame_stride_and_limit_are_a_config(source, tmp_path):
    out = str(tmp_path)
    report = build(source, out, frame_stride=2, max_frames=2)
    assert report.path.endswith(os.path.join("stride2_max2", "1.0.0"))
    dataset = load_dataset(out, config="stride2_max2")
    frames = {}
    for i in range(len(dataset)):
        frames.setdefault(dataset.table["video"][i], []).append(int(dataset.table["frame"][i]))
    assert frames == {"alice/clip": [0, 2], "alice/portrait": [0], "bob/take": [0, 2],
                      "solo": [0]}
    build(source, out)                     # the default config, next to it
    with pytest.raises(UserInputError, match="several datasets"):
        load_dataset(out)


def dataset_files(path: str) -> dict[str, bytes]:
    """The files of a built dataset (records, indexes, info), by name."""
    found = {}
    for name in sorted(os.listdir(path)):
        if name != "examples.npz":                # the id table, written when first read
            with open(os.path.join(path, name), "rb") as f:
                found[name] = f.read()
    return found


def test_failed_build_is_not_taken_for_finished(source, built, tmp_path):
    out = str(tmp_path / "data")
    # in this process the items go in order: alice/clip (6 frames), alice/portrait, bob/blank,
    # bob/take (its first frame is call 9), solo
    with pytest.raises(RuntimeError, match="crashed"):
        build(source, out, aligner=StandInAligner(fail_at=9))
    with pytest.raises(UserInputError, match="no built face dataset"):
        load_dataset(out)
    leftovers = [os.path.join(d, f) for d, _, files in os.walk(out) for f in files]
    assert not [p for p in leftovers if "array_record" in p or "dataset_info" in p], leftovers
    # a build killed outright (no exception, so TFDS could not clean up) leaves this behind
    killed = os.path.join(out, "stylemask_faces", "stride1_maxall", "incomplete.X1Y2Z3_1.0.0")
    os.makedirs(killed)
    open(os.path.join(killed, "stylemask_faces-train.array_record-00000-of-00001"), "w").close()
    report = build(source, out)
    assert not report.skipped and (report.items_reused, report.items_aligned) == (3, 2)
    assert not os.path.exists(killed)
    assert not os.path.exists(os.path.join(out, ".stylemask_build"))    # the work is done
    # the same bytes as the build that was never interrupted
    assert dataset_files(report.path) == dataset_files(built[1].path)


def test_changed_source_is_refused_unless_overwrite(source, tmp_path):
    import shutil
    src = shutil.copytree(source, str(tmp_path / "src"))
    out = str(tmp_path / "data")
    first = build(src, out)
    save(os.path.join(src, "carol.png"), photo("astronaut_small.png"))
    with pytest.raises(UserInputError, match="has changed since"):
        build(src, out)
    report = build(src, out, overwrite=True)
    assert not report.skipped and report.num_examples == first.num_examples + 1
    assert load_dataset(out).table["video"][-1] == "solo"          # sorted: carol, ..., solo


def test_bad_sources_are_one_line_errors(tmp_path):
    with pytest.raises(UserInputError, match="not a folder"):
        build(str(tmp_path / "missing"), str(tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no photos"):
        build(str(tmp_path / "empty"), str(tmp_path / "out"))
    deep = tmp_path / "deep" / "id" / "video" / "extra"
    deep.mkdir(parents=True)
    with pytest.raises(UserInputError, match="deeper"):
        build(str(tmp_path / "deep"), str(tmp_path / "out"))
    noface = tmp_path / "noface"
    save(str(noface / "flat.png"), np.zeros((128, 128, 3), np.uint8))
    with pytest.raises(UserInputError, match="no face"):
        build(str(noface), str(tmp_path / "out"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "photo.png").write_bytes(b"not a png")
    with pytest.raises(UserInputError, match="photo.png: not an image"):
        build(str(broken), str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out" / "stylemask_faces" / "stride1_maxall" / "1.0.0")
    with pytest.raises(UserInputError, match="frame stride"):
        build(str(noface), str(tmp_path / "out"), frame_stride=0)


@pytest.mark.parametrize("num_examples", [0, 1, 7, 100])
def test_shards_cover_every_example_once(num_examples):
    for count in (1, 2, 3, 4, 8):
        shards = [shard_indices(num_examples, p, count) for p in range(count)]
        np.testing.assert_array_equal(np.concatenate(shards), np.arange(num_examples))
        sizes = [len(s) for s in shards]
        assert max(sizes) - min(sizes) <= 1
        assert all(np.all(np.diff(s) == 1) for s in shards)      # contiguous blocks
    with pytest.raises(UserInputError):
        shard_indices(10, 2, 2)


def test_shards_of_the_dataset(built):
    dataset = load_dataset(built[0])
    seen = np.concatenate([shard_indices(len(dataset), p, 3) for p in range(3)])
    assert sorted(seen.tolist()) == list(range(len(dataset)))


def test_pairs_follow_the_protocols_and_the_seed(built, tmp_path):
    dataset = load_dataset(built[0])
    table = dataset.table
    self_pairs = make_pairs(dataset, "self", num_pairs=50, seed=0)
    assert self_pairs.shape == (50, 2) and self_pairs.dtype == np.int64
    for s, t in self_pairs:
        assert table["video"][s] == table["video"][t] and table["frame"][s] != table["frame"][t]
    assert set(table["video"][self_pairs[:, 0]]) == {"alice/clip", "bob/take"}
    cross = make_pairs(dataset, "cross", num_pairs=60, seed=0)
    assert np.all(table["identity_id"][cross[:, 0]] != table["identity_id"][cross[:, 1]])
    assert len(set(table["identity"][cross[:, 0]])) == 3          # every identity is a source
    np.testing.assert_array_equal(make_pairs(dataset, "cross", 60, seed=0), cross)
    assert not np.array_equal(make_pairs(dataset, "cross", 60, seed=1), cross)

    for name in ("pairs.json", "pairs.csv"):
        path = write_pairs(str(tmp_path / name), dataset, cross, "cross", seed=0)
        np.testing.assert_array_equal(read_pairs(path, dataset), cross)
    header = json.load(open(tmp_path / "pairs.json"))
    assert header["protocol"] == "cross" and header["seed"] == 0
    assert header["fingerprint"] == dataset.metadata["fingerprint"]
    assert header["pairs"][0]["source_video"] == table["video"][cross[0, 0]]

    only_photos = {k: v[table["video"] != "alice/clip"] for k, v in table.items()}
    only_photos = {k: v[only_photos["video"] != "bob/take"] for k, v in only_photos.items()}
    with pytest.raises(UserInputError, match="at least two faces"):
        make_pairs(only_photos, "self", 4)
    with pytest.raises(UserInputError, match="protocol"):
        make_pairs(dataset, "both", 4)


def test_builds_and_reads_with_tensorflow_unimportable(tmp_path):
    """In a fresh process where `import tensorflow` fails: build, read back, no TF module."""
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class HideTensorFlow(importlib.abc.MetaPathFinder):   # as if it were not installed
            def __init__(self, finder):
                self.finder = finder
            def find_spec(self, name, path=None, target=None):
                if name == "tensorflow" or name.startswith("tensorflow."):
                    return None
                find = getattr(self.finder, "find_spec", None)
                return find(name, path, target) if find else None
        sys.meta_path[:] = [HideTensorFlow(f) for f in sys.meta_path]
        import importlib.util
        assert importlib.util.find_spec("tensorflow") is None
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import dataset_utils as t
        from stylemask_jax.datasets import load_dataset
        src = t.make_source({str(tmp_path)!r})
        report = t.build(src, {str(tmp_path / "data")!r}, max_frames=1)
        dataset = load_dataset({str(tmp_path / "data")!r})
        assert dataset[len(dataset) - 1]["image"].shape == (256, 256, 3)
        assert "tensorflow" not in sys.modules
        print("examples", len(dataset))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=dict(os.environ), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "examples 4" in result.stdout


def test_crop_landmarks_match_the_official_crop():
    """Bright dots drawn at landmark positions land, after `align_face`, where we map them."""
    from stylemask_jax.photos.align import align_face
    landmarks = np.load(os.path.join(FIXTURES, "astronaut_landmarks.npy"))
    chosen = landmarks[[36, 45, 30, 48, 54, 8]] + [[0.3, -0.2]]      # sub-pixel positions
    yy, xx = np.mgrid[0:512, 0:512]
    canvas = np.zeros((512, 512), np.float64)
    for x, y in chosen:                 # a Gaussian dot (sigma 2 px) centred on (x, y)
        canvas += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0 ** 2))
    photo = np.repeat(np.rint(np.clip(canvas, 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)
    crop, geometry = align_face(photo, landmarks)
    predicted = crop_landmarks(chosen, geometry.quad)
    weight = crop[..., 0].astype(np.float64)
    cy, cx = np.mgrid[0:256, 0:256]
    for px, py in predicted:            # the dot's centroid in a window around the prediction
        window = (np.abs(cx - px) <= 7) & (np.abs(cy - py) <= 7)
        w = weight * window
        centroid = [np.sum(w * cx) / np.sum(w), np.sum(w * cy) / np.sum(w)]
        np.testing.assert_allclose(centroid, [px, py], atol=0.15)


def test_real_alignment(source, tmp_path):
    """The default pipeline: photos.load_photo, photos.video, dlib landmarks, the FFHQ crop."""
    pytest.importorskip("dlib")
    from PIL import Image
    report = build_dataset(source, str(tmp_path), progress=False)
    meta = report.metadata
    assert meta["aligner"].startswith("dlib")
    assert meta["num_no_face"] == 1 and meta["no_face"] == ["bob/blank.png"]
    dataset = load_dataset(str(tmp_path))
    got = [(dataset.table["video"][i], int(dataset.table["frame"][i])) for i in range(len(dataset))]
    assert got == [(video, frame) for _, video, frames in EXPECTED for frame in frames]
    # clip frame 0 is the reference photo itself: the official crop, pixel for pixel
    first = dataset[0]
    official = np.asarray(Image.open(os.path.join(FIXTURES, "astronaut_aligned.png")).convert("RGB"))
    np.testing.assert_array_equal(first["image"], official)
    np.testing.assert_allclose(first["landmarks_frame"],
                               np.load(os.path.join(FIXTURES, "astronaut_landmarks.npy")), atol=1e-4)
    # later frames are the photo moved by (dx, dy) = (2k, 3k): so are their landmarks
    for k in range(1, CLIP_FRAMES):
        moved = dataset[k]["landmarks_frame"] - [2 * k, 3 * k]
        assert np.abs(moved - first["landmarks_frame"]).mean() < 1.0, k    # measured <= 0.28
    # dlib run again on a stored crop finds its stored crop landmarks (dlib's points are
    # integers and its box differs at the crop's scale: measured 0.46 to 1.05 px mean)
    from stylemask_jax.photos.landmarks import LandmarkDetector
    detector = LandmarkDetector()
    for i in (0, CLIP_FRAMES, len(dataset) - 1):
        again = detector.detect(dataset[i]["image"])
        assert np.abs(again - dataset[i]["landmarks"]).mean() < 1.5, i
