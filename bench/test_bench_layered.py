"""Runtime of layered LUTs (the ShiftLUT family) beside OpenCV's bicubic resize, on the same frames.

The targets, 480x270 RGB upscaled x4 to 1920x1080 with 2 threads, per frame:
ShiftLUT-S (1 block) median <= 60 ms, ShiftLUT-M (2 blocks) <= 100 ms,
ShiftLUT-L (8 blocks) <= 400 ms; bundled layered LUTs (``x4-layered``)
<= 100 ms, timed with their own tables. The ShiftLUT models have random tables of the
published shapes (``r = 4``, 16 channels, random steps, every pointwise layer
shifted within +-2 as in ``../shared/conformance/shiftlut/s2_x4_shift2``):
the kernels' cost depends on the shapes only, not on the values. Run::

    python -m pytest bench/test_bench_layered.py --benchmark-only \
        --benchmark-columns=min,median,max,rounds
    python -m pytest bench/test_bench_layered.py --benchmark-disable   # smoke: each case once

or, for a table with ratios to bicubic from interleaved rounds (robust to the
machine's load changing between cases)::

    python -m bench.test_bench_layered [--rounds 30]    # from the repository root

Each pytest case calls its function once before timing, so numba's compile
(or cache load) is never timed.
"""

from __future__ import annotations

import os
import statistics
import time

import pytest

import lutsr
from bench.helpers import (
    SHIFTLUT_BLOCKS,
    SIZES,
    THREADS,
    cubic,
    lut_upscale,
    photo_frame,
    random_shiftlut,
    timed,
)
from lutsr.layered import LayeredStage

#: Per-frame targets (ms) at 480x270 RGB -> 1920x1080, 2 threads.
TARGETS_MS = {"ShiftLUT-S": 60, "ShiftLUT-M": 100, "ShiftLUT-L": 400, "x4-layered": 100}

#: The bundled layered LUTs, timed with their trained tables.
BUNDLED = [name for name in lutsr.bundled_names()
           if all(isinstance(s, LayeredStage) for s in lutsr.load_bundled(name).stages)]


def _model(name: str) -> lutsr.LUT:
    return lutsr.load_bundled(name) if name in BUNDLED else random_shiftlut(name)


@pytest.fixture(scope="module", params=[*SHIFTLUT_BLOCKS, *BUNDLED])
def layered_model(request):
    return request.param, _model(request.param)


GROUP = "layered x4 480x270 RGB -> 1920x1080 (astronaut)"


@pytest.mark.benchmark(group=GROUP)
def test_cv2_cubic(benchmark, frame_480x270):
    timed(benchmark, cubic(frame_480x270), method="cv2.INTER_CUBIC")


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("threads", [THREADS, 1])
def test_layered_480x270(benchmark, frame_480x270, layered_model, threads):
    name, lut = layered_model
    timed(benchmark, lut_upscale(lut, frame_480x270, threads), model=name, threads=threads,
          target_ms=TARGETS_MS[name] if threads == THREADS else None)


def main(argv=None) -> None:
    """Interleaved rounds of every case; a Markdown table of medians and ratios to bicubic."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    frame = photo_frame(*SIZES["480x270"])
    cases = {"cv2 INTER_CUBIC": cubic(frame)}
    for name in [*SHIFTLUT_BLOCKS, *BUNDLED]:
        lut = _model(name)
        cases[f"{name}, {THREADS} threads"] = lut_upscale(lut, frame)
        cases[f"{name}, 1 thread"] = lut_upscale(lut, frame, 1)
    times = {name: [] for name in cases}
    for fn in cases.values():
        fn()
    for _ in range(args.rounds):
        for name, fn in cases.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    print(f"480x270 RGB -> 1920x1080, {args.rounds} interleaved rounds; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print("| case | median ms | min ms | target ms | ratio to bicubic (median) |")
    print("|---|---|---|---|---|")
    ref = statistics.median(times["cv2 INTER_CUBIC"])
    for name, ts in times.items():
        model = name.split(",")[0]
        target = TARGETS_MS.get(model) if f"{THREADS} threads" in name else None
        print(f"| {name} | {statistics.median(ts) * 1e3:.2f} | {min(ts) * 1e3:.2f} | "
              f"{target or ''} | {statistics.median(ts) / ref:.1f}x |")


if __name__ == "__main__":
    main()
