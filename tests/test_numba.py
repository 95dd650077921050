"""The numba CPU backend's own contract: strided arrays, threads, forks, allocations.

Its parity with the reference and the golden vectors, on every kernel path (portable,
AVX-512, and the paths of layered stages), is ``test_parity.py``'s; here are the
building blocks it rests on (padding as index maps, the rounding tables) and what only
this backend has.
"""

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_GUARD_S, assert_images_equal, random_lut

from lutsr import LUT, Stage
from lutsr._cpu import (
    NumbaRunner,
    avx512bw_available,
    power_of_two_rounding,
    vnni_available,
)
from lutsr._cpu.kernels import MARGIN
from lutsr.indexmaps import padded_index, rotated_offsets, tap_indices
from lutsr.reference import upscale_reference
from lutsr.rounding import rounding_table


def upscale(runner: NumbaRunner, frames: np.ndarray) -> np.ndarray:
    """Run ``frames`` (N, H, W, C) through ``runner`` into a fresh C-contiguous output."""
    n, h, w, c = frames.shape
    s = runner.lut.scale
    out = np.full((n, h * s, w * s, c), 77, np.uint8)  # not zeros: unwritten pixels show
    runner.run(frames, out)
    return out


#: Kernels to test: the portable ones, and the AVX-512 ones where the CPU has them.
KERNELS = ["portable", "avx512"] if avx512bw_available() else ["portable"]


def make_runner(lut: LUT, threads: int, kernel: str) -> NumbaRunner:
    """A runner that uses ``kernel`` (see :data:`KERNELS`) wherever it applies."""
    saved = os.environ.get("LUTSR_PORTABLE_KERNEL")
    os.environ["LUTSR_PORTABLE_KERNEL"] = "1" if kernel == "portable" else "0"
    try:
        runner = NumbaRunner(lut, threads)
    finally:
        if saved is None:
            del os.environ["LUTSR_PORTABLE_KERNEL"]
        else:
            os.environ["LUTSR_PORTABLE_KERNEL"] = saved
    wide = kernel == "avx512"
    assert [(ps.vnni, ps.lanes is not None) for ps in runner._stages] == [
        (wide and vnni_available() and s.r == 4, wide) for s in lut.stages]
    return runner


def check(lut: LUT, frames: np.ndarray, threads: int = 1, what: str = "") -> None:
    """Exact parity of the numba runner, with each of :data:`KERNELS`, with the reference."""
    want = upscale_reference(np.ascontiguousarray(frames), lut)
    for kernel in KERNELS:
        got = upscale(make_runner(lut, threads, kernel), frames)
        assert_images_equal(got, want, f"{what or lut.name} ({kernel} kernel)")


def frames_of(rng, n, h, w, c):
    return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)


# --------------------------------------------------------------------------- building blocks


@pytest.mark.parametrize("padding", ["reflect", "edge"])
def test_all_sides_padding_equals_every_rotations_own_padding(padding):
    """The kernels read one plane padded on all sides at rotated offsets.

    Guards the assumption the whole backend rests on, including sizes 1 and 2
    where numpy's reflect padding wraps around more than once.
    """
    tables = tuple(np.zeros((17**4, 1), np.int8) for _ in range(3))
    stage = Stage(1, ("S", "D", "Y"), tables, 1, 0, padding)
    for h in range(1, 9):
        for w in (1, 2, 3, 5, 8):
            rows, cols = tap_indices(stage, h, w)
            prow, pcol = padded_index(h, padding, MARGIN), padded_index(w, padding, MARGIN)
            for p, pattern in enumerate(stage.patterns):
                off = rotated_offsets(pattern)
                for k in range(4):
                    for t in range(4):
                        dy, dx = off[k, t]
                        np.testing.assert_array_equal(prow[2 + np.arange(h) + dy], rows[p, k, t])
                        np.testing.assert_array_equal(pcol[2 + np.arange(w) + dx], cols[p, k, t])


def test_rounding_table_uses_the_reference_expression():
    stage = Stage(1, ("S", "D"), tuple(np.zeros((17**4, 1), np.int8) for _ in range(2)),
                  12, 127, "edge")
    table, s_min = rounding_table(stage, 4)
    s = np.arange(s_min, s_min + len(table))
    assert s_min == -4 * 2 * 128 * 16 and s[-1] == 4 * 2 * 127 * 16
    want = np.clip(np.round((s / 16) / 12 + 127), 0, 255)
    np.testing.assert_array_equal(table, want)


