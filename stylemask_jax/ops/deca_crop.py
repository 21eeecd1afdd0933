"""StyleMask's DECA preprocessing as jit-able, differentiable array code.

A 256x256 generator image in [-1, 1] becomes the 224x224 DECA input in [0, 1]:

1. `to_deca_range`: `x255 = (clip(x, -1, 1) + 1) / (2 + 1e-5) * 255` (the reference's 1e-5).
2. A box `[left, top, right, bottom]` in input pixels: the min/max of 68 landmarks
   (`landmark_box`), or a fixed box for FFHQ-aligned faces (`FFHQ_FIXED_BOX`).
3. `box_center_size`: `old_size = (w + h) / 2 * 1.1`, centre = box centre,
   `size = floor(old_size * 1.25)` (the reference's int() truncation; an array, so it traces).
4. `box_transform`: the similarity taking the square of side `size` around the centre to the
   crop: scale `s = 223 / size`, no rotation, translation `-s * (cx - size/2, cy - size/2)`.
5. `warp_affine`: kornia 0.4.1's warp_affine (bilinear, zeros outside, align_corners=False
   with its (W - 1) pixel normalisation); output pixel (col j, row i) samples the input at
   `M^-1 (q_j, q_i) * N / (N - 1) - 0.5` with `q_k = (2k + 1) (D - 1) / (2D)`, for input
   side N and output side D.
6. Divide by 255.

Gradients flow to the image through the bilinear weights and to the box centre (and so to the
landmarks) through the sampling positions; `size` is piecewise constant (zero gradient), as in
the reference, where the landmarks come from a detector outside the graph anyway.
All arithmetic is float32 (the reference warps in float32; it estimates the transform in
float64, so transforms here differ from it by float32 rounding, ~1e-5 px).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

CROP_SIZE = 224
OLD_SIZE_SCALE = 1.1
CROP_SCALE = 1.25

# The expected 68-landmark box [left, top, right, bottom] of an FFHQ-aligned face in a 256x256
# image: jaw line x ~ 62..194, eyebrows y ~ 100, chin y ~ 232 (FFHQ's alignment puts the eye
# centres near (96, 120) and (160, 120), the mouth near y = 187). It gives a crop of side 181
# centred on (128, 166). An estimate from the alignment geometry, not a measured mean: the
# second pass (landmarks from FLAME on the first pass's code) corrects for the actual face.
FFHQ_FIXED_BOX = (62.0, 100.0, 194.0, 232.0)


def to_deca_range(images: jax.Array) -> jax.Array:
    """Images in [-1, 1] -> float32 values in [0, 255) as the reference computes them."""
    x = jnp.clip(jnp.asarray(images, jnp.float32), -1.0, 1.0)
    return (x + 1.0) / (2.0 + 1e-5) * 255.0


def landmark_box(landmarks: jax.Array) -> jax.Array:
    """(B, K, 2) (x, y) landmarks in pixels -> (B, 4) [left, top, right, bottom] (their extent)."""
    lmk = jnp.asarray(landmarks, jnp.float32)
    return jnp.concatenate([lmk.min(axis=1), lmk.max(axis=1)], axis=-1)


def box_center_size(box: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(B, 4) or (4,) boxes -> (old_size (B,), center (B, 2) (x, y), size (B,) float32 integer).

    `size` is floor(old_size * 1.25), at least 1 (a degenerate box would otherwise divide by 0).
    """
    box = jnp.asarray(box, jnp.float32)
    box = jnp.broadcast_to(box, (1, 4)) if box.ndim == 1 else box
    left, top, right, bottom = (box[:, i] for i in range(4))
    old_size = (right - left + bottom - top) / 2 * OLD_SIZE_SCALE
    center = jnp.stack([right - (right - left) / 2.0, bottom - (bottom - top) / 2.0], axis=-1)
    size = jnp.maximum(jnp.floor(old_size * CROP_SCALE), 1.0)
    return old_size, center, size


def box_transform(box: jax.Array, crop_size: int = CROP_SIZE) -> jax.Array:
    """(B, 4) or (4,) boxes -> (B, 3, 3) similarities from input pixels to crop pixels."""
    _, center, size = box_center_size(box)
    scale = (crop_size - 1) / size
    corner = center - size[:, None] / 2
    shift = -scale[:, None] * corner
    zero, one = jnp.zeros_like(scale), jnp.ones_like(scale)
    rows = [jnp.stack([scale, zero, shift[:, 0]], -1), jnp.stack([zero, scale, shift[:, 1]], -1),
            jnp.stack([zero, zero, one], -1)]
    return jnp.stack(rows, axis=1)


