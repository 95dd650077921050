"""Progress bars: a disabled bar is a SilentBar; a process ended outright leaves nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import HANG_GUARD_S

from lutsr.progress import SilentBar, progress_bar

# A spawned child makes a bar, then is ended by SIGTERM (as the segments' client
# ends its workers); the resource tracker reports at exit what the child left.
SCRIPT = """
import multiprocessing, os, signal, sys

def child(make):
    if make == "lutsr":
        from lutsr.progress import progress_bar
        progress_bar(3, enabled=False, unit="frame")
    else:
        from tqdm import tqdm
        tqdm(total=3, disable=True)
    os.kill(os.getpid(), signal.SIGTERM)

if __name__ == "__main__":
    p = multiprocessing.get_context("spawn").Process(target=child, args=(sys.argv[1],))
    p.start()
    p.join()
    sys.exit(0 if p.exitcode == -signal.SIGTERM else 1)
"""


def test_disabled_bar_counts_and_shows_nothing(capsys):
    bar = progress_bar(10, enabled=False, unit="frame", initial=2)
    assert isinstance(bar, SilentBar) and bar.disable
    bar.update(3)
    bar.close()
    assert bar.n == 5 and capsys.readouterr() == ("", "")


def _leaks(tmp_path, make: str) -> str:
    script = tmp_path / "child.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), make], capture_output=True, text=True,
                          timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_disabled_bar_in_a_killed_worker_leaks_no_semaphore(tmp_path):
    pytest.importorskip("tqdm")
    # the control: a disabled tqdm bar makes tqdm's multiprocessing lock, reported as leaked
    assert "leaked semaphore" in _leaks(tmp_path, "tqdm")
    assert "leaked" not in _leaks(tmp_path, "lutsr")
