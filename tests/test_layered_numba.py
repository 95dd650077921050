"""The numba kernels of layered stages: what only this backend has.

Their parity with :func:`lutsr.reference.run_layered_stage` (the spec) and the
golden vectors, on the AVX-512, AVX2, NEON and portable paths, is
``test_parity.py``'s. Here: thread counts, the public API's layouts and ``out=``,
concurrent calls, allocations, the thread pool, the portable kernels compiled for
a baseline CPU, and the building blocks (the rounding by multiply-high, rotated
offsets). Where a case runs kernels it runs both the AVX-512 kernel (where the
CPU has it) and the portable one, forced by :data:`lutsr._cpu.layered_plan.PORTABLE`.
"""

import contextlib
import os
import platform
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from conftest import (
    CONFORMANCE,
    HANG_GUARD_S,
    assert_images_equal,
    need,
    random_layered_lut,
    random_layered_stage,
    random_lut,
)

import lutsr
from lutsr import LUT
from lutsr._cpu import NumbaRunner, avx512bw_available, layered_plan
from lutsr._cpu import runner as runner_module
from lutsr.indexmaps import block_permutations
from lutsr.layered import LayeredStage
from lutsr.reference import round_half_even_div, upscale_reference

#: Kernels to test: the portable one, and the AVX-512 one where the CPU has it.
KERNELS = ["portable", "avx512"] if avx512bw_available() else ["portable"]


@contextlib.contextmanager
def kernel_switch(kernel: str):
    """Prepare runners inside the block with ``kernel`` ("portable" or "avx512")."""
    saved = layered_plan.PORTABLE
    layered_plan.PORTABLE = kernel == "portable"
    try:
        yield
    finally:
        layered_plan.PORTABLE = saved


def make_runner(lut: LUT, threads: int, kernel: str) -> NumbaRunner:
    """A runner whose layered stages use ``kernel`` (the lanes need at most 16 channels)."""
    with kernel_switch(kernel):
        runner = NumbaRunner(lut, threads)
    for stage, ps in zip(lut.stages, runner._stages, strict=True):
        if isinstance(stage, LayeredStage):
            assert ps.lanes == (kernel == "avx512" and stage.channels <= 16)
    return runner


def run(runner: NumbaRunner, frames: np.ndarray) -> np.ndarray:
    n, h, w, c = frames.shape
    s = runner.lut.scale
    out = np.full((n, h * s, w * s, c), 77, np.uint8)  # not zeros: unwritten pixels show
    runner.run(frames, out)
    return out


def check(lut: LUT, frames: np.ndarray, threads=(1, 2), what: str = "", kernels=KERNELS) -> None:
    """Exact parity with the reference, for each kernel and thread count."""
    want = upscale_reference(np.ascontiguousarray(frames), lut)
    for kernel in kernels:
        for t in threads:
            got = run(make_runner(lut, t, kernel), frames)
            assert_images_equal(got, want, f"{what or lut.name} ({kernel}, {t} threads, "
                                           f"{frames.shape})")


def frames_of(rng, n, h, w, c=1):
    return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)


@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (37, 1), (2, 2), (5, 33), (3, 129),
                                   (4, 160)])
def test_thread_counts_and_more_bands_than_rows(shape):
    """One thread, and more bands than rows, on sizes not a multiple of the vector width (32)
    or of a call (128 pixels) and on single rows and columns (2 threads: test_parity.py)."""
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    lut = random_layered_lut(rng, 2, max_shift=3, extreme=0.3)
    check(lut, frames_of(rng, 1, *shape), threads=(1, 8))


#: What numba targets to stand in for a CPU without AVX-512 (an AVX2 one).
AVX2_ENV = {"NUMBA_CPU_NAME": "haswell",
            "NUMBA_CPU_FEATURES": "+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fxsr,"
                                  "+lzcnt,+mmx,+movbe,+popcnt,+sse,+sse2,+sse3,+sse4.1,+sse4.2,"
                                  "+ssse3,+xsave"}

#: What numba targets to stand in for a baseline CPU of each architecture lutsr is tested on.
BASELINE_ENV = {"x86_64": AVX2_ENV,
                "aarch64": {"NUMBA_CPU_NAME": "generic", "NUMBA_CPU_FEATURES": ""}}

