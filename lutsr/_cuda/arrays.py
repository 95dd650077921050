"""Array kinds of the CUDA backend: device arrays, their devices and streams.

:class:`~lutsr._cuda.runner.CudaRunner` works on numba device arrays. This
module makes them from what a caller passes: zero-copy views of anything with
``__cuda_array_interface__`` (CuPy arrays, torch CUDA tensors, numba's own), of
a DLPack CUDA array through CuPy, or under ``NUMBA_ENABLE_CUDASIM=1`` the
simulator's arrays (how the tests run the kernels without a GPU); it tells which
device and stream an array belongs to, and allocates arrays of the caller's kind.
"""

from __future__ import annotations

import sys

import numba
import numpy as np
from numba import cuda

from ..arrays import DLPACK_CUDA_DEVICES

SIMULATOR = bool(numba.config.ENABLE_CUDASIM)


def interface(a) -> dict:
    """The array's ``__cuda_array_interface__`` (the simulator's: its numpy interface)."""
    if SIMULATOR and type(a).__module__.startswith("numba.cuda.simulator"):
        return a.__array_interface__
    return a.__cuda_array_interface__


def _cupy():
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError("this device array has no __cuda_array_interface__; reading it "
                           "through DLPack needs CuPy (pip install 'lutsr[gpu]')") from e
    return cupy


def _is_cupy(a) -> bool:
    return type(a).__module__.split(".")[0] == "cupy"


def _is_torch(a) -> bool:
    return type(a).__module__.split(".")[0] == "torch"


def as_interface_array(a):
    """``a`` itself, or for a DLPack-only device array a zero-copy CuPy view of it."""
    if hasattr(a, "__cuda_array_interface__") or (
            SIMULATOR and type(a).__module__.startswith("numba.cuda.simulator")):
        return a
    dev = getattr(a, "__dlpack_device__", None)
    if dev is not None and dev()[0] in DLPACK_CUDA_DEVICES:
        return _cupy().from_dlpack(a)
    raise TypeError(f"expected a CUDA device array, got {type(a).__name__}")


def device_of(a) -> int:
    """The device ``a``'s memory is on: DLPack says; for an array with only
    ``__cuda_array_interface__`` (numba, PyCUDA, cuDF) the driver is asked about
    its pointer, since the current device need not be its device."""
    if SIMULATOR:
        return 0
    dev = getattr(a, "__dlpack_device__", None)
    if dev is not None:
        return int(dev()[1])
    return _pointer_device(interface(a)["data"][0])


def _pointer_device(ptr: int) -> int:
    """The ordinal of the device that holds ``ptr`` (``cuPointerGetAttribute``)."""
    from numba.cuda.cudadrv import driver as drv

    try:
        if getattr(drv, "USE_NV_BINDING", False):
            attr = drv.binding.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
            return int(drv.driver.cuPointerGetAttribute(attr, drv.binding.CUdeviceptr(ptr)))
        from ctypes import byref, c_int

        ordinal = c_int()
        attr = drv.enums.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
        drv.driver.cuPointerGetAttribute(byref(ordinal), attr, ptr)
        return ordinal.value
    except Exception as exc:  # numba's driver internals differ between versions
        if len(cuda.gpus) == 1:
            return 0
        raise RuntimeError("cannot tell which GPU this array is on (numba's driver did not "
                           "answer); pass a CuPy array, a torch tensor or a DLPack array") from exc


def stream_of(a):
    """The numba stream to enqueue on: the one the array's producer works on.

    CuPy: its current stream. torch (whose interface names no stream): its
    current stream, via the already imported torch module (lutsr never imports
    torch). Others: the interface's ``stream`` entry, else the default stream.
    """
    if SIMULATOR:
        return 0
    if _is_cupy(a):
        handle = _cupy().cuda.get_current_stream().ptr
    elif _is_torch(a) and "torch" in sys.modules:
        handle = sys.modules["torch"].cuda.current_stream(a.device).cuda_stream
    else:
        handle = interface(a).get("stream")
    if handle is None or handle in (0, 1):
        return cuda.legacy_default_stream()
    if handle == 2:
        return cuda.per_thread_default_stream()
    return cuda.external_stream(handle)


def check_device_array(a, what: str) -> dict:
    desc = interface(a)
    if desc.get("mask") is not None:
        raise TypeError(f"{what} is a masked device array; masks are not supported")
    if np.dtype(desc["typestr"]) != np.uint8:
        raise TypeError(f"{what} must be uint8, got {np.dtype(desc['typestr'])}")
    return desc


def frames_interface(desc: dict) -> dict:
    """The array interface of an (N, H, W, C) view of an (H, W), (H, W, C) or (N, H, W, C) one.

    Added axes have length 1 and the strides C order would give them, so a
    C-contiguous image stays C-contiguous to numba (one compiled kernel per
    layout; stride 0 would make every 2-D or 3-D image non-contiguous). The
    ``stream`` entry is dropped because the runner enqueues on that stream
    itself (so no host sync).
    """
    shape = tuple(desc["shape"])
    lead, trail = {2: (1, 1), 3: (1, 0), 4: (0, 0)}[len(shape)]
    strides = tuple(desc.get("strides") or c_strides(shape))
    view = dict(desc, shape=(1,) * lead + shape + (1,) * trail,
                strides=(shape[0] * strides[0],) * lead + strides + (1,) * trail, version=3)
    view.pop("stream", None)
    return view


def frames_view(a, desc: dict):
    """A (N, H, W, C) numba device view of an (H, W), (H, W, C) or (N, H, W, C) device array."""
    if SIMULATOR:
        ndim = len(desc["shape"])
        lead, trail = {2: (1, 1), 3: (1, 0), 4: (0, 0)}[ndim]
        return a[(None,) * lead + (slice(None),) * ndim + (None,) * trail]
    return cuda.from_cuda_array_interface(frames_interface(desc), owner=a, sync=False)


def c_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape)))


def extent(desc: dict) -> tuple[int, int]:
    """[first, last] byte addresses an array interface covers (itemsize 1).

    Used to refuse an ``out`` that overlaps the input; conservative, so two
    interleaved views of one buffer (channels of an RGB frame) count as
    overlapping.
    """
    shape = tuple(desc["shape"])
    strides = desc.get("strides") or c_strides(shape)
    lo = hi = desc["data"][0]
    for n, s in zip(shape, strides, strict=True):
        lo += min(0, (n - 1) * s)
        hi += max(0, (n - 1) * s)
    return lo, hi


def empty_like_kind(a, shape: tuple[int, ...], device: int, stream):
    """An uninitialised uint8 device array of ``a``'s kind, on its device."""
    if _is_cupy(a):
        cupy = _cupy()
        with cupy.cuda.Device(device):
            return cupy.empty(shape, dtype=cupy.uint8)
    if _is_torch(a):
        return a.new_empty(shape)  # torch: same dtype (uint8) and device, no torch import
    return cuda.device_array(shape, np.uint8, stream=stream)


