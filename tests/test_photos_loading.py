"""load_photo on the kinds of files real photos come as, built from the fixture photo."""

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from stylemask_jax.errors import UserInputError
from stylemask_jax.photos.loading import load_photo

PHOTO = os.path.join(os.path.dirname(__file__), "fixtures", "align", "astronaut_small.png")


@pytest.fixture(scope="module")
def rgb():
    return np.asarray(Image.open(PHOTO).convert("RGB"))  # (200, 200, 3)


def _raises_one_line(match, source, **kw):
    with pytest.raises(UserInputError, match=match) as err:
        load_photo(source, **kw)
    assert "\n" not in str(err.value)


def _png16(path, array):
    """Writes a 16-bit PNG (greyscale (H, W) or RGB (H, W, 3)) without Pillow's 8-bit path."""
    h, w = array.shape[:2]
    colour = 2 if array.ndim == 3 else 0
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                + chunk(b"IEND", b""))


def test_rgb_png(tmp_path, rgb):
    out = load_photo(PHOTO)
    assert out.dtype == np.uint8 and out.shape == (200, 200, 3)
    assert np.array_equal(out, rgb)


def test_exif_orientation(tmp_path, rgb):
    wide = rgb[:, :150]  # (200, 150): the rotation is visible in the shape
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(wide).save(path, quality=95, exif=exif)
    stored = np.asarray(Image.open(path).convert("RGB"))
    out = load_photo(path)
    assert out.shape == (150, 200, 3)
    assert np.array_equal(out, np.rot90(stored, k=-1))


@pytest.mark.parametrize("mode", ["L", "1"])
def test_greyscale(tmp_path, rgb, mode):
    img = Image.fromarray(rgb).convert(mode)
    img.save(tmp_path / "grey.png")
    out = load_photo(tmp_path / "grey.png")
    grey = np.asarray(img.convert("L"))
    assert out.shape == (200, 200, 3)
    assert np.array_equal(out, np.repeat(grey[..., None], 3, axis=2))


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path, rgb):
    grey = np.asarray(Image.fromarray(rgb).convert("L")).astype(np.uint16)
    _png16(tmp_path / "g16.png", grey * 257)
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = load_photo(tmp_path / "g16.png")
    assert np.array_equal(out[..., 0], grey) and np.array_equal(out[..., 2], grey)
    # rounding: 128 / 257 < 0.5 -> 0, 129 / 257 > 0.5 -> 1, 65535 -> 255
    edge = np.full((100, 100), 128, np.uint16)
    edge[:, 50:] = 129
    edge[50:] = 65535
    _png16(tmp_path / "edge.png", edge)
    out = load_photo(tmp_path / "edge.png")
    assert out[0, 0, 0] == 0 and out[0, 99, 0] == 1 and out[99, 0, 0] == 255


def test_mode_i_32_bit(tmp_path, rgb):
    grey = np.asarray(Image.fromarray(rgb).convert("L")).astype(np.int32)
    Image.fromarray(grey * 257, "I").save(tmp_path / "i32.tif")
    assert Image.open(tmp_path / "i32.tif").mode == "I"
    out = load_photo(tmp_path / "i32.tif")
    assert np.array_equal(out[..., 1], grey)


def test_sixteen_bit_rgb(tmp_path):
    values = np.random.default_rng(0).integers(0, 65536, (120, 130, 3)).astype(np.uint16)
    _png16(tmp_path / "rgb16.png", values)
    out = load_photo(tmp_path / "rgb16.png")
    assert out.shape == (120, 130, 3)
    assert np.abs(out.astype(int) - np.rint(values / 257.0)).max() <= 1


def test_rgba_and_la_on_white(tmp_path, rgb):
    alpha = np.tile(np.linspace(0, 255, 200).round().astype(np.uint8), (200, 1))
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "rgba.png")
    out = load_photo(tmp_path / "rgba.png").astype(int)
    assert np.all(out[:, 0] == 255)                        # fully transparent: white
    assert np.array_equal(out[:, -1], rgb[:, -1])          # opaque: unchanged
    a = alpha[0, 100] / 255.0
    expected = np.rint(rgb[:, 100] * a + 255 * (1 - a))
    assert np.abs(out[:, 100] - expected).max() <= 1
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(tmp_path / "la.png")
    out = load_photo(tmp_path / "la.png")
    assert np.all(out[:, 0] == 255) and np.array_equal(out[:, -1, 0], grey[:, -1])


def test_palette_with_and_without_transparency(tmp_path, rgb):
    pal = Image.fromarray(rgb).quantize(64)
    pal.save(tmp_path / "p.png")
    assert np.array_equal(load_photo(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))
    index = np.asarray(pal)[0, 0]
    pal.save(tmp_path / "pt.png", transparency=int(index))
    out = load_photo(tmp_path / "pt.png")
    hidden = np.asarray(pal) == index
    assert np.all(out[hidden] == 255)
    assert np.array_equal(out[~hidden], np.asarray(pal.convert("RGB"))[~hidden])


def test_cmyk_jpeg(tmp_path, rgb):
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "print.jpg", quality=95)
    assert Image.open(tmp_path / "print.jpg").mode == "CMYK"
    out = load_photo(tmp_path / "print.jpg")
    assert out.shape == (200, 200, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - rgb).mean() < 4  # JPEG loss only


@pytest.mark.parametrize("size,ok", [((100, 6000), True), ((99, 150), False), ((150, 6001), False)])
def test_size_limits(tmp_path, size, ok):
    path = tmp_path / "flat.png"
    Image.new("RGB", size, (90, 90, 90)).save(path)
    if ok:
        assert load_photo(path).shape == (size[1], size[0], 3)
    else:
        _raises_one_line(rf"flat\.png: photo is {size[0]}x{size[1]} pixels", path)


def test_bad_files(tmp_path):
    _raises_one_line(r"nope\.jpg: no such file", tmp_path / "nope.jpg")
    (tmp_path / "notes.png").write_text("not a picture\n")
    _raises_one_line(r"notes\.png: not an image", tmp_path / "notes.png")
    Image.open(PHOTO).convert("RGB").save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    _raises_one_line(r"cut\.jpg: damaged or truncated", tmp_path / "cut.jpg")
    png = open(PHOTO, "rb").read()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    _raises_one_line(r"cut\.png: damaged or truncated", tmp_path / "cut.png")


def test_arrays(rgb):
    assert np.array_equal(load_photo(rgb), rgb)
    grey = rgb[..., 0]
    assert np.array_equal(load_photo(grey), np.repeat(grey[..., None], 3, axis=2))
    assert np.array_equal(load_photo(grey[..., None])[..., 1], grey)
    assert np.array_equal(load_photo(rgb.astype(np.uint16) * 257), rgb)
    opaque = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert np.array_equal(load_photo(opaque), rgb)
    _raises_one_line("clip.mp4 frame 3: expected a uint8 or uint16", rgb.astype(np.float32),
                     name="clip.mp4 frame 3")
    _raises_one_line(r"clip.mp4 frame 3: photo is 50x200", rgb[:, :50], name="clip.mp4 frame 3")
    _raises_one_line(r"image array: expected an \(H, W\)", rgb[..., :2])
