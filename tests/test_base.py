"""A stage's linear base (``Stage.base``): its meaning, its validation, its file format.

Its bit-exactness in the fast kernels is tested beside theirs (``test_numba``,
``test_cuda``); here the reference itself is checked against independent
arithmetic.
"""

import dataclasses

import numpy as np
import pytest
from conftest import bicubic_base, random_lut, split_lut_bytes, with_base, with_header

import lutsr
from lutsr.fileformat import LUTFormatError, from_bytes, to_bytes
from lutsr.model import BASE_BITS, LUT, Stage, grid_size
from lutsr.reference import base_term, upscale_reference
from lutsr.resize import imresize


def zero_stage(r, base, interval=4, divisor=1.0, bias=0.0, padding="reflect"):
    table = np.zeros((grid_size(interval) ** 4, r * r), np.int8)
    return Stage(r, ("S",), (table,), divisor, bias, padding, base)


@pytest.mark.parametrize("r", [2, 3, 4])
def test_bicubic_weights_as_a_base_are_bicubic_upscaling(r):
    # The base's window and phases against an independent bicubic (MATLAB's
    # imresize): equal up to the weights' quantisation, 16 taps * 255 / 2**13.
    img = np.random.default_rng(r).integers(0, 256, (12, 17)).astype(np.uint8)
    got = base_term(img, bicubic_base(r), "reflect")
    want = imresize(img.astype(np.float64), r)
    inner = (slice(2 * r, -2 * r), slice(2 * r, -2 * r))  # the borders pad differently
    assert np.abs(got - want)[inner].max() < 16 * 255 / 2 ** (BASE_BITS + 1)


@pytest.mark.parametrize("backend", ["reference", "numba"])
@pytest.mark.parametrize("a, b", [(0, 4), (4, 0), (2, 2), (1, 3)])
def test_base_weight_a_b_reads_the_pixel_at_offset_a_minus_2_b_minus_2(backend, a, b):
    # One unit weight, the same for every phase: the output is the input shifted by (a-2, b-2),
    # read from the stage's padding beyond the edges.
    base = np.zeros((3, 3, 5, 5), np.int16)
    base[:, :, a, b] = 2**BASE_BITS
    img = np.random.default_rng(a * 5 + b).integers(0, 256, (6, 7), dtype=np.uint8)
    got = lutsr.upscale(img, LUT((zero_stage(3, base, interval=5, padding="reflect"),), 5),
                        backend=backend)
    shifted = np.pad(img, 2, mode="reflect")[a:a + 6, b:b + 7]
    np.testing.assert_array_equal(got, shifted.repeat(3, 0).repeat(3, 1))


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_base_rounds_half_to_even_after_the_bias(backend):
    # Zero tables and half a pixel's value from one tap: every odd pixel is a tie.
    base = np.zeros((2, 2, 5, 5), np.int16)
    base[:, :, 2, 2] = 2 ** (BASE_BITS - 1)  # the pixel itself, for every phase
    lut = LUT((zero_stage(2, base, bias=3),))
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    got = lutsr.upscale(img, lut, backend=backend)
    want = np.round(img / 2 + 3).astype(np.uint8).repeat(2, 0).repeat(2, 1)
    np.testing.assert_array_equal(got, want)


def test_base_adds_to_the_tables_before_rounding():
    rng = np.random.default_rng(0)
    lut = random_lut(rng, 4, "srlut", 4)
    based = with_base(lut, rng, noise=0)
    img = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    stage = lut.stages[0]
    plain = upscale_reference(img, LUT((dataclasses.replace(stage, bias=0.0),), 4))
    only_base = base_term(img, based.stages[0].base, "reflect")
    got = upscale_reference(img, based).astype(np.int64)
    # Unclipped pixels: the output is the rounded sum of the two terms, within one level.
    free = (plain > 0) & (plain < 255) & (got > 0) & (got < 255)
    assert free.mean() > 0.2
    assert np.abs(got - (plain + only_base))[free].max() <= 1.0


def test_base_is_validated():
    good = bicubic_base(4)
    with pytest.raises(ValueError, match="int16 of shape"):
        zero_stage(4, good.astype(np.int32))
    with pytest.raises(ValueError, match="int16 of shape"):
        zero_stage(4, good[:2])
    with pytest.raises(ValueError, match="integer bias"):
        zero_stage(4, good, bias=0.5)
    with pytest.raises(ValueError, match="power of two"):
        LUT((zero_stage(4, good, divisor=3),))
    LUT((zero_stage(4, good, divisor=0.5),))  # q * divisor = 8


def test_file_round_trip_and_version():
    rng = np.random.default_rng(1)
    lut = random_lut(rng, 4, "srlut", 4)
    # No base: version 1, which older readers read. A base: version 2, which they refuse.
    assert split_lut_bytes(to_bytes(lut))[0]["format_version"] == 1
    based = with_base(lut, rng)
    data = to_bytes(based)
    assert split_lut_bytes(data)[0]["format_version"] == 2
    back = from_bytes(data)
    np.testing.assert_array_equal(back.stages[0].base, based.stages[0].base)
    assert "base=linear" in back.describe()
    img = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(lutsr.upscale(img, back), upscale_reference(img, based))


@pytest.mark.parametrize("edit, match", [
    (lambda h: h["stages"][0].update(base=h["stages"][0]["base"][:-1]), "int16 values"),
    (lambda h: h["stages"][0]["base"].__setitem__(0, 40000), "int16 values"),
    (lambda h: h["stages"][0]["base"].__setitem__(0, 1.5), "int16 values"),
    (lambda h: h["stages"][0]["base"].__setitem__(0, True), "int16 values"),
    (lambda h: h.update(format_version=1), "int16 values"),  # a base needs version 2
    (lambda h: h["stages"][0].update(divisor=3), "power of two"),
])
def test_bad_base_in_a_file_is_a_format_error(edit, match):
    lut = with_base(random_lut(np.random.default_rng(2), 4, "srlut", 4), np.random.default_rng(3))
    with pytest.raises(LUTFormatError, match=match):
        from_bytes(with_header(to_bytes(lut), edit))