def crop_transform(landmarks: jax.Array, crop_size: int = CROP_SIZE) -> jax.Array:
    """(B, 68, 2) landmarks in input pixels -> (B, 3, 3) similarity to the crop (reference tform)."""
    return box_transform(landmark_box(landmarks), crop_size)


def _bilinear_zeros(images: jax.Array, positions: jax.Array) -> jax.Array:
    """Samples (B, H, W, C) at (B, P, 2) (x, y) pixel positions (pixel centres at integers),
    bilinear, zero outside -> (B, P, C): torch grid_sample's 'zeros' rule, corner by corner."""
    b, h, w, c = images.shape
    x, y = positions[..., 0], positions[..., 1]
    flat = images.reshape(b, h * w, c)
    x0, y0 = jnp.floor(x), jnp.floor(y)
    fx, fy = x - x0, y - y0
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    out = jnp.zeros((b, positions.shape[1], c), images.dtype)
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            index = jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)
            values = jax.vmap(lambda img, idx: img[idx])(flat, index)
            out = out + values * jnp.where(inside, wx * wy, 0.0)[..., None]
    return out


def warp_affine(images: jax.Array, matrix: jax.Array, out_size: int) -> jax.Array:
    """kornia 0.4.1 `warp_affine(images, matrix[:, :2], (out_size, out_size))`, NHWC.

    images: (B, N, N, C) float; matrix: (B, 3, 3) or (B, 2, 3) affine from input pixels to
    output pixels. Returns (B, out_size, out_size, C) float32, bilinear, zeros outside.
    """
    images = jnp.asarray(images, jnp.float32)
    b, n_h, n_w, _ = images.shape
    m = jnp.asarray(matrix, jnp.float32)[:, :2]
    a, bb, tx = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    c, d, ty = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    det = a * d - bb * c
    # Output pixel k sits at q_k = alpha * k + beta in kornia's (D - 1) pixel normalisation of
    # the align_corners=False grid; M^-1 maps it to input pixels, which kornia normalises with
    # (N - 1) and grid_sample un-normalises with N. Folding everything into one affine map of
    # the integer indices (i, j) keeps the float32 rounding of the positions near 1e-5 px.
    alpha, beta = (out_size - 1) / out_size, (out_size - 1) / (2 * out_size)
    inv = jnp.stack([jnp.stack([d, -bb], -1), jnp.stack([-c, a], -1)], 1) / det[:, None, None]
    inv_shift = -jnp.einsum("bij,bj->bi", inv, jnp.stack([tx, ty], -1))  # (B, 2)
    unnorm = jnp.array([n_w / (n_w - 1), n_h / (n_h - 1)], jnp.float32)
    per_col = inv[:, :, 0] * (alpha * unnorm)  # (B, 2): d(src x, src y) / d(column j)
    per_row = inv[:, :, 1] * (alpha * unnorm)  # (B, 2): d(src x, src y) / d(row i)
    offset = (beta * (inv[:, :, 0] + inv[:, :, 1]) + inv_shift) * unnorm - 0.5  # (B, 2)
    k = jnp.arange(out_size, dtype=jnp.float32)
    positions = (per_col[:, None, None, :] * k[None, None, :, None]
                 + per_row[:, None, None, :] * k[None, :, None, None]
                 + offset[:, None, None, :])  # (B, D rows, D cols, 2) input (x, y) pixels
    sampled = _bilinear_zeros(images, positions.reshape(b, out_size * out_size, 2))
    return sampled.reshape(b, out_size, out_size, images.shape[-1])


def deca_crop_from_box(images: jax.Array, box: jax.Array, crop_size: int = CROP_SIZE) -> jax.Array:
    """(B, N, N, 3) images in [-1, 1] and a (B, 4) or (4,) landmark-type box
    [left, top, right, bottom] in input pixels -> (B, crop_size, crop_size, 3) in [0, 1]."""
    matrix = box_transform(box, crop_size)
    matrix = jnp.broadcast_to(matrix, (images.shape[0],) + matrix.shape[1:])
    return warp_affine(to_deca_range(images), matrix, crop_size) / 255.0


def deca_crop(images: jax.Array, landmarks: jax.Array, crop_size: int = CROP_SIZE) -> jax.Array:
    """(B, N, N, 3) images in [-1, 1], (B, 68, 2) (x, y) landmarks in input pixels
    -> (B, crop_size, crop_size, 3) DECA input in [0, 1] (StyleMask's crop)."""
    return deca_crop_from_box(images, landmark_box(landmarks), crop_size)
