"""The public entry points: :func:`upscale` and :class:`Upscaler`."""

from __future__ import annotations

import os
import threading
import weakref

import numpy as np

from . import bundled, reference
from .arrays import DLPACK_CUDA_DEVICES, as_frames, check_image, check_out
from .fileformat import load
from .model import LUT

BACKENDS = ("auto", "numba", "reference", "cuda", "webgpu")


def _on_device(a) -> bool:
    """True for a CUDA device array: CuPy, torch CUDA, numba, DLPack on CUDA. Imports nothing."""
    if a is None or isinstance(a, np.ndarray):
        return False
    if hasattr(a, "__cuda_array_interface__"):
        return True
    if type(a).__module__.startswith("numba.cuda.simulator"):
        return True  # numba's CUDA simulator arrays (NUMBA_ENABLE_CUDASIM=1): the tests' device
    dlpack_device = getattr(a, "__dlpack_device__", None)
    try:
        return dlpack_device is not None and dlpack_device()[0] in DLPACK_CUDA_DEVICES
    except Exception:  # a producer that cannot say where it lives is not a CUDA array
        return False


def _cuda_runner(lut: LUT):
    try:
        from . import _cuda  # imports numba.cuda: only when a GPU is asked for
    except ImportError as e:
        raise RuntimeError(f"backend 'cuda' needs numba.cuda, which failed to import: {e}") from e
    return _cuda.CudaRunner(lut)


def _webgpu_runner(lut: LUT):
    from . import _webgpu  # wgpu is imported by the runner: only when asked for

    return _webgpu.WebGPURunner(lut)


def resolve_lut(lut) -> LUT:
    """Return a :class:`LUT` from a LUT, a bundled name, a path, or None (the default)."""
    if isinstance(lut, LUT):
        return lut
    if lut is None:
        return bundled.load_bundled(bundled.DEFAULT)
    if isinstance(lut, (str, os.PathLike)):
        if isinstance(lut, str) and lut in bundled.names():
            return bundled.load_bundled(lut)
        if not os.path.exists(lut):
            raise ValueError(bundled.unknown_name(lut, file_too=True))
        return load(lut)
    raise TypeError(f"lut must be a LUT, a bundled name, a path or None, got {type(lut).__name__}")


class _ReferenceRunner:
    """Runs :mod:`lutsr.reference` frame by frame and channel by channel."""

    def __init__(self, lut: LUT):
        self.lut = lut

    def run(self, frames: np.ndarray, out: np.ndarray) -> None:
        for n in range(frames.shape[0]):
            for c in range(frames.shape[3]):
                out[n, :, :, c] = reference.run_lut(frames[n, :, :, c], self.lut)


def _make_runner(lut: LUT, backend: str, threads: int | None):
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    if backend == "reference":
        return _ReferenceRunner(lut)
    if backend == "cuda":
        return _cuda_runner(lut)
    if backend == "webgpu":
        return _webgpu_runner(lut)
    from . import _cpu  # numba import is deferred: `import lutsr` stays cheap

    return _cpu.NumbaRunner(lut, threads)


class Upscaler:
    """A LUT model bound to a backend, for a stream of frames.

    Holds the backend's prepared tables and scratch buffers, so calling it on
    frames of one size allocates nothing but (unless ``out`` is given) the
    result.

    Parameters
    ----------
    lut : LUT, str, path or None
        A model, a bundled name (see :func:`lutsr.bundled_names`), a ``.lutsr``
        path, or None for the bundled default.
    backend : {"auto", "numba", "reference", "cuda", "webgpu"}
        ``"auto"`` picks numba for numpy arrays and cuda for device arrays.
        ``"reference"`` is the slow numpy specification. ``"cuda"`` runs on
        the GPU (numpy arrays make a host round trip). ``"webgpu"`` runs on
        any GPU through wgpu (numpy in and out; the adapter from
        ``LUTSR_WEBGPU_ADAPTER``, else the best hardware one).
    threads : int, optional
        Worker threads for the numba backend (default: all cores).

    Notes
    -----
    Calls are thread-safe: the prepared tables are read-only and scratch
    buffers are per thread. The numba kernels release the GIL, so one
    Upscaler per video stream, each driven from its own thread, run in
    parallel.
    """

    def __init__(self, lut=None, *, backend: str = "auto", threads: int | None = None):
        self.lut = resolve_lut(lut)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or threads < 1):
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        self.backend = "numba" if backend == "auto" else backend
        self._runner = _make_runner(self.lut, backend, threads)
        self._auto = backend == "auto"
        self._cuda = self._runner if backend == "cuda" else None
        self._cuda_lock = threading.Lock()

    @property
    def scale(self) -> int:
        """The upscale factor."""
        return self.lut.scale

    def up(self, img: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Upscale ``img``; see :func:`lutsr.upscale` for the array conventions."""
        if self._cuda is not None or _on_device(img) or _on_device(out):
            return self._cuda_up(img, out)
        frames, out_shape = check_image(img, self.lut.scale)
        if out is None:
            out = np.empty(out_shape, np.uint8)
        else:
            check_out(out, out_shape, img)
        self._runner.run(frames, as_frames(out))
        return out

    __call__ = up

    def _cuda_up(self, img, out):
        if self._cuda is None:
            if not self._auto:
                raise TypeError(f"img is a device array ({type(img).__name__}); backend "
                                f"{self.backend!r} takes numpy arrays: use backend 'cuda' or "
                                "'auto'")
            with self._cuda_lock:
                if self._cuda is None:
                    self._cuda = _cuda_runner(self.lut)
        return self._cuda.up(img, out)


_upscalers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_upscalers_lock = threading.Lock()


def upscale(img: np.ndarray, lut=None, *, out: np.ndarray | None = None,
            backend: str = "auto", threads: int | None = None) -> np.ndarray:
    """Upscale an image or a batch of frames with a LUT model.

    Parameters
    ----------
    img : ndarray or CUDA device array of uint8
        ``(H, W)`` gray, ``(H, W, C)`` with any number of channels (each channel
        is processed independently, so RGB, BGR and RGBA all work), or
        ``(N, H, W, C)`` a batch of frames. A device array (CuPy, torch
        CUDA tensor, anything with ``__cuda_array_interface__`` or CUDA
        DLPack) runs on its GPU, on its current stream, without waiting.
    lut : LUT, str, path or None
        A model, a bundled name, a ``.lutsr`` path, or None for the bundled
        default ``x4``.
    out : ndarray or device array of uint8, optional
        Preallocated output of shape ``(H*s, W*s)``, ``(H*s, W*s, C)`` or
        ``(N, H*s, W*s, C)`` for scale ``s``; written in place and returned.
    backend : {"auto", "numba", "reference", "cuda", "webgpu"}
    threads : int, optional
        Worker threads for the numba backend.

    Returns
    -------
    ndarray of uint8
        The upscaled image, in the input's layout; for a device array input,
        a device array of the same kind on the same device.

    Raises
    ------
    TypeError
        ``img`` or ``out`` is not a uint8 numpy array.
    ValueError
        Empty or wrongly shaped input, wrong ``out`` shape, unknown backend.
    RuntimeError
        A device array or backend ``"cuda"`` on a machine without a usable GPU.
    """
    lut = resolve_lut(lut)
    key = (backend, threads)
    with _upscalers_lock:
        cache = _upscalers.setdefault(lut, {})
        upscaler = cache.get(key)
        if upscaler is None:
            upscaler = cache[key] = Upscaler(lut, backend=backend, threads=threads)
    return upscaler.up(img, out=out)
