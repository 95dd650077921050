#!/usr/bin/env python
"""The GPU check: run once on a machine with an NVIDIA GPU, send back its output.

lutsr's CUDA kernels have only run in numba's CUDA simulator. This script is
what a person with a GPU runs (a few minutes) to find out whether they are
right and how fast they are::

    pip install -e ".[gpu,test]"          # or .[gpu-cu13,test]
    python bench/gpu_check.py > gpu_check.jsonl

It prints one JSON object per line:

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
- ``{"check": "environment", ...}`` first, and ``{"check": "skipped", ...}`` for
  an array kind whose library is missing.

``--smoke`` shrinks everything to a few tiny frames and one LUT of each kind
and needs no GPU under ``NUMBA_ENABLE_CUDASIM=1``: CI runs it that way
(``tests/test_gpu_check.py``) so that the script never rots. The exit status is
1 when any check failed.
"""

from __future__ import annotations

import argparse
import json
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
                    record = {"check": "exact", "lut": lut.name, "kind": kind,
                              "shape": list(images.shape), "out": with_out}
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
            _emit({"check": "time", "lut": lut.name, "input": [w, h],
                   "output": [w * lut.scale, h * lut.scale], "first_call_s": round(first, 4),
                   "enqueue_ms_median": round(1e3 * float(np.median(enqueue)), 3),
                   "frame_ms_median": round(1e3 * float(np.median(per_frame)), 3)})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny frames, one LUT of each kind (runs in numba's CUDA simulator)")
    args = parser.parse_args(argv)
    import numba
    from numba import cuda

    simulator = bool(numba.config.ENABLE_CUDASIM)
    env = {"check": "environment", "lutsr": lutsr.__version__, "numba": numba.__version__,
           "numpy": np.__version__, "python": platform.python_version(), "simulator": simulator}
    if not simulator:
        if not cuda.is_available():
            env["error"] = "numba.cuda finds no GPU"
            _emit(env)
            return 1
        device = cuda.get_current_device()
        env.update(gpu=device.name.decode() if isinstance(device.name, bytes) else device.name,
                   compute_capability=list(device.compute_capability))
    _emit(env)
    rng = np.random.default_rng(0)
    if args.smoke:
        frame = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
        luts = [lutsr.load_bundled("x2-s"), _layered_lut(scale=2)]
    else:
        frame = rng.integers(0, 256, (270, 480, 3), dtype=np.uint8)
        luts = [lutsr.load_bundled(name) for name in lutsr.bundled_names()] + [_layered_lut()]
    kinds = _kinds(args.smoke)
    ok = check_exact(luts, kinds, frame)
    ok &= check_streams(frame, args.smoke)
    if args.smoke:
        check_times(luts[:1], kinds, [(4, 6)], frames=2)
    else:
        x4 = [lut for lut in luts if lut.scale == 4]
        check_times(x4, kinds, [(270, 480), (540, 960)], frames=30)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
