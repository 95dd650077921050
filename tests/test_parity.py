"""Every backend, bit for bit, against the reference (the spec) and the golden vectors.

One suite for all backends. :data:`BACKENDS` lists them; each entry knows how
to run frames through a LUT on its backend, and why it cannot here (the test
then skips with that reason). :data:`CASES` lists the models and images:
simplex stages of every pattern alone and mixed, r = 1..5 and 8, intervals
3..7, both paddings, linear bases, learned taps, tables and bases at their
extremes, rounding ties; layered stages of 1 to 8 blocks with shifts up to
:data:`~lutsr.layered.MAX_SHIFT` (every shift in one case), r = 1..5, tables at
the int8 extremes; simplex and layered stages mixed; edge sizes (1x1, single
rows and columns, odd), flat images (all 0, all 255), batches and channel
counts; and the bundled LUTs. Every case runs on every backend it applies to
and compares with :func:`lutsr.reference.upscale_reference` by exact uint8
equality (random tables and images are the worst case for a kernel's
shortcuts: any table row, fraction tie and sum is reachable); the golden
vectors of ``../shared/conformance`` are compared with their own expected
outputs. Adding a backend is one entry in :data:`BACKENDS`.

What is specific to one backend (array interop, launch geometry, adapter
choice, thread counts, path selection, the AVX2 build in a child process)
stays in its own test file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from conftest import (
    CONFORMANCE,
    CONFORMANCE_NAMES,
    assert_images_equal,
    conformance_lut,
    extreme_stage,
    need,
    random_layered_lut,
    random_layered_stage,
    random_lut,
    with_base,
    with_taps,
)

from lutsr import LUT, Stage, bundled
from lutsr.layered import (
    HIGH_LEVELS,
    LOW_LEVELS,
    MAX_SHIFT,
    LayeredStage,
    TableLayer,
    table_entries,
)
from lutsr.model import grid_size
from lutsr.reference import upscale_reference

# --------------------------------------------------------------------------- backends


@dataclasses.dataclass(frozen=True)
class Backend:
    """How one backend runs a LUT.

    ``upscale(lut, frames, state)`` takes frames ``(N, H, W, C)`` uint8 and returns
    ``(N, H*s, W*s, C)``; ``state`` is a dict the backend may keep things in for the
    whole module (closed after it with their ``close()``). ``unavailable()`` says why
    the backend cannot run here, or None. ``layered_only``: the entry is a path of
    layered stages only (on simplex-only LUTs another entry runs the same kernels).
    ``max_work``: a slow backend's budget (see :func:`work`); larger frames are
    cropped to fit it. ``golden_work``: the budget of a golden vector compared whole
    with its expected output; a larger one is cropped to ``max_work`` and compared
    with the reference. ``max_items``: a slow backend runs at most this many of a
    case's models and frames (spread over the list).
    """

    name: str
    upscale: Callable[[LUT, np.ndarray, dict], np.ndarray]
    unavailable: Callable[[], str | None]
    layered_only: bool = False
    max_work: int | None = None
    golden_work: int | None = None
    max_items: int | None = None


@contextlib.contextmanager
def numba_path(path: str):
    """Runners prepared inside the block use ``path`` ("portable", "avx512", "avx2" or
    "neon") wherever it applies; the others are each CPU's own choice."""
    from lutsr._cpu import layered_plan

    saved = os.environ.get("LUTSR_PORTABLE_KERNEL"), layered_plan.PORTABLE, layered_plan.AVX2
    os.environ["LUTSR_PORTABLE_KERNEL"] = "1" if path == "portable" else "0"
    layered_plan.PORTABLE, layered_plan.AVX2 = path == "portable", path == "avx2"
    try:
        yield
    finally:
        if saved[0] is None:
            del os.environ["LUTSR_PORTABLE_KERNEL"]
        else:
            os.environ["LUTSR_PORTABLE_KERNEL"] = saved[0]
        layered_plan.PORTABLE, layered_plan.AVX2 = saved[1:]


#: The name :attr:`PreparedLayered.path` gives each numba path.
LAYERED_PATH = {"portable": "portable", "avx512": "AVX-512BW", "avx2": "AVX2", "neon": "NEON"}


