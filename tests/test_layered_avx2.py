"""The AVX2 kernels of layered stages: their choice, thread counts, the API, an AVX2-only build.

Their parity with the reference and the golden vectors is ``test_parity.py``'s
(its "avx2" entry). Run here, the cases use the AVX2 kernels
(:data:`lutsr._cpu.layered_plan.AVX2` forces them on a CPU with AVX-512,
compiled for this CPU). :func:`test_avx2_build_in_a_child_process` runs this
file and the parity suite's AVX2 cases again in a child process whose numba
compiles for an AVX2-only CPU (``haswell``, every AVX-512 feature off, its own
numba cache): there the runtime must choose the AVX2 kernels by itself, and no
AVX-512 instruction may be reached.
"""

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_GUARD_S, assert_images_equal, random_layered_lut, random_layered_stage

import lutsr
from bench.helpers import AVX2_BUILD_ENV
from lutsr import LUT
from lutsr._cpu import NumbaRunner, avx512bw_available, layered_plan
from lutsr._cpu.kernels import avx2_available
from lutsr.layered import LayeredStage
from lutsr.reference import upscale_reference

pytestmark = pytest.mark.skipif(not avx2_available(), reason="numba targets no AVX2 here")


#: Set in the child process (see :func:`test_avx2_build_in_a_child_process`).
CHILD = "LUTSR_TEST_AVX2_BUILD"


@contextlib.contextmanager
def avx2_kernels():
    """Prepare runners inside the block with the AVX2 kernels (forced where AVX-512 is)."""
    saved = layered_plan.AVX2
    layered_plan.AVX2 = True
    try:
        yield
    finally:
        layered_plan.AVX2 = saved


def runner_of(lut: LUT, threads: int) -> NumbaRunner:
    """A runner whose layered stages of at most 16 channels run the AVX2 kernels."""
    with avx2_kernels():
        runner = NumbaRunner(lut, threads)
    for stage, ps in zip(lut.stages, runner._stages, strict=True):
        if isinstance(stage, LayeredStage):
            assert (ps.avx2, ps.lanes) == (stage.channels <= 16, False)
    return runner


def run(runner: NumbaRunner, frames: np.ndarray) -> np.ndarray:
    n, h, w, c = frames.shape
    s = runner.lut.scale
    out = np.full((n, h * s, w * s, c), 77, np.uint8)  # not zeros: unwritten pixels show
    runner.run(frames, out)
    return out


def check(lut: LUT, frames: np.ndarray, threads=(1, 2), what: str = "") -> None:
    want = upscale_reference(np.ascontiguousarray(frames), lut)
    for t in threads:
        assert_images_equal(run(runner_of(lut, t), frames), want,
                            f"{what or lut.name} (AVX2, {t} threads, {frames.shape})")


def frames_of(rng, n, h, w, c=1):
    return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)


def test_the_avx2_kernels_are_chosen():
    """Here with AVX-512 the AVX-512 kernels are chosen (AVX2 when forced); in the AVX2
    build, the AVX2 kernels by themselves."""
    stage = random_layered_stage(np.random.default_rng(0), 1)
    ps = layered_plan.PreparedLayered(stage)
    assert (ps.lanes, ps.avx2) == (avx512bw_available(), not avx512bw_available())
    if os.environ.get(CHILD):
        assert not avx512bw_available() and not ps.lanes and ps.avx2
    with avx2_kernels():
        assert layered_plan.PreparedLayered(stage).avx2
        # 25 channels: 25 inputs do not fit 16-bit sums, the portable kernels run.
        wide = layered_plan.PreparedLayered(random_layered_stage(np.random.default_rng(1), 1, r=5))
        assert not wide.avx2 and not wide.lanes
    saved = layered_plan.PORTABLE
    layered_plan.PORTABLE = True
    try:
        ps = layered_plan.PreparedLayered(stage)
        assert not ps.lanes and not ps.avx2
    finally:
        layered_plan.PORTABLE = saved


@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (37, 1), (2, 2), (5, 33), (3, 129),
                                   (4, 160)])
def test_thread_counts_and_more_bands_than_rows(shape):
    """One thread, and more bands than rows, on widths not a multiple of 16 or 32 pixels and on
    single rows and columns (2 threads: test_parity.py)."""
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    lut = random_layered_lut(rng, 2, max_shift=3, extreme=0.3)
    check(lut, frames_of(rng, 1, *shape), threads=(1, 8))


def test_batches_views_and_out():
    """A batch of RGBA frames, a channel slice, a flipped view and a strided output."""
    rng = np.random.default_rng(22)
    lut = random_layered_lut(rng, 2, max_shift=2)
    base = rng.integers(0, 256, (3, 12, 21, 4), dtype=np.uint8)
    with avx2_kernels():
        up = lutsr.Upscaler(lut, threads=2)
        for what, img in {"(N, H, W, C)": base, "channel slice": base[:, :, :, 1:],
                          "flipped": base[0, ::-1, ::2]}.items():
            want = upscale_reference(np.ascontiguousarray(img), lut)
            assert_images_equal(up(img), want, what)
            out = np.zeros(want.shape[:-1] + (want.shape[-1] * 2,), np.uint8)[..., ::2]
            assert up(img, out=out) is out
            assert_images_equal(out, want, f"{what}, out=")


def test_portable_kernels_beside_avx2():
    """The portable kernels still run, exact, when forced where AVX2 is (in the child: as
    compiled for an AVX2-only CPU)."""
    rng = np.random.default_rng(9)
    lut = random_layered_lut(rng, 2, max_shift=2)
    frames = frames_of(rng, 1, 7, 37, 1)
    saved = layered_plan.PORTABLE
    layered_plan.PORTABLE = True
    try:
        runner = NumbaRunner(lut, 2)
        assert not runner._stages[0].avx2 and not runner._stages[0].lanes
        got = run(runner, frames)
    finally:
        layered_plan.PORTABLE = saved
    assert_images_equal(got, upscale_reference(frames, lut), "portable")


@pytest.mark.skipif(bool(os.environ.get(CHILD)), reason="the child itself")
@pytest.mark.skipif(not avx512bw_available(), reason="the AVX2 kernels already ran natively")
def test_avx2_build_in_a_child_process():
    """This file's other tests and the parity suite's AVX2 cases as an AVX2-only CPU runs them:
    numba compiles for ``haswell`` without AVX-512 (its own cache), the runtime chooses the
    AVX2 kernels."""
    env = {**os.environ, **AVX2_BUILD_ENV, CHILD: "1", "LUTSR_PORTABLE_KERNEL": "0",
           "NUMBA_CACHE_DIR": str(Path(tempfile.gettempdir()) / "lutsr-numba-avx2-build")}
    here = Path(__file__).parent
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           __file__, str(here / "test_parity.py"), "-k", "avx2"], cwd=here.parent,
                          env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    tail = (done.stdout + done.stderr)[-3000:]
    assert done.returncode == 0, tail
    assert " passed" in tail and " failed" not in tail, tail
