"""CUDA kernels (numba.cuda) for LUT stages, and the runner behind ``backend="cuda"``.

The arithmetic is :mod:`lutsr.reference`'s, bit for bit. As in the numba CPU
kernels (:mod:`lutsr._cpu`), a rotation is never materialised: the 1-D index
maps of :func:`lutsr.indexmaps.tap_indices` give every tap's source row and column
for every rotation, padding included. One GPU thread handles one input sample
(pixel and channel) of a stage: it reads its taps for all 4 rotations and all
patterns, does the simplex interpolation of each, and writes its own ``r x r``
output block, so there are no write conflicts and one launch runs a stage.

The final ``clip(round(sum / divisor + bias), 0, 255)`` is a lookup table over
the integer accumulator, computed on the host with numpy from the reference's
own float expression, so rounding on the device cannot drift from the spec.
A stage with a linear base rounds in integers instead, as the CPU kernels do
(:func:`lutsr.model.sum_shift`). A layered stage (:class:`lutsr.layered.LayeredStage`)
runs on the kernels of :mod:`lutsr._cuda_layered`, a few launches per stage;
a model may mix both kinds.

Array kinds. The core, :meth:`CudaRunner.run`, works on numba device arrays:
zero-copy views of anything with ``__cuda_array_interface__`` (CuPy arrays,
torch CUDA tensors, numba's own), or under ``NUMBA_ENABLE_CUDASIM=1`` the
simulator's arrays, which is how the tests run these kernels without a GPU.
:meth:`CudaRunner.up` is the thin layer that accepts the caller's array kind,
picks its device and stream, and returns the same kind.

Importing this module imports ``numba.cuda``; :mod:`lutsr.api` imports it
only when a device array or ``backend="cuda"`` is used.
"""

from __future__ import annotations

import functools
import math
import sys
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import numba
import numpy as np
from numba import cuda, int32

from . import _cuda_layered
from . import model as _model
from .arrays import as_frames, check_image, check_out, self_overlapping
from .indexmaps import padded_index, table_words, tap_indices, window_indices
from .layered import LayeredStage
from .model import BASE_RADIUS, LUT, Stage, grid_size, sum_shift

# The model's constants the kernels read, as literals of this file: numba's on-disk
# cache keys on this file alone, so a kernel compiled with an older value of one
# in model.py would be reused. Changing one there fails this import until the
# copy here is changed too (which invalidates the cache).
BASE_BITS, BASE_SIDE, TAP_BITS = 12, 5, 10
if (BASE_BITS, BASE_SIDE, TAP_BITS) != (_model.BASE_BITS, _model.BASE_SIDE, _model.TAP_BITS):
    raise ImportError("lutsr/_cuda.py: update BASE_BITS, BASE_SIDE, TAP_BITS to model.py's")

#: Input pixels a linear base reads per pixel (a global: local arrays need a constant size).
_BASE_PIXELS = BASE_SIDE * BASE_SIDE

#: Threads per block along (columns, rows) of a stage's input. Tests patch it
#: down so that the simulator runs multi-block grids.
THREADS_PER_BLOCK = (32, 4)

#: Largest grid extent along z (frames x channels); the kernel loops past it.
MAX_GRID_Z = 65535

#: Image sizes whose tap index maps stay uploaded per device and model.
MAP_CACHE_SIZE = 8

_SIMULATOR = bool(numba.config.ENABLE_CUDASIM)

# DLPack device types that are device memory (kDLCUDA, kDLCUDAManaged).
_DLPACK_CUDA = (2, 13)


# --------------------------------------------------------------------------- kernels


