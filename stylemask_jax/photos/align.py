"""FFHQ-style face alignment (the official StyleMask crop) and pasting a face crop back.

`align_face(photo, landmarks)` reproduces the official `align_crop_image` of StyleMask's
`libs/utilities/ffhq_cropping.py` (itself the FFHQ dataset recipe) bit for bit, given the same
68 landmarks. The steps, in the order that makes the output exact:

1. `face_quad`: an oriented square from the eyes and the mouth corners (iBUG 300-W indices:
   eyes 36-41 / 42-47, mouth corners 48 and 54), `qsize` its side in photo pixels.
2. shrink: when `floor(qsize / 512) > 1`, a Lanczos resize of the whole photo by that factor
   (each side rounded), the quad divided by it.
3. crop: the quad's bounding box plus a border of `max(rint(0.1 qsize), 3)`, clipped to the
   photo (only when that is smaller than the photo).
4. pad: when the quad still leaves the image by more than `border - 4` pixels, reflect
   padding of at least `rint(0.3 qsize)` on every side, blended towards a Gaussian blur
   (sigma `0.01 qsize`) and towards the median colour with weights that grow towards the
   padded edges, computed in float32 / float64 exactly as the reference and rounded to uint8.
5. a PIL QUAD transform of the quad to 256 x 256 with bilinear filtering.

The returned `AlignGeometry` holds the quad in the coordinates of the original photo (undoing
the shrink, the crop and the padding), which is all `paste_back` needs to put a face crop of any
side (256, 1024, ...) back into the photo.

Coordinates: x, y in pixels; `AlignGeometry.quad` uses the pixel-edge convention (pixel (i, j)
covers [i, i+1) x [j, j+1)), the landmarks the pixel-centre one (as dlib and the reference).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from stylemask_jax.errors import UserInputError
from stylemask_jax.photos.loading import check_rgb

CROP_SIZE = 256  # the official transform_size == output_size


@dataclasses.dataclass(frozen=True)
class AlignGeometry:
    """Where an aligned crop came from.

    quad: float64 (4, 2) x, y corners in original-photo pixel-edge coordinates of the crop's
          top-left, bottom-left, bottom-right and top-right corners (PIL QUAD order).
    photo_hw: (H, W) of the photo the crop was taken from.
    crop_size: the side of the aligned crop (256).
    """

    quad: np.ndarray
    photo_hw: tuple[int, int]
    crop_size: int = CROP_SIZE


def _check_landmarks(landmarks) -> np.ndarray:
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        raise UserInputError(f"landmarks: expected 68 finite (x, y) points, got shape {lm.shape}")
    return lm


def face_quad(landmarks) -> tuple[np.ndarray, float]:
    """68 landmarks (68, 2) x, y -> (quad (4, 2) float64 in pixel-centre coords, qsize)."""
    lm = _check_landmarks(landmarks)
    eye_l, eye_r = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    eye_mid = (eye_l + eye_r) * 0.5
    eyes = eye_r - eye_l
    to_mouth = (lm[48] + lm[54]) * 0.5 - eye_mid
    # half the horizontal side: the eye line plus the eye-to-mouth line turned by -90 degrees
    half_x = np.array([eyes[0] + to_mouth[1], eyes[1] - to_mouth[0]])
    if not np.hypot(*half_x) > 0:
        raise UserInputError("landmarks: degenerate face (eyes and mouth at one point)")
    half_x = half_x / np.hypot(*half_x) * max(np.hypot(*eyes) * 2.0, np.hypot(*to_mouth) * 1.8)
    half_y = np.array([-half_x[1], half_x[0]])  # half the vertical side: half_x turned by +90
    centre = eye_mid + to_mouth * 0.1
    quad = np.stack([centre - half_x - half_y, centre - half_x + half_y,
                     centre + half_x + half_y, centre + half_x - half_y])
    return quad, float(np.hypot(*half_x) * 2)


def _bounds(quad: np.ndarray) -> tuple[int, int, int, int]:
    """Integer (left, top, right, bottom) enclosing the quad."""
    return (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))


def _reflect_pad_blend(img: np.ndarray, pad, qsize: float) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (H + top + bottom, W + left + right, 3), pad = (l, t, r, b).

    Reflect padding whose far part fades into a Gaussian blur and the median colour.
    """
    try:
        import scipy.ndimage
    except ImportError:
        raise UserInputError('the FFHQ alignment pads faces near the border with scipy: install '
                             'the photos extra (pip install -e ".[photos]")') from None

    left, top, right, bottom = (np.int64(p) for p in pad)
    out = np.pad(img.astype(np.float32), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w = out.shape[:2]
    ys, xs, _ = np.ogrid[:h, :w, :1]
    # float32 coordinates divided by int64 pads: float64 weights (as numpy promotes)
    from_x = np.minimum(xs.astype(np.float32) / left, (w - 1 - xs).astype(np.float32) / right)
    from_y = np.minimum(ys.astype(np.float32) / top, (h - 1 - ys).astype(np.float32) / bottom)
    edge = np.maximum(1.0 - from_x, 1.0 - from_y)
    sigma = qsize * 0.01
    blurred = scipy.ndimage.gaussian_filter(out, [sigma, sigma, 0])
    out = (out + (blurred - out) * np.clip(edge * 3.0 + 1.0, 0.0, 1.0)).astype(np.float32)
    median = np.median(out, axis=(0, 1))
    out = (out + (median - out) * np.clip(edge, 0.0, 1.0)).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def align_face(photo, landmarks) -> tuple[np.ndarray, AlignGeometry]:
    """The official FFHQ crop of one face.

    photo: uint8 (H, W, 3) RGB. landmarks: (68, 2) x, y (iBUG 300-W order).
    Returns (crop uint8 (256, 256, 3), AlignGeometry).
    """
    photo = check_rgb(photo, "photo")
    quad, qsize = face_quad(landmarks)
    img = Image.fromarray(photo, "RGB")
    photo_w, photo_h = img.size

    # shrink: (x, y) scale from the working image back to the photo
    scale = np.ones(2)
    factor = int(np.floor(qsize / CROP_SIZE * 0.5))
    if factor > 1:
        size = (int(np.rint(float(photo_w) / factor)), int(np.rint(float(photo_h) / factor)))
        img = img.resize(size, Image.Resampling.LANCZOS)
        quad = quad / factor
        qsize = qsize / factor
        scale = np.array([photo_w / size[0], photo_h / size[1]])

    # crop: `offset` is where the working image's origin lies in the shrunk photo
    offset = np.zeros(2)
    border = max(int(np.rint(qsize * 0.1)), 3)
    left, top, right, bottom = _bounds(quad)
    box = (max(left - border, 0), max(top - border, 0),
           min(right + border, img.size[0]), min(bottom + border, img.size[1]))
    if box[2] - box[0] < img.size[0] or box[3] - box[1] < img.size[1]:
        img = img.crop(box)
        quad = quad - box[0:2]
        offset += box[0:2]

    # pad
    left, top, right, bottom = _bounds(quad)
    pad = (max(-left + border, 0), max(-top + border, 0),
           max(right - img.size[0] + border, 0), max(bottom - img.size[1] + border, 0))
    if max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        img = Image.fromarray(_reflect_pad_blend(np.asarray(img), pad, qsize), "RGB")
        quad = quad + pad[:2]
        offset -= pad[:2]

    corners = quad + 0.5  # pixel-edge coordinates in the working image
    crop = img.transform((CROP_SIZE, CROP_SIZE), Image.Transform.QUAD, corners.flatten(),
                         Image.Resampling.BILINEAR)
    geometry = AlignGeometry(quad=(corners + offset) * scale, photo_hw=(photo_h, photo_w))
    return np.array(crop), geometry


def _face_to_float(face) -> np.ndarray:
    """uint8 [0, 255] or float [-1, 1] (F, F, 3) -> float64 [0, 255]."""
    face = np.asarray(face)
    if face.ndim != 3 or face.shape[2] != 3 or face.shape[0] != face.shape[1]:
        raise UserInputError(f"face: expected a square (F, F, 3) crop, got shape {face.shape}")
    if face.dtype == np.uint8:
        return face.astype(np.float64)
    if not np.issubdtype(face.dtype, np.floating):
        raise UserInputError(f"face: expected uint8 or float [-1, 1] values, got {face.dtype}")
    return (np.clip(face.astype(np.float64), -1.0, 1.0) + 1.0) * 127.5


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Samples image (F, F, C) at pixel-centre coords x, y (N,), clamped at the edges -> (N, C)."""
    size = image.shape[0]
    x = np.clip(x, 0.0, size - 1.0)
    y = np.clip(y, 0.0, size - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), size - 2)
    y0 = np.minimum(np.floor(y).astype(np.int64), size - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def paste_back(photo, face, geometry: AlignGeometry, feather: float = 0.1,
               mask=None) -> np.ndarray:
    """Puts a face crop back where `align_face` took it from, with a soft edge.

    photo: uint8 (H, W, 3), the photo given to align_face (geometry.photo_hw).
    face: (F, F, 3) crop of any side (256, 1024, ...): uint8 [0, 255] or float [-1, 1]
          (the generator's range).
    feather: width of the soft edge as a fraction of the crop side (smoothstep from 0 on the
             crop's border to 1 at `feather` inside); 0 gives a hard edge.
    mask: optional float (F, F) weights in [0, 1] in crop space (e.g. a face region),
          multiplied with the feathered edge.
    Returns uint8 (H, W, 3); pixels outside the quad are the photo's, unchanged.
    """
    photo = check_rgb(photo, "photo")
    if photo.shape[:2] != tuple(geometry.photo_hw):
        raise UserInputError(f"paste_back: photo is {photo.shape[1]}x{photo.shape[0]}, the "
                             f"alignment was of a {geometry.photo_hw[1]}x{geometry.photo_hw[0]} photo")
    if not 0.0 <= feather <= 0.5:
        raise UserInputError(f"paste_back: feather must be in [0, 0.5], got {feather}")
    face = _face_to_float(face)
    side = face.shape[0]
    if mask is not None:
        mask = np.asarray(mask, np.float64)
        if mask.shape != (side, side):
            raise UserInputError(f"paste_back: mask must be ({side}, {side}), got {mask.shape}")

    # The quad is a parallelogram (a square, scaled by the shrink): an affine map
    # photo edge coords p = q0 + s * (q3 - q0) + t * (q1 - q0), with (s, t) in [0, 1]^2.
    q = np.asarray(geometry.quad, np.float64)
    to_st = np.linalg.inv(np.stack([q[3] - q[0], q[1] - q[0]], axis=1))
    h, w = photo.shape[:2]
    left, top = (max(int(np.floor(v)), 0) for v in q.min(axis=0))
    right, bottom = min(int(np.ceil(q[:, 0].max())), w), min(int(np.ceil(q[:, 1].max())), h)
    out = photo.copy()
    if left >= right or top >= bottom:
        return out
    ys, xs = np.mgrid[top:bottom, left:right]
    points = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1) - q[0]
    s, t = (points @ to_st.T).T

    inside = np.minimum(np.minimum(s, 1 - s), np.minimum(t, 1 - t))
    if feather > 0:
        weight = np.clip(inside / feather, 0.0, 1.0)
        weight = weight * weight * (3 - 2 * weight)
    else:
        weight = (inside >= 0).astype(np.float64)
    keep = weight > 0
    s, t, weight = s[keep], t[keep], weight[keep]
    fx, fy = s * side - 0.5, t * side - 0.5  # pixel-centre coordinates in the crop
    if mask is not None:
        weight = weight * np.clip(_bilinear(mask[..., None], fx, fy)[:, 0], 0.0, 1.0)
    values = _bilinear(face, fx, fy)
    rows, cols = ys.ravel()[keep], xs.ravel()[keep]
    blended = photo[rows, cols] * (1 - weight[:, None]) + values * weight[:, None]
    out[rows, cols] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out