PORTABLE_SCRIPT = textwrap.dedent("""
    import numpy as np
    import lutsr
    from lutsr._cpu import avx512bw_available
    from lutsr._cpu.layered_plan import PreparedLayered
    from lutsr.importers import import_shiftlut
    from lutsr.reference import upscale_reference
    assert not avx512bw_available()
    lut = import_shiftlut(sys.argv[1])
    plan = PreparedLayered(lut.stages[0])
    assert not any(getattr(plan, path, False) for path in ("lanes", "avx2", "neon")), vars(plan)
    img = np.random.default_rng(0).integers(0, 256, (9, 37, 3), dtype=np.uint8)
    got = lutsr.upscale(img, lut, threads=2)
    print(int((got != upscale_reference(img, lut)).sum()))
""")


def test_portable_kernels_compile_for_a_baseline_cpu():
    """The portable kernels compiled (in a new process) for a baseline CPU of this machine's
    architecture (x86-64: AVX2 without AVX-512; aarch64: generic), forced: no vector path's
    intrinsics may be reached, the output is exact, and LLVM knew the CPU it was given (a
    CPU name of another architecture is ignored with a warning, which made this test vacuous
    on aarch64)."""
    folder = need(CONFORMANCE / "shiftlut" / "s2_x4_shift2")
    machine = platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64")
    if machine not in BASELINE_ENV:
        pytest.skip(f"no baseline CPU named for {machine}")
    env = {**os.environ, **BASELINE_ENV[machine], "LUTSR_PORTABLE_KERNEL": "1"}
    done = subprocess.run([sys.executable, "-c", "import sys\n" + PORTABLE_SCRIPT, str(folder)],
                          capture_output=True, text=True, env=env, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "is not a recognized" not in done.stderr, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "0", done.stdout


def test_x86_features_are_ignored_on_another_target(monkeypatch):
    """An x86 ``NUMBA_CPU_FEATURES`` left set on an aarch64 machine must not select x86
    kernels (LLVM aborts the process on their intrinsics there)."""
    from lutsr._cpu import kernels

    monkeypatch.setattr(kernels.numba.core.config, "CPU_FEATURES", AVX2_ENV["NUMBA_CPU_FEATURES"]
                        + ",+avx512f,+avx512bw")
    monkeypatch.setattr(kernels._llvm, "get_process_triple", lambda: "x86_64-unknown-linux-gnu")
    assert "+avx2" in kernels._target_features.__wrapped__()
    monkeypatch.setattr(kernels._llvm, "get_process_triple", lambda: "aarch64-unknown-linux-gnu")
    assert kernels._target_features.__wrapped__() == frozenset()


# --------------------------------------------------------------------------- the public API


@pytest.fixture(scope="module")
def layered_lut():
    return random_layered_lut(np.random.default_rng(21), 2, max_shift=2)


def test_upscale_shapes_views_and_out(layered_lut):
    rng = np.random.default_rng(22)
    lut = layered_lut
    base = rng.integers(0, 256, (2, 12, 15, 4), dtype=np.uint8)
    cases = {
        "(H, W)": base[0, :, :, 0].copy(),
        "(H, W, C)": base[0, :, :, :3].copy(),
        "(N, H, W, C)": base,
        "channel slice": base[:, :, :, 1:],
        "every other pixel, flipped": base[0, ::-2, ::2],
        "transposed": base[1].transpose(1, 0, 2),
    }
    for threads in (1, 2):
        for what, img in cases.items():
            want = upscale_reference(np.ascontiguousarray(img), lut)
            assert_images_equal(lutsr.upscale(img, lut, threads=threads), want,
                                f"{what}, {threads} threads")
            # A strided preallocated output is written in place.
            out = np.zeros(want.shape[:-1] + (want.shape[-1] * 2,), np.uint8)[..., ::2] \
                if want.ndim == 3 else np.zeros(want.shape + (2,), np.uint8)[..., 0]
            result = lutsr.upscale(img, lut, out=out, threads=threads)
            assert result is out
            assert_images_equal(out, want, f"{what}, out=, {threads} threads")


def test_concurrent_calls_on_one_runner(layered_lut):
    rng = np.random.default_rng(23)
    frames = [frames_of(rng, 1, 9, 20, 3) for _ in range(4)]
    wants = [upscale_reference(f, layered_lut) for f in frames]
    runner = NumbaRunner(layered_lut, 2)
    errors = []

    def work(i):
        try:
            for _ in range(3):
                assert_images_equal(run(runner, frames[i]), wants[i], f"thread {i}")
        except AssertionError as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


@pytest.mark.parametrize("threads", [1, 2])
def test_steady_state_allocates_nothing_per_frame(layered_lut, threads):
    """Rings, accumulators and the channel-planar frame of an interleaved output are built
    with the first frame of a size and reused after.

    With 2 threads the bands of a 2-thread plan run in order on this thread: the pool's
    own bookkeeping depends on scheduling (a Future per call freed when a worker gets to
    it, a worker started when none is idle yet, a second scratch set the first time two
    tasks overlap), so on a loaded machine it showed as per-frame bytes.
    """
    import tracemalloc

    rng = np.random.default_rng(26)
    runner = NumbaRunner(layered_lut, threads)
    if threads > 1:
        runner._parallel = lambda count, task: [task(i) for i in range(count)]
    frames = frames_of(rng, 1, 40, 60, 3)
    out = np.empty((1, 160, 240, 3), np.uint8)  # 115 kB, as the planar frame
    runner.run(frames, out)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(3):
            runner.run(frames, out)
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - start < 16_000 and end - start < 8_000, (peak - start, end - start)


def test_distinct_thread_counts_share_one_bounded_pool():
    """Each distinct ``threads=`` value once started its own pool and left it behind (317
    live threads after 32 values); every thread started now is a worker of one shared pool.

    How many workers it has is not asserted: the pool starts one whenever a task finds
    none idle yet, so on a loaded machine (a worker descheduled between finishing a band
    and saying it is idle) it can have more than the most helpers running at once.
    """
    lut = random_lut(np.random.default_rng(24), 6, "srlut", 2)
    frames = frames_of(np.random.default_rng(25), 1, 40, 8, 1)
    before = set(threading.enumerate())
    for _ in range(2):
        for threads in range(2, 10):
            run(NumbaRunner(lut, threads), frames)
    pool = runner_module._pool(1)
    started = set(threading.enumerate()) - before
    # one pool per value left 36 threads, 8 pools' workers
    assert started <= set(pool._threads), sorted(t.name for t in started)
    assert len(pool._threads) < runner_module.MAX_THREADS
    assert pool is runner_module._pool(7)
    huge = NumbaRunner(lut, 10**6)
    assert huge.threads == runner_module.MAX_THREADS


# --------------------------------------------------------------------------- building blocks


@pytest.mark.parametrize("inputs", [1, 4, 9, 16, 25])
def test_rounding_is_half_to_even_over_every_sum(inputs):
    """The kernels' rounding of ``T / (16 A)``, emulated as they compute it, over every ``T``:
    the lanes in uint16 (multiply-high), the portable kernels in 64-bit integers."""
    divisor = 16 * inputs
    T = np.arange(-2048 * inputs, 2032 * inputs + 1)
    t = T + divisor // 2 + 128 * divisor  # the sum plus the bias: never negative
    want = round_half_even_div(T, divisor)
    for bits in (16, 32):
        magic = layered_plan.division_magic(divisor, 4096 * inputs, bits)
        if bits == 16 and inputs > layered_plan.MAX_LANE_INPUTS:
            continue  # such layers run the portable kernels
        mul, shift = magic
        if bits == 16:
            assert t.min() >= 0 and t.max() < 2**16  # the int16 sum, read as uint16
            q = ((t * mul) >> 16) >> (shift - 16)
        else:
            q = (t * mul) >> shift
        tie = t == q * divisor
        got = np.where(tie, q & ~1, q) - 128
        assert np.array_equal(got, want), (inputs, bits)


def test_rotated_offsets_match_rot90():
    """A step (dy, dx) in ``np.rot90(plane, k)`` is :func:`rotate_offset` in the plane; the up
    layer's channel ``o`` lands at block position ``dest[k, o]``."""
    H, W = 9, 11
    grid = np.arange(H * W).reshape(H, W)
    for k in range(4):
        rotated = np.rot90(grid, k)
        for dy, dx in [(1, 0), (0, 1), (-2, 3)]:
            i, j = 4, 4
            y0, x0 = np.argwhere(grid == rotated[i, j])[0]
            y1, x1 = np.argwhere(grid == rotated[i + dy, j + dx])[0]
            assert (y1 - y0, x1 - x0) == layered_plan.rotate_offset(dy, dx, k)
    perm = block_permutations(4)
    dest = layered_plan.PreparedLayered(random_layered_stage(np.random.default_rng(0))).dest
    assert all(perm[k, dest[k, o]] == o for k in range(4) for o in range(16))