def _numba(path: str):
    def upscale(lut: LUT, frames: np.ndarray, state: dict) -> np.ndarray:
        from lutsr._cpu import NumbaRunner, vnni_available
        from lutsr._cpu.layered_plan import MAX_LANE_INPUTS

        with numba_path(path):
            runner = NumbaRunner(lut, 2)  # 2 threads: the image in several bands
        # Not vacuous: each stage runs the kernels this entry is named for, where they apply.
        for stage, ps in zip(lut.stages, runner._stages, strict=True):
            if isinstance(stage, LayeredStage):
                want = LAYERED_PATH[path] if stage.channels <= MAX_LANE_INPUTS else "portable"
                assert ps.path == want, f"{lut.name}: a layered stage ran {ps.path}, not {want}"
            elif path in ("portable", "avx512"):
                wide = path == "avx512"
                assert (ps.vnni, ps.lanes is not None) == (
                    wide and vnni_available() and stage.r == 4, wide), lut.name
        n, h, w, c = frames.shape
        s = lut.scale
        out = np.full((n, h * s, w * s, c), 77, np.uint8)  # not zeros: unwritten pixels show
        runner.run(frames, out)
        return out
    return upscale


def _numba_unavailable(path: str) -> Callable[[], str | None]:
    def why() -> str | None:
        from lutsr._cpu.kernels import avx2_available, avx512bw_available, neon_available

        with numba_path(path):
            ok = {"portable": lambda: True, "avx512": avx512bw_available,
                  "avx2": avx2_available, "neon": neon_available}[path]()
        return None if ok else f"numba targets no {LAYERED_PATH[path]} here"
    return why


def as_given(frames: np.ndarray) -> np.ndarray:
    """One frame as ``(H, W)`` or ``(H, W, C)`` (a batch as it is): the API's other layouts."""
    if frames.shape[0] > 1:
        return frames
    return frames[0, :, :, 0] if frames.shape[3] == 1 else frames[0]


def _cudasim(lut: LUT, frames: np.ndarray, state: dict) -> np.ndarray:
    from cudasim import SimulatorWorker

    if "cudasim" not in state:
        state["cudasim"] = SimulatorWorker()
    got = state["cudasim"].upscale(lut, as_given(frames))
    n, h, w, c = frames.shape
    return got.reshape(n, h * lut.scale, w * lut.scale, c)


#: The adapter the webgpu entry runs on: Mesa's software Vulkan (lavapipe), which CI has.
SOFTWARE_ADAPTER = "llvmpipe"


@functools.cache
def _webgpu_unavailable() -> str | None:
    from lutsr._webgpu import device

    try:
        import wgpu  # noqa: F401
    except ImportError:
        return "wgpu is not installed (pip install 'lutsr[webgpu]')"
    try:
        device.device(SOFTWARE_ADAPTER)
    except RuntimeError as e:
        return f"no {SOFTWARE_ADAPTER} adapter (apt-get install mesa-vulkan-drivers): {e}"
    return None


def _webgpu(lut: LUT, frames: np.ndarray, state: dict) -> np.ndarray:
    from lutsr._webgpu import WebGPURunner

    got = WebGPURunner(lut, adapter=SOFTWARE_ADAPTER).up(as_given(frames))
    n, h, w, c = frames.shape
    return got.reshape(n, h * lut.scale, w * lut.scale, c)


BACKENDS = [
    Backend("portable", _numba("portable"), _numba_unavailable("portable")),
    Backend("avx512", _numba("avx512"), _numba_unavailable("avx512")),
    Backend("avx2", _numba("avx2"), _numba_unavailable("avx2"), layered_only=True),
    Backend("neon", _numba("neon"), _numba_unavailable("neon"), layered_only=True),
    # numba's CUDA simulator runs each device thread in Python: small frames only.
    Backend("cudasim", _cudasim, lambda: None, max_work=3000, golden_work=40000, max_items=2),
    Backend("webgpu", _webgpu, _webgpu_unavailable),
]
BY_NAME = {b.name: b for b in BACKENDS}


def work(lut: LUT, shape: tuple[int, ...]) -> int:
    """About how many table and pixel reads ``lut`` makes on frames of ``shape`` ``(N, H, W, C)``
    (a rough measure of a simulated device's time: a layered stage's reads weigh 8 times
    a simplex stage's, as the CUDA simulator measured)."""
    n, h, w, c = shape
    total = 0
    for stage in lut.stages:
        if isinstance(stage, LayeredStage):
            total += 8 * h * w * stage.channels * (2 * len(stage.blocks) + 2)
        else:
            taps = 0 if stage.taps is None else stage.taps.shape[-1] ** 2
            base = 0 if stage.base is None else 25 * stage.r**2
            total += h * w * (len(stage.patterns) * (stage.r**2 + taps) + base)
        h, w = h * stage.r, w * stage.r
    return total * n * c