@functools.cache
def stage_kernel(r: int):
    """The kernel of a simplex stage with upscale factor ``r`` (compiled once per ``r``).

    ``r`` is a compile-time constant of each kernel (a closure variable, part
    of numba's cache key), so every loop over the ``r*r`` block positions
    unrolls and the accumulator stays in registers: no array in the kernel is
    indexed at run time. ``bench/gpu_resources.py`` reads the compiled code:
    no local memory up to ``r = 4``; for ``r = 8`` NVVM does not unroll the
    64 positions and the accumulator is in local memory.

    The kernel maps ``src`` (N, H, W, C) uint8 to ``dst`` (N, H*r, W*r, C)
    uint8. ``words`` (P, L**4, ceil(r*r / 4)) int32 are the tables with each
    row padded to whole words (:func:`lutsr.indexmaps.table_words`), read a
    word (four table columns) per load; ``rows`` (P, 4, 4, H) and ``cols``
    (P, 4, 4, W) int32 come from :func:`tap_indices`; ``rounding`` uint8 maps
    ``sum - s_min`` to the stage output. Thread (x, y, z) handles input pixel
    (y, x) of planes z, z + gridDim.z, ...

    With a linear base, ``sum_shift`` >= 0 and ``base`` (r*r*25,) int32 holds
    its weights, ``base_rows`` (5, H) and ``base_cols`` (5, W) int32 the
    padded source index of offsets -2..2; the output is then rounded in
    integers with ``bias``. Without one, ``sum_shift`` is -1 and those arrays
    are dummies.

    With learned taps, ``taps`` (P, 4, w*w) int32 holds their weights and
    ``rows`` / ``cols`` are :func:`window_indices` as (1, 4, w*w, H) and
    (1, 4, w*w, W) (4-D, so one compiled kernel serves both); without,
    ``taps`` is a (1, 1, 1) dummy.
    """
    if not 1 <= r <= 8:
        raise ValueError(f"no stage kernel for r = {r}")
    R, RR, WORDS = r, r * r, (r * r + 3) // 4

    @cuda.jit(cache=True)
    def kernel(src, dst, words, rows, cols, rounding, s_min, interval, grid, base, base_rows,
               base_cols, sum_shift, bias, taps):
        x, y, z = cuda.grid(3)
        n_img, height, width, channels = src.shape
        if x >= width or y >= height:
            return
        n_pat = words.shape[0]
        learned = taps.shape[1] == 4  # else the (1, 1, 1) dummy
        q = 1 << interval
        mask = q - 1
        grid2 = grid * grid
        grid3 = grid2 * grid
        # Indexed only by unrolled loops' counters: registers, not local memory.
        acc = cuda.local.array(RR, int32)  # per output position (u * r + v)
        val = cuda.local.array(RR, int32)  # one interpolation, per table column
        tap = cuda.local.array(4, int32)  # a, b, c, d of one (pattern, rotation)
        for plane in range(z, n_img * channels, cuda.gridDim.z):
            n = plane // channels
            c = plane - n * channels
            for pos in range(RR):
                acc[pos] = 0
            for k in range(4):
                for p in range(n_pat):
                    for t in range(4):
                        if learned:  # (inline: a device function would need a driver to compile)
                            total = int32(0)
                            for e in range(taps.shape[2]):
                                total += taps[p, t, e] * int32(
                                    src[n, rows[0, k, e, y], cols[0, k, e, x], c])
                            total = (total + (1 << (TAP_BITS - 1))) >> TAP_BITS
                            if total < 0:
                                total = 0
                            elif total > 255:
                                total = 255
                            tap[t] = total
                        else:
                            tap[t] = int32(src[n, rows[p, k, t, y], cols[p, k, t, x], c])
                    v0, v1, v2, v3 = tap[0], tap[1], tap[2], tap[3]
                    i0 = (((v0 >> interval) * grid + (v1 >> interval)) * grid
                          + (v2 >> interval)) * grid + (v3 >> interval)
                    # Fraction in the high bits, dimension in the low two: sorting
                    # the keys descending sorts the dimensions by fraction. Ties
                    # order differently from the reference's stable argsort, which
                    # only moves a vertex whose weight is zero.
                    k0 = ((v0 & mask) << 2) | 0
                    k1 = ((v1 & mask) << 2) | 1
                    k2 = ((v2 & mask) << 2) | 2
                    k3 = ((v3 & mask) << 2) | 3
                    if k0 < k1:
                        k0, k1 = k1, k0
                    if k2 < k3:
                        k2, k3 = k3, k2
                    if k0 < k2:
                        k0, k2 = k2, k0
                    if k1 < k3:
                        k1, k3 = k3, k1
                    if k1 < k2:
                        k1, k2 = k2, k1
                    f1, f2, f3, f4 = k0 >> 2, k1 >> 2, k2 >> 2, k3 >> 2
                    # One grid step along dimension d (a..d) is grid**(3 - d) rows.
                    d = k0 & 3
                    i1 = i0 + (grid3 if d == 0 else grid2 if d == 1 else grid if d == 2 else 1)
                    d = k1 & 3
                    i2 = i1 + (grid3 if d == 0 else grid2 if d == 1 else grid if d == 2 else 1)
                    d = k2 & 3
                    i3 = i2 + (grid3 if d == 0 else grid2 if d == 1 else grid if d == 2 else 1)
                    d = k3 & 3
                    i4 = i3 + (grid3 if d == 0 else grid2 if d == 1 else grid if d == 2 else 1)
                    w0, w1, w2, w3, w4 = q - f1, f1 - f2, f2 - f3, f3 - f4, f4
                    for j in range(WORDS):
                        a0, a1, a2 = words[p, i0, j], words[p, i1, j], words[p, i2, j]
                        a3, a4 = words[p, i3, j], words[p, i4, j]
                        for b in range(4):
                            m = 4 * j + b
                            if m < RR:  # byte b of a word, sign-extended: table column m
                                s = 8 * b
                                val[m] = (w0 * ((((a0 >> s) & 255) ^ 128) - 128)
                                          + w1 * ((((a1 >> s) & 255) ^ 128) - 128)
                                          + w2 * ((((a2 >> s) & 255) ^ 128) - 128)
                                          + w3 * ((((a3 >> s) & 255) ^ 128) - 128)
                                          + w4 * ((((a4 >> s) & 255) ^ 128) - 128))
                    # Rotating the block back: column perm[k, pos] of
                    # block_permutations lands at position pos = (u, v). One
                    # branch per rotation keeps every index a constant.
                    if k == 0:
                        for pos in range(RR):
                            acc[pos] += val[pos]
                    elif k == 1:
                        for pos in range(RR):
                            u, v = pos // R, pos % R
                            acc[pos] += val[(R - 1 - v) * R + u]
                    elif k == 2:
                        for pos in range(RR):
                            acc[pos] += val[RR - 1 - pos]
                    else:
                        for pos in range(RR):
                            u, v = pos // R, pos % R
                            acc[pos] += val[v * R + R - 1 - u]
            if sum_shift < 0:
                for pos in range(RR):
                    u, v = pos // R, pos % R
                    dst[n, y * R + u, x * R + v, c] = rounding[acc[pos] - s_min]
                continue
            # int32 suffices: |sum| << sum_shift and the 25 int16 weights times 255 stay
            # below 2**31 (as in lutsr._cpu).
            for pos in range(RR):
                acc[pos] = acc[pos] << sum_shift
            for a in range(BASE_SIDE):
                sy = base_rows[a, y]
                for b in range(BASE_SIDE):
                    pixel = int32(src[n, sy, base_cols[b, x], c])
                    for pos in range(RR):
                        acc[pos] += base[pos * _BASE_PIXELS + a * BASE_SIDE + b] * pixel
            for pos in range(RR):
                u, v = pos // R, pos % R
                total = acc[pos]
                # Round half to even after the (integer) bias, as lutsr._cpu's _round_shift.
                half = (1 << (BASE_BITS - 1)) - 1 + (((total >> BASE_BITS) + bias) & 1)
                value = ((total + half) >> BASE_BITS) + bias
                if value < 0:
                    value = 0
                elif value > 255:
                    value = 255
                dst[n, y * R + u, x * R + v, c] = value

    return kernel


