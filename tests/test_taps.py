"""A stage's learned taps (``Stage.taps``): their meaning, their validation, their file format.

Their bit-exactness in the fast kernels is tested beside theirs (``test_numba``,
``test_cuda``); here the reference itself is checked against independent
arithmetic.
"""

import dataclasses

import numpy as np
import pytest
from conftest import nearest_pattern_taps, random_lut, split_lut_bytes, with_header, with_taps

import lutsr
from lutsr.fileformat import LUTFormatError, from_bytes, to_bytes
from lutsr.model import LUT, TAP_BITS, Stage
from lutsr.reference import learned_taps, upscale_reference


@pytest.mark.parametrize("backend", ["reference", "numba"])
@pytest.mark.parametrize("layout, window", [("srlut", 2), ("mulut", 3), ("mulut", 5)])
def test_one_hot_taps_are_the_fixed_patterns(backend, layout, window):
    # Taps that read exactly the pattern's pixels: the same model as without taps,
    # padding included (a window wider than the pattern pads further, unread).
    rng = np.random.default_rng(window)
    lut = random_lut(rng, 5, layout, 2, "reflect")
    tapped = LUT(tuple(dataclasses.replace(s, taps=nearest_pattern_taps(s, window))
                       for s in lut.stages), lut.interval)
    for shape in [(1, 1, 1), (3, 2, 1), (6, 9, 3)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(lutsr.upscale(img, tapped, backend=backend),
                                      upscale_reference(img, lut))


def test_learned_taps_are_rounded_window_sums():
    # Independent arithmetic: float sums over each window of the bottom/right edge-padded
    # plane, rounded half up and clipped; ties (x.5) and both clips occur.
    rng = np.random.default_rng(0)
    plane = rng.integers(0, 256, (5, 4), dtype=np.uint8)
    weights = rng.integers(-700, 1200, (4, 3, 3)).astype(np.int16)
    weights[0] = 0
    weights[0, 1, 2] = 2 ** (TAP_BITS - 1)  # half of one pixel: every odd pixel a tie
    got = learned_taps(plane, weights, "edge")
    padded = np.pad(plane.astype(float), ((0, 2), (0, 2)), mode="edge")
    for t in range(4):
        for i in range(5):
            for j in range(4):
                s = (weights[t] / 2**TAP_BITS * padded[i:i + 3, j:j + 3]).sum()
                assert got[t, i, j] == min(max(np.floor(s + 0.5), 0), 255), (t, i, j)
    assert (got == 0).any() and (got == 255).any()
    np.testing.assert_array_equal(got[0], (padded[1:6, 2:6] + 1) // 2)


def test_taps_are_validated():
    table = np.zeros((17**4, 4), np.int8)
    good = np.zeros((1, 4, 3, 3), np.int16)
    Stage(2, ("S",), (table,), taps=good)
    for bad in [good.astype(np.int32), good[:, :3], good[..., :2], np.zeros((1, 4, 8, 8), np.int16),
                np.zeros((2, 4, 3, 3), np.int16)]:
        with pytest.raises(ValueError, match="taps must be int16 of shape"):
            Stage(2, ("S",), (table,), taps=bad)


def test_file_round_trip_and_version():
    rng = np.random.default_rng(1)
    lut = with_taps(random_lut(rng, 4, "mulut", 2), rng, 5)
    data = to_bytes(lut)
    # Taps: version 3, which older readers refuse instead of misreading.
    assert split_lut_bytes(data)[0]["format_version"] == 3
    back = from_bytes(data)
    for s1, s2 in zip(lut.stages, back.stages, strict=True):
        assert s2.taps.dtype == np.int16
        np.testing.assert_array_equal(s1.taps, s2.taps)
    assert "taps=learned 5x5" in back.describe()
    img = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(lutsr.upscale(img, back), upscale_reference(img, lut))


@pytest.mark.parametrize("edit, match", [
    (lambda h: h["stages"][0].update(taps=h["stages"][0]["taps"][:-1]), "int16 values"),
    (lambda h: h["stages"][0]["taps"].__setitem__(0, 40000), "int16 values"),
    (lambda h: h["stages"][0]["taps"].__setitem__(0, 0.5), "int16 values"),
    (lambda h: h["stages"][0].update(tap_window=4), "int16 values"),
    (lambda h: h["stages"][0].update(tap_window=9), "tap_window"),
    (lambda h: h["stages"][0].update(tap_window=True), "tap_window"),
    (lambda h: h["stages"][0].pop("tap_window"), "go together"),
    (lambda h: h.update(format_version=2), "tap_window"),  # taps need version 3
])
def test_bad_taps_in_a_file_are_a_format_error(edit, match):
    rng = np.random.default_rng(2)
    lut = with_taps(random_lut(rng, 4, "srlut", 2), rng, 3)
    with pytest.raises(LUTFormatError, match=match):
        from_bytes(with_header(to_bytes(lut), edit))


def test_public_one_hot_taps():
    """``lutsr.model.one_hot_taps`` is the fixed patterns, and refuses windows they do not fit."""
    from lutsr.model import one_hot_taps as public

    stage = random_lut(np.random.default_rng(0), 5, "mulut", 2).stages[0]
    for window in (3, 5, 7):
        np.testing.assert_array_equal(public(stage.patterns, window),
                                      nearest_pattern_taps(stage, window))
    assert public("S", 2).shape == (1, 4, 2, 2)
    for patterns, window in (("SD", 2), ("S", 1), ("S", 8)):
        with pytest.raises(ValueError, match=f"tap window {window}"):
            public(patterns, window)
