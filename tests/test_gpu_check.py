"""``bench/gpu_check.py`` (what a person with a GPU runs) in its smoke mode, in numba's
CUDA simulator and on Mesa's software Vulkan (lavapipe), so that the script cannot rot
while no GPU is at hand."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[1]
SOFTWARE = "llvmpipe"


def _gpu_check(*args: str) -> list[dict]:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    env.pop("LUTSR_WEBGPU_ADAPTER", None)
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--smoke", *args],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _checks(records: list[dict], check: str, backend: str) -> list[dict]:
    return [r for r in records if r["check"] == check and r.get("backend") == backend]


def _software_adapter() -> str | None:
    """Why lavapipe cannot be used here, or None when it can."""
    from lutsr._webgpu import device

    try:
        device.import_wgpu()
        device.device(SOFTWARE)
    except RuntimeError as e:
        return str(e)
    return None


def test_gpu_check_smoke_run_in_the_simulator():
    records = _gpu_check()
    assert records[0]["check"] == "environment" and records[0]["simulator"] is True
    exact = _checks(records, "exact", "cuda")
    # two LUTs (simplex, layered) x one and three frames x with and without out=
    assert len(exact) == 8 and all(r["ok"] and r["differing_bytes"] == 0 for r in exact)
    assert {r["lut"] for r in exact} == {"x2-s", "random-layered-M"}
    (timing,) = _checks(records, "time", "cuda")
    assert timing["output"] == [12, 8] and timing["frame_ms_median"] > 0
    if "webgpu_adapter" not in records[0]:  # no wgpu or no hardware adapter: said, not run
        (skipped,) = _checks(records, "skipped", "webgpu")
        assert skipped["why"] and not _checks(records, "exact", "webgpu")


def test_gpu_check_smoke_covers_webgpu_on_lavapipe():
    why = _software_adapter()
    if why is not None:
        pytest.skip(why)
    records = _gpu_check("--webgpu-adapter", SOFTWARE)
    assert SOFTWARE in records[0]["webgpu_adapter"]
    for backend in ("cuda", "webgpu"):  # side by side, the same cases
        exact = _checks(records, "exact", backend)
        assert len(exact) == 8 and all(r["ok"] and r["differing_bytes"] == 0 for r in exact)
        assert {r["lut"] for r in exact} == {"x2-s", "random-layered-M"}
    (timing,) = _checks(records, "time", "webgpu")
    assert timing["output"] == [12, 8] and "error" not in timing, timing
    assert timing["frame_ms_median"] > 0 and timing["kernels_ms_median"] > 0
    assert timing["upload_ms_median"] >= 0 and timing["readback_ms_median"] >= 0


def test_gpu_check_full_run_refuses_a_software_adapter():
    why = _software_adapter()
    if why is not None:
        pytest.skip(why)
    from numba import cuda

    if cuda.is_available():
        pytest.skip("a CUDA GPU is here: the full check would run on it")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"),
                           "--webgpu-adapter", SOFTWARE], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=HANG_GUARD_S)
    (record,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 1 and record["check"] == "environment"
    assert record["error"] == "numba.cuda finds no GPU"
    assert "is a software adapter" in record["webgpu"] and "--smoke" in record["webgpu"]