def test_power_of_two_rounding_is_recognised_only_where_it_is_exact():
    def stage(divisor, bias, patterns="S"):
        return Stage(2, tuple(patterns), tuple(np.zeros((9**4, 4), np.int8) for _ in patterns),
                     divisor, bias, "edge")

    # q = 32: q * divisor = 2**m with an integer bias -> the shift path.
    assert power_of_two_rounding(stage(1, 0), 5) == (5, 0)
    assert power_of_two_rounding(stage(0.25, -3, "SD"), 5) == (3, -3)
    assert power_of_two_rounding(stage(8, 127), 5) == (8, 127)
    # Anything else keeps the lookup: not a power of two, a fractional bias,
    # or no rounding at all (q * divisor = 1).
    assert power_of_two_rounding(stage(3, 0), 5) is None
    assert power_of_two_rounding(stage(12, 127, "SDY"), 5) is None
    assert power_of_two_rounding(stage(1, 0.5), 5) is None
    assert power_of_two_rounding(stage(1 / 32, 0), 5) is None



# --------------------------------------------------------------------------- strided arrays


@pytest.fixture(scope="module")
def lut_x2():
    return random_lut(np.random.default_rng(11), 6, "mulut", 2)


def test_non_contiguous_inputs(lut_x2):
    rng = np.random.default_rng(12)
    base = frames_of(rng, 2, 14, 18, 4)
    views = {
        "channel slice": base[:, :, :, 1:4],
        "every other pixel": base[:, ::2, ::3, :],
        "flipped (negative strides)": base[:, ::-1, ::-1, :],
        "transposed": base.transpose(0, 2, 1, 3),
        "gray view (H, W) -> (1, H, W, 1)": base[0, :, :, 2].copy()[None, :, :, None],
        "single channel of RGBA": base[:1, :, :, 3:],
    }
    runner = NumbaRunner(lut_x2, 2)
    for what, frames in views.items():
        assert not frames.flags.c_contiguous or what.startswith("gray")
        want = upscale_reference(np.ascontiguousarray(frames), lut_x2)
        assert_images_equal(upscale(runner, frames), want, what)


def test_read_only_input(lut_x2):
    frames = frames_of(np.random.default_rng(13), 1, 5, 6, 3)
    frames.flags.writeable = False
    assert_images_equal(upscale(NumbaRunner(lut_x2, 1), frames),
                        upscale_reference(frames, lut_x2), "read-only")


def test_non_contiguous_outputs_are_written_in_place(lut_x2):
    rng = np.random.default_rng(14)
    frames = frames_of(rng, 2, 7, 5, 3)
    want = upscale_reference(frames, lut_x2)
    runner = NumbaRunner(lut_x2, 2)
    big = np.zeros((2, 14, 10, 5), np.uint8)
    runner.run(frames, big[..., 1:4])  # channel slice of a wider array
    assert_images_equal(big[..., 1:4], want, "channel slice")
    assert (big[..., 0] == 0).all() and (big[..., 4] == 0).all(), "wrote outside out"
    flipped = np.zeros((2, 14, 10, 3), np.uint8)
    runner.run(frames, flipped[:, ::-1])  # negative stride: through scratch
    assert_images_equal(flipped[:, ::-1], want, "flipped")
    fortran = np.zeros((2, 14, 10, 3), np.uint8, order="F")
    runner.run(frames, fortran)
    assert_images_equal(fortran, want, "Fortran order")
    spaced = np.zeros((2, 28, 10, 3), np.uint8)
    runner.run(frames, spaced[:, ::2])
    assert_images_equal(spaced[:, ::2], want, "every other row")
    assert (spaced[:, 1::2] == 0).all(), "wrote between the rows of out"


# --------------------------------------------------------------------------- threads


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_thread_counts_and_more_bands_than_rows(threads):
    rng = np.random.default_rng(20 + threads)
    lut = random_lut(rng, 5, "mulut", 3)
    for h in (1, 2, 3, 17):  # 8 threads x 4 bands per thread > rows
        check(lut, frames_of(rng, 1, h, 9, 2), threads, f"threads={threads} h={h}")


