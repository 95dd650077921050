"""The harness of the CUDA-simulator tests (``tests/test_cuda*.py``, ``tests/test_parity.py``).

``NUMBA_ENABLE_CUDASIM=1`` must be set before numba is imported, and it would
swap ``numba.cuda`` for every other test, so simulator work runs in child
processes, in one of two ways:

* a test file's own cases: the file run as a script calls :func:`run_cases`,
  which prints one JSON verdict per case, and its pytest side reads them with
  :func:`simulate` and asserts each with :func:`check`. Every case gets a
  verdict, so one failure does not hide the others;
* parity with the reference: one :class:`SimulatorWorker` child per test
  session upscales whatever LUT and frames it is sent (launches shrunk by
  :func:`small_launches`, so every launch spans several blocks and the
  kernels' loops over planes run) and sends the output back.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
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


# --------------------------------------------------------------------------- parity worker


@contextlib.contextmanager
def small_launches(pixels: int):
    """Launches shrunk for planes of ``pixels`` so that each spans several blocks and a grid
    shallower than the planes, for simplex and layered stages alike: bugs in block, grid or
    plane-loop index arithmetic show as wrong or missing pixels at block edges. (Blocks of a
    few threads on small planes; on larger planes, larger blocks keep the simulator quick.)"""
    from lutsr._cuda import layered, simplex

    saved = (simplex.THREADS_PER_BLOCK, simplex.MAX_GRID_Z, layered.THREADS_PER_BLOCK,
             layered.MAX_GRID_Z)
    if pixels < 64:
        simplex.THREADS_PER_BLOCK, simplex.MAX_GRID_Z = (4, 2), 2
        layered.THREADS_PER_BLOCK, layered.MAX_GRID_Z = 4, 3
    else:
        simplex.THREADS_PER_BLOCK, simplex.MAX_GRID_Z = (8, 4), 1
        layered.THREADS_PER_BLOCK, layered.MAX_GRID_Z = 16, 5
    try:
        yield
    finally:
        (simplex.THREADS_PER_BLOCK, simplex.MAX_GRID_Z, layered.THREADS_PER_BLOCK,
         layered.MAX_GRID_Z) = saved


def _send(stream, message) -> None:
    # pickle between this file's two ends only (the parent and the child it started)
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _receive(stream):
    head = stream.read(8)
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head)
    return pickle.loads(stream.read(n))


def _serve() -> None:
    """The worker's loop: ``(lut, frames)`` in, ``("ok", output)`` or ``("error", traceback)``
    out. The frames go to the device as they come (2-D, 3-D or a batch), so every layout's
    device path runs."""
    import numba

    assert numba.config.ENABLE_CUDASIM, "the worker runs with NUMBA_ENABLE_CUDASIM=1"
    import lutsr

    requests, replies = sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # nothing printed may corrupt the replies
    while (request := _receive(requests)) is not None:
        lut, frames = request
        try:
            from numba import cuda

            height, width = frames.shape[1:3] if frames.ndim == 4 else frames.shape[:2]
            with small_launches(height * width):
                got = lutsr.upscale(cuda.to_device(frames), lut, backend="cuda")
            assert type(got).__module__.startswith("numba.cuda"), f"got {type(got)}"
            reply = ("ok", got.copy_to_host())
        except Exception:  # noqa: BLE001 - the parent raises it
            reply = ("error", traceback.format_exc())
        _send(replies, reply)


class SimulatorWorker:
    """A child process that runs the cuda backend in numba's CUDA simulator (see :func:`_serve`)."""

    def __init__(self):
        env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        self._log = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would block it
        self._proc = subprocess.Popen([sys.executable, __file__, "--serve"], env=env, cwd=ROOT,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log)

    def upscale(self, lut, frames):
        """``frames`` upscaled with ``lut`` on the simulated device (a numpy array)."""
        try:
            _send(self._proc.stdin, (lut, frames))
            ready, _, _ = select.select([self._proc.stdout], [], [], HANG_GUARD_S)
            reply = _receive(self._proc.stdout) if ready else None
        except BrokenPipeError:
            reply = None
        if reply is None:
            self._log.seek(0)
            pytest.fail(f"the simulator worker gave no answer (exit {self._proc.poll()}):\n"
                        f"{self._log.read().decode(errors='replace')[-3000:]}")
        status, value = reply
        if status != "ok":
            raise AssertionError(f"the simulated cuda backend raised:\n{value}")
        return value

    def close(self) -> None:
        self._proc.stdin.close()
        try:
            self._proc.wait(HANG_GUARD_S)
        finally:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.stdout.close()
            self._log.close()


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve()
