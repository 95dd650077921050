"""What the benchmarks share: photo frames of common sizes, LUT models, timing helpers.

Frames are a natural photo (scikit-image's ``astronaut``), centre-cropped to
16:9 and resized with OpenCV (``INTER_AREA`` down, ``INTER_CUBIC`` up): natural
images hit table rows near the diagonal, so they show the cache behaviour of
real video. Models: the golden-vector tables of ``../shared/conformance``
(:func:`conformance_model`), the same read through dense learned taps
(:func:`with_dense_taps`) and layered LUTs of the ShiftLUT shapes with random
tables (:func:`random_shiftlut`; their speed does not depend on the values).
``bench/conftest.py`` makes pytest fixtures of them; the script modes and
``bench/make_results.py`` import them from here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import lutsr
from lutsr import LUT, Stage
from lutsr.layered import HIGH_LEVELS, LOW_LEVELS, STEPS, LayeredStage, TableLayer, table_entries
from lutsr.model import one_hot_taps

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CONFORMANCE = SHARED / "conformance"

#: (width, height) of the benchmark frames.
SIZES = {"320x180": (320, 180), "480x270": (480, 270), "960x540": (960, 540)}

#: Blocks of the published ShiftLUT models (CVPR 2026; all x4 over 16 channels).
SHIFTLUT_BLOCKS = {"ShiftLUT-S": 1, "ShiftLUT-M": 2, "ShiftLUT-L": 8}


#: What numba targets to build the code an AVX2-only CPU runs (Haswell's features, every
#: AVX-512 one off), with ``NUMBA_CPU_NAME``: this AVX-512 CPU then executes it natively.
AVX2_BUILD_ENV = {
    "NUMBA_CPU_NAME": "haswell",
    "NUMBA_CPU_FEATURES": (
        "+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+cx8,+f16c,+fma,+fsgsbase,+fxsr,+lzcnt,+mmx,"
        "+movbe,+pclmul,+popcnt,+rdrnd,+sahf,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave,"
        "+xsaveopt,-avx512f,-avx512bw,-avx512vl,-avx512dq,-avx512cd,-avx512vbmi,-avx512vnni"),
}


#: lutsr and OpenCV threads of the runtime benchmarks (the targets' 2 threads).
THREADS = 2


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


def with_dense_taps(lut: LUT, window: int = 5) -> LUT:
    """``lut`` with learned taps of ``window``: its fixed patterns (``lutsr.model.one_hot_taps``)
    plus small random weights (|w| <= 8 of 1024) on every window pixel, so that every
    multiply-add runs (the kernels skip zero weights) while the taps stay near the patterns'."""
    rng = np.random.default_rng(2)
    stages = tuple(dataclasses.replace(s, taps=(one_hot_taps(s.patterns, window) + rng.integers(
        -8, 9, (len(s.patterns), 4, window, window))).astype(np.int16)) for s in lut.stages)
    return LUT(stages, lut.interval, f"{lut.name}+taps{window}")


def cubic(frame: np.ndarray, scale: int = 4):
    """OpenCV bicubic upscale of ``frame`` into a preallocated output; returns the callable."""
    import cv2

    h, w = frame.shape[:2]
    out = np.empty((h * scale, w * scale, frame.shape[2]), np.uint8)
    return lambda: cv2.resize(frame, (w * scale, h * scale), dst=out,
                              interpolation=cv2.INTER_CUBIC)


def lut_upscale(lut, frame: np.ndarray, threads: int = THREADS):
    """lutsr upscale of ``frame`` into a preallocated output, as a video loop does."""
    up = lutsr.Upscaler(lut, threads=threads)
    out = np.empty((frame.shape[0] * lut.scale, frame.shape[1] * lut.scale, frame.shape[2]),
                   np.uint8)
    return lambda: up(frame, out=out)


def timed(benchmark, fn, **info):
    """Time ``fn`` with pytest-benchmark (40 rounds) after an untimed call; ``info`` is recorded."""
    fn()  # warm-up: compile or load from numba's cache, build per-size scratch
    benchmark.extra_info.update(info)
    benchmark.pedantic(fn, rounds=40, iterations=1, warmup_rounds=2)


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
