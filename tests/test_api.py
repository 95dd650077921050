"""The public entry points: array layouts, ``out=``, backends and the errors users see."""

import numpy as np
import pytest
from conftest import assert_images_equal, random_lut

import lutsr
from lutsr import bundled
from lutsr.reference import run_lut, upscale_reference


@pytest.fixture(scope="module")
def lut():
    return random_lut(np.random.default_rng(1), 6, "mulut", 2)


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(2)


def image(rng, *shape):
    return rng.integers(0, 256, shape, dtype=np.uint8)


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("backend", ["auto", "numba", "reference"])
@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 4), (3, 5, 7, 3)])
def test_every_layout_keeps_its_layout(lut, rng, shape, backend):
    img = image(rng, *shape)
    got = lutsr.upscale(img, lut, backend=backend)
    want_shape = {2: (10, 14), 3: (10, 14, shape[-1]), 4: (3, 10, 14, 3)}[len(shape)]
    assert got.shape == want_shape and got.dtype == np.uint8
    want = run_lut(img, lut) if img.ndim == 2 else upscale_reference(img, lut)
    assert_images_equal(got, want, f"{shape} {backend}")


def test_upscaler_reuses_its_runner_across_sizes_and_calls(lut, rng):
    up = lutsr.Upscaler(lut, threads=2)
    assert up.scale == lut.scale == 2 and up.backend == "numba"
    for shape in [(4, 6, 3), (9, 3), (4, 6, 3), (2, 4, 5, 2)]:
        img = image(rng, *shape)
        want = run_lut(img, lut) if img.ndim == 2 else upscale_reference(img, lut)
        assert_images_equal(up(img), want, str(shape))


def test_non_contiguous_image_through_the_api(lut, rng):
    rgba = image(rng, 6, 8, 4)
    bgr = rgba[:, :, 2::-1]  # negative channel stride, a common OpenCV idiom
    assert_images_equal(lutsr.upscale(bgr, lut), upscale_reference(np.ascontiguousarray(bgr), lut))


# --------------------------------------------------------------------------- out=


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_out_is_written_in_place_and_returned(lut, rng, backend):
    up = lutsr.Upscaler(lut, backend=backend)
    for shape in [(5, 7), (5, 7, 3), (2, 5, 7, 3)]:
        img = image(rng, *shape)
        want = run_lut(img, lut) if img.ndim == 2 else upscale_reference(img, lut)
        out = np.zeros_like(want)
        assert up(img, out=out) is out
        assert_images_equal(out, want, f"out= {shape}")


def test_out_view_of_a_larger_buffer(lut, rng):
    img = image(rng, 5, 7, 3)
    canvas = np.zeros((12, 16, 4), np.uint8)
    lutsr.upscale(img, lut, out=canvas[1:11, 1:15, :3])
    assert_images_equal(canvas[1:11, 1:15, :3], upscale_reference(img, lut), "view")
    assert canvas[0].sum() == 0 and canvas[:, 15].sum() == 0 and canvas[..., 3].sum() == 0


def test_out_errors_name_the_problem(lut, rng):
    img = image(rng, 5, 7, 3)
    with pytest.raises(ValueError, match=r"out has shape \(10, 14\), expected \(10, 14, 3\)"):
        lutsr.upscale(img, lut, out=np.zeros((10, 14), np.uint8))
    with pytest.raises(TypeError, match="out must be uint8, got float32"):
        lutsr.upscale(img, lut, out=np.zeros((10, 14, 3), np.float32))
    with pytest.raises(TypeError, match="out must be a numpy array, got list"):
        lutsr.upscale(img, lut, out=[[0]])
    read_only = np.zeros((10, 14, 3), np.uint8)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        lutsr.upscale(img, lut, out=read_only)
    buffer = np.zeros((10, 14, 3), np.uint8)
    with pytest.raises(ValueError, match="overlaps"):
        lutsr.upscale(buffer[:5, :7], lut, out=buffer)
    assert buffer.sum() == 0  # nothing was written before the check
    row = np.zeros(14 * 3, np.uint8)  # every output row the same memory: writes would collide
    for strides in [(0, 3, 1), (42, 1, 1)]:
        shared = np.lib.stride_tricks.as_strided(row, (10, 14, 3), strides, writeable=True)
        for backend in ("numba", "reference"):
            with pytest.raises(ValueError, match="share memory"):
                lutsr.upscale(img, lut, out=shared, backend=backend)
    assert row.sum() == 0


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.int8, bool])
def test_wrong_dtype_is_a_type_error(lut, dtype):
    with pytest.raises(TypeError, match=f"img must be uint8, got {np.dtype(dtype)}"):
        lutsr.upscale(np.zeros((4, 4), dtype), lut)


def test_not_an_array_is_a_type_error(lut):
    with pytest.raises(TypeError, match="numpy uint8 array, got list"):
        lutsr.upscale([[1, 2], [3, 4]], lut)


@pytest.mark.parametrize("shape", [(8,), (1, 2, 3, 4, 3), ()])
def test_wrong_ndim_is_a_value_error(lut, shape):
    with pytest.raises(ValueError, match="HxW, HxWxC or NxHxWxC"):
        lutsr.upscale(np.zeros(shape, np.uint8), lut)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0, 3), (4, 4, 0), (0, 4, 4, 3)])
def test_empty_is_a_value_error(lut, shape):
    with pytest.raises(ValueError, match="empty"):
        lutsr.upscale(np.zeros(shape, np.uint8), lut)


def test_unknown_backend(lut):
    with pytest.raises(ValueError, match="unknown backend 'opencl'.*numba"):
        lutsr.upscale(np.zeros((4, 4), np.uint8), lut, backend="opencl")
    with pytest.raises(ValueError, match="unknown backend"):
        lutsr.Upscaler(lut, backend="")


@pytest.mark.parametrize("threads", [0, -2, 1.5, "4"])
def test_bad_thread_count(lut, threads):
    with pytest.raises(ValueError, match="threads"):
        lutsr.Upscaler(lut, threads=threads)


def test_bad_lut_argument():
    with pytest.raises(TypeError, match="lut must be"):
        lutsr.upscale(np.zeros((4, 4), np.uint8), 42)
    with pytest.raises(ValueError, match="no bundled LUT named 'no-such-model'"):
        lutsr.upscale(np.zeros((4, 4), np.uint8), "no-such-model")


def test_default_lut_is_used_or_its_absence_is_explained(rng):
    """lut=None means the bundled default; until one ships, the error must say so."""
    img = image(rng, 3, 4, 3)
    if bundled.DEFAULT in bundled.names():
        default = bundled.load_bundled(bundled.DEFAULT)
        got = lutsr.upscale(img)
        assert got.shape == (3 * default.scale, 4 * default.scale, 3)
        assert_images_equal(got, lutsr.upscale(img, default, backend="reference"), "default")
    else:
        with pytest.raises(ValueError, match="no bundled default LUT.*pass lut="):
            lutsr.upscale(img)
        with pytest.raises(ValueError, match="no bundled default LUT"):
            lutsr.Upscaler()
