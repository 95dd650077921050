"""Runtime of the WebGPU backend beside OpenCV's bicubic resize, on the same frame.

480x270 RGB upscaled x4 to 1920x1080 with the bundled ``x4`` (simplex + base),
``x4-sdy`` (two SDY stages) and ``x4-layered`` (a layered stage), numpy in and
numpy out. Besides the time of a whole call (as ``Upscaler`` makes it, upload,
kernels and read-back overlapping where wgpu allows), each case is run with
the device waited for after each phase, so that upload, kernels and read-back
are timed separately (``WebGPURunner.run(..., times=)``; the waits cost a
little, and the phases overlap no more).

The adapter is the one ``backend="webgpu"`` picks: the best hardware GPU, or
the one named by ``LUTSR_WEBGPU_ADAPTER`` (a software one only when named).
Mesa's lavapipe (``LUTSR_WEBGPU_ADAPTER=llvmpipe``) runs the shaders on the
CPU: its numbers are for catching regressions, not for speed. Run::

    LUTSR_WEBGPU_ADAPTER=llvmpipe python -m pytest bench/test_bench_webgpu.py --benchmark-only \
        --benchmark-columns=min,median,max,rounds
    python -m pytest bench/test_bench_webgpu.py --benchmark-disable   # smoke: each case once

or, for a table of medians per phase and ratios to bicubic from interleaved
rounds (robust to the machine's load changing between cases)::

    python -m bench.test_bench_webgpu [--rounds 10] [--adapter NAME]    # from the root

Without wgpu or a usable adapter the pytest cases skip (the script says why).
Each case is called once before timing, so the first call (shader compile,
table upload, per-size buffers) is never in the per-frame times; the script
reports it on its own.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np
import pytest

import lutsr
from bench.helpers import SIZES, cubic, photo_frame

#: The bundled LUTs timed: simplex with a base, two simplex stages, layered.
MODELS = ("x4", "x4-sdy", "x4-layered")

#: Timed calls per pytest case (a software adapter takes seconds per layered frame).
ROUNDS = 5

#: The phases ``WebGPURunner.run(..., times=)`` reports, in order.
PHASES = ("upload", "kernels", "readback")

GROUP = "webgpu x4 480x270 RGB -> 1920x1080 (astronaut)"


def unavailable(adapter: str | None = None) -> str | None:
    """Why the WebGPU backend cannot run here (with ``adapter``, as ``backend="webgpu"``
    would pick it), or None when it can."""
    from lutsr._webgpu import device

    try:
        device.import_wgpu()
        device.device(adapter)
    except RuntimeError as exc:
        return str(exc)
    return None


def webgpu_upscale(lut, frame: np.ndarray, adapter: str | None = None):
    """``(call, phases)``: a WebGPU upscale of ``frame`` into a preallocated output, and the
    same call returning its seconds per phase (upload, kernels, read-back)."""
    from lutsr._webgpu import WebGPURunner

    runner = WebGPURunner(lut, adapter)
    frames = frame[None]
    out = np.empty((1, frame.shape[0] * lut.scale, frame.shape[1] * lut.scale, frame.shape[2]),
                   np.uint8)

    def call():
        runner.run(frames, out)

    def phases() -> dict:
        times: dict = {}
        runner.run(frames, out, times)
        return times

    return call, phases


_SKIP = unavailable()


@pytest.fixture(scope="module", params=MODELS)
def webgpu_model(request):
    if _SKIP is not None:
        pytest.skip(_SKIP)
    if request.param not in lutsr.bundled_names():
        pytest.skip(f"no bundled {request.param} LUT")
    return request.param, lutsr.load_bundled(request.param)


@pytest.mark.benchmark(group=GROUP)
def test_cv2_cubic(benchmark, frame_480x270):
    fn = cubic(frame_480x270)
    fn()
    benchmark.extra_info.update(method="cv2.INTER_CUBIC")
    benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group=GROUP)
def test_webgpu_480x270(benchmark, frame_480x270, webgpu_model):
    from lutsr._webgpu import device

    name, lut = webgpu_model
    call, phases = webgpu_upscale(lut, frame_480x270)
    call()  # first call: shader compile, table upload, buffers for this size
    # Per-phase medians beside the whole call's time (pytest-benchmark times the whole call).
    laps = [phases() for _ in range(1 if benchmark.disabled else ROUNDS)]
    benchmark.extra_info.update(
        model=name, adapter=device.describe(device.device()[0]),
        **{f"{p}_ms_median": round(1e3 * statistics.median(t[p] for t in laps), 3)
           for p in PHASES})
    assert all(t[p] >= 0 for t in laps for p in PHASES)
    benchmark.pedantic(call, rounds=ROUNDS, iterations=1, warmup_rounds=1)


def main(argv=None) -> int:
    """Interleaved rounds of every case; a Markdown table of per-phase medians and ratios."""
    import argparse

    from lutsr._webgpu import device

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--adapter", default=None,
                        help="adapter name (a substring, e.g. llvmpipe); default "
                             "LUTSR_WEBGPU_ADAPTER, else the best hardware adapter")
    args = parser.parse_args(argv)
    why = unavailable(args.adapter)
    if why is not None:
        print(f"test_bench_webgpu: {why}", file=sys.stderr)
        return 1
    frame = photo_frame(*SIZES["480x270"])
    load = os.getloadavg()
    cases, first = {"cv2 INTER_CUBIC": (cubic(frame), None)}, {}
    for name in MODELS:
        call, phases = webgpu_upscale(lutsr.load_bundled(name), frame, args.adapter)
        t = time.perf_counter()
        call()
        first[name] = time.perf_counter() - t
        cases[name] = call, phases
    cases["cv2 INTER_CUBIC"][0]()
    totals = {name: [] for name in cases}
    laps = {name: [] for name in MODELS}
    for _ in range(args.rounds):
        for name, (call, phases) in cases.items():
            t = time.perf_counter()
            call()
            totals[name].append(time.perf_counter() - t)
            if phases is not None:
                laps[name].append(phases())
    adapter = device.describe(device.device(args.adapter)[0])
    print(f"480x270 RGB -> 1920x1080 on {adapter}, {args.rounds} interleaved rounds; load "
          f"average {load[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end, on "
          f"{os.cpu_count()} CPUs\n")
    print("| case | first call ms | median ms | upload ms | kernels ms | read-back ms | "
          "phases sum ms | ratio to bicubic (median) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    ref = statistics.median(totals["cv2 INTER_CUBIC"])
    for name, ts in totals.items():
        med = statistics.median(ts)
        cells = [f"{first[name] * 1e3:.0f}" if name in first else ""]
        cells.append(f"{med * 1e3:.2f}")
        if name in laps:
            phase = [statistics.median(t[p] for t in laps[name]) for p in PHASES]
            cells += [f"{v * 1e3:.2f}" for v in phase] + [f"{sum(phase) * 1e3:.2f}"]
        else:
            cells += [""] * 4
        label = name if name not in first else f"webgpu {name}"
        print(f"| {label} | {' | '.join(cells)} | {med / ref:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
