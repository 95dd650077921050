"""The cuda backend on layered stages: kernels run in numba's CUDA simulator, bit-exact.

As in ``test_cuda.py``: there is no GPU here or in CI, ``NUMBA_ENABLE_CUDASIM=1``
must be set before numba is imported, so the simulator cases run in one
subprocess (this file run as a script prints one JSON line per case of
:data:`SIM_CASES`) and :func:`test_simulator` asserts each. Launches are
shrunk to a few threads per block and a grid shallower than the planes times
rotations, so every launch spans several blocks and the kernels' loops over
planes run; the feature-memory budget is shrunk in one case so planes go in
several chunks. Expected outputs come from :func:`lutsr.reference.upscale_reference`
(the spec) and, for one golden folder, from the ShiftLUT authors' own script.

The host-side pieces (block destinations, chunk sizes) and the PTX compile of
every kernel for a real GPU run in the normal process.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from conftest import (
    CONFORMANCE,
    assert_images_equal,
    need,
    random_layered_lut,
    random_layered_stage,
    random_lut,
)
from cudasim import check, run_cases, simulate

import lutsr
from lutsr import LUT
from lutsr.layered import MAX_SHIFT
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


def _random_case(shapes, blocks=1, r=4, max_shift=1, extreme=0.15, seed=0):
    def case():
        rng = np.random.default_rng(seed)
        lut = random_layered_lut(rng, blocks, r=r, max_shift=max_shift, extreme=extreme)
        for shape in shapes:
            img = rng.integers(0, 256, shape, dtype=np.uint8)
            _device_matches(img, lut, f"{blocks} block(s) r={r} shift {max_shift} {shape}")
    return case


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


def _extreme_shifts():
    # Shifts at MAX_SHIFT on planes smaller than the shift: every shifted read
    # clamps to the border, in the rotated plane's own (W x H) frame.
    from lutsr.layered import LayeredStage, TableLayer

    rng = np.random.default_rng(21)
    stage = random_layered_stage(rng, 2, r=2, max_shift=2)
    blocks = []
    for dw, pw in stage.blocks:
        shifts = rng.choice([-MAX_SHIFT, MAX_SHIFT, 0, 1], size=(2, pw.inputs)).astype(np.int8)
        blocks.append((dw, TableLayer("pointwise", pw.tables, pw.steps, shifts)))
    lut = LUT((LayeredStage(stage.r, tuple(blocks), stage.low, stage.up),), name="max-shift")
    for shape in [(5, 7), (1, 1), (2, 17), (16, 3, 2)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        _device_matches(img, lut, f"shift {MAX_SHIFT} {shape}")


def _mixed_simplex_and_layered():
    # A simplex stage then a layered one, and the other way round: the runner
    # hands each stage's uint8 output to the next whatever its kind.
    from lutsr import Stage

    rng = np.random.default_rng(22)
    simplex = random_lut(rng, 7, "srlut", 2).stages[0]
    layered = random_layered_stage(rng, 1, r=2, max_shift=2)
    img = rng.integers(0, 256, (3, 5, 2), dtype=np.uint8)
    for stages in [(simplex, layered), (layered, simplex)]:
        lut = LUT(stages, interval=7, name="mixed")
        _device_matches(img, lut, " then ".join(type(s).__name__ for s in stages))
    # Three stages, the middle one a multi-pattern simplex stage of r = 1.
    mulut = random_lut(rng, 7, "mulut", 2).stages[0]
    assert isinstance(mulut, Stage) and mulut.r == 1
    lut = LUT((layered, mulut, layered), interval=7, name="sandwich")
    _device_matches(np.ascontiguousarray(img[:2, :3]), lut, "layered, simplex r=1, layered")


def _numpy_round_trip():
    rng = np.random.default_rng(23)
    lut = random_layered_lut(rng, 1, r=2, max_shift=1)
    img = rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)
    got = lutsr.upscale(img, lut, backend="cuda")
    assert isinstance(got, np.ndarray)
    assert_images_equal(got, upscale_reference(img, lut), "numpy in, numpy out")


def _golden(folder: str, inputs: tuple[str, ...]):
    def case():
        path = need(CONFORMANCE / "shiftlut" / folder)
        import_shiftlut = getattr(lutsr, "import_shiftlut", None)
        if import_shiftlut is None:
            from lutsr import importers

            import_shiftlut = getattr(importers, "import_shiftlut", None)
        if import_shiftlut is None:
            pytest.skip("lutsr.import_shiftlut is not written yet")
        z = np.load(path / "vectors.npz")
        lut = import_shiftlut(path, int(z["scale"]))
        with _launch_config(threads=16, max_grid_z=5):
            for name in inputs:
                # The authors' own outputs, not lutsr's reference.
                _device_matches(z[f"input_{name}"], lut, f"{folder} {name}",
                                z[f"expected_{name}"])
    return case


SIM_CASES = {
    "r4_1block_gray_and_rgb": _random_case([(5, 7), (2, 3, 3)], seed=1),
    "r4_2blocks_shift2": _random_case([(5, 7)], blocks=2, max_shift=2, seed=2),
    "r4_extreme_tables": _random_case([(4, 5)], blocks=2, max_shift=2, extreme=1.0, seed=3),
    "r2_edge_sizes": _random_case([(1, 1), (1, 6), (5, 1), (3, 5)], blocks=2, r=2,
                                  max_shift=2, seed=4),
    "r3_odd_divisor_edge_sizes": _random_case([(1, 1), (1, 4), (3, 1), (5, 3)], r=3,
                                              max_shift=2, seed=5),
    "r1_one_channel": _random_case([(1, 1), (5, 7)], blocks=2, r=1, seed=6),
    "r2_no_shifts": _random_case([(4, 3)], blocks=2, r=2, max_shift=0, seed=7),
    "chunks_and_launches": _chunks_and_launches,
    "extreme_shifts": _extreme_shifts,
    "mixed_simplex_and_layered": _mixed_simplex_and_layered,
    "numpy_round_trip": _numpy_round_trip,
    "golden_s2_x4_shift2": _golden("s2_x4_shift2", ("pixel", "row", "col", "noise")),
    "golden_s0_x4_gray": _golden("s0_x4", ("gray",)),
    "golden_s1_x4_float32": _golden("s1_x4_float32", ("pixel", "noise")),
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
