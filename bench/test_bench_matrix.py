"""The speed matrix of issue 4: every upscaler on the same frames, in one run.

One pytest-benchmark group per frame size, so each size prints as one table
and every row's ratio to ``cv2 INTER_CUBIC`` (at the same thread count) can be
read off it:

============  =====  ===========================================================
group         scale  methods
============  =====  ===========================================================
320x180       x4     cv2 INTER_CUBIC / INTER_LANCZOS4, lutsr (each bundled x4
                     LUT), the numpy reference (each bundled x4 LUT), the
                     layered LUTs, the CNNs
480x270       x4     cv2 INTER_CUBIC / INTER_LANCZOS4, lutsr, the layered LUTs,
                     the CNNs
960x540       x2     cv2 INTER_CUBIC / INTER_LANCZOS4, lutsr (each bundled x2 LUT)
============  =====  ===========================================================

Each method runs with 1 and 2 threads (``Upscaler(threads=n)``,
``cv2.setNumThreads(n)``, ``torch.set_num_threads(n)``); the reference is
single-threaded numpy and runs once. Frames are uint8 RGB photos
(:func:`bench.helpers.photo_frame`). The LUTs are whatever
:func:`lutsr.bundled_names` lists when the module is collected, plus the
``.lutsr`` files named in the environment variable ``LUTSR_BENCH_LUTS``
(``os.pathsep``-separated; for benchmarking a LUT before it is bundled).

The layered LUTs are the ShiftLUT-S, -M and -L shapes with random tables
(:func:`bench.helpers.random_shiftlut`); they skip while lutsr's numba
backend cannot run layered stages. The CNNs (:data:`CNNS`, run in torch on
the CPU through ``train.evaluate.cnn_method``) are RLFN and its
pruned NTIRE 2022 entry (the authors' weights in ``../shared/models/rlfn``),
and the float nets the multi-stage bundled LUTs were sampled from
(``train/checkpoints``); each skips when torch or its file is missing. The
GPU backend has its own suite, ``bench/test_bench_gpu.py``. ::

    python -m pytest bench/test_bench_matrix.py --benchmark-only \\
        --benchmark-columns=min,median,max,rounds
    python -m pytest bench/test_bench_matrix.py --benchmark-disable   # smoke, seconds

Every timed case is called once untimed first (numba compiles or loads its
cache; torch and OpenCV set up their thread pools) and lutsr and OpenCV write
into a preallocated output, as a video loop does. With ``--benchmark-disable``
each case runs once, the reference and the CNNs on a small crop of the frame,
so the smoke run takes seconds. ``bench/make_results.py`` runs the same cases
(:mod:`bench.matrix`) and writes ``bench/RESULTS.md``.
"""


from __future__ import annotations

import numpy as np
import pytest

import lutsr
from bench.helpers import SHIFTLUT_BLOCKS
from bench.matrix import (
    BICUBIC,
    CNNS,
    CV2_METHODS,
    GROUPS,
    LAYERED_LABEL,
    REFERENCE_SIZE,
    ROUNDS,
    SMOKE_CROP,
    THREADS,
    build,
    check_output,
    cnn_missing,
    env_luts,
    layered_missing,
    lut_sources,
    matrix_cases,
    thread_settings,
)
from train.evaluate import RLFN_PREFIX

# --------------------------------------------------------------------------- pytest


CASES = matrix_cases(lut_sources(env_luts()), CNNS, SHIFTLUT_BLOCKS)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matrix(benchmark, request, case):
    if case.kind == "cnn" and (why := cnn_missing(case.source)):
        pytest.skip(why)
    if case.kind == "layered" and (why := layered_missing()):
        pytest.skip(why)
    frame = request.getfixturevalue(f"frame_{case.size}")
    if benchmark.disabled and case.kind in ("cnn", "reference"):
        frame = np.ascontiguousarray(frame[:SMOKE_CROP[0], :SMOKE_CROP[1]])
    benchmark.group = case.group
    benchmark.extra_info.update(method=case.method, threads=case.threads, size=case.size)
    with thread_settings(case.threads, torch_too=case.kind == "cnn"):
        fn = build(case, frame)
        if benchmark.disabled:
            result = benchmark(fn)
        else:
            if case.kind != "reference":
                fn()  # untimed: numba compile / cache load, thread pools, scratch buffers
            result = benchmark.pedantic(fn, rounds=ROUNDS[case.kind], iterations=1,
                                        warmup_rounds=1 if ROUNDS[case.kind] > 3 else 0)
    check_output(case, frame, result)
    if case.kind == "reference" and benchmark.disabled:
        # The spec and the fast backend must agree bit for bit on the frame just run.
        fast = lutsr.Upscaler(case.source, threads=case.threads)(frame)
        np.testing.assert_array_equal(result, fast)


def test_matrix_shape():
    """Every group has a bicubic row per thread count, and each method lands where it should."""
    luts = {"lutsr a4": ("a4", 4), "lutsr b4": ("b4", 4), "lutsr c2": ("c2", 2)}
    cases = matrix_cases(luts, {"CNN (n)": ("n.pt", 4), "RLFN": ("rlfn:r.pth", 4)},
                         ["ShiftLUT-S"])
    ids = [c.id for c in cases]
    assert len(set(ids)) == len(ids), "case ids repeat"
    for size, scale in GROUPS:
        rows = [c for c in cases if c.size == size]
        assert {c.scale for c in rows} == {scale}
        assert len({c.group for c in rows}) == 1
        for n in THREADS:
            methods = {c.method for c in rows if c.threads == n}
            assert BICUBIC in methods and "cv2 INTER_LANCZOS4" in methods, (size, n)
            want = {k for k, (_, s) in luts.items() if s == scale}
            assert {m for m in methods if m.startswith("lutsr")} == want, (size, n)
            for x4_only in ("CNN (n)", "RLFN", LAYERED_LABEL.format("ShiftLUT-S")):
                assert (x4_only in methods) == (scale == 4), (size, n, x4_only)
    refs = [c for c in cases if c.kind == "reference"]
    assert {(c.size, c.method, c.threads) for c in refs} == {
        (REFERENCE_SIZE, "reference a4", 1), (REFERENCE_SIZE, "reference b4", 1)}
    # No LUTs bundled (early checkouts): the baselines still make every table.
    bare = matrix_cases({}, None)
    assert {(c.size, c.method) for c in bare} == {
        (size, m) for size, _ in GROUPS for m in CV2_METHODS}


def test_cnn_missing():
    """A CNN whose weights are absent (or without torch) is reported, so its cases skip."""
    for spec in (f"{RLFN_PREFIX}/nonexistent/rlfn.pth", "/nonexistent/net.pt"):
        why = cnn_missing(spec)
        assert why and ("not present" in why or "torch" in why), (spec, why)
