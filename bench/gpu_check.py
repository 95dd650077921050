#!/usr/bin/env python
"""The GPU check: run once on a machine with a GPU, send back its output.

lutsr's CUDA kernels have only run in numba's CUDA simulator, and its WebGPU
kernels only on Mesa's software Vulkan driver (lavapipe). This script is what
a person with a GPU runs (a few minutes) to find out whether they are right
and how fast they are, CUDA and WebGPU side by side in one run::

    pip install -e ".[gpu,webgpu,test]"   # or .[gpu-cu13,webgpu,test]; not NVIDIA: .[webgpu,test]
    python bench/gpu_check.py > gpu_check.jsonl

Each part runs when it can: CUDA when numba.cuda finds a GPU, WebGPU when
wgpu finds a hardware adapter (the best one, or the one ``--webgpu-adapter``
or ``LUTSR_WEBGPU_ADAPTER`` names); a part that cannot run is one
``{"check": "skipped", "backend": ...}`` line, and only when neither can does
the run fail at once. It prints one JSON object per line (each check's
``"backend"`` says which):

- ``{"check": "exact", ...}``: every bundled LUT and a layered one, on a
  480x270 RGB frame given as each array kind present (numba device array,
  CuPy, a strided CuPy view, torch, a DLPack-only wrapper), single and batched
  (N = 3), with and without a preallocated ``out``, compared with the CPU
  backend byte for byte (``"ok": false`` carries the count of differing bytes);
- ``{"check": "stream", ...}``: the first call for a new LUT and frame size on a
  non-blocking CuPy or torch stream, synchronised on that stream only, then
  compared (a missed wait for the uploaded tables shows here);
- ``{"check": "time", ...}``: per LUT and size (480x270 -> 1080p and
  960x540 -> 4K, x4): the first call (kernel compile and uploads), the time to
  enqueue one frame, and the median GPU time per frame over 30 frames;
- WebGPU: ``{"check": "exact", "backend": "webgpu", ...}`` for the same LUTs
  and frames (numpy in and out, with and without ``out``), and
  ``{"check": "time", "backend": "webgpu", ...}`` at the same sizes: the first
  call (runner creation with its table upload, per-size buffers, and the
  shader compile the first time a kind of stage is seen), the median time per
  frame over 30 frames, and the medians of upload, kernels and read-back, each
  phase waited for on its own (``WebGPURunner.run(..., times=)``);
- ``{"check": "environment", ...}`` first (with the WebGPU adapter used), and
  ``{"check": "skipped", ...}`` for an array kind whose library is missing or a
  backend that cannot run here.

``--smoke`` shrinks everything to a few tiny frames and one LUT of each kind
and needs no GPU under ``NUMBA_ENABLE_CUDASIM=1``; with ``--webgpu-adapter
llvmpipe`` it checks the WebGPU part on lavapipe too. CI runs it that way
(``tests/test_gpu_check.py``) so that the script never rots. A software
adapter is used only in smoke mode: the full check times GPUs. The exit
status is 1 when any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

import lutsr


def _emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def _layered_lut(scale: int = 4, seed: int = 0) -> lutsr.LUT:
    """A layered LUT of ShiftLUT-M's shape (2 blocks, 16 channels) with random tables."""
    from lutsr.layered import HIGH_LEVELS, LOW_LEVELS, LayeredStage, TableLayer

    rng = np.random.default_rng(seed)
    c = scale * scale

    def layer(kind, inputs, levels, shifted=False):
        tables = rng.integers(-24, 25, (inputs, c, levels)).astype(np.int8)
        shifts = rng.integers(-2, 3, (2, inputs)).astype(np.int8) if shifted else None
        return TableLayer(kind, tables, np.ones((inputs, c), np.uint8), shifts)

    blocks = tuple((layer("depthwise", 9, HIGH_LEVELS), layer("pointwise", c, HIGH_LEVELS, True))
                   for _ in range(2))
    stage = LayeredStage(scale, blocks, layer("depthwise", 9, LOW_LEVELS),
                         layer("pointwise", c, HIGH_LEVELS))
    return lutsr.LUT(stages=(stage,), name="random-layered-M")


