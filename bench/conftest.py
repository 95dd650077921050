"""Shared benchmark fixtures: real photo frames of common sizes and x4 LUT models.

Frames are a natural photo (scikit-image's ``astronaut``), centre-cropped to
16:9 and resized with OpenCV (``INTER_AREA`` down, ``INTER_CUBIC`` up): natural
images hit table rows near the diagonal, so they show the cache behaviour of
real video. ``random_frame`` is the worst case for the table caches.

LUT models use the golden-vector tables of ``../shared/conformance`` (smooth
functions of the four inputs plus noise, interval 4, the published sizes):
``srlut_x4`` (SR-LUT-S: one stage, pattern S, a 17**4 x 16 table) and
``mulut_x4`` (MuLUT-SDY: two stages of S, D, Y). ``random_srlut_x4`` has
uniformly random tables of the same shape, the worst case. ``bundled_x4`` is
the default LUT lutsr ships (an S table over a linear 5x5 base).
``mulut_x4_taps5`` is ``mulut_x4`` reading its pixels through dense learned 5x5
taps close to its patterns: the run-time cost of learned taps.
The functions behind them are in :mod:`bench.helpers`.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.helpers import SIZES, conformance_model, photo_frame, with_dense_taps
from lutsr import LUT, Stage


@pytest.fixture(scope="session")
def frame_320x180() -> np.ndarray:
    return photo_frame(*SIZES["320x180"])


@pytest.fixture(scope="session")
def frame_480x270() -> np.ndarray:
    return photo_frame(*SIZES["480x270"])


@pytest.fixture(scope="session")
def frame_960x540() -> np.ndarray:
    return photo_frame(*SIZES["960x540"])


@pytest.fixture(scope="session")
def random_frame_480x270() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (270, 480, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def srlut_x4() -> LUT:
    return conformance_model("srlut_s_x4_q16")


@pytest.fixture(scope="session")
def mulut_x4() -> LUT:
    return conformance_model("mulut_sdy_x4_q16")


@pytest.fixture(scope="session")
def mulut_x4_taps5() -> LUT:
    return with_dense_taps(conformance_model("mulut_sdy_x4_q16"))


@pytest.fixture(scope="session")
def bundled_x4() -> LUT:
    import lutsr

    if "x4" not in lutsr.bundled_names():
        pytest.skip("no bundled x4 LUT")
    return lutsr.load_bundled("x4")


@pytest.fixture(scope="session")
def random_srlut_x4() -> LUT:
    table = np.random.default_rng(1).integers(-128, 128, (17**4, 16), dtype=np.int8)
    return LUT((Stage(4, ("S",), (table,), 1, 0, "reflect"),), interval=4, name="random")
