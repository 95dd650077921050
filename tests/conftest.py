"""Shared fixtures: paths to ../shared, small random LUT models, .lutsr byte surgery."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest

from lutsr import LUT, Stage
from lutsr.fileformat import MAGIC
from lutsr.model import BASE_BITS, DIVISOR_RANGE, MAX_BIAS, PATTERNS, TAP_BITS, grid_size

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CONFORMANCE = SHARED / "conformance"
DATA = SHARED / "data"

#: Seconds after which a test calls a child process or a thread hung. A guard against
#: hangs only, never a speed check: on a busy 2-core CI machine a child that compiles
#: numba kernels (7 s of CPU) or runs the CUDA simulator takes 7-10 times as long as alone.
HANG_GUARD_S = 600


def need(path: Path) -> Path:
    """Skip the calling test cleanly when a piece of ../shared is absent."""
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def random_lut(rng: np.random.Generator, interval: int = 4, layout: str = "srlut",
               scale: int = 4, padding: str | None = None) -> LUT:
    """A LUT with uniformly random int8 tables in one of the two published layouts."""
    rows = grid_size(interval) ** 4

    def table(r):
        return rng.integers(-128, 128, size=(rows, r * r), dtype=np.int8)

    if layout == "srlut":
        stages = [Stage(scale, ("S",), (table(scale),), 1, 0, padding or "reflect")]
    elif layout == "mulut":
        pad = padding or "edge"
        stages = [Stage(1, ("S", "D", "Y"), tuple(table(1) for _ in range(3)), 12, 127, pad),
                  Stage(scale, ("S", "D", "Y"), tuple(table(scale) for _ in range(3)), 3, 0, pad)]
    else:
        raise ValueError(layout)
    return LUT(stages=tuple(stages), interval=interval, name=f"random-{layout}")


def bicubic_base(r: int) -> np.ndarray:
    """A stage base (int16, (r, r, 5, 5)) that is bicubic upscaling (a = -0.5), quantised.

    Output row ``i * r + u`` is centred at input row ``c = i + (u + 0.5) / r - 0.5``;
    bicubic reads rows ``floor(c) - 1 .. floor(c) + 2``, which start at offset
    ``first`` (-2 or -1) from ``i``: index ``first + 2`` of the base's 5 rows.
    """
    def cubic(x):
        x = np.abs(x)
        return np.where(x <= 1, 1.5 * x**3 - 2.5 * x**2 + 1,
                        np.where(x < 2, -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2, 0.0))

    w = np.zeros((r, 5))
    for u in range(r):
        centre = (u + 0.5) / r - 0.5
        first = int(np.floor(centre)) - 1
        w[u, first + 2:first + 6] = cubic(centre - first - np.arange(4))
    return np.round(np.einsum("ua,vb->uvab", w, w) * 2**BASE_BITS).astype(np.int16)


def with_base(lut: LUT, rng: np.random.Generator, noise: int = 64) -> LUT:
    """``lut`` with a base on every stage: :func:`bicubic_base` plus uniform noise of +-noise."""
    stages = [dataclasses.replace(s, base=(bicubic_base(s.r) + rng.integers(
        -noise, noise + 1, (s.r, s.r, 5, 5))).astype(np.int16)) for s in lut.stages]
    return LUT(tuple(stages), lut.interval, lut.name + "+base", dict(lut.metadata))


def nearest_pattern_taps(stage: Stage, window: int) -> np.ndarray:
    """Learned taps (int16, (P, 4, w, w)) that read exactly the stage's fixed patterns
    (a window too small for a pattern reads its pixels' nearest in the window instead)."""
    taps = np.zeros((len(stage.patterns), 4, window, window), np.int16)
    for p, pattern in enumerate(stage.patterns):
        for t, (dy, dx) in enumerate(PATTERNS[pattern]):
            taps[p, t, min(dy, window - 1), min(dx, window - 1)] = 2**TAP_BITS
    return taps


def with_taps(lut: LUT, rng: np.random.Generator, window: int = 3, noise: int = 300) -> LUT:
    """``lut`` with learned taps on every stage: :func:`nearest_pattern_taps` plus uniform noise of
    +-noise (out of ``2**TAP_BITS``), so taps both mix pixels and clip at 0 and 255."""
    stages = [dataclasses.replace(s, taps=(nearest_pattern_taps(s, window) + rng.integers(
        -noise, noise + 1, (len(s.patterns), 4, window, window))).astype(np.int16))
        for s in lut.stages]
    return LUT(tuple(stages), lut.interval, lut.name + "+taps", dict(lut.metadata))


def split_lut_bytes(data: bytes) -> tuple[dict, bytes]:
    """A ``.lutsr`` file's JSON header and its table bytes (the checksum dropped)."""
    (n,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    return json.loads(data[start:start + n]), data[start + n:-32]


def reseal_lut_bytes(header: dict, tables: bytes) -> bytes:
    """A ``.lutsr`` file of ``header`` and ``tables``, its checksum valid."""
    text = json.dumps(header).encode()
    body = MAGIC + struct.pack("<I", len(text)) + text + tables
    return body + hashlib.sha256(body).digest()


def conformance_lut(name: str) -> tuple[LUT, dict]:
    """The LUT model and arrays of one golden-vector file of ../shared/conformance."""
    z = dict(np.load(need(CONFORMANCE / f"{name}.npz")))
    k, r = int(z["interval"]), int(z["scale"])
    if "table" in z:
        stages = [Stage(r, ("S",), (z["table"],), 1, 0, "reflect")]
    else:
        stages = [Stage(1, "SDY", [z[f"table_s1_{p}"] for p in "sdy"], 12, 127, "edge"),
                  Stage(r, "SDY", [z[f"table_s2_{p}"] for p in "sdy"], 3, 0, "edge")]
    return LUT(stages=tuple(stages), interval=k, name=name), z


CONFORMANCE_NAMES = ["srlut_s_x4_q16", "srlut_s_x2_q32", "mulut_sdy_x4_q16", "mulut_sdy_x2_q32"]


def assert_images_equal(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    """Exact uint8 equality; on failure report how many pixels differ and where.

    Guards against off-by-one rounding, rotation or padding bugs, which show up
    as a few differing pixels along a border or scattered ties.
    """
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    bad = np.argwhere(actual != expected)
    if len(bad):
        first = tuple(int(i) for i in bad[0])
        raise AssertionError(
            f"{what}: {len(bad)} of {expected.size} values differ; first at {first}: "
            f"{actual[first]} != {expected[first]}; max |diff| "
            f"{np.abs(actual.astype(int) - expected).max()}")


def with_header(data: bytes, edit) -> bytes:
    """``data`` (a ``.lutsr`` file) with its JSON header changed by ``edit``, resealed."""
    header, tables = split_lut_bytes(data)
    edit(header)
    return reseal_lut_bytes(header, tables)


def extreme_stage(rng, r: int, patterns: str, interval: int, with_base: bool,
                   with_taps: bool) -> Stage:
    """A stage whose tables sit at -128/127 (or random), bias and divisor drawn over the whole
    accepted range (powers of two included, so the shift rounding is tried at every width)."""
    rows = (2 ** (8 - interval) + 1) ** 4
    tables = []
    for _ in patterns:
        kind = rng.integers(3)
        fill = {0: rng.integers(-128, 128, (rows, r * r)), 1: np.full((rows, r * r), 127),
                2: np.full((rows, r * r), -128)}[kind]
        tables.append(fill.astype(np.int8))
    if with_base:  # needs q * divisor a power of two up to 2**12, and an integer bias
        divisor = 2.0 ** int(rng.integers(-interval, 12 - interval + 1))
        bias = float(rng.choice([-MAX_BIAS, MAX_BIAS, rng.integers(-300, 300), 0]))
        base = rng.choice([bicubic_base(r), np.full((r, r, 5, 5), 2**15 - 1),
                           np.full((r, r, 5, 5), -2**15)]).astype(np.int16)
    else:
        lo, hi = np.log2(DIVISOR_RANGE)
        divisor = float(rng.choice([2.0 ** int(rng.integers(lo, hi + 1)),
                                    2.0 ** rng.uniform(lo, hi), *DIVISOR_RANGE]))
        bias = float(rng.choice([-MAX_BIAS, MAX_BIAS, rng.integers(-MAX_BIAS, MAX_BIAS),
                                 rng.uniform(-300, 300), int(rng.integers(-300, 300))]))
        base = None
    stage = Stage(r, tuple(patterns), tuple(tables), divisor, bias, "edge", base)
    if with_taps:
        taps = nearest_pattern_taps(stage, 3).astype(np.int32)
        taps += rng.choice([0, 2**15, -2**15], size=taps.shape, p=[0.8, 0.1, 0.1])
        stage = dataclasses.replace(stage, taps=np.clip(taps, -2**15, 2**15 - 1).astype(np.int16))
    return stage


def random_layered_stage(rng: np.random.Generator, blocks: int = 1, r: int = 4,
                         max_shift: int = 1, extreme: float = 0.15):
    """A :class:`~lutsr.layered.LayeredStage` with random tables and steps.

    Most entries lie within +-24 (as trained tables do, so values flow through
    every layer without saturating); a share ``extreme`` of the tables span all
    of int8, so the clamps after each layer are exercised too. Every pointwise
    layer but the last has random shifts within ``+-max_shift`` (none when 0).
    """
    from lutsr.layered import (
        HIGH_LEVELS,
        LOW_LEVELS,
        STEPS,
        LayeredStage,
        TableLayer,
        table_entries,
    )

    channels = r * r

    def layer(kind, inputs, levels, shifted=False):
        steps = rng.choice(STEPS, size=(inputs, channels)).astype(np.uint8)
        size = max(table_entries(int(s), levels) for s in steps.ravel())
        wide = rng.random((inputs, channels, 1)) < extreme
        tables = np.where(wide, rng.integers(-128, 128, (inputs, channels, size)),
                          rng.integers(-24, 25, (inputs, channels, size)))
        need = np.vectorize(lambda s: table_entries(int(s), levels))(steps)
        tables[np.arange(size) >= need[..., None]] = 0
        shifts = (rng.integers(-max_shift, max_shift + 1, (2, inputs)).astype(np.int8)
                  if shifted and max_shift else None)
        return TableLayer(kind, tables.astype(np.int8), steps, shifts)

    return LayeredStage(
        r=r,
        blocks=tuple((layer("depthwise", 9, HIGH_LEVELS),
                      layer("pointwise", channels, HIGH_LEVELS, shifted=True))
                     for _ in range(blocks)),
        low=layer("depthwise", 9, LOW_LEVELS),
        up=layer("pointwise", channels, HIGH_LEVELS))


def random_layered_lut(rng: np.random.Generator, blocks: int = 1, **kwargs) -> LUT:
    """A one-stage LUT holding :func:`random_layered_stage`."""
    return LUT(stages=(random_layered_stage(rng, blocks, **kwargs),), name="random-layered")


def sample_images(folder: Path, n: int, size=(64, 48)) -> Path:
    """``n`` (at most 4) of scikit-image's sample photos resized to ``size``, PNGs in ``folder``."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for name in ["astronaut", "chelsea", "coffee", "rocket"][:n]:
        Image.fromarray(getattr(data, name)()).resize(size).save(folder / f"{name}.png")
    return folder