# --------------------------------------------------------------------------- tables


def rounding_table(stage: Stage, interval: int) -> tuple[np.ndarray, int]:
    """The stage's final rounding as a lookup table over the integer accumulator.

    A thread's accumulator ``s`` is the spec's ``sum`` times ``q``: each of the
    ``4 * P`` interpolations is a weighted sum of int8 values with weights
    adding up to ``q``, so ``s`` lies in ``[-128 * 4P * q, 127 * 4P * q]``.

    Returns
    -------
    table : ndarray of uint8, shape (255 * 4P * q + 1,)
        ``table[s - s_min]`` is the stage output for accumulator ``s``.
    s_min : int
        The smallest accumulator, ``-128 * 4P * q``.
    """
    q = 2**interval
    span = 4 * len(stage.patterns) * q
    s = np.arange(-128 * span, 127 * span + 1, dtype=np.int64)
    # The reference's float expression, exactly: its float64 total of at most
    # 12 per-pattern values acc / q (multiples of 1/q, each at most 128 in
    # magnitude) is computed without rounding error, so it equals s / q.
    value = np.clip(np.round((s / q) / stage.divisor + stage.bias), 0, 255)
    return value.astype(np.uint8), -128 * span


@dataclass(frozen=True)
class _DeviceStage:
    """One stage's constant arrays, uploaded to one device."""

    r: int
    words: object  # int32 (P, L**4, ceil(r*r / 4)), see table_words
    rounding: object  # uint8, see rounding_table
    s_min: int
    base: object  # int32 (r*r*25,), or a dummy (1,) without a base
    sum_shift: int  # BASE_BITS - m with a base, else -1
    bias: int
    taps: object  # int32 (P, 4, w*w) learned tap weights, or a dummy (1, 1, 1)