#: The fewest pixels :func:`fit` crops a frame to: a few device blocks' worth (see cudasim.py).
MIN_CROP = 8


def fit(backend: Backend, lut: LUT, frames: np.ndarray) -> np.ndarray:
    """``frames`` cropped until within the backend's budget: to their first channel, then
    halving the longer side, down to :data:`MIN_CROP` pixels."""
    budget = backend.max_work
    if budget and work(lut, frames.shape) > budget:
        frames = frames[..., :1]

    def halved(shape):
        n, h, w, c = shape
        return (n, (h + 1) // 2, w, c) if h >= w else (n, h, (w + 1) // 2, c)

    while budget and work(lut, frames.shape) > budget:
        n, h, w, c = halved(frames.shape)
        if h * w < MIN_CROP:
            break
        frames = frames[:, :h, :w]
    return np.ascontiguousarray(frames)


@pytest.fixture(scope="module")
def state():
    """What backends keep between tests (the simulator's worker process), closed after."""
    kept: dict = {}
    yield kept
    for thing in kept.values():
        thing.close()


def ready(name: str) -> Backend:
    """The backend ``name``; the test skips when it cannot run here."""
    backend = BY_NAME[name]
    why = backend.unavailable()
    if why:
        pytest.skip(why)
    return backend


_references: dict = {}


def reference(lut: LUT, frames: np.ndarray) -> np.ndarray:
    """The spec's output, computed once per LUT and frames for all backends."""
    key = (id(lut), frames.shape, zlib.crc32(frames.tobytes()))
    if key not in _references or _references[key][0] is not lut:  # an id may be reused
        _references[key] = lut, upscale_reference(frames, lut)
    return _references[key][1]


def check(backend: Backend, state: dict, lut: LUT, frames: np.ndarray, what: str) -> None:
    """Exact parity of ``backend`` with the reference on ``frames`` (cropped to fit)."""
    frames = fit(backend, lut, frames)
    got = backend.upscale(lut, frames, state)
    assert_images_equal(got, reference(lut, frames),
                        f"{what} {frames.shape} on {backend.name}")


# --------------------------------------------------------------------------- models and images


def make_lut(rng, interval: int, stages, name: str = "") -> LUT:
    """A LUT with random tables from ``stages`` = [(r, patterns, divisor, bias, padding), ...]."""
    rows = grid_size(interval) ** 4
    built = [Stage(r, tuple(pats),
                   tuple(rng.integers(-128, 128, (rows, r * r), dtype=np.int8) for _ in pats),
                   divisor, bias, padding)
             for r, pats, divisor, bias, padding in stages]
    return LUT(tuple(built), interval=interval, name=name or repr(stages))


def frames_of(rng, n, h, w, c=1):
    return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)


def seeded(text: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(text.encode()))


#: A case: a list of (LUT, frames (N, H, W, C), what) built from its name's seed.
Items = list[tuple[LUT, np.ndarray, str]]
CASES: dict[str, tuple[Callable[[], Items], bool]] = {}  # name -> (build, has layered stages)


def case(name: str, layered: bool = False):
    def register(build):
        CASES[name] = (build, layered)
        return build
    return register


# Every pattern alone and mixed, r = 1..5 and 8, intervals 3..7, both paddings, divisors and
# biases that put many sums on rounding ties; two and three stages (build_lut.py
# --refine-stages 2: a second stage at LR with bias 128).
STAGE_CASES = [
    (4, [(4, "S", 1, 0, "reflect")]),
    (5, [(2, "D", 1, 0, "edge")]),
    (6, [(3, "Y", 2, 10, "reflect")]),
    (7, [(1, "S", 1, 0, "edge")]),
    (4, [(2, "SD", 2, 0, "edge")]),
    (5, [(3, "DY", 4, 3, "reflect")]),
    (6, [(4, "YS", 3, 0, "edge")]),
    (7, [(2, "SDY", 12, 127, "reflect")]),
    (4, [(1, "SDY", 12, 127, "edge"), (4, "SDY", 3, 0, "edge")]),
    (4, [(1, "SDY", 12, 127, "edge"), (1, "SDY", 12, 128, "edge"), (4, "SDY", 3, 0, "edge")]),
    (5, [(2, "Y", 1, 0, "reflect"), (2, "SD", 2, 0, "reflect")]),
    (6, [(1, "D", 4, 127, "edge"), (1, "S", 4, 0, "reflect"), (3, "SY", 2, 0, "edge")]),
    (7, [(4, "S", 1, 0, "edge"), (1, "DY", 8, 127, "reflect")]),
    (7, [(5, "S", 1, 0, "reflect")]),  # blocks of 25 and 64 values: odd vector lengths
    (7, [(8, "DY", 2, 0, "edge")]),
    (3, [(2, "S", 1, 0, "edge")]),  # 33**4 rows: table indices past 2**20
]
for _interval, _stages in STAGE_CASES:
    @case(f"stages {_interval} {_stages}")
    def _stage_case(interval=_interval, stages=_stages):
        rng = seeded(repr(stages))
        return [(make_lut(rng, interval, stages), frames_of(rng, 1, 9, 11, 2), "")]