def test_concurrent_calls_on_one_runner():
    rng = np.random.default_rng(30)
    lut = random_lut(rng, 5, "mulut", 2)
    runner = NumbaRunner(lut, 2)
    # Different sizes per thread: per-thread scratch must not be shared.
    jobs = [frames_of(rng, 1, 6 + i % 3, 9 - i % 2, 1 + i % 3) for i in range(6)]
    wants = [upscale_reference(f, lut) for f in jobs]
    results = [None] * len(jobs)
    errors = []
    start = threading.Barrier(len(jobs))

    def work(i):
        try:
            start.wait()
            for _ in range(5):
                got = upscale(runner, jobs[i])
                if not np.array_equal(got, wants[i]):
                    results[i] = got
                    return
            results[i] = got
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=HANG_GUARD_S)
    assert not errors, errors
    for i, (got, want) in enumerate(zip(results, wants, strict=True)):
        assert_images_equal(got, want, f"thread {i}")


@pytest.mark.parametrize("threads", [1, 2])
def test_steady_state_allocates_nothing_per_frame(threads):
    import tracemalloc

    rng = np.random.default_rng(40)
    lut = random_lut(rng, 4, "mulut", 4)
    runner = NumbaRunner(lut, threads)
    if threads > 1:
        # The bands of a 2-thread plan, in order on this thread: the pool's own Futures
        # and lazily started workers vary with scheduling (per-frame bytes under load).
        runner._parallel = lambda count, task: [task(i) for i in range(count)]
    frames = frames_of(rng, 1, 80, 120, 3)
    out = np.empty((1, 320, 480, 3), np.uint8)  # 460 kB
    runner.run(frames, out)  # first frame of this size builds the plan
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(3):
            runner.run(frames, out)
        end, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The intermediate stage buffer would be 29 kB, a scratch output 460 kB; what
    # remains is Python's small objects (views, closures).
    assert peak - start < 16_000 and end - start < 8_000, (peak - start, end - start)


def test_bad_thread_count():
    lut = random_lut(np.random.default_rng(0), 7, "srlut", 2)
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="threads"):
            NumbaRunner(lut, bad)


def test_loading_the_backend_leaves_scipy_alone_and_working():
    """lutsr._cpu keeps numba from importing SciPy (0.5 s of a new process's first call).

    The placeholder it uses for that must not leak: SciPy, and numba's own use
    of it for np.dot, still work afterwards.
    """
    import subprocess
    import sys

    pytest.importorskip("scipy")
    code = (
        "import sys, numpy as np, numba\n"
        "import lutsr._cpu\n"
        "assert 'scipy.linalg' not in sys.modules, 'numba imported scipy.linalg'\n"
        "import scipy.linalg.cython_blas as blas\n"
        "assert blas.__file__, 'the placeholder leaked'\n"
        "dot = numba.njit(lambda a, b: np.dot(a, b))\n"
        "assert dot(np.ones((2, 2)), np.ones(2)).tolist() == [2.0, 2.0]\n"
    )
    root = Path(__file__).resolve().parents[1]  # lutsr importable even if not installed
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=HANG_GUARD_S, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
# Forking a threaded process is the point (a user's fork after upscaling); 3.12+ warn of it.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_runner_works_in_a_forked_child():
    """A pool created before fork has no threads in the child: the child must not wait on it."""
    import multiprocessing

    rng = np.random.default_rng(50)
    lut = random_lut(rng, 6, "srlut", 2)
    runner = NumbaRunner(lut, 2)
    frames = frames_of(rng, 1, 16, 9, 3)
    upscale(runner, frames)  # starts the parent's pool worker
    want = upscale_reference(frames, lut)
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=lambda: send.send(upscale(runner, frames)))  # fork: no pickling
    child.start()
    try:
        assert receive.poll(HANG_GUARD_S), "the forked child hung"
        got = receive.recv()
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    assert_images_equal(got, want, "forked child")


def test_caller_never_waits_for_a_busy_pool(monkeypatch):
    """With the pool's workers busy elsewhere, the calling thread does every band itself."""
    from concurrent.futures import ThreadPoolExecutor

    from lutsr._cpu import runner

    rng = np.random.default_rng(51)
    lut = random_lut(rng, 6, "srlut", 2)
    frames = frames_of(rng, 1, 12, 7, 2)
    busy, gate = ThreadPoolExecutor(1), threading.Event()
    busy.submit(gate.wait)  # the only worker is blocked until the end of the test
    monkeypatch.setattr(runner, "_pool", lambda workers: busy)
    result = []
    caller = threading.Thread(target=lambda: result.append(upscale(NumbaRunner(lut, 2), frames)))
    try:
        caller.start()
        caller.join(HANG_GUARD_S)
        assert not caller.is_alive(), "run() waited for a pool worker that never came"
    finally:
        gate.set()
        busy.shutdown()
    assert_images_equal(result[0], upscale_reference(frames, lut), "busy pool")