@dataclass
class _DeviceModel:
    """A LUT's tables on one device, and its tap index maps for recent image sizes.

    Holds the stage objects, not the :class:`LUT`, so that the cache keyed
    weakly by the LUT lets it go. A layered stage's device form is a
    :class:`lutsr._cuda_layered.DeviceLayeredStage` and it needs no maps.
    """

    stages: tuple[Stage | LayeredStage, ...]
    device_stages: tuple[_DeviceStage | _cuda_layered.DeviceLayeredStage, ...]
    maps: OrderedDict = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def upload(cls, lut: LUT) -> _DeviceModel:
        # Uploaded once for every stream that will read them, and followed by
        # _uploaded(): a copy from pageable memory may return before it lands.
        device_stages = []
        for stage in lut.stages:
            if isinstance(stage, LayeredStage):
                device_stages.append(_cuda_layered.upload(stage))
                continue
            has_base = stage.base is not None
            # With a base the rounding is arithmetic: skip the (large) lookup table.
            rounding, s_min = (np.zeros(1, np.uint8), 0) if has_base else \
                rounding_table(stage, lut.interval)
            device_stages.append(_DeviceStage(
                r=stage.r,
                words=cuda.to_device(table_words(stage)),
                rounding=cuda.to_device(rounding),
                s_min=s_min,
                base=cuda.to_device(stage.base.reshape(-1).astype(np.int32) if has_base
                                    else np.zeros(1, np.int32)),
                sum_shift=BASE_BITS - sum_shift(stage, lut.interval) if has_base else -1,
                bias=int(stage.bias) if has_base else 0,
                taps=cuda.to_device(np.zeros((1, 1, 1), np.int32) if stage.taps is None else
                                    stage.taps.reshape(*stage.taps.shape[:2], -1).astype(np.int32)),
            ))
        _uploaded()
        return cls(tuple(lut.stages), tuple(device_stages))

    def tap_maps(self, height: int, width: int) -> list[tuple[object, ...]]:
        """Per stage, the device (rows, cols, base_rows, base_cols) int32 maps for a model
        input of (height, width): rows and cols from :func:`tap_indices`, or with learned
        taps :func:`window_indices`; the last two are dummies for a stage without a base.
        None for a layered stage."""
        key = (height, width)
        with self.lock:
            maps = self.maps.get(key)
            if maps is not None:
                self.maps.move_to_end(key)
                return maps
            maps = []
            for stage in self.stages:
                if isinstance(stage, LayeredStage):
                    maps.append(None)
                    height, width = height * stage.r, width * stage.r
                    continue
                if stage.taps is None:
                    rows, cols = tap_indices(stage, height, width)
                else:
                    rows, cols = (m[None] for m in window_indices(stage, height, width))
                if stage.base is None:
                    base_rows = base_cols = np.zeros((1, 1), np.int32)
                else:
                    base_rows, base_cols = (
                        np.stack([padded_index(n, stage.padding, BASE_RADIUS)[d:d + n]
                                  for d in range(BASE_SIDE)])
                        for n in (height, width))
                maps.append(tuple(cuda.to_device(np.ascontiguousarray(a, np.int32))
                                  for a in (rows, cols, base_rows, base_cols)))
                height, width = height * stage.r, width * stage.r
            _uploaded()
            self.maps[key] = maps
            while len(self.maps) > MAP_CACHE_SIZE:
                self.maps.popitem(last=False)
            return maps