class _DLPackOnly:
    """An array that offers only DLPack (as JAX's and others' do)."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


def _kinds(smoke: bool) -> dict:
    """Array kind -> (to_device(host), to_host(device), alloc(shape)), for the libraries present."""
    from numba import cuda

    kinds = {"numba": (cuda.to_device, lambda d: d.copy_to_host(),
                       lambda shape: cuda.device_array(shape, np.uint8))}
    if smoke:
        return kinds
    try:
        import cupy
    except ImportError:
        _emit({"check": "skipped", "kind": "cupy", "why": "CuPy is not installed"})
    else:
        kinds["cupy"] = (cupy.asarray, cupy.asnumpy, lambda shape: cupy.empty(shape, cupy.uint8))

        def strided(host):  # every other column of a twice-wide frame: a non-contiguous view
            wide = cupy.zeros((*host.shape[:-2], host.shape[-2] * 2, host.shape[-1]), cupy.uint8)
            wide[..., ::2, :] = cupy.asarray(host)
            return wide[..., ::2, :]

        kinds["cupy-strided"] = (strided, cupy.asnumpy,
                                 lambda shape: cupy.empty(shape, cupy.uint8))
        kinds["dlpack"] = (lambda h: _DLPackOnly(cupy.asarray(h)),
                           lambda d: cupy.asnumpy(cupy.from_dlpack(d)),
                           lambda shape: _DLPackOnly(cupy.empty(shape, cupy.uint8)))
    try:
        import torch
    except ImportError:
        _emit({"check": "skipped", "kind": "torch", "why": "torch is not installed"})
    else:
        if torch.cuda.is_available():
            kinds["torch"] = (lambda h: torch.from_numpy(np.ascontiguousarray(h)).cuda(),
                              lambda d: d.cpu().numpy(),
                              lambda shape: torch.empty(shape, dtype=torch.uint8, device="cuda"))
        else:
            _emit({"check": "skipped", "kind": "torch", "why": "torch has no CUDA"})
    return kinds


def _synchronize() -> None:
    from numba import cuda

    cuda.synchronize()


def check_exact(luts, kinds, frame: np.ndarray) -> bool:
    ok_all = True
    batch = np.stack([frame, frame[::-1], np.ascontiguousarray(frame[:, ::-1])])
    for lut in luts:
        for images in (frame, batch):
            want = lutsr.upscale(images, lut, backend="numba")
            for kind, (to_device, to_host, alloc) in kinds.items():
                for with_out in (False, True):
                    record = {"check": "exact", "backend": "cuda", "lut": lut.name,
                              "kind": kind, "shape": list(images.shape), "out": with_out}
                    try:
                        out = alloc(want.shape) if with_out else None
                        got = lutsr.upscale(to_device(images), lut, out=out, backend="cuda")
                        if with_out and got is not out:
                            raise AssertionError("out= was not returned as given")
                        _synchronize()
                        diff = int(np.count_nonzero(to_host(got) != want))
                        record.update(ok=diff == 0, differing_bytes=diff)
                    except Exception as exc:  # report every case, keep going
                        record.update(ok=False, error=f"{type(exc).__name__}: {exc}")
                    ok_all &= record["ok"]
                    _emit(record)
    return ok_all


def check_streams(frame: np.ndarray, smoke: bool) -> bool:
    """First calls (fresh LUT objects: fresh uploads) on non-blocking streams."""
    if smoke:
        return True
    ok_all = True
    want_lut = lutsr.load_bundled("x4")
    want = lutsr.upscale(frame, want_lut, backend="numba")
    runs = []
    try:
        import cupy

        def on_cupy():
            stream = cupy.cuda.Stream(non_blocking=True)
            with stream:
                got = lutsr.upscale(cupy.asarray(frame), lutsr.load_bundled("x4"))
            stream.synchronize()
            return cupy.asnumpy(got)

        runs.append(("cupy", on_cupy))
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            def on_torch():
                stream = torch.cuda.Stream()  # torch's streams do not wait on the legacy one
                with torch.cuda.stream(stream):
                    got = lutsr.upscale(torch.from_numpy(frame).cuda(), lutsr.load_bundled("x4"))
                stream.synchronize()
                return got.cpu().numpy()

            runs.append(("torch", on_torch))
    except ImportError:
        pass
    for kind, run in runs:
        record = {"check": "stream", "kind": kind}
        try:
            diff = int(np.count_nonzero(run() != want))
            record.update(ok=diff == 0, differing_bytes=diff)
        except Exception as exc:
            record.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        ok_all &= record["ok"]
        _emit(record)
    return ok_all


def check_times(luts, kinds, sizes, frames: int) -> None:
    to_device, _, alloc = kinds.get("cupy", kinds["numba"])
    rng = np.random.default_rng(1)
    for lut in luts:
        for h, w in sizes:
            img = to_device(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            out = alloc((h * lut.scale, w * lut.scale, 3))
            up = lutsr.Upscaler(lut, backend="cuda")
            t0 = time.perf_counter()
            up(img, out=out)
            _synchronize()
            first = time.perf_counter() - t0
            enqueue, per_frame = [], []
            for _ in range(frames):
                t0 = time.perf_counter()
                up(img, out=out)
                t1 = time.perf_counter()
                _synchronize()
                enqueue.append(t1 - t0)
                per_frame.append(time.perf_counter() - t0)
            _emit({"check": "time", "backend": "cuda", "lut": lut.name, "input": [w, h],
                   "output": [w * lut.scale, h * lut.scale], "first_call_s": round(first, 4),
                   "enqueue_ms_median": round(1e3 * float(np.median(enqueue)), 3),
                   "frame_ms_median": round(1e3 * float(np.median(per_frame)), 3)})


def webgpu_adapter(smoke: bool) -> tuple[str | None, str]:
    """``(summary, "")`` of the adapter ``backend="webgpu"`` uses here, or ``(None, why)`` when
    the WebGPU checks cannot run (a software adapter runs them only with ``smoke``)."""
    from lutsr._webgpu import device

    try:
        device.import_wgpu()
        adapter, _ = device.device()
    except RuntimeError as exc:
        return None, str(exc)
    if adapter.info.get("adapter_type") == "CPU" and not smoke:
        return None, (f"{device.describe(adapter)} is a software adapter (the CPU): the full "
                      "check times GPUs; check it with --smoke")
    return device.describe(adapter), ""


def check_webgpu_exact(luts, frame: np.ndarray) -> bool:
    """Every LUT on ``frame`` and a batch of three, with and without ``out``, against numba."""
    ok_all = True
    batch = np.stack([frame, frame[::-1], np.ascontiguousarray(frame[:, ::-1])])
    for lut in luts:
        up = None
        for images in (frame, batch):
            want = lutsr.upscale(images, lut, backend="numba")
            for with_out in (False, True):
                record = {"check": "exact", "backend": "webgpu", "lut": lut.name,
                          "kind": "numpy", "shape": list(images.shape), "out": with_out}
                try:
                    up = up or lutsr.Upscaler(lut, backend="webgpu")
                    out = np.empty_like(want) if with_out else None
                    got = up(images, out=out)
                    if with_out and got is not out:
                        raise AssertionError("out= was not returned as given")
                    diff = int(np.count_nonzero(got != want))
                    record.update(ok=diff == 0, differing_bytes=diff)
                except Exception as exc:  # report every case, keep going
                    record.update(ok=False, error=f"{type(exc).__name__}: {exc}")
                ok_all &= record["ok"]
                _emit(record)
    return ok_all


def check_webgpu_times(luts, sizes, frames: int) -> bool:
    """Per LUT and size: the first call, the median frame, and the median of each phase."""
    from lutsr._webgpu import WebGPURunner

    ok_all = True
    rng = np.random.default_rng(1)
    for lut in luts:
        for h, w in sizes:
            record = {"check": "time", "backend": "webgpu", "lut": lut.name, "input": [w, h],
                      "output": [w * lut.scale, h * lut.scale]}
            try:
                img = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)
                out = np.empty((1, h * lut.scale, w * lut.scale, 3), np.uint8)
                t0 = time.perf_counter()
                runner = WebGPURunner(lut)  # uploads the tables (CUDA: in the first call)
                runner.run(img, out)
                first = time.perf_counter() - t0
                per_frame = []
                for _ in range(frames):
                    t0 = time.perf_counter()
                    runner.run(img, out)
                    per_frame.append(time.perf_counter() - t0)
                phases = []
                for _ in range(frames):
                    phases.append({})
                    runner.run(img, out, phases[-1])
                record.update(
                    first_call_s=round(first, 4),
                    frame_ms_median=round(1e3 * float(np.median(per_frame)), 3),
                    **{f"{p}_ms_median": round(1e3 * float(np.median([t[p] for t in phases])), 3)
                       for p in ("upload", "kernels", "readback")})
            except Exception as exc:  # report every case, keep going
                record.update(ok=False, error=f"{type(exc).__name__}: {exc}")
                ok_all = False
            _emit(record)
    return ok_all


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny frames, one LUT of each kind (runs in numba's CUDA simulator)")
    parser.add_argument("--webgpu-adapter", metavar="NAME", default=None,
                        help="the WebGPU adapter to check (a case-insensitive part of its name, "
                             "e.g. llvmpipe with --smoke); default LUTSR_WEBGPU_ADAPTER, else "
                             "the best hardware adapter")
    args = parser.parse_args(argv)
    import numba
    from numba import cuda

    from lutsr._webgpu.device import ADAPTER_ENV

    if args.webgpu_adapter:  # as backend="webgpu" reads it, in this process
        os.environ[ADAPTER_ENV] = args.webgpu_adapter
    simulator = bool(numba.config.ENABLE_CUDASIM)
    env = {"check": "environment", "lutsr": lutsr.__version__, "numba": numba.__version__,
           "numpy": np.__version__, "python": platform.python_version(), "simulator": simulator}
    webgpu, webgpu_why = webgpu_adapter(args.smoke)
    if webgpu is not None:
        import wgpu

        env.update(wgpu=wgpu.__version__, webgpu_adapter=webgpu)
    has_cuda = simulator or cuda.is_available()
    if not has_cuda and webgpu is None:
        env.update(error="numba.cuda finds no GPU", webgpu=webgpu_why)
        _emit(env)
        return 1
    if not simulator and has_cuda:
        device = cuda.get_current_device()
        env.update(gpu=device.name.decode() if isinstance(device.name, bytes) else device.name,
                   compute_capability=list(device.compute_capability))
    _emit(env)
    if not has_cuda:
        _emit({"check": "skipped", "backend": "cuda", "why": "numba.cuda finds no GPU"})
    if webgpu is None:
        _emit({"check": "skipped", "backend": "webgpu", "why": webgpu_why})
    rng = np.random.default_rng(0)
    if args.smoke:
        frame = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
        luts = [lutsr.load_bundled("x2-s"), _layered_lut(scale=2)]
    else:
        frame = rng.integers(0, 256, (270, 480, 3), dtype=np.uint8)
        luts = [lutsr.load_bundled(name) for name in lutsr.bundled_names()] + [_layered_lut()]
    timed = luts[:1] if args.smoke else [lut for lut in luts if lut.scale == 4]
    sizes, frames = ([(4, 6)], 2) if args.smoke else ([(270, 480), (540, 960)], 30)
    ok = True
    if has_cuda:
        kinds = _kinds(args.smoke)
        ok &= check_exact(luts, kinds, frame)
        ok &= check_streams(frame, args.smoke)
        check_times(timed, kinds, sizes, frames)
    if webgpu is not None:
        ok &= check_webgpu_exact(luts, frame)
        ok &= check_webgpu_times(timed, sizes, frames)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