for _layout in ("srlut", "mulut"):
    for _interval, _scale in [(4, 4), (5, 2), (6, 3), (7, 1), (7, 4)]:
        @case(f"{_layout} k={_interval} x{_scale}")
        def _layout_case(layout=_layout, interval=_interval, scale=_scale):
            rng = np.random.default_rng(interval * 10 + scale)
            lut = random_lut(rng, interval, layout, scale)
            return [(lut, frames_of(rng, 1, 8, 13, 3), "rgb"),
                    (lut, frames_of(rng, 1, 5, 7), "gray")]

EDGE_SHAPES = [(1, 1), (1, 6), (6, 1), (2, 2), (3, 3), (2, 5), (5, 7)]

for _padding in ("reflect", "edge"):
    @case(f"edge sizes, {_padding} padding")
    def _edge_case(padding=_padding):
        rng = seeded(padding)
        # An r > 1 first stage: the second pads a plane that is itself an upscaled edge case;
        # interleaved RGB has its own padding and row-writing loops, r = 4 its own pass 2.
        luts = [make_lut(rng, 6, [(2, "SDY", 4, 64, padding), (2, "YS", 2, 0, padding)]),
                random_lut(rng, 5, "srlut", 3, padding),
                make_lut(rng, 4, [(4, "S", 1, 0, padding)])]
        return [(lut, frames_of(rng, 1, *shape, c), f"{lut.name} {c} channels")
                for shape in EDGE_SHAPES for lut, c in zip(luts * 2, (1, 1, 3, 3, 3, 1))]

# A linear base on each stage (q * divisor a power of two): its sums are added before the
# rounding shift. r = 1..4.
BASE_CASES = [
    (4, [(4, "S", 1, 0, "reflect")]),
    (5, [(2, "SD", 1, 0, "edge")]),
    (5, [(3, "SD", 1, 0, "edge")]),
    (7, [(3, "S", 1, 0, "edge")]),
    (4, [(1, "SDY", 8, 127, "edge"), (4, "SDY", 4, 0, "edge")]),
]
for _interval, _stages in BASE_CASES:
    @case(f"base {_interval} {_stages}")
    def _base_case(interval=_interval, stages=_stages):
        rng = seeded("base" + repr(stages))
        lut = with_base(make_lut(rng, interval, stages), rng)
        items = [(lut, frames_of(rng, 1, 7, 70, 2), "70 columns: a second chunk of pixels")]
        items += [(lut, frames_of(rng, 1, *shape, 3), "edge size")
                  for shape in [(1, 1), (1, 6), (6, 1), (2, 5)]]
        # The int16 extremes on bright pixels: products and pair sums at their largest.
        extreme = [dataclasses.replace(s, base=rng.choice(np.array([-32768, 32767], np.int16),
                                                          s.base.shape)) for s in lut.stages]
        frames = frames_of(rng, 1, 5, 9, 1)
        frames[0, 1:4, 2:6] = 255
        items.append((dataclasses.replace(lut, stages=tuple(extreme)), frames, "int16 bases"))
        return items

