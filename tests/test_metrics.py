"""Y-PSNR and Y-SSIM of the papers' protocol: known values, symmetry, gray handling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lutsr import metrics
from lutsr.metrics import psnr_y, rgb_to_y, ssim_y


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    noise = rng.integers(-20, 21, hr.shape)
    sr = np.clip(hr.astype(int) + noise, 0, 255).astype(np.uint8)
    return sr, hr


def test_rgb_to_y_known_values():
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]],
                   np.uint8)
    np.testing.assert_allclose(rgb_to_y(img)[0], [16, 235, 16 + 65.481, 16 + 128.553,
                                                  16 + 24.966], rtol=0, atol=1e-12)
    assert rgb_to_y(img).dtype == np.float64


def test_identical_images():
    img = np.random.default_rng(1).integers(0, 256, (30, 30, 3), dtype=np.uint8)
    assert psnr_y(img, img.copy(), 2) == math.inf
    assert ssim_y(img, img.copy(), 2) == pytest.approx(1.0, abs=1e-12)


def test_psnr_hand_computed():
    """A uniform offset of d in every channel moves Y by 219 d / 255 everywhere."""
    hr = np.full((20, 20, 3), 100, np.uint8)
    sr = hr + np.uint8(3)
    expected = 10 * math.log10(255**2 / (219 * 3 / 255) ** 2)
    assert psnr_y(sr, hr, 4) == pytest.approx(expected, abs=1e-9)


def test_shave_removes_border_errors():
    hr = np.full((20, 20, 3), 100, np.uint8)
    sr = hr.copy()
    sr[:3, :, :] = 0
    sr[:, -3:, :] = 255
    assert psnr_y(sr, hr, 3) == math.inf
    assert psnr_y(sr, hr, 2) < 20
    assert ssim_y(sr, hr, 3) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_constant_images_hand_computed():
    """Zero variance: SSIM reduces to the luminance term (2 y1 y2 + C1) / (y1^2 + y2^2 + C1)."""
    a = np.full((30, 30), 50, np.uint8)
    b = np.full((30, 30), 90, np.uint8)
    y1, y2 = 16 + 219 * 50 / 255, 16 + 219 * 90 / 255
    c1 = (0.01 * 255) ** 2
    assert ssim_y(a, b, 2) == pytest.approx((2 * y1 * y2 + c1) / (y1**2 + y2**2 + c1), abs=1e-12)


def test_ssim_matches_scikit_image(pair):
    """An independent implementation of the Gaussian-window SSIM (Wang et al. settings)."""
    metrics = pytest.importorskip("skimage.metrics")
    sr, hr = pair
    shave = 3
    y_sr = rgb_to_y(sr)[shave:-shave, shave:-shave]
    y_hr = rgb_to_y(hr)[shave:-shave, shave:-shave]
    expected = metrics.structural_similarity(y_sr, y_hr, gaussian_weights=True, sigma=1.5,
                                             use_sample_covariance=False, data_range=255)
    assert ssim_y(sr, hr, shave) == pytest.approx(expected, abs=1e-10)
    assert 0.3 < expected < 0.99


def test_symmetric(pair):
    sr, hr = pair
    assert psnr_y(sr, hr, 2) == pytest.approx(psnr_y(hr, sr, 2), abs=1e-12)
    assert ssim_y(sr, hr, 2) == pytest.approx(ssim_y(hr, sr, 2), abs=1e-12)


def test_gray_is_replicated(pair):
    sr, hr = pair
    g_sr, g_hr = np.ascontiguousarray(sr[:, :, 1]), np.ascontiguousarray(hr[:, :, 1])
    rep_sr, rep_hr = np.repeat(g_sr[:, :, None], 3, 2), np.repeat(g_hr[:, :, None], 3, 2)
    assert psnr_y(g_sr, g_hr, 2) == pytest.approx(psnr_y(rep_sr, rep_hr, 2), abs=1e-9)
    assert ssim_y(g_sr, g_hr, 2) == pytest.approx(ssim_y(rep_sr, rep_hr, 2), abs=1e-12)
    assert psnr_y(g_sr[:, :, None], g_hr[:, :, None], 2) == psnr_y(g_sr, g_hr, 2)


def test_gray_as_luma_scales_error_by_255_over_219(pair):
    sr, hr = pair
    g_sr, g_hr = np.ascontiguousarray(sr[:, :, 0]), np.ascontiguousarray(hr[:, :, 0])
    np.testing.assert_array_equal(rgb_to_y(g_sr, gray="luma"), g_sr.astype(float))
    gap = psnr_y(g_sr, g_hr, 2, gray="replicate") - psnr_y(g_sr, g_hr, 2, gray="luma")
    assert gap == pytest.approx(20 * math.log10(255 / 219), abs=1e-9)
    # RGB images are unaffected by the gray mode.
    assert psnr_y(sr, hr, 2, gray="luma") == psnr_y(sr, hr, 2)


@pytest.mark.parametrize("call, exc, match", [
    (lambda a: psnr_y(a, a[:-1], 2), ValueError, "differ in shape"),
    (lambda a: psnr_y(a, a, 20), ValueError, "leaves nothing"),
    (lambda a: psnr_y(a, a, -1), ValueError, "non-negative"),
    (lambda a: ssim_y(a, a, 15), ValueError, "at least 11x11"),
    (lambda a: rgb_to_y(a, gray="average"), ValueError, "gray must be"),
    (lambda a: rgb_to_y(np.dstack([a, a[:, :, :1]])), ValueError, "HxWx3"),
    (lambda a: rgb_to_y(a.astype(np.int32)), TypeError, "uint8 or floating"),
    (lambda a: psnr_y(a.tolist(), a, 2), TypeError, "numpy arrays"),
])
def test_bad_input(call, exc, match):
    a = np.zeros((40, 36, 3), np.uint8)
    with pytest.raises(exc, match=match):
        call(a)


def test_edge_flat_mask_is_the_flat_band_beside_a_step():
    # A vertical step: the central differences of columns 19 and 20 are 127.5 (edges); the
    # 5x5 windows of columns 18-21 straddle it (not flat); "next to" reaches 6 columns out.
    y = np.zeros((40, 40))
    y[:, 20:] = 255
    mask = metrics.edge_flat_mask(y)
    cols = np.flatnonzero(mask.any(axis=0))
    assert cols.tolist() == [13, 14, 15, 16, 17, 22, 23, 24, 25, 26]
    assert mask[:, cols].all()
    # Texture (a 5x5 window spanning more than 2 levels) is not flat, whatever its neighbours.
    y[:, :18] += np.random.default_rng(0).integers(0, 8, (40, 18))
    assert np.flatnonzero(metrics.edge_flat_mask(y).any(axis=0)).tolist() == [22, 23, 24, 25, 26]


def test_edge_flat_psnr_sees_streaks_beside_edges_that_whole_psnr_averages_away():
    hr = np.full((96, 96, 3), 200, np.uint8)
    hr[:, 40:43] = 0  # a black line
    streak = np.zeros((96, 96), np.int16)
    streak[::4, :] = 6  # faint horizontal streaks, every 4th row
    near, far = hr.copy(), hr.copy()
    near[:, 44:48] = (200 + streak[:, 44:48, None]).astype(np.uint8)  # beside the line
    far[:, 80:84] = (200 + streak[:, 80:84, None]).astype(np.uint8)  # 37 pixels away
    whole_near, whole_far = metrics.psnr_y(near, hr, 4), metrics.psnr_y(far, hr, 4)
    assert whole_near == pytest.approx(whole_far)
    score_near, n = metrics.edge_flat_psnr_y(near, hr, 4)
    score_far, n_far = metrics.edge_flat_psnr_y(far, hr, 4)
    assert n == n_far > 0
    assert score_far == float("inf")
    assert score_near < whole_near - 5  # the same error over far fewer pixels


def test_edge_flat_psnr_without_edges_is_nan():
    flat = np.full((32, 32), 90, np.uint8)
    score, n = metrics.edge_flat_psnr_y(flat, flat, 2)
    assert n == 0 and np.isnan(score)
