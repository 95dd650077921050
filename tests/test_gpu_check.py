"""``bench/gpu_check.py`` (what a person with a GPU runs) in its smoke mode, in numba's
CUDA simulator, so that the script cannot rot while no GPU is at hand."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_run_in_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--smoke"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert records[0]["check"] == "environment" and records[0]["simulator"] is True
    exact = [r for r in records if r["check"] == "exact"]
    # two LUTs (simplex, layered) x one and three frames x with and without out=
    assert len(exact) == 8 and all(r["ok"] and r["differing_bytes"] == 0 for r in exact)
    assert {r["lut"] for r in exact} == {"x2-s", "random-layered-M"}
    (timing,) = [r for r in records if r["check"] == "time"]
    assert timing["output"] == [12, 8] and timing["frame_ms_median"] > 0
