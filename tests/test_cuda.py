"""The cuda backend's own contract: device arrays, launches, errors, the compile for a real GPU.

Its parity with the reference and the golden vectors is ``test_parity.py``'s (in
the same simulator, see ``cudasim.py``). This machine and CI have no GPU.
``NUMBA_ENABLE_CUDASIM=1`` must be set before numba is imported, and it would
swap ``numba.cuda`` for every other test, so the simulator cases here run in
one subprocess: this file run as a script executes
every case of :data:`SIM_CASES` and prints one JSON line per case, and
:func:`test_simulator` asserts each. Launches are shrunk to a few threads per
block and a grid two planes deep, so every launch spans several blocks and the
kernel's loop over planes runs: bugs in block/grid index arithmetic show up as
wrong or missing pixels at block edges.

The no-GPU paths (clear errors, ``import lutsr`` not importing numba.cuda) run
in the normal process.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_GUARD_S, assert_images_equal, random_lut
from cudasim import check, run_cases, simulate

import lutsr
from lutsr import LUT
from lutsr.api import _on_device
from lutsr.reference import upscale_reference

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- simulator cases
# Each case runs in the simulator subprocess; it raises on failure and may
# call pytest.skip. Imports of numba.cuda stay inside the functions.


@contextlib.contextmanager
def _launch_config(threads=(4, 2), max_grid_z=2):
    from lutsr._cuda import simplex

    saved = simplex.THREADS_PER_BLOCK, simplex.MAX_GRID_Z
    simplex.THREADS_PER_BLOCK, simplex.MAX_GRID_Z = threads, max_grid_z
    try:
        yield
    finally:
        simplex.THREADS_PER_BLOCK, simplex.MAX_GRID_Z = saved


def _out_and_strided_views():
    from numba import cuda

    rng = np.random.default_rng(6)
    lut = random_lut(rng, 7, "mulut", 2)
    host = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    dev = cuda.to_device(host)
    # A strided 2-D input (one channel of an RGB frame) into a strided 2-D out
    # (one channel of a larger buffer): the other channels must stay intact.
    buf = cuda.to_device(np.full((10, 14, 3), 77, np.uint8))
    out = buf[:, :, 1]
    result = lutsr.upscale(dev[:, :, 2], lut, out=out, backend="cuda")
    assert result is out
    back = buf.copy_to_host()
    assert_images_equal(back[:, :, 1], upscale_reference(np.ascontiguousarray(host[:, :, 2]), lut),
                        "strided channel")
    assert (back[:, :, [0, 2]] == 77).all(), "out= wrote outside its view"
    # A contiguous 3-D out= of the same kind.
    out3 = cuda.device_array((10, 14, 3), np.uint8)
    assert lutsr.upscale(dev, lut, out=out3, backend="cuda") is out3
    assert_images_equal(out3.copy_to_host(), upscale_reference(host, lut), "out=")


def _numpy_round_trip():
    rng = np.random.default_rng(7)
    lut = random_lut(rng, 7, "srlut", 2)
    img = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    got = lutsr.upscale(img, lut, backend="cuda")
    assert isinstance(got, np.ndarray)
    assert_images_equal(got, upscale_reference(img, lut), "numpy in, numpy out")
    out = np.zeros((3, 8, 12, 3), np.uint8)[1]  # a view, written in place
    assert lutsr.upscale(img, lut, out=out, backend="cuda") is out
    assert_images_equal(out, upscale_reference(img, lut), "numpy out=")


def _tables_uploaded_once_and_one_launch_per_stage():
    from numba import cuda

    from lutsr._cuda import runner, simplex

    uploads, launches = [], []
    upload = runner.DeviceModel.upload.__func__
    kernel = simplex.stage_kernel

    class Spy:  # records each launch configuration, then launches
        def __init__(self, compiled):
            self.compiled = compiled

        def __getitem__(self, config):
            launches.append(config)
            return self.compiled[config]

    def counting_upload(cls, lut):
        uploads.append(lut)
        return upload(cls, lut)

    syncs = []  # (uploads so far, sizes of maps so far) at each wait for the uploads
    sync = cuda.synchronize

    def counting_sync():
        syncs.append(len(uploads))
        sync()

    runner.DeviceModel.upload = classmethod(counting_upload)
    simplex.stage_kernel = lambda r: Spy(kernel(r))
    cuda.synchronize = counting_sync
    try:
        rng = np.random.default_rng(8)
        lut = random_lut(rng, 7, "mulut", 2)
        img = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
        first, second = lutsr.Upscaler(lut, backend="cuda"), lutsr.Upscaler(lut, backend="cuda")
        for up in (first, first, second):
            assert_images_equal(up(cuda.to_device(img)).copy_to_host(),
                                upscale_reference(img, lut), "batch")
        # A second image size: new index maps, same tables.
        first(cuda.to_device(np.ascontiguousarray(img[:, :4, :6])))
    finally:
        runner.DeviceModel.upload = classmethod(upload)
        simplex.stage_kernel = kernel
        cuda.synchronize = sync
    assert len(uploads) == 1, f"tables uploaded {len(uploads)} times for one device"
    # the device waited for the tables, then for each frame size's maps, and only then
    assert syncs == [1, 1, 1], syncs
    assert sorted(runner._models[lut][0].maps) == [(4, 6), (5, 7)]
    assert len(launches) == 4 * len(lut.stages), f"{len(launches)} launches for 4 calls"
    blocks, threads = launches[0][0], launches[0][1]
    assert threads == (4, 2, 1) and blocks == (2, 3, 2), (blocks, threads)  # 6 planes, z = 2


def _auto_dispatch():
    from numba import cuda

    from lutsr import _cpu

    if not hasattr(_cpu, "NumbaRunner"):
        pytest.skip("backend 'auto' constructs the numba runner, not built yet")
    rng = np.random.default_rng(9)
    lut = random_lut(rng, 7, "srlut", 2)
    img = rng.integers(0, 256, (3, 4), dtype=np.uint8)
    got = lutsr.upscale(cuda.to_device(img), lut)  # auto: a device array goes to cuda
    assert type(got).__module__.startswith("numba.cuda")
    assert_images_equal(got.copy_to_host(), upscale_reference(img, lut), "auto")


def _device_errors():
    from numba import cuda

    rng = np.random.default_rng(10)
    lut = random_lut(rng, 7, "srlut", 4)
    up = lutsr.Upscaler(lut, backend="cuda")
    img = cuda.to_device(np.zeros((5, 7), np.uint8))
    buf = cuda.device_array((20, 28), np.uint8)
    checks = [
        (TypeError, "uint8", lambda: up(cuda.to_device(np.zeros((5, 7), np.float32)))),
        (ValueError, "shape", lambda: up(img, out=cuda.device_array((20, 27), np.uint8))),
        (TypeError, "uint8", lambda: up(img, out=cuda.device_array((20, 28), np.int16))),
        (ValueError, "overlaps", lambda: up(buf[:5, :7], out=buf)),
        (ValueError, "share memory", lambda: up(img, out=cuda.to_device(  # a broadcast out
            np.lib.stride_tricks.as_strided(np.zeros(28, np.uint8), (20, 28), (0, 1),
                                            writeable=True)))),
        (TypeError, "both", lambda: up(np.zeros((5, 7), np.uint8), out=buf)),
        (TypeError, "both", lambda: up(img, out=np.zeros((20, 28), np.uint8))),
        (ValueError, "dimensions", lambda: up(cuda.to_device(np.zeros((1, 1, 5, 7, 1), np.uint8)))),
        (ValueError, "empty", lambda: up(cuda.device_array((0, 7), np.uint8))),
        (TypeError, "device array", lambda: lutsr.Upscaler(lut, backend="reference")(img)),
    ]
    for error, words, call in checks:
        with pytest.raises(error, match=words):
            call()


def _dlpack_out_is_the_callers_object():
    # A DLPack-only array (no __cuda_array_interface__) is read through a CuPy view;
    # what comes back must be the caller's own out, not that view.
    from numba import cuda

    from lutsr._cuda import arrays

    class DLPackOnly:
        def __init__(self, array):
            self.array = array

        def __dlpack_device__(self):
            return (2, 0)  # kDLCUDA, device 0

    class FakeCuPy:
        @staticmethod
        def from_dlpack(a):
            return a.array

    rng = np.random.default_rng(17)
    lut = random_lut(rng, 7, "srlut", 2)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = DLPackOnly(cuda.device_array((10, 14, 3), np.uint8))
    saved = arrays._cupy
    arrays._cupy = lambda: FakeCuPy
    try:
        got = lutsr.upscale(DLPackOnly(cuda.to_device(img)), lut, out=out)
    finally:
        arrays._cupy = saved
    assert got is out
    assert_images_equal(out.array.copy_to_host(), upscale_reference(img, lut), "dlpack out")


SIM_CASES = {
    "out_and_strided_views": _out_and_strided_views,
    "numpy_round_trip": _numpy_round_trip,
    "tables_once_one_launch_per_stage": _tables_uploaded_once_and_one_launch_per_stage,
    "auto_dispatch": _auto_dispatch,
    "device_errors": _device_errors,
    "dlpack_out_is_the_callers_object": _dlpack_out_is_the_callers_object,
}


@pytest.fixture(scope="module")
def sim_results():
    return simulate(__file__)


@pytest.mark.parametrize("case", list(SIM_CASES))
def test_simulator(case, sim_results):
    check(case, *sim_results)


# --------------------------------------------------------------------------- no-GPU paths


class _FakeDeviceArray:
    """Says it is a CUDA array; holds no memory. What a CuPy array looks like to lutsr."""

    def __init__(self, shape=(5, 7)):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": "|u1", "data": (4096, False),
                                         "strides": None, "version": 3}


class _FakeDLPack:
    def __init__(self, device_type):
        self.device_type = device_type

    def __dlpack_device__(self):
        return (self.device_type, 0)


def _no_gpu() -> None:
    from numba import cuda

    if cuda.is_available():
        pytest.skip("a GPU is present: the no-GPU error paths do not apply")


def _tiny_lut() -> LUT:
    return random_lut(np.random.default_rng(0), 7, "srlut", 2)


def test_device_arrays_are_recognised():
    assert not _on_device(np.zeros((2, 2), np.uint8))
    assert not _on_device(None)
    assert _on_device(_FakeDeviceArray())
    assert _on_device(_FakeDLPack(2))  # kDLCUDA
    assert not _on_device(_FakeDLPack(1))  # kDLCPU, e.g. a torch CPU tensor


def test_backend_cuda_without_gpu_is_a_clear_error():
    _no_gpu()
    with pytest.raises(RuntimeError, match="GPU"):
        lutsr.Upscaler(_tiny_lut(), backend="cuda")
    with pytest.raises(RuntimeError, match="GPU"):
        lutsr.upscale(np.zeros((3, 3), np.uint8), _tiny_lut(), backend="cuda")


def test_device_array_without_gpu_is_a_clear_error():
    _no_gpu()
    from lutsr import _cpu

    if not hasattr(_cpu, "NumbaRunner"):
        pytest.skip("backend 'auto' constructs the numba runner, not built yet")
    for fake in (_FakeDeviceArray(), _FakeDLPack(2)):
        with pytest.raises(RuntimeError, match="GPU"):
            lutsr.upscale(fake, _tiny_lut())


def test_device_array_on_a_cpu_backend_is_a_type_error():
    up = lutsr.Upscaler(_tiny_lut(), backend="reference")
    with pytest.raises(TypeError, match="device array"):
        up(_FakeDeviceArray())
    with pytest.raises(TypeError, match="device array"):
        up(np.zeros((5, 7), np.uint8), out=_FakeDeviceArray((10, 14)))


class _Interface:
    def __init__(self, desc, owner):
        self.__array_interface__, self.owner = desc, owner


def test_interface_only_array_is_placed_by_its_pointer(monkeypatch):
    # numba, PyCUDA and cuDF arrays say nothing of their device: the driver is
    # asked about the pointer, not the current device assumed (several GPUs).
    from lutsr._cuda import arrays

    asked = []
    monkeypatch.setattr(arrays, "SIMULATOR", False)
    monkeypatch.setattr(arrays, "_pointer_device", lambda ptr: asked.append(ptr) or 1)
    assert arrays.device_of(_FakeDeviceArray()) == 1 and asked == [4096]
    assert arrays.device_of(_FakeDLPack(2)) == 0 and asked == [4096]  # DLPack says itself


@pytest.mark.parametrize("index", [np.s_[:, :, 0], np.s_[0], np.s_[:, :], np.s_[::-1, 1:],
                                   np.s_[None]])
def test_frames_interface_is_the_nhwc_view(index):
    # The view the runner builds from __cuda_array_interface__ on a real GPU,
    # checked here on numpy's identical interface: wrong strides would read
    # the wrong pixels (or the wrong channel) of a strided CuPy/torch array.
    from lutsr._cuda.arrays import frames_interface

    frame = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    a = frame[index]
    view = np.asarray(_Interface(frames_interface(a.__array_interface__), a))
    nhwc = a[None, :, :, None] if a.ndim == 2 else a[None] if a.ndim == 3 else a
    assert view.shape == nhwc.shape and (view == nhwc).all()
    # a contiguous image stays contiguous to numba (it compiles one kernel per layout)
    desc = frames_interface(a.__array_interface__)
    assert _numba_c_contiguous(desc["shape"], desc["strides"]) == a.flags.c_contiguous


def _numba_c_contiguous(shape, strides) -> bool:
    """Whether numba's CUDA target sees a device array of ``shape``/``strides`` (itemsize 1)
    as C-contiguous: numpy's rule, except that a zero stride, even on a length-1 axis,
    makes it non-contiguous (``numba.cuda.cudadrv.dummyarray.Array``). Written out here
    because the simulator (``NUMBA_ENABLE_CUDASIM=1``) has no such class; the real one
    checks this copy where it exists."""
    if 0 in strides:
        contiguous = False  # broadcast
    elif 0 in shape:
        contiguous = True  # empty
    else:
        sizes = [size for size in shape if size != 1]
        used = [stride for size, stride in zip(shape, strides, strict=True) if size != 1]
        contiguous = used == [int(np.prod(sizes[i + 1:])) for i in range(len(sizes))]
    with contextlib.suppress(ImportError):
        from numba.cuda.cudadrv.dummyarray import Array

        if Array is not None:  # None in the simulator
            assert Array.from_desc(0, shape, strides, 1).is_c_contig == contiguous
    return contiguous


def test_extent_covers_exactly_the_bytes():
    # The overlap check for device out= relies on it; negative strides (CuPy's
    # flipped views) put bytes before the data pointer.
    from lutsr._cuda.arrays import extent

    frame = np.zeros((5, 7, 3), np.uint8)
    for index in (np.s_[:], np.s_[:, :, 1], np.s_[::-1, 2:5], np.s_[1:3, ::-2, 2]):
        a = frame[index]
        ptr = a.__array_interface__["data"][0]
        addresses = [ptr + int(np.dot(i, a.strides)) for i in np.ndindex(a.shape)]
        assert extent(a.__array_interface__) == (min(addresses), max(addresses)), index


@pytest.mark.parametrize("scale", [1, 2, 3, 4, 8])
def test_table_words_hold_the_rows_little_endian(scale):
    # The kernels read table column m as byte m % 4 of word m // 4, sign-extended.
    from lutsr.indexmaps import stack_tables, table_words

    rng = np.random.default_rng(scale)
    stage = random_lut(rng, 7, "mulut", scale).stages[-1]  # r = scale
    words = table_words(stage)
    tables = stack_tables(stage)
    assert words.dtype == np.int32 and words.shape == (*tables.shape[:2], -(-scale**2 // 4))
    m = np.arange(4 * words.shape[2])
    columns = ((words[..., m // 4] >> (8 * (m % 4))) & 255 ^ 128) - 128  # the kernels' decoding
    np.testing.assert_array_equal(columns[..., :scale**2], tables)
    assert not columns[..., scale**2:].any()  # the padding is zeros


@pytest.mark.parametrize("layout", ["C", "A"])
def test_kernel_compiles_for_a_real_gpu(layout):
    # The simulator runs the kernel as Python; numba's real CUDA compiler types
    # it strictly. Compiling to PTX for an H100 (compute capability 9.0) needs
    # only NVVM from a CUDA toolkit, no GPU, and catches what the simulator
    # cannot: untypable code, unsupported calls. "A": strided CuPy/torch views.
    from numba import cuda
    from numba.cuda.cudadrv import nvvm

    from bench.gpu_resources import kernel_signatures

    if not nvvm.is_available():
        pytest.skip("no NVVM (CUDA toolkit) to compile with")
    for name, (kernel, sig) in kernel_signatures(layout).items():
        if name.startswith("simplex stage"):
            ptx, _ = cuda.compile_ptx(kernel, sig, cc=(9, 0))
            assert ".entry" in ptx and "ld.global" in ptx, name


def test_kernel_resources_from_compiled_code():
    # bench/gpu_resources.py: registers, local memory and spills that ptxas reports
    # for each kernel (recorded in bench/GPU.md). No kernel may spill registers.
    import shutil

    from numba.cuda.cudadrv import nvvm

    if not nvvm.is_available() or shutil.which("ptxas") is None:
        pytest.skip("needs NVVM and ptxas (a CUDA toolkit)")
    from bench.gpu_resources import measure

    report = measure((9, 0))
    assert set(report) == {*(f"simplex stage, r = {r}" for r in (1, 2, 3, 4, 8)),
                           "layered: first", "layered: depthwise", "layered: pointwise",
                           "layered: up"}
    for name, r in report.items():
        assert 0 < r["registers"] <= 255, (name, r)
        assert r["spill_store_bytes"] == 0 and r["spill_load_bytes"] == 0, (name, r)
        # No local memory: accumulators and small arrays live in registers. Only
        # r = 8 (no published model) keeps its 64 accumulators in memory.
        if name != "simplex stage, r = 8":
            assert r["stack_frame_bytes"] == 0, (name, r)


def test_import_and_numpy_path_do_not_load_numba_cuda():
    # Without CuPy or a GPU lutsr must import and run as before: the cuda
    # backend's numba.cuda import happens only when a GPU is asked for.
    script = (
        "import sys, numpy as np, lutsr\n"
        "from lutsr import LUT, Stage\n"
        "t = np.random.default_rng(0).integers(-128, 128, (3**4, 4), dtype=np.int8)\n"
        "lut = LUT((Stage(2, ('S',), (t,)),), interval=7)\n"
        "img = np.arange(12, dtype=np.uint8).reshape(3, 4)\n"
        "assert lutsr.upscale(img, lut, backend='reference').shape == (6, 8)\n"
        "assert 'numba.cuda' not in sys.modules, 'numba.cuda was imported'\n"
    )
    env = dict(os.environ)
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stderr


if __name__ == "__main__":
    run_cases(SIM_CASES, _launch_config)
