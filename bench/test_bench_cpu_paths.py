"""Every LUT on each numba CPU path, on the same frame in the same run, beside OpenCV's bicubic.

The paths: **AVX-512** (this process, where the CPU has AVX-512BW), the
**AVX2 build** (a child process whose numba compiles for an AVX2-only CPU,
``haswell`` with every AVX-512 feature off, and its own numba cache: the
code an AVX2 machine runs, executed natively here) and, for layered stages,
**portable** (this process, :data:`lutsr._cpu.layered_plan.PORTABLE` set).
Models: the ShiftLUT-S/-M/-L shapes with random tables (``bench/helpers.py``)
and every bundled LUT, each on the frame that gives a 1920x1080 output
(480x270 for x4, 640x360 for x3, 960x540 for x2) at 2 threads. The child
takes commands on a pipe, so a round of the script mode runs every case of
every path one after another (robust to the load changing). Run::

    python -m bench.test_bench_cpu_paths [--rounds 10] [--portable]    # from the root
    python -m pytest bench/test_bench_cpu_paths.py --benchmark-only \
        --benchmark-columns=min,median,max,rounds
    python -m pytest bench/test_bench_cpu_paths.py --benchmark-disable   # smoke

A case of the AVX2 build is timed in the child (its own clock), the pytest
cases around a pipe round trip (tens of microseconds more).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import lutsr
from bench.helpers import (
    AVX2_BUILD_ENV,
    SHIFTLUT_BLOCKS,
    THREADS,
    cubic,
    lut_upscale,
    photo_frame,
    random_shiftlut,
)
from lutsr._cpu import avx512bw_available, layered_plan
from lutsr.bundled import names as bundled_names

#: The input frame of each scale: a 1920x1080 output.
FRAMES = {2: (960, 540), 3: (640, 360), 4: (480, 270)}

MODELS = [*bundled_names(), *SHIFTLUT_BLOCKS]

GROUP = "CPU paths, RGB -> 1920x1080 (astronaut)"


def _model(name: str) -> lutsr.LUT:
    return random_shiftlut(name) if name in SHIFTLUT_BLOCKS else lutsr.load_bundled(name)


def _layered(name: str) -> bool:
    return any(isinstance(s, lutsr.LayeredStage) for s in _model(name).stages)


def _frame(scale: int):
    return photo_frame(*FRAMES[scale])


def local_case(name: str, portable: bool = False):
    """The upscale of its frame by model ``name`` in this process (a callable; compiled by a
    first call here), on the portable kernels when ``portable``; ``cv2xS`` is bicubic xS."""
    if name.startswith("cv2x"):
        scale = int(name[4:])
        return cubic(_frame(scale), scale)
    saved = layered_plan.PORTABLE
    layered_plan.PORTABLE = portable
    try:
        lut = _model(name)
        fn = lut_upscale(lut, _frame(lut.scale))  # the kernels are chosen here
    finally:
        layered_plan.PORTABLE = saved
    fn()
    return fn


class AVX2Build:
    """A child process running the AVX2 build: ``time(case)`` runs one case there, returns
    its seconds (timed in the child)."""

    def __init__(self):
        env = {**os.environ, **AVX2_BUILD_ENV, "LUTSR_PORTABLE_KERNEL": "0",
               "NUMBA_CACHE_DIR": str(Path(tempfile.gettempdir()) / "lutsr-numba-avx2-build")}
        # As a module from the repository root, so that it imports bench.helpers as this one does.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.test_bench_cpu_paths", "--child"], env=env,
            cwd=Path(__file__).resolve().parents[1], text=True, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE)
        self.paths = self._ask("paths")

    def _ask(self, command: str):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the AVX2 build's process ended (exit {self.proc.wait()})")
        return json.loads(line)

    def time(self, case: str) -> float:
        return self._ask(case)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _child() -> None:
    """The child's loop: ``paths`` answers which kernels its layered stages run; a case name
    (a model, or ``cv2xS``) runs it once (compiled on first use) and answers its seconds."""
    cases = {}
    for line in sys.stdin:
        command = line.strip()
        if command == "paths":
            ps = layered_plan.PreparedLayered(_model("ShiftLUT-S").stages[0])
            answer = {"avx512bw": avx512bw_available(), "lanes": ps.lanes, "avx2": ps.avx2}
        else:
            if command not in cases:
                cases[command] = local_case(command)
            t = time.perf_counter()
            cases[command]()
            answer = time.perf_counter() - t
        print(json.dumps(answer), flush=True)


# --------------------------------------------------------------------------- pytest-benchmark


@pytest.fixture(scope="module")
def avx2_build():
    build = AVX2Build()
    assert build.paths == {"avx512bw": False, "lanes": False, "avx2": True}, build.paths
    yield build
    build.close()


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("scale", sorted(FRAMES))
def test_cv2_cubic(benchmark, scale):
    benchmark.pedantic(local_case(f"cv2x{scale}"), rounds=20, iterations=1, warmup_rounds=2)


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("path", ["AVX-512", "AVX2 build", "portable"])
def test_cpu_path(benchmark, avx2_build, model, path):
    if path == "AVX-512" and not avx512bw_available():
        pytest.skip("no AVX-512BW here")
    if path == "portable" and not _layered(model):
        pytest.skip("the portable path is a layered stages' one")
    if path == "AVX2 build":
        avx2_build.time(model)  # compile (or load from the child's cache)
        fn = lambda: avx2_build.time(model)  # noqa: E731
    else:
        fn = local_case(model, portable=path == "portable")
    benchmark.extra_info.update(model=model, path=path, threads=THREADS)
    rounds = 3 if path == "portable" else 20
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)


# --------------------------------------------------------------------------- script mode


def main(argv=None) -> None:
    """Interleaved rounds of every case; a Markdown table of medians and ratios to bicubic."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--models", nargs="+", default=MODELS, metavar="NAME",
                        help="bundled LUTs and ShiftLUT shapes (default: all)")
    parser.add_argument("--portable", action="store_true",
                        help="time layered stages on the portable path too (about 13x slower)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child()
        return
    build = AVX2Build()
    if build.paths != {"avx512bw": False, "lanes": False, "avx2": True}:
        raise SystemExit(f"the child did not select the AVX2 kernels: {build.paths}")
    paths = (["AVX-512"] if avx512bw_available() else []) + ["AVX2 build"]
    paths += ["portable"] if args.portable else []
    scale = {m: _model(m).scale for m in args.models}
    cases = {}
    for s in sorted(set(scale.values())):
        cases[f"cv2x{s}", paths[0]] = local_case(f"cv2x{s}")
        cases[f"cv2x{s}", "AVX2 build"] = lambda c=f"cv2x{s}": build.time(c)
    for model in args.models:
        for path in paths:
            if path == "AVX2 build":
                build.time(model)  # compile or load before timing
                cases[model, path] = lambda m=model: build.time(m)
            elif path == "AVX-512" or _layered(model):
                cases[model, path] = local_case(model, portable=path == "portable")
    for case in [c for c in cases if c[1] == "AVX2 build"]:
        build.time(case[0])  # the child's warm-up of every case
    times = {case: [] for case in cases}
    load = [os.getloadavg()[0]]
    for _ in range(args.rounds):
        for case, fn in cases.items():
            if case[1] == "AVX2 build":
                times[case].append(fn())
            else:
                # A pause as the child's pipe round trip gives: without it, numba's worker
                # threads still spinning after a LUT case slowed the next cv2 call 3-15x.
                time.sleep(0.005)
                t = time.perf_counter()
                fn()
                times[case].append(time.perf_counter() - t)
        load.append(os.getloadavg()[0])
    build.close()
    med = {case: statistics.median(ts) * 1e3 for case, ts in times.items()}
    print(f"RGB -> 1920x1080, {THREADS} threads, {args.rounds} interleaved rounds; "
          f"load average {min(load):.1f}-{max(load):.1f} on {os.cpu_count()} CPUs\n")
    for s in sorted(set(scale.values())):
        print(f"cv2 INTER_CUBIC x{s}: " + ", ".join(
            f"{med[f'cv2x{s}', p]:.2f} ms ({p})" for p in paths[:2]))
    # Each path's ratio is to the bicubic of its own process (the AVX2 build's cv2 is the
    # same OpenCV build: its time differs only by the load at that moment).
    print("\n| model | " + " | ".join(f"{p} ms (x bicubic)" for p in paths)
          + f" | AVX2 build / {paths[0]} |")
    print("|---" * (2 + len(paths)) + "|")
    for model in args.models:
        row = []
        for p in paths:
            if (model, p) not in med:
                row.append("")
                continue
            bicubic = med[f"cv2x{scale[model]}", "AVX2 build" if p == "AVX2 build" else paths[0]]
            row.append(f"{med[model, p]:.1f} ({med[model, p] / bicubic:.1f})")
        row.append(f"{med[model, 'AVX2 build'] / med[model, paths[0]]:.2f}")
        print(f"| {model} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
