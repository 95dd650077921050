"""Runtime speed of the numba backend beside OpenCV's bicubic resize, on the same frames.

The targets (issue 2), 480x270 RGB upscaled x4 to 1920x1080, 2 threads:
SR-LUT-S x4 median <= 12 ms and <= 6x ``cv2.resize(INTER_CUBIC)``; MuLUT-SDY x4
median <= 45 ms; a new process's first call (import, LUT load, first upscale,
numba cache warm) < 1.5 s. The bundled default ``x4``, an S table over a
linear base, runs beside them, and MuLUT-SDY reading its pixels through dense
learned 5x5 taps near its patterns, the run-time cost of such taps. Run::

    python -m pytest bench/test_bench_runtime.py --benchmark-only \
        --benchmark-columns=min,median,max,rounds
    python -m pytest bench/test_bench_runtime.py --benchmark-disable   # smoke: each case once

or, for a table with ratios to bicubic from interleaved rounds (robust to the
machine's load changing between cases)::

    python -m bench.test_bench_runtime [--rounds 60]    # from the repository root

Each pytest case calls its function once before timing, so numba's compile
(or cache load) is never timed. Cases in one ``group`` print as one table.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import lutsr
from bench.helpers import (
    SIZES,
    THREADS,
    conformance_model,
    cubic,
    lut_upscale,
    photo_frame,
    timed,
    with_dense_taps,
)

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- 480x270 -> 1080p


@pytest.mark.benchmark(group="x4 480x270 RGB -> 1920x1080 (astronaut)")
def test_cv2_cubic_480x270(benchmark, frame_480x270):
    timed(benchmark, cubic(frame_480x270), method="cv2.INTER_CUBIC")


@pytest.mark.benchmark(group="x4 480x270 RGB -> 1920x1080 (astronaut)")
@pytest.mark.parametrize("threads", [THREADS, 1])
@pytest.mark.parametrize("model", ["srlut_x4", "bundled_x4", "mulut_x4", "mulut_x4_taps5"])
def test_lutsr_480x270(benchmark, request, frame_480x270, model, threads):
    lut = request.getfixturevalue(model)
    timed(benchmark, lut_upscale(lut, frame_480x270, threads), model=model, threads=threads)


# --------------------------------------------------------------------------- worst case


@pytest.mark.benchmark(group="x4 480x270 RGB -> 1920x1080, worst case (random)")
def test_cv2_cubic_random(benchmark, random_frame_480x270):
    timed(benchmark, cubic(random_frame_480x270), method="cv2.INTER_CUBIC")


@pytest.mark.benchmark(group="x4 480x270 RGB -> 1920x1080, worst case (random)")
@pytest.mark.parametrize("model", ["srlut_x4", "random_srlut_x4", "mulut_x4"])
def test_lutsr_random_frame(benchmark, request, random_frame_480x270, model):
    lut = request.getfixturevalue(model)
    timed(benchmark, lut_upscale(lut, random_frame_480x270), model=model, frame="random")


# --------------------------------------------------------------------------- other sizes


@pytest.mark.parametrize("size", ["320x180", "960x540"])
@pytest.mark.parametrize("method", ["cv2 cubic", "SR-LUT-S x4"])
def test_other_sizes(benchmark, srlut_x4, size, method):
    benchmark.group = f"x4 {size} RGB (astronaut)"
    frame = photo_frame(*SIZES[size])
    fn = cubic(frame) if method == "cv2 cubic" else lut_upscale(srlut_x4, frame)
    timed(benchmark, fn, method=method, size=size)


# --------------------------------------------------------------------------- first call

FIRST_CALL = textwrap.dedent("""
    import sys, time
    t0 = time.perf_counter()
    import numpy as np
    import lutsr
    frame = np.load(sys.argv[1])
    out = lutsr.upscale(frame, sys.argv[2], threads=2)
    print(time.perf_counter() - t0)
""")


def first_call_seconds(frame_path: Path, lut_path: Path | str) -> tuple[float, float]:
    """Seconds from ``import lutsr`` to the first result inside a new process, and wall time.

    ``lut_path``: a ``.lutsr`` file or a bundled LUT's name.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", FIRST_CALL, str(frame_path), str(lut_path)],
                          capture_output=True, text=True, env=env, timeout=300, check=True)
    return float(done.stdout.strip().splitlines()[-1]), time.perf_counter() - start


