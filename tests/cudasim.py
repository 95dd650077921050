"""The harness of the CUDA-simulator tests (``tests/test_cuda*.py``).

``NUMBA_ENABLE_CUDASIM=1`` must be set before numba is imported, and it would
swap ``numba.cuda`` for every other test, so a test file's simulator cases run
in one child process: the file run as a script calls :func:`run_cases`, which
prints one JSON verdict per case, and its pytest side reads them with
:func:`simulate` and asserts each with :func:`check`. Every case gets a
verdict, so one failure does not hide the others.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S

ROOT = Path(__file__).resolve().parents[1]


def run_cases(cases: dict, launch_config) -> None:
    """Run ``cases`` (name -> callable) in this simulator process, each inside
    ``launch_config()``; print one JSON line per case. Names given on the
    command line select cases (for debugging one)."""
    import numba

    assert numba.config.ENABLE_CUDASIM, "run this file with NUMBA_ENABLE_CUDASIM=1"
    only = sys.argv[1:]
    for name, case in cases.items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        try:
            with launch_config():
                case()
            status, detail = "ok", ""
        except pytest.skip.Exception as e:
            status, detail = "skip", str(e)
        except (Exception, pytest.fail.Exception):  # report and go on: every case gets a verdict
            status, detail = "fail", traceback.format_exc()
        print(json.dumps({"case": name, "status": status, "detail": detail,
                          "seconds": round(time.perf_counter() - start, 2)}), flush=True)


def simulate(script: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a test file as a script under the simulator; its process and ``{case: verdict}``."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, script], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=HANG_GUARD_S)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            results[record["case"]] = record
    return proc, results


def check(case: str, proc: subprocess.CompletedProcess, results: dict) -> None:
    """Assert one case's verdict (skip it if it skipped); name the child's error if it gave none."""
    if case not in results:
        pytest.fail(f"the simulator run gave no verdict for {case} (exit {proc.returncode}):\n"
                    f"{proc.stderr[-3000:]}")
    record = results[case]
    if record["status"] == "skip":
        pytest.skip(record["detail"])
    assert record["status"] == "ok", record["detail"]
