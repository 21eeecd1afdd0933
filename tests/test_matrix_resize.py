"""Adaptive average pooling and align_corners bilinear resizing as matrices, against PyTorch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stylemask_jax.ops.matrix_resize import (adaptive_avg_pool2d, adaptive_avg_pool_matrix,
                                             resize_bilinear_align_corners)


def test_adaptive_pool_windows_188_to_112():
    m = adaptive_avg_pool_matrix(188, 112)
    counts = (m > 0).sum(axis=1)
    assert set(counts.tolist()) == {2, 3}  # uneven windows, as PyTorch makes them
    assert m[1].nonzero()[0].tolist() == [1, 2, 3]  # floor(188/112)=1 .. ceil(376/112)-1=3
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=0, atol=1e-15)  # float64 row sums


@pytest.mark.parametrize("hw_in,hw_out", [((188, 188), (112, 112)), ((64, 48), (16, 16)),
                                          ((7, 9), (3, 5)), ((5, 6), (8, 11)), ((256, 256), (256, 256))])
def test_adaptive_avg_pool2d_matches_torch(hw_in, hw_out):
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, *hw_in)).astype(np.float32)
    expected = F.adaptive_avg_pool2d(torch.from_numpy(x.astype(np.float64)), hw_out).numpy()
    ours = adaptive_avg_pool2d(jnp.asarray(x.transpose(0, 2, 3, 1)), hw_out)
    expected = expected.transpose(0, 2, 3, 1)
    # float32 averages of <= 16 values in [-1, 1] vs float64: a few ulps
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("hw_in,hw_out", [((16, 16), (32, 32)), ((32, 32), (64, 64)),
                                          ((5, 7), (9, 4)), ((1, 3), (4, 1)), ((6, 6), (6, 6))])
def test_bilinear_align_corners_matches_torch(hw_in, hw_out):
    x = np.random.default_rng(1).normal(size=(2, 4, *hw_in)).astype(np.float32)
    # torch in float64, as the reference runs it: in float32 torch computes the sampling
    # positions i * (n - 1) / (m - 1) in float32, off by up to ~2e-6 pixels
    expected = F.interpolate(torch.from_numpy(x.astype(np.float64)), size=hw_out, mode="bilinear",
                             align_corners=True).numpy().transpose(0, 2, 3, 1)
    ours = resize_bilinear_align_corners(jnp.asarray(x.transpose(0, 2, 3, 1)), hw_out)
    # float32 weighted sums of 4 values of size <= ~4 vs float64: a few ulps
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=0, atol=2e-6)


def test_resizes_are_differentiable_and_jittable():
    x = jnp.ones((1, 10, 10, 2))
    grad = jax.grad(lambda v: jnp.sum(jax.jit(adaptive_avg_pool2d, static_argnums=1)(v, 4)))(x)
    # every output is a mean, so the gradients sum to the output count (float32 weights like 1/3)
    assert np.isfinite(np.asarray(grad)).all() and float(jnp.sum(grad)) == pytest.approx(32.0, rel=1e-5)