def _uploaded() -> None:
    """Wait until the uploads just made have landed on the device.

    ``cuda.to_device`` without a stream copies on the legacy default stream and,
    from pageable host memory, may return once the data is staged, before it is
    on the device; kernels on a caller's non-blocking stream (torch's, CuPy's)
    do not wait for the legacy stream. The uploads are shared by every stream,
    so the whole device is synchronised, once per model and frame size.
    """
    cuda.synchronize()


# LUT -> {device id: _DeviceModel}: tables are uploaded once per device, shared
# by every runner of the same LUT.
_models: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_models_lock = threading.Lock()


def device_model(lut: LUT, device: int) -> _DeviceModel:
    """The LUT's tables on ``device``, uploaded on first use and cached."""
    with _models_lock:
        per_device = _models.setdefault(lut, {})
        model = per_device.get(device)
        if model is None:
            model = per_device[device] = _DeviceModel.upload(lut)
        return model


def _launch_stage(src, dst, stage: _DeviceStage, maps, interval: int, stream) -> None:
    n, h, w, c = src.shape
    rows, cols, base_rows, base_cols = maps
    tx, ty = THREADS_PER_BLOCK
    blocks = (math.ceil(w / tx), math.ceil(h / ty), min(n * c, MAX_GRID_Z))
    stage_kernel(stage.r)[blocks, (tx, ty, 1), stream](
        src, dst, stage.words, rows, cols, stage.rounding, stage.s_min, interval,
        grid_size(interval), stage.base, base_rows, base_cols, stage.sum_shift, stage.bias,
        stage.taps)


# --------------------------------------------------------------------------- array kinds


def _interface(a) -> dict:
    """The array's ``__cuda_array_interface__`` (the simulator's: its numpy interface)."""
    if _SIMULATOR and type(a).__module__.startswith("numba.cuda.simulator"):
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


def _as_interface_array(a):
    """``a`` itself, or for a DLPack-only device array a zero-copy CuPy view of it."""
    if hasattr(a, "__cuda_array_interface__") or (
            _SIMULATOR and type(a).__module__.startswith("numba.cuda.simulator")):
        return a
    dev = getattr(a, "__dlpack_device__", None)
    if dev is not None and dev()[0] in _DLPACK_CUDA:
        return _cupy().from_dlpack(a)
    raise TypeError(f"expected a CUDA device array, got {type(a).__name__}")


def _device_of(a) -> int:
    """The device ``a``'s memory is on: DLPack says; for an array with only
    ``__cuda_array_interface__`` (numba, PyCUDA, cuDF) the driver is asked about
    its pointer, since the current device need not be its device."""
    if _SIMULATOR:
        return 0
    dev = getattr(a, "__dlpack_device__", None)
    if dev is not None:
        return int(dev()[1])
    return _pointer_device(_interface(a)["data"][0])


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


def _stream_of(a):
    """The numba stream to enqueue on: the one the array's producer works on.

    CuPy: its current stream. torch (whose interface names no stream): its
    current stream, via the already imported torch module (lutsr never imports
    torch). Others: the interface's ``stream`` entry, else the default stream.
    """
    if _SIMULATOR:
        return 0
    if _is_cupy(a):
        handle = _cupy().cuda.get_current_stream().ptr
    elif _is_torch(a) and "torch" in sys.modules:
        handle = sys.modules["torch"].cuda.current_stream(a.device).cuda_stream
    else:
        handle = _interface(a).get("stream")
    if handle is None or handle in (0, 1):
        return cuda.legacy_default_stream()
    if handle == 2:
        return cuda.per_thread_default_stream()
    return cuda.external_stream(handle)