# Learned taps: windows of 1 (no padding), 2, 3, 5 (deeper than the numba kernels' margin) and
# 7; with a base too, which reads its 5x5 window beside the taps' window.
TAP_CASES = [
    (1, 4, [(4, "S", 1, 0, "reflect")], False),
    (2, 5, [(2, "SD", 3, 0, "reflect")], False),
    (5, 4, [(1, "SDY", 12, 127, "edge"), (4, "SDY", 3, 0, "edge")], False),
    (5, 6, [(2, "SDY", 4, 0, "reflect")], True),
    (7, 6, [(2, "SDY", 4, 0, "reflect")], True),
    (3, 7, [(3, "S", 1, 0, "edge")], True),
]
for _window, _interval, _stages, _base in TAP_CASES:
    @case(f"taps {_window}x{_window} {_interval} {_stages}{' + base' if _base else ''}")
    def _tap_case(window=_window, interval=_interval, stages=_stages, base=_base):
        rng = seeded(f"taps {window} {stages}")
        lut = with_taps(make_lut(rng, interval, stages), rng, window)
        items = [(lut, frames_of(rng, 1, 7, 70, 2), "70 columns")]
        items += [(lut, frames_of(rng, 2, *shape, 3), "edge size")
                  for shape in [(1, 1), (1, 6), (6, 1), (2, 5), (3, 3)]]
        # The int16 extremes: sums at their largest, taps clipped at 0 and 255; 3 x 83: one
        # pixel at a time, 64, then 16 twice (overlapping).
        extreme = dataclasses.replace(lut, stages=tuple(dataclasses.replace(
            s, taps=rng.choice(np.array([-32768, 32767], np.int16), s.taps.shape))
            for s in lut.stages))
        items += [(extreme, frames_of(rng, 1, *shape), "int16 taps") for shape in [(5, 9), (3, 83)]]
        if base:
            items.append((with_base(lut, rng), frames_of(rng, 1, 6, 20, 3), "taps and a base"))
        return items

for _seed in range(6):
    @case(f"extreme stages {_seed}")
    def _extreme_case(seed=_seed):
        """Tables at -128/127, divisors and biases over the whole accepted range, int16 extremes
        in bases and taps: every sum at its bounds, every rounding path."""
        rng = np.random.default_rng(seed)
        interval = int(rng.integers(4, 8))
        stages = [extreme_stage(rng, int(rng.choice([1, 2, 3])), "".join(rng.permutation(
            list("SDY"))[:int(rng.integers(1, 4))]), interval, bool(seed % 2), seed >= 3)
            for _ in range(2)]
        frames = frames_of(rng, 2, 5, 6, 1)
        frames[0, :2], frames[1, :2] = 255, 0
        return [(LUT(tuple(stages), interval=interval, name=f"extreme {seed}"), frames, "")]


@case("extreme single stages")
def _extreme_single():
    rng = np.random.default_rng(26)
    frames = frames_of(rng, 1, 3, 4, 2)
    return [(LUT((extreme_stage(rng, r, patterns, 7, with_base=v == 1, with_taps=v == 2),), 7),
             frames, f"r={r} {patterns} variant {v}")
            for r, patterns, v in [(1, "SDY", 0), (2, "S", 1), (3, "S", 2), (4, "SDY", 1),
                                   (2, "SDY", 0), (8, "S", 0)]]


@case("ties, two patterns")
def _ties():
    # Pixels on multiples of q/2 make every sum a multiple of q/2, and divisor 2 with bias 0.5
    # puts many outputs exactly on .5. S+Y is a two-pattern stage no published layout has.
    rng = np.random.default_rng(5)
    tables = [rng.integers(-8, 8, (grid_size(7) ** 4, 4), dtype=np.int8) for _ in range(2)]
    lut = LUT((Stage(2, ("S", "Y"), tables, 2.0, 0.5, "reflect"),), interval=7)
    return [(lut, (rng.integers(0, 4, (1, 6, 5, 2)) * 64).astype(np.uint8), "")]


def constant_luts() -> list[tuple[LUT, int]]:
    """Constant tables ``v``: every rotation interpolates to ``v`` exactly, so the sum is
    ``4 v`` and divisor 8 puts it on a tie, for the lookup and (with a base) the shift
    rounding alike. Each LUT with the output that rounds half to even."""
    luts = []
    for base in (None, np.zeros((2, 2, 5, 5), np.int16)):
        for bias in (0, 1):
            for v in (1, 3, 5, -1, 127):
                table = np.full((9**4, 4), v, np.int8)
                stage = Stage(2, ("S",), (table,), 8, bias, "edge", base)
                luts.append((LUT((stage,), interval=5, name=f"v={v} bias={bias} "
                                 f"base={base is not None}"), max(0, round(v / 2 + bias))))
    return luts


@case("rounding ties of constant tables")
def _constant_tables():
    return [(lut, np.zeros((1, 2, 3, 1), np.uint8), "") for lut, _ in constant_luts()]


@case("channels 1 to 5")
def _channels():
    rng = np.random.default_rng(1)
    lut = random_lut(rng, 5, "mulut", 2)
    return [(lut, frames_of(rng, 1, 6, 7, c), f"{c} channels") for c in range(1, 6)]


