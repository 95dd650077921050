"""CudaRunner: a LUT's stages enqueued on a CUDA stream, and its tables cached per device.

A simplex stage runs on :mod:`lutsr._cuda.simplex`'s kernel, one launch per
stage; a layered stage (:class:`lutsr.layered.LayeredStage`) on the kernels of
:mod:`lutsr._cuda.layered`, a few launches per stage; a model may mix both
kinds. The core, :meth:`CudaRunner.run`, works on numba device arrays;
:meth:`CudaRunner.up` is the thin layer that accepts the caller's array kind
(:mod:`lutsr._cuda.arrays`), picks its device and stream, and returns the same kind.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from numba import cuda

from ..arrays import as_frames, check_image, check_out, self_overlapping
from ..indexmaps import padded_index, tap_indices, window_indices
from ..layered import LayeredStage
from ..model import BASE_RADIUS, LUT, Stage
from . import layered, simplex
from .arrays import (
    SIMULATOR,
    as_interface_array,
    c_strides,
    check_device_array,
    device_of,
    empty_like_kind,
    extent,
    frames_view,
    interface,
    stream_of,
)
from .simplex import BASE_SIDE

#: Image sizes whose tap index maps stay uploaded per device and model.
MAP_CACHE_SIZE = 8


@dataclass
class DeviceModel:
    """A LUT's tables on one device, and its tap index maps for recent image sizes.

    Holds the stage objects, not the :class:`LUT`, so that the cache keyed
    weakly by the LUT lets it go. A layered stage's device form is a
    :class:`lutsr._cuda.layered.DeviceLayeredStage` and it needs no maps.
    """

    stages: tuple[Stage | LayeredStage, ...]
    device_stages: tuple[simplex.DeviceStage | layered.DeviceLayeredStage, ...]
    maps: OrderedDict = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def upload(cls, lut: LUT) -> DeviceModel:
        # Uploaded once for every stream that will read them, and followed by
        # uploaded(): a copy from pageable memory may return before it lands.
        device_stages = []
        for stage in lut.stages:
            if isinstance(stage, LayeredStage):
                device_stages.append(layered.upload(stage))
                continue
            device_stages.append(simplex.upload(stage, lut.interval))
        uploaded()
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
            uploaded()
            self.maps[key] = maps
            while len(self.maps) > MAP_CACHE_SIZE:
                self.maps.popitem(last=False)
            return maps


def uploaded() -> None:
    """Wait until the uploads just made have landed on the device.

    ``cuda.to_device`` without a stream copies on the legacy default stream and,
    from pageable host memory, may return once the data is staged, before it is
    on the device; kernels on a caller's non-blocking stream (torch's, CuPy's)
    do not wait for the legacy stream. The uploads are shared by every stream,
    so the whole device is synchronised, once per model and frame size.
    """
    cuda.synchronize()


# LUT -> {device id: DeviceModel}: tables are uploaded once per device, shared
# by every runner of the same LUT.
_models: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_models_lock = threading.Lock()


def device_model(lut: LUT, device: int) -> DeviceModel:
    """The LUT's tables on ``device``, uploaded on first use and cached."""
    with _models_lock:
        per_device = _models.setdefault(lut, {})
        model = per_device.get(device)
        if model is None:
            model = per_device[device] = DeviceModel.upload(lut)
        return model


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
        per layered stage one per layer and chunk of planes (:mod:`lutsr._cuda.layered`).

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
                layered.run_layered(src, dst, stage, stream, alloc)
            else:
                simplex.run_simplex(src, dst, stage, stage_maps, self.lut.interval, stream)
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
        enqueued on the input's stream (see :func:`stream_of`) and not waited
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
        device = 0 if SIMULATOR else int(cuda.get_current_device().id)
        d_out = cuda.device_array(as_frames(out).shape, np.uint8)
        self.run(cuda.to_device(np.ascontiguousarray(frames)), d_out, device=device)
        as_frames(out)[...] = d_out.copy_to_host()
        return out

    def _up_device(self, img, out):
        img = as_interface_array(img)
        desc = check_device_array(img, "img")
        shape = tuple(desc["shape"])
        if len(shape) not in (2, 3, 4):
            raise ValueError(f"img must be HxW, HxWxC or NxHxWxC, got {len(shape)} dimensions "
                             f"{shape}")
        if 0 in shape:
            raise ValueError(f"img is empty: shape {shape}")
        s = self.lut.scale
        spatial = 0 if len(shape) == 2 else len(shape) - 3
        out_shape = tuple(n * s if spatial <= i < spatial + 2 else n for i, n in enumerate(shape))
        device = device_of(img)
        with cuda.gpus[device]:
            stream = stream_of(img)
            if out is None:
                out = given = empty_like_kind(img, out_shape, device, stream)
                out_desc = interface(out)
            else:
                given, out = out, as_interface_array(out)
                out_desc = self._check_out(out, out_shape, desc, device)

            def alloc(shp):
                # Intermediates from the caller's stream-ordered allocator.
                tmp = empty_like_kind(img, shp, device, stream)
                return frames_view(tmp, interface(tmp))

            self.run(frames_view(img, desc), frames_view(out, out_desc), stream=stream,
                     device=device, alloc=alloc)
        return given  # the caller's own object (not the CuPy view of a DLPack one)

    @staticmethod
    def _check_out(out, out_shape, img_desc: dict, device: int) -> dict:
        desc = check_device_array(out, "out")
        if tuple(desc["shape"]) != out_shape:
            raise ValueError(f"out has shape {tuple(desc['shape'])}, expected {out_shape}")
        if desc["data"][1]:
            raise ValueError("out is read-only")
        strides = desc.get("strides") or c_strides(tuple(desc["shape"]))
        if self_overlapping(desc["shape"], strides):
            raise ValueError(f"out has strides {tuple(strides)} under which elements share "
                             "memory (e.g. cupy.broadcast_to): threads would race on them")
        if device_of(out) != device:
            raise ValueError(f"out is on device {device_of(out)}, img on device {device}")
        lo, hi = extent(desc)
        img_lo, img_hi = extent(img_desc)
        if lo <= img_hi and img_lo <= hi:
            raise ValueError("out overlaps the input image")
        return desc