def _check_device_array(a, what: str) -> dict:
    desc = _interface(a)
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
    strides = tuple(desc.get("strides") or _c_strides(shape))
    view = dict(desc, shape=(1,) * lead + shape + (1,) * trail,
                strides=(shape[0] * strides[0],) * lead + strides + (1,) * trail, version=3)
    view.pop("stream", None)
    return view


def _frames(a, desc: dict):
    """A (N, H, W, C) numba device view of an (H, W), (H, W, C) or (N, H, W, C) device array."""
    if _SIMULATOR:
        ndim = len(desc["shape"])
        lead, trail = {2: (1, 1), 3: (1, 0), 4: (0, 0)}[ndim]
        return a[(None,) * lead + (slice(None),) * ndim + (None,) * trail]
    return cuda.from_cuda_array_interface(frames_interface(desc), owner=a, sync=False)


def _c_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape)))


def extent(desc: dict) -> tuple[int, int]:
    """[first, last] byte addresses an array interface covers (itemsize 1).

    Used to refuse an ``out`` that overlaps the input; conservative, so two
    interleaved views of one buffer (channels of an RGB frame) count as
    overlapping.
    """
    shape = tuple(desc["shape"])
    strides = desc.get("strides") or _c_strides(shape)
    lo = hi = desc["data"][0]
    for n, s in zip(shape, strides, strict=True):
        lo += min(0, (n - 1) * s)
        hi += max(0, (n - 1) * s)
    return lo, hi


def _empty_like_kind(a, shape: tuple[int, ...], device: int, stream):
    """An uninitialised uint8 device array of ``a``'s kind, on its device."""
    if _is_cupy(a):
        cupy = _cupy()
        with cupy.cuda.Device(device):
            return cupy.empty(shape, dtype=cupy.uint8)
    if _is_torch(a):
        return a.new_empty(shape)  # torch: same dtype (uint8) and device, no torch import
    return cuda.device_array(shape, np.uint8, stream=stream)


# --------------------------------------------------------------------------- runner