@case("batch")
def _batch():
    rng = np.random.default_rng(3)
    frames = frames_of(rng, 3, 5, 6, 3)
    frames[1] = 255 - frames[0]  # frames differ: a batch bug that reuses one shows
    return [(random_lut(rng, 6, "srlut", 4), frames, "")]


def flat_frames(rng) -> list[np.ndarray]:
    """All 0, all 255, and half of each: every tap at a grid end."""
    half = np.zeros((1, 5, 6, 2), np.uint8)
    half[:, :, 3:] = 255
    return [np.zeros((1, 5, 6, 2), np.uint8), np.full((1, 5, 6, 2), 255, np.uint8), half]


@case("flat images, simplex")
def _flat_simplex():
    rng = np.random.default_rng(31)
    luts = [random_lut(rng, 4, "mulut", 4), with_base(random_lut(rng, 5, "srlut", 2), rng),
            with_taps(random_lut(rng, 6, "srlut", 3), rng, 3)]
    return [(lut, frames, f"{lut.name} {frames.max()}") for lut in luts
            for frames in flat_frames(rng)]


for _name in bundled.names():
    _layered = any(isinstance(s, LayeredStage) for s in bundled.load_bundled(_name).stages)

    @case(f"bundled {_name}", layered=_layered)
    def _bundled_case(name=_name):
        rng = np.random.default_rng(7)
        return [(bundled.load_bundled(name), frames_of(rng, 1, 6, 7, 3), "")]


# (blocks, r, max shift, share of int8-wide tables): 1 to 8 blocks, r = 1..5 (C = r*r = 1, 4,
# 9, 16, 25 channels: pointwise divisors 16 to 400, lanes partly filled, 25 inputs too many for
# 16-bit sums), shifts from none to MAX_SHIFT, saturating tables that hit every clamp.
LAYERED_CASES = [(1, 4, 0, 0.15), (2, 4, 2, 0.15), (2, 4, MAX_SHIFT, 0.15),
                 (3, 4, MAX_SHIFT, 1.0), (4, 4, 3, 0.15), (8, 4, 1, 0.15), (2, 3, 2, 0.3),
                 (2, 2, 3, 0.5), (2, 2, 0, 0.15), (1, 1, 0, 0.15), (2, 1, 1, 1.0),
                 (1, 5, 2, 0.15)]
for _blocks, _r, _shift, _extreme in LAYERED_CASES:
    @case(f"layered {_blocks} blocks r={_r} shifts {_shift} wide {_extreme}", layered=True)
    def _layered_case(blocks=_blocks, r=_r, max_shift=_shift, extreme=_extreme):
        rng = np.random.default_rng(blocks * 100 + r * 10 + max_shift)
        lut = random_layered_lut(rng, blocks, r=r, max_shift=max_shift, extreme=extreme)
        saturated = frames_of(rng, 1, 7, 9, 3)
        saturated[0, :2], saturated[0, -2:] = 255, 0  # the clamps at 0 and 255
        # 37 columns: one full 32-pixel vector and a partial one; 19 rows: a few bands.
        return [(lut, frames_of(rng, 1, 19, 37, 2), ""), (lut, saturated, "saturated rows"),
                *[(lut, frames_of(rng, 1, *shape), "edge size")
                  for shape in [(1, 1), (1, 6), (6, 1), (3, 5)]],
                (lut, frames_of(rng, 1, 2, 2, 4), "4 channels")]


@case("layered, every shift", layered=True)
def _every_shift():
    """Every (dy, dx) shift of a pointwise input within +-MAX_SHIFT, in 4 layers' worth of
    shifts per model, on frames taller than twice the largest shift."""
    rng = np.random.default_rng(5)
    stage = random_layered_stage(rng, 2, max_shift=MAX_SHIFT)
    grid = np.array([(dy, dx) for dy in range(-MAX_SHIFT, MAX_SHIFT + 1)
                     for dx in range(-MAX_SHIFT, MAX_SHIFT + 1)]).T
    n_in = stage.blocks[0][1].inputs
    frames = frames_of(rng, 1, 2 * MAX_SHIFT + 3, 40)
    items = []
    for start in range(0, grid.shape[1], 4 * n_in):
        chunk = np.resize(grid[:, start:start + 4 * n_in], (2, 4 * n_in)).astype(np.int8)
        blocks = tuple((dw, TableLayer(pw.kind, pw.tables, pw.steps,
                                       chunk[:, j * n_in:(j + 1) * n_in]))
                       for j, (dw, pw) in enumerate(stage.blocks * 2))
        items.append((LUT((LayeredStage(stage.r, blocks, stage.low, stage.up),),
                          name=f"shifts {start}"), frames, ""))
    return items


