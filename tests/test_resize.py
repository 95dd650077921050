"""The MATLAB-compatible bicubic resize: byte-exact against the shared LR_bicubic inputs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA, assert_images_equal, need
from PIL import Image

from lutsr.resize import _contributions, imresize, modcrop


@pytest.mark.data
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("dataset", ["Set5", "Set14", "B100"])
def test_downscale_reproduces_lr_bicubic(dataset, scale):
    """Every HR image, modcropped and downscaled by 1/scale, equals its LR_bicubic file exactly.

    Guards against the rounding rule (intermediate rounding, tie breaking), the
    antialiasing kernel width, the pixel-centre convention and the boundary mirror,
    each of which changes hundreds to thousands of pixels.
    """
    root = need(DATA / "test" / dataset)
    hr_paths = sorted((root / "HR").glob("*.png"))
    assert hr_paths, f"no HR images in {root / 'HR'}"
    lr_dir = need(root / "LR_bicubic" / f"X{scale}")
    for path in hr_paths:
        hr = np.asarray(Image.open(path))
        lr = np.asarray(Image.open(lr_dir / path.name))
        assert_images_equal(imresize(modcrop(hr, scale), 1 / scale), lr,
                            f"{dataset}/{path.name} x{scale}")


def test_gray_stays_2d_and_matches_rgb_channels():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (37, 29, 3), dtype=np.uint8)
    out = imresize(rgb, 1 / 3)
    assert out.shape == (13, 10, 3) and out.dtype == np.uint8
    for c in range(3):
        gray = imresize(np.ascontiguousarray(rgb[:, :, c]), 1 / 3)
        assert gray.shape == (13, 10)
        assert_images_equal(gray, out[:, :, c], f"channel {c}")


def test_constant_image_is_preserved():
    """Weights are normalised per output pixel, borders included."""
    img = np.full((17, 23), 200, np.uint8)
    for scale in (1 / 4, 1 / 3, 1 / 2, 2, 3, 4):
        out = imresize(img, scale)
        assert (out == 200).all(), scale


def test_weights_sum_to_one_and_indices_in_range():
    for n_in, n_out, scale in [(12, 3, 1 / 4), (9, 3, 1 / 3), (5, 20, 4.0), (1, 4, 4.0)]:
        w, idx = _contributions(n_in, n_out, scale)
        assert w.shape == idx.shape and w.shape[1] == n_out
        np.testing.assert_allclose(w.sum(axis=0), 1.0, rtol=0, atol=1e-12)
        assert idx.min() >= 0 and idx.max() < n_in


def test_upscale_x2_hand_computed():
    """Interior pixels of a 1-D x2 upscale: Keys' kernel at offsets 1/4 and 3/4.

    Output pixel 2i (1-based) sits at input position i + 1/4, whose weights on
    pixels i-1, i, i+1, i+2 are (-9, 111, 29, -3) / 128.
    """
    row = np.array([[0.0, 10.0, 40.0, 100.0, 30.0, 0.0]])
    out = imresize(row, size=(1, 12))
    expected = (-9 * 10 + 111 * 40 + 29 * 100 - 3 * 30) / 128
    assert out[0, 5] == pytest.approx(expected, abs=1e-12)
    # The mirror image position, i + 3/4, has the weights reversed.
    expected = (-3 * 10 + 29 * 40 + 111 * 100 - 9 * 30) / 128
    assert out[0, 6] == pytest.approx(expected, abs=1e-12)


def test_float_input_returns_unrounded_float():
    img = np.linspace(0, 1, 64).reshape(8, 8).astype(np.float32)
    out = imresize(img, 1 / 2)
    assert out.dtype == np.float64 and out.shape == (4, 4)
    assert not np.allclose(out, np.round(out))


def test_uint8_rounding_saturates_and_rounds_half_to_even():
    # A step from 0 to 255 overshoots (negative lobes): results are clipped, not wrapped.
    img = np.zeros((8, 8), np.uint8)
    img[:, 4:] = 255
    out = imresize(img, 2)
    ref = imresize(img.astype(np.float64), 2)
    assert ref.max() > 255 and ref.min() < 0
    assert_images_equal(out, np.rint(np.clip(ref, 0, 255)).astype(np.uint8), "x2 step")


def test_output_size_and_scale_forms_agree():
    img = np.random.default_rng(2).integers(0, 256, (24, 36, 3), dtype=np.uint8)
    assert_images_equal(imresize(img, 1 / 4), imresize(img, size=(6, 9)), "scale vs size")
    assert imresize(img, 3).shape == (72, 108, 3)
    assert imresize(img, (0.5, 1.0)).shape == (12, 36, 3)


def test_modcrop():
    img = np.zeros((13, 10, 3), np.uint8)
    assert modcrop(img, 4).shape == (12, 8, 3)
    assert modcrop(img[:, :, 0], 3).shape == (12, 9)
    with pytest.raises(ValueError, match="smaller than the scale"):
        modcrop(img[:2, :2], 3)
    with pytest.raises(ValueError, match="positive integer"):
        modcrop(img, 0)


@pytest.mark.parametrize("bad, kwargs, exc, match", [
    ([[1, 2]], {"scale": 2}, TypeError, "numpy array"),
    (np.zeros((4, 4), np.int16), {"scale": 2}, TypeError, "uint8 or floating"),
    (np.zeros((4,), np.uint8), {"scale": 2}, ValueError, "HxW"),
    (np.zeros((0, 4), np.uint8), {"scale": 2}, ValueError, "empty"),
    (np.zeros((4, 4), np.uint8), {"scale": -1}, ValueError, "positive"),
    (np.zeros((4, 4), np.uint8), {}, ValueError, "exactly one"),
    (np.zeros((4, 4), np.uint8), {"size": (2, 0)}, ValueError, "positive integers"),
])
def test_bad_input(bad, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        imresize(bad, **kwargs)
