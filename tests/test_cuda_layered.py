"""The cuda backend on layered stages: what only it has (chunks of planes, launches).

Its parity with the reference and the ShiftLUT golden vectors is
``test_parity.py``'s. As in ``test_cuda.py``: there is no GPU here or in CI,
``NUMBA_ENABLE_CUDASIM=1`` must be set before numba is imported, so the
simulator cases run in one subprocess (this file run as a script prints one
JSON line per case of :data:`SIM_CASES`) and :func:`test_simulator` asserts
each. Launches are shrunk to a few threads per block and a grid shallower than
the planes times rotations, so every launch spans several blocks and the
kernels' loops over planes run; the feature-memory budget is shrunk so planes
go in several chunks.

The host-side pieces (block destinations, chunk sizes) and the PTX compile of
every kernel for a real GPU run in the normal process.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from conftest import assert_images_equal, random_layered_lut
from cudasim import check, run_cases, simulate

import lutsr
from lutsr import LUT
from lutsr.reference import upscale_reference

# --------------------------------------------------------------------------- simulator cases
# Each case runs in the simulator subprocess; it raises on failure and may
# call pytest.skip. Imports of numba.cuda stay inside the functions.


@contextlib.contextmanager
def _launch_config(threads=4, max_grid_z=3, feature_bytes=None):
    """Small launches for both modules (simplex stages of a mixed model too)."""
    from lutsr._cuda import layered as cuda_layered
    from lutsr._cuda import simplex

    saved = (simplex.THREADS_PER_BLOCK, simplex.MAX_GRID_Z, cuda_layered.THREADS_PER_BLOCK,
             cuda_layered.MAX_GRID_Z, cuda_layered.FEATURE_BYTES)
    simplex.THREADS_PER_BLOCK, simplex.MAX_GRID_Z = (threads, 2), max_grid_z
    cuda_layered.THREADS_PER_BLOCK, cuda_layered.MAX_GRID_Z = threads, max_grid_z
    if feature_bytes is not None:
        cuda_layered.FEATURE_BYTES = feature_bytes
    try:
        yield
    finally:
        (simplex.THREADS_PER_BLOCK, simplex.MAX_GRID_Z, cuda_layered.THREADS_PER_BLOCK,
         cuda_layered.MAX_GRID_Z, cuda_layered.FEATURE_BYTES) = saved


def _device_matches(img: np.ndarray, lut: LUT, what: str, expected=None) -> None:
    """Upscale ``img`` on the (simulated) device; compare with ``expected`` or the spec."""
    from numba import cuda

    got = lutsr.upscale(cuda.to_device(img), lut, backend="cuda")
    assert type(got).__module__.startswith("numba.cuda"), f"{what}: got {type(got)}"
    if expected is None:
        expected = upscale_reference(img, lut)
    assert_images_equal(got.copy_to_host(), expected, what)


def _chunks_and_launches():
    # 6 planes (2 frames x 3 channels) with a budget of 4 planes per chunk:
    # chunks of 4 and 2 (the second starts at plane 4, frame 1 channel 1), and
    # 16 > 3 rotated planes per launch, so the kernels' z loops run too.
    from lutsr._cuda import layered as cuda_layered

    rng = np.random.default_rng(20)
    lut = random_layered_lut(rng, 2, r=2, max_shift=2)
    img = rng.integers(0, 256, (2, 3, 5, 3), dtype=np.uint8)
    names = ("_first_kernel", "_depthwise_kernel", "_pointwise_kernel", "_up_kernel")
    saved = {name: getattr(cuda_layered, name) for name in names}
    launches = []

    class Spy:  # records each launch, then launches
        def __init__(self, name):
            self.name = name

        def __getitem__(self, config):
            launches.append((self.name, config))
            return saved[self.name][config]

    budget = 4 * 2 * 4 * lut.stages[0].channels * 3 * 5
    try:
        for name in names:
            setattr(cuda_layered, name, Spy(name))
        with _launch_config(feature_bytes=budget):
            _device_matches(img, lut, "6 planes in chunks of 4")
    finally:
        for name, kernel in saved.items():
            setattr(cuda_layered, name, kernel)
    # Per chunk: block 0's two depthwise layers in one launch, then PW0, DW1,
    # PW1, then up.
    per_chunk = ["_first_kernel", "_pointwise_kernel", "_depthwise_kernel",
                 "_pointwise_kernel", "_up_kernel"]
    assert [name for name, _ in launches] == per_chunk * 2, launches
    first, up = launches[0][1][:2], launches[4][1][:2]  # (blocks, threads), not the stream
    assert first == ((4, 1, 3), (4, 1, 1)), first  # 15 pixels in blocks of 4, z = 3 of 16
    assert up == ((4, 1, 3), (4, 1, 1)), up  # z = 3 of the chunk's 4 planes
    assert launches[9][1][:2] == ((4, 1, 2), (4, 1, 1)), launches[9]  # the last 2 planes
    # Still exact with one plane per chunk (and a budget below one plane).
    with _launch_config(feature_bytes=1):
        _device_matches(img, lut, "one plane per chunk")
    # The device tables are the layers' expanded tables, as int16.
    from lutsr._cuda import runner
    from lutsr.layered import HIGH_LEVELS, expanded_tables

    first = runner.device_model(lut, 0).device_stages[0].first.copy_to_host()
    assert first.dtype == np.int16
    assert np.array_equal(first, expanded_tables(lut.stages[0].blocks[0][0], HIGH_LEVELS))


def _numpy_round_trip():
    rng = np.random.default_rng(23)
    lut = random_layered_lut(rng, 1, r=2, max_shift=1)
    img = rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    got = lutsr.upscale(img, lut, backend="cuda")
    assert isinstance(got, np.ndarray)
    assert_images_equal(got, upscale_reference(img, lut), "numpy in, numpy out")


SIM_CASES = {
    "chunks_and_launches": _chunks_and_launches,
    "numpy_round_trip": _numpy_round_trip,
}


@pytest.fixture(scope="module")
def sim_results():
    return simulate(__file__)


@pytest.mark.parametrize("case", list(SIM_CASES))
def test_simulator(case, sim_results):
    check(case, *sim_results)


# --------------------------------------------------------------------------- host side


@pytest.mark.parametrize("r", [1, 2, 3, 4, 5])
def test_block_sources_rotate_pixel_shuffled_planes_back(r):
    # Guards the one permutation the up kernel relies on: pixel (i, j) sits at
    # a rotated place in np.rot90(plane, k), and its r x r output block, once
    # the whole rotated output is rotated back by -k, lands on (i, j)'s block
    # turned in place. Label every output value by (rotated pixel, m) and check.
    from lutsr._cuda.layered import block_sources

    source = block_sources(r)
    H, W = 3, 5
    index = np.arange(H * W).reshape(H, W)
    for k in range(4):
        rotated = np.rot90(index, k)  # which source pixel sits where
        hk, wk = rotated.shape
        labels = (rotated[:, :, None] * r * r + np.arange(r * r)).reshape(hk, wk, r, r)
        out = np.rot90(labels.transpose(0, 2, 1, 3).reshape(hk * r, wk * r), -k)
        blocks = out.reshape(H, r, W, r).transpose(0, 2, 1, 3).reshape(H, W, r * r)
        want = index[:, :, None] * r * r + source[k]  # position m holds column source[k, m]
        assert (blocks == want).all(), f"r={r} k={k}"


def test_chunk_planes_stays_within_the_budget():
    from lutsr._cuda import layered as cuda_layered

    per_plane = 2 * 4 * 16 * 20 * 30
    budget = cuda_layered.FEATURE_BYTES
    assert cuda_layered.chunk_planes(10**6, 16, 20, 30) == budget // per_plane
    assert cuda_layered.chunk_planes(3, 16, 20, 30) == 3
    # A plane over budget still runs, alone.
    assert cuda_layered.chunk_planes(5, 16, 4000, 4000) == 1


@pytest.mark.parametrize("layout", ["C", "A"])
def test_kernels_compile_for_a_real_gpu(layout):
    # The simulator runs the kernels as Python; numba's real CUDA compiler
    # types them strictly. PTX for an H100 (compute capability 9.0) needs only
    # NVVM, no GPU, and catches untypable code and device-function calls
    # (min, max), which need a driver to compile. "A": strided input/output
    # views (CuPy/torch) and feature buffers from a caller's allocator.
    from numba import cuda
    from numba.cuda.cudadrv import nvvm

    from bench.gpu_resources import kernel_signatures

    if not nvvm.is_available():
        pytest.skip("no NVVM (CUDA toolkit) to compile with")
    for name, (kernel, sig) in kernel_signatures(layout).items():
        if name.startswith("layered"):
            ptx, _ = cuda.compile_ptx(kernel, sig, cc=(9, 0))
            assert ".entry" in ptx and "ld.global" in ptx, name


if __name__ == "__main__":
    run_cases(SIM_CASES, _launch_config)