class CudaRunner:
    """Runs a LUT model on CUDA device arrays (and numpy arrays via a host round trip).

    Parameters
    ----------
    lut : LUT

    Raises
    ------
    RuntimeError
        numba.cuda finds no usable GPU.
    """

    def __init__(self, lut: LUT):
        if not cuda.is_available():
            raise RuntimeError(
                "backend 'cuda' needs an NVIDIA GPU with its driver, and numba.cuda finds none "
                "(numba.cuda.is_available() is False); use numpy arrays with backend 'numba'")
        self.lut = lut

    def run(self, frames, out, *, stream=0, device: int = 0, alloc=None) -> None:
        """Enqueue every stage on ``stream``: one kernel launch per simplex stage, and
        per layered stage one per layer and chunk of planes (:mod:`lutsr._cuda_layered`).

        Parameters
        ----------
        frames : numba device array of uint8, shape (N, H, W, C)
            Any strides.
        out : numba device array of uint8, shape (N, H*s, W*s, C)
            Written; must not overlap ``frames``.
        stream : numba stream or 0
        device : int
            The device the arrays live on (and the current one).
        alloc : callable, optional
            ``alloc(shape)`` returns a uint8 numba device view of a 4-D
            ``shape`` for a stage's intermediate output or a layered stage's
            feature buffers; default ``numba.cuda.device_array``. The
            caller's stream-ordered allocator (CuPy's, torch's) is faster.
        """
        n, h, w, c = frames.shape
        s = self.lut.scale
        if tuple(out.shape) != (n, h * s, w * s, c):
            raise ValueError(f"out has shape {tuple(out.shape)}, expected {(n, h * s, w * s, c)}")
        if alloc is None:
            def alloc(shape):
                return cuda.device_array(shape, np.uint8, stream=stream)
        model = device_model(self.lut, device)
        maps = model.tap_maps(h, w)
        src = frames
        last = len(model.device_stages) - 1
        for i, (stage, stage_maps) in enumerate(zip(model.device_stages, maps, strict=True)):
            h, w = h * stage.r, w * stage.r
            dst = out if i == last else alloc((n, h, w, c))
            if stage_maps is None:
                _cuda_layered.run_layered(src, dst, stage, stream, alloc)
            else:
                _launch_stage(src, dst, stage, stage_maps, self.lut.interval, stream)
            src = dst

    def up(self, img, out=None):
        """Upscale a device array into a device array of its kind; numpy via a host round trip.

        Parameters
        ----------
        img : device array or ndarray of uint8
            ``(H, W)``, ``(H, W, C)`` or ``(N, H, W, C)``, any strides: a CuPy
            array, an object with ``__cuda_array_interface__`` (torch CUDA
            tensor, numba device array) or a DLPack CUDA array (needs CuPy).
        out : same kind as ``img``, optional
            Preallocated output of the upscaled shape, on the same device.

        Returns
        -------
        The upscaled image: ``out`` if given; else a CuPy array for CuPy or
        DLPack input, a torch tensor for torch, a numba device array for other
        ``__cuda_array_interface__`` objects, a numpy array for numpy. Work is
        enqueued on the input's stream (see :func:`_stream_of`) and not waited
        for, except for numpy input.
        """
        host_img = isinstance(img, np.ndarray)
        if out is not None and isinstance(out, np.ndarray) != host_img:
            raise TypeError(f"img and out must both be numpy arrays or both device arrays, got "
                            f"{type(img).__name__} and {type(out).__name__}")
        if host_img:
            return self._up_host(img, out)
        return self._up_device(img, out)

    def _up_host(self, img: np.ndarray, out: np.ndarray | None) -> np.ndarray:
        frames, out_shape = check_image(img, self.lut.scale)
        if out is None:
            out = np.empty(out_shape, np.uint8)
        else:
            check_out(out, out_shape, img)
        device = 0 if _SIMULATOR else int(cuda.get_current_device().id)
        d_out = cuda.device_array(as_frames(out).shape, np.uint8)
        self.run(cuda.to_device(np.ascontiguousarray(frames)), d_out, device=device)
        as_frames(out)[...] = d_out.copy_to_host()
        return out

    def _up_device(self, img, out):
        img = _as_interface_array(img)
        desc = _check_device_array(img, "img")
        shape = tuple(desc["shape"])
        if len(shape) not in (2, 3, 4):
            raise ValueError(f"img must be HxW, HxWxC or NxHxWxC, got {len(shape)} dimensions "
                             f"{shape}")
        if 0 in shape:
            raise ValueError(f"img is empty: shape {shape}")
        s = self.lut.scale
        spatial = 0 if len(shape) == 2 else len(shape) - 3
        out_shape = tuple(n * s if spatial <= i < spatial + 2 else n for i, n in enumerate(shape))
        device = _device_of(img)
        with cuda.gpus[device]:
            stream = _stream_of(img)
            if out is None:
                out = given = _empty_like_kind(img, out_shape, device, stream)
                out_desc = _interface(out)
            else:
                given, out = out, _as_interface_array(out)
                out_desc = self._check_out(out, out_shape, desc, device)

            def alloc(shp):
                # Intermediates from the caller's stream-ordered allocator.
                tmp = _empty_like_kind(img, shp, device, stream)
                return _frames(tmp, _interface(tmp))

            self.run(_frames(img, desc), _frames(out, out_desc), stream=stream, device=device,
                     alloc=alloc)
        return given  # the caller's own object (not the CuPy view of a DLPack one)

    @staticmethod
    def _check_out(out, out_shape, img_desc: dict, device: int) -> dict:
        desc = _check_device_array(out, "out")
        if tuple(desc["shape"]) != out_shape:
            raise ValueError(f"out has shape {tuple(desc['shape'])}, expected {out_shape}")
        if desc["data"][1]:
            raise ValueError("out is read-only")
        strides = desc.get("strides") or _c_strides(tuple(desc["shape"]))
        if self_overlapping(desc["shape"], strides):
            raise ValueError(f"out has strides {tuple(strides)} under which elements share "
                             "memory (e.g. cupy.broadcast_to): threads would race on them")
        if _device_of(out) != device:
            raise ValueError(f"out is on device {_device_of(out)}, img on device {device}")
        lo, hi = extent(desc)
        img_lo, img_hi = extent(img_desc)
        if lo <= img_hi and img_lo <= hi:
            raise ValueError("out overlaps the input image")
        return desc