@case("layered, tables at the int8 extremes", layered=True)
def _layered_extremes():
    """Every entry -128 or 127: every int16 sum at its largest, every clamp reached."""
    rng = np.random.default_rng(7)
    stage = random_layered_stage(rng, 2, max_shift=3, extreme=1.0)

    def extreme(layer, levels=HIGH_LEVELS):
        need_ = np.vectorize(lambda s: table_entries(int(s), levels))(layer.steps)
        used = np.arange(layer.tables.shape[2]) < need_[..., None]  # the rest must stay 0
        t = np.where(rng.random(layer.tables.shape) < 0.5, -128, 127)
        t[:, 0], t[:, -1] = -128, 127  # one output channel all -128, one all 127
        return TableLayer(layer.kind, (t * used).astype(np.int8), layer.steps, layer.shifts)

    stage = LayeredStage(stage.r, tuple((extreme(dw), extreme(pw)) for dw, pw in stage.blocks),
                         extreme(stage.low, LOW_LEVELS), extreme(stage.up))
    lut = LUT((stage,), name="extreme")
    every_low_bit = np.array([0, 1, 2, 3, 126, 127, 128, 129, 252, 253, 254, 255],
                             np.uint8).reshape(1, 3, 4, 1)
    return [(lut, frames_of(rng, 1, 11, 40), ""), (lut, every_low_bit, "every low-bit value")]


@case("layered, edge sizes", layered=True)
def _layered_edges():
    """Sizes not a multiple of the vector widths (16, 32) or of a call (128 pixels), single rows
    and columns (every read clamped)."""
    rng = np.random.default_rng(37)
    lut = random_layered_lut(rng, 2, max_shift=3, extreme=0.3)
    return [(lut, frames_of(rng, 1, *shape), "") for shape in [
        (1, 1), (1, 37), (37, 1), (2, 2), (5, 33), (3, 129), (4, 160), (1, 6), (5, 1)]]


@case("layered, largest shifts on small planes", layered=True)
def _largest_shifts():
    # Shifts of MAX_SHIFT on planes smaller than the shift: every shifted read clamps to the
    # border, in the rotated plane's own (W x H) frame.
    rng = np.random.default_rng(21)
    stage = random_layered_stage(rng, 2, r=2, max_shift=2)
    blocks = []
    for dw, pw in stage.blocks:
        shifts = rng.choice([-MAX_SHIFT, MAX_SHIFT, 0, 1], size=(2, pw.inputs)).astype(np.int8)
        blocks.append((dw, TableLayer("pointwise", pw.tables, pw.steps, shifts)))
    lut = LUT((LayeredStage(stage.r, tuple(blocks), stage.low, stage.up),), name="max-shift")
    return [(lut, frames_of(rng, 1, *shape), "") for shape in [(5, 7), (1, 1), (2, 17), (3, 2)]]


def _mixed(order: str) -> Items:
    """Simplex and layered stages in ``order``: each stage reads the previous one's uint8 output
    whatever its kind (two models of each order)."""
    rng = seeded(order)
    simplex = [Stage(1, ("S",), (rng.integers(-128, 128, (17**4, 1), dtype=np.int8),), 1, 0,
                     "edge"), random_lut(rng, 4, "srlut", 2).stages[0]]
    two_patterns = Stage(1, ("S", "D"), tuple(rng.integers(-128, 128, (17**4, 1), dtype=np.int8)
                                             for _ in "SD"), 2, 128, "edge")
    layered = [random_layered_stage(rng, 2, r=2, max_shift=1),
               random_layered_stage(rng, 1, r=2, max_shift=2), random_layered_stage(rng, 1, r=1)]
    luts = {"simplex, layered": [(simplex[0], layered[1]), (two_patterns, layered[0])],
            "layered, simplex": [(layered[0], simplex[1]), (layered[1], two_patterns)],
            "layered, layered": [(layered[1], layered[2]), (layered[0], layered[0])],
            # the middle one a multi-pattern simplex stage of r = 1
            "layered, simplex, layered": [(layered[1], random_lut(rng, 4, "mulut", 2).stages[0],
                                           layered[2])]}[order]
    return [(LUT(stages, interval=4, name=order), frames_of(rng, 2, 5, 6, 2), "")
            for stages in luts]


