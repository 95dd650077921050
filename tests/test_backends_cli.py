"""``lutsr backends``: which backends can run here, numba's CPU kernels, the WebGPU adapters."""

import os
import subprocess
import sys

import pytest
from conftest import HANG_GUARD_S
from test_layered_numba import AVX2_ENV

from lutsr._cpu import avx512bw_available, vnni_available
from lutsr._webgpu import device as wdevice
from lutsr.cli import main

SOFTWARE = "llvmpipe"


def _backends(capsys) -> list[str]:
    assert main(["backends"]) == 0
    return capsys.readouterr().out.splitlines()


def _software_adapter() -> str | None:
    """Why the software adapter is not listed here, or None when it is."""
    try:
        import wgpu  # noqa: F401
    except ImportError:
        return "wgpu is not installed (pip install 'lutsr[webgpu]')"
    if not any(SOFTWARE in wdevice.describe(a) for a in wdevice.adapters()):
        return f"no {SOFTWARE} adapter (apt-get install mesa-vulkan-drivers)"
    return None


def test_backends_lists_each_backend_and_the_cpu_kernels(capsys):
    lines = _backends(capsys)
    heads = [line.split(":")[0] for line in lines if not line.startswith(" ")]
    assert heads == ["reference", "numba", "cuda", "webgpu"]
    simplex = "AVX-512BW" if avx512bw_available() else "portable"
    assert f"  simplex stages: {simplex} kernels" in "\n".join(lines)
    assert ("VNNI" in "\n".join(lines)) == vnni_available()
    (layered,) = [line for line in lines if line.startswith("  layered stages: ")]
    assert layered.split()[2] in ("AVX-512BW", "AVX2", "portable")
    (cuda,) = [line for line in lines if line.startswith("cuda: ")]
    assert cuda.startswith(("cuda: available", "cuda: not available: "))


def test_backends_layered_kernels_follow_the_cpu_numba_targets():
    # A CPU without AVX-512 (numba told to target Haswell): the AVX2 layered kernels, the
    # portable simplex ones; LUTSR_PORTABLE_KERNEL=1 turns both to portable.
    cases = [(AVX2_ENV, "AVX2", "portable"), ({"LUTSR_PORTABLE_KERNEL": "1"}, "portable",
                                               "portable")]
    for extra, layered, simplex in cases:
        out = subprocess.run([sys.executable, "-m", "lutsr", "backends"],
                             env=dict(os.environ, **extra), capture_output=True, text=True,
                             timeout=HANG_GUARD_S, check=True).stdout
        assert f"  layered stages: {layered} kernels" in out, out
        assert f"  simplex stages: {simplex} kernels" in out, out


def test_backends_without_wgpu_says_what_is_missing(capsys, monkeypatch):
    def missing():
        raise RuntimeError("backend 'webgpu' needs the wgpu package (pip install "
                           "'lutsr[webgpu]'), which failed to import: No module named 'wgpu'")

    monkeypatch.setattr(wdevice, "import_wgpu", missing)
    (webgpu,) = [line for line in _backends(capsys) if line.startswith("webgpu")]
    assert webgpu.startswith("webgpu: not available: backend 'webgpu' needs the wgpu package")


def test_backends_marks_the_named_webgpu_adapter(capsys, monkeypatch):
    why = _software_adapter()
    if why is not None:
        pytest.skip(why)
    monkeypatch.setenv(wdevice.ADAPTER_ENV, SOFTWARE)
    lines = _backends(capsys)
    at = next(i for i, line in enumerate(lines) if line.startswith("webgpu"))
    assert lines[at].startswith("webgpu: available (wgpu ")
    assert f"({wdevice.ADAPTER_ENV}={SOFTWARE})" in lines[at]
    marked = [line for line in lines[at + 1:] if line.startswith("  * ")]
    assert len(marked) == 1 and SOFTWARE in marked[0], lines
    # Without the name, a software adapter is listed but never used.
    monkeypatch.delenv(wdevice.ADAPTER_ENV)
    lines = _backends(capsys)
    at = next(i for i, line in enumerate(lines) if line.startswith("webgpu"))
    if not any(line.startswith("  * ") for line in lines[at + 1:]):  # no hardware adapter
        assert lines[at].startswith("webgpu: no usable adapter")
        assert any(SOFTWARE in line for line in lines[at + 1:])