@pytest.mark.benchmark(group="first call in a new process (import + LUT file load + upscale)")
def test_first_call_in_a_new_process(benchmark, tmp_path, frame_480x270, srlut_x4):
    frame_path, lut_path = tmp_path / "frame.npy", tmp_path / "srlut_x4.lutsr"
    np.save(frame_path, frame_480x270)
    lutsr.save(srlut_x4, lut_path)
    first_call_seconds(frame_path, lut_path)  # fills numba's cache if it is cold
    inside = []

    def once():
        inside.append(first_call_seconds(frame_path, lut_path)[0])

    benchmark.pedantic(once, rounds=5, iterations=1)
    benchmark.extra_info["in-process median (s)"] = statistics.median(inside)


# --------------------------------------------------------------------------- script


def main(argv=None) -> None:
    """Interleaved rounds of every case; a Markdown table of medians and ratios to bicubic."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args(argv)
    frame = photo_frame(*SIZES["480x270"])
    noise = np.random.default_rng(0).integers(0, 256, frame.shape, dtype=np.uint8)
    srlut, mulut = conformance_model("srlut_s_x4_q16"), conformance_model("mulut_sdy_x4_q16")
    default = lutsr.load_bundled("x4")
    tapped = with_dense_taps(mulut)
    cases = {
        "cv2 INTER_CUBIC (photo)": cubic(frame),
        f"SR-LUT-S x4 (photo), {THREADS} threads": lut_upscale(srlut, frame),
        "SR-LUT-S x4 (photo), 1 thread": lut_upscale(srlut, frame, 1),
        f"bundled x4, S + linear base (photo), {THREADS} threads": lut_upscale(default, frame),
        "bundled x4, S + linear base (photo), 1 thread": lut_upscale(default, frame, 1),
        f"MuLUT-SDY x4 (photo), {THREADS} threads": lut_upscale(mulut, frame),
        "MuLUT-SDY x4 (photo), 1 thread": lut_upscale(mulut, frame, 1),
        f"MuLUT-SDY x4, learned 5x5 taps (photo), {THREADS} threads": lut_upscale(tapped, frame),
        "MuLUT-SDY x4, learned 5x5 taps (photo), 1 thread": lut_upscale(tapped, frame, 1),
        "cv2 INTER_CUBIC (random)": cubic(noise),
        f"SR-LUT-S x4 (random), {THREADS} threads": lut_upscale(srlut, noise),
        f"MuLUT-SDY x4 (random), {THREADS} threads": lut_upscale(mulut, noise),
    }
    times = {name: [] for name in cases}
    cpu = {name: [] for name in cases}
    for fn in cases.values():
        fn()
    for _ in range(args.rounds):
        for name, fn in cases.items():
            c, t = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    with tempfile.TemporaryDirectory() as tmp:
        frame_path, lut_path = Path(tmp) / "frame.npy", Path(tmp) / "srlut.lutsr"
        np.save(frame_path, frame)
        lutsr.save(srlut, lut_path)
        first_call_seconds(frame_path, lut_path)
        first = [first_call_seconds(frame_path, lut_path) for _ in range(5)]
        first_call_seconds(frame_path, "x4")
        first_default = [first_call_seconds(frame_path, "x4") for _ in range(5)]
    print(f"480x270 RGB -> 1920x1080, {args.rounds} interleaved rounds; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print("| case | median ms | min ms | ratio to bicubic (median) | process CPU ms (median) |")
    print("|---|---|---|---|---|")
    for name, ts in times.items():
        ref = times["cv2 INTER_CUBIC (random)" if "random" in name else "cv2 INTER_CUBIC (photo)"]
        print(f"| {name} | {statistics.median(ts) * 1e3:.2f} | {min(ts) * 1e3:.2f} | "
              f"{statistics.median(ts) / statistics.median(ref):.1f}x | "
              f"{statistics.median(cpu[name]) * 1e3:.1f} |")
    print(f"\nfirst call in a new process (import lutsr, load .lutsr, upscale), 5 runs: "
          f"median {statistics.median(f[0] for f in first):.3f} s inside the process, "
          f"{statistics.median(f[1] for f in first):.3f} s wall including interpreter start; "
          f"the bundled x4: {statistics.median(f[0] for f in first_default):.3f} s / "
          f"{statistics.median(f[1] for f in first_default):.3f} s")


if __name__ == "__main__":
    main()
