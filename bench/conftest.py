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
:func:`random_shiftlut` makes layered LUTs of the ShiftLUT shapes with random
tables (their speed does not depend on the values).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from lutsr import LUT, Stage
from lutsr.layered import HIGH_LEVELS, LOW_LEVELS, STEPS, LayeredStage, TableLayer, table_entries
from lutsr.model import one_hot_taps

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CONFORMANCE = SHARED / "conformance"

#: (width, height) of the benchmark frames.
SIZES = {"320x180": (320, 180), "480x270": (480, 270), "960x540": (960, 540)}

#: Blocks of the published ShiftLUT models (CVPR 2026; all x4 over 16 channels).
SHIFTLUT_BLOCKS = {"ShiftLUT-S": 1, "ShiftLUT-M": 2, "ShiftLUT-L": 8}


def photo_frame(width: int, height: int) -> np.ndarray:
    """scikit-image's astronaut as a (height, width, 3) uint8 RGB frame of 16:9 video."""
    import cv2
    from skimage import data

    img = data.astronaut()
    h = img.shape[1] * 9 // 16
    top = (img.shape[0] - h) // 2
    crop = np.ascontiguousarray(img[top:top + h])
    method = cv2.INTER_AREA if width <= crop.shape[1] else cv2.INTER_CUBIC
    return cv2.resize(crop, (width, height), interpolation=method)


def conformance_model(name: str, scale: int = 4) -> LUT:
    """The model of one golden-vector file (see ``../shared/conformance/README.md``)."""
    path = CONFORMANCE / f"{name}.npz"
    if not path.exists():
        pytest.skip(f"{path} not present")
    z = dict(np.load(path))
    if "table" in z:
        stages = [Stage(scale, ("S",), (z["table"],), 1, 0, "reflect")]
    else:
        stages = [Stage(1, "SDY", [z[f"table_s1_{p}"] for p in "sdy"], 12, 127, "edge"),
                  Stage(scale, "SDY", [z[f"table_s2_{p}"] for p in "sdy"], 3, 0, "edge")]
    return LUT(tuple(stages), interval=int(z["interval"]), name=name)


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


def with_dense_taps(lut: LUT, window: int = 5) -> LUT:
    """``lut`` with learned taps of ``window``: its fixed patterns (``lutsr.model.one_hot_taps``)
    plus small random weights (|w| <= 8 of 1024) on every window pixel, so that every
    multiply-add runs (the kernels skip zero weights) while the taps stay near the patterns'."""
    rng = np.random.default_rng(2)
    stages = tuple(dataclasses.replace(s, taps=(one_hot_taps(s.patterns, window) + rng.integers(
        -8, 9, (len(s.patterns), 4, window, window))).astype(np.int16)) for s in lut.stages)
    return LUT(stages, lut.interval, f"{lut.name}+taps{window}")


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


def random_shiftlut(name: str, seed: int = 0) -> LUT:
    """A one-stage x4 layered LUT of the shape of ``name`` (a :data:`SHIFTLUT_BLOCKS` key).

    16 channels, the published number of blocks; random steps, table entries
    within +-24 (as trained tables are, so values flow through every layer
    without saturating) and every block's pointwise layer shifted within +-2
    (as ``../shared/conformance/shiftlut/s2_x4_shift2``). The kernels expand
    every table to all its inputs, so the time depends on the shape only.
    """
    rng = np.random.default_rng(seed)
    r = 4
    channels = r * r

    def layer(kind, inputs, levels, shifted=False):
        steps = rng.choice(STEPS, size=(inputs, channels)).astype(np.uint8)
        need = np.vectorize(lambda s: table_entries(int(s), levels))(steps)
        tables = rng.integers(-24, 25, (inputs, channels, need.max())).astype(np.int8)
        tables[np.arange(need.max()) >= need[..., None]] = 0  # past the last sample: 0
        shifts = rng.integers(-2, 3, (2, inputs)).astype(np.int8) if shifted else None
        return TableLayer(kind, tables, steps, shifts)

    stage = LayeredStage(
        r=r,
        blocks=tuple((layer("depthwise", 9, HIGH_LEVELS),
                      layer("pointwise", channels, HIGH_LEVELS, shifted=True))
                     for _ in range(SHIFTLUT_BLOCKS[name])),
        low=layer("depthwise", 9, LOW_LEVELS),
        up=layer("pointwise", channels, HIGH_LEVELS))
    return LUT((stage,), name=f"{name} shape, random tables")