for _order in ("simplex, layered", "layered, simplex", "layered, layered",
               "layered, simplex, layered"):
    case(f"mixed {_order}", layered=True)(functools.partial(_mixed, _order))


@case("layered, batch", layered=True)
def _layered_batch():
    rng = np.random.default_rng(12)
    frames = frames_of(rng, 3, 5, 4, 3)
    frames[1] = 255 - frames[0]
    return [(random_layered_lut(rng, 2, r=2, max_shift=2), frames, "")]


@case("flat images, layered", layered=True)
def _flat_layered():
    rng = np.random.default_rng(32)
    luts = [random_layered_lut(rng, 2, max_shift=2, extreme=0.5), random_layered_lut(rng, 1, r=2)]
    return [(lut, frames, f"{lut.name} {frames.max()}") for lut in luts
            for frames in flat_frames(rng)]


@functools.cache
def items_of(name: str) -> Items:
    """A case's LUTs and frames, built once for every backend (the references are shared)."""
    items = CASES[name][0]()
    assert items, f"case {name} checks nothing"
    return items


def pairs() -> list:
    """(backend, case) for every case a backend applies to."""
    return [pytest.param(b.name, name, id=f"{b.name}-{name}") for b in BACKENDS
            for name, (_, layered) in CASES.items() if layered or not b.layered_only]


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("backend, name", pairs())
def test_matches_reference(backend, name, state):
    backend = ready(backend)
    items = items_of(name)
    if backend.max_items and len(items) > backend.max_items:
        items = [items[i] for i in np.linspace(0, len(items) - 1, backend.max_items).astype(int)]
    for lut, frames, what in items:
        check(backend, state, lut, frames, f"{name}: {lut.name} {what}")


def test_constant_tables_round_half_to_even_in_the_reference():
    """The rounding-ties case is what it says: the spec itself rounds half to even."""
    for lut, want in constant_luts():
        got = upscale_reference(np.zeros((2, 3, 1), np.uint8), lut)
        assert (got == want).all(), (lut.name, np.unique(got), want)


@pytest.mark.parametrize("backend, name", [
    pytest.param(b.name, name, id=f"{b.name}-{name}") for b in BACKENDS if not b.layered_only
    for name in CONFORMANCE_NAMES])
def test_golden_vectors(backend, name, state):
    """The independent implementation's outputs (../shared/conformance), RGB and gray; a frame
    too large for a slow backend is cropped and compared with the reference instead."""
    backend = ready(backend)
    lut, z = conformance_lut(name)
    for key in ("input", "input_gray"):
        if key not in z:
            continue
        frames = z[key][None] if z[key].ndim == 3 else z[key][None, :, :, None]
        want = z[key.replace("input", "expected")].reshape(
            frames.shape[0], frames.shape[1] * lut.scale, frames.shape[2] * lut.scale, -1)
        if backend.golden_work and work(lut, frames.shape) > backend.golden_work:
            check(backend, state, lut, frames, f"{name} {key}, cropped")
        else:
            assert_images_equal(backend.upscale(lut, frames, state), want,
                                f"{name} {key} on {backend.name}")


SHIFTLUT_FOLDERS = ["s0_x4", "s1_x4", "s1_x4_float32", "s2_x4_shift2"]


@pytest.mark.parametrize("backend, folder", [
    pytest.param(b.name, folder, id=f"{b.name}-{folder}") for b in BACKENDS
    for folder in SHIFTLUT_FOLDERS])
def test_layered_golden_vectors(backend, folder, state):
    """The ShiftLUT authors' own script's outputs for their six inputs; an input too large for a
    slow backend is compared on a crop with the reference instead."""
    from lutsr.importers import import_shiftlut

    backend = ready(backend)
    path = need(CONFORMANCE / "shiftlut" / folder)
    lut = import_shiftlut(path)
    z = dict(np.load(path / "vectors.npz"))
    names = [k[len("input_"):] for k in z if k.startswith("input_")]
    assert len(names) == 6, names
    for which in names:
        img = z[f"input_{which}"]
        frames = img[None] if img.ndim == 3 else img[None, :, :, None]
        if backend.golden_work and work(lut, frames.shape) > backend.golden_work:
            check(backend, state, lut, frames, f"{folder} {which}, cropped")
            continue
        got = backend.upscale(lut, frames, state)
        assert_images_equal(got.reshape(z[f"expected_{which}"].shape), z[f"expected_{which}"],
                            f"{folder} {which} on {backend.name}")
