"""The reference implementation against the independent golden vectors."""

import numpy as np
import pytest
from conftest import CONFORMANCE_NAMES, assert_images_equal, conformance_lut

from lutsr.reference import run_lut, upscale_reference


@pytest.mark.parametrize("name", CONFORMANCE_NAMES)
def test_reference_matches_golden_vectors(name):
    lut, z = conformance_lut(name)
    assert_images_equal(upscale_reference(z["input"], lut), z["expected"], name)
    if "input_gray" in z:
        assert_images_equal(run_lut(z["input_gray"], lut), z["expected_gray"], name + " gray")


def test_reference_channels_are_independent():
    lut, z = conformance_lut("srlut_s_x2_q32")
    img = z["input"]
    out = upscale_reference(img, lut)
    for c in range(3):
        assert_images_equal(out[:, :, c], run_lut(np.ascontiguousarray(img[:, :, c]), lut))


def test_constant_table_gives_constant_image():
    # A table whose every row is v: interpolation returns v, 4 rotations sum to 4v.
    from lutsr import LUT, Stage

    table = np.full((17**4, 4), 20, np.int8)
    lut = LUT((Stage(2, ("S",), (table,), 1, 0, "reflect"),), interval=4)
    img = np.random.default_rng(0).integers(0, 256, (5, 7), dtype=np.uint8)
    assert (run_lut(img, lut) == 80).all()
