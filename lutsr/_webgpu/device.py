"""Adapter choice and device creation for the WebGPU backend.

The default is the best *hardware* adapter (a discrete GPU before an
integrated one; Vulkan, Metal or Direct3D 12 before OpenGL). A software
adapter (Mesa's lavapipe, reported as "llvmpipe ... (CPU)") is used only when
asked for by name, through the ``adapter`` argument or :data:`ADAPTER_ENV`:
it is far slower than the numba CPU backend, so real work never lands on it
silently.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading

#: Environment variable naming the adapter to use (a case-insensitive
#: substring of its summary, e.g. ``llvmpipe`` or ``nvidia``).
ADAPTER_ENV = "LUTSR_WEBGPU_ADAPTER"

# Adapter types that are real hardware, best first (wgpu's adapter_type names).
_HARDWARE = ("DiscreteGPU", "IntegratedGPU", "VirtualGPU")
# Native APIs before the OpenGL fallback.
_BACKEND_ORDER = ("Vulkan", "Metal", "D3D12", "OpenGL")

_lock = threading.Lock()
_devices: dict[str, tuple[object, object]] = {}


def import_wgpu():
    """The ``wgpu`` module, or RuntimeError in one line naming what is missing."""
    try:
        import wgpu
    except ImportError as e:
        raise RuntimeError(f"backend 'webgpu' needs the wgpu package (pip install "
                           f"'lutsr[webgpu]'), which failed to import: {e}") from None
    return wgpu


def adapters() -> list:
    """Every adapter wgpu finds on this machine (hardware and software).

    On a headless machine (no ``XDG_RUNTIME_DIR``), probing the OpenGL backend
    makes libwayland print "error: XDG_RUNTIME_DIR is invalid or not set" to
    the process's stderr, several times, though nothing failed; those lines are
    dropped (the probe's other output, if any, is passed on).
    """
    wgpu = import_wgpu()
    if os.environ.get("XDG_RUNTIME_DIR"):
        return list(wgpu.gpu.enumerate_adapters_sync())
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            found = list(wgpu.gpu.enumerate_adapters_sync())
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        text = caught.read().decode(errors="replace")
    kept = [line for line in text.splitlines() if "XDG_RUNTIME_DIR" not in line]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")
    return found


def describe(adapter) -> str:
    """One line: the adapter's name, type and native API, as wgpu reports them."""
    return adapter.summary


def _rank(adapter) -> tuple[int, int]:
    info = adapter.info
    kind = info.get("adapter_type", "")
    backend = info.get("backend_type", "")
    return (_HARDWARE.index(kind) if kind in _HARDWARE else len(_HARDWARE),
            _BACKEND_ORDER.index(backend) if backend in _BACKEND_ORDER else len(_BACKEND_ORDER))


def choose(found: list, name: str | None):
    """The adapter to use among ``found``.

    Parameters
    ----------
    found : list of wgpu adapters
    name : str or None
        A case-insensitive substring of the adapter's summary; None (or empty)
        for the best hardware adapter.

    Raises
    ------
    RuntimeError
        No adapter matches ``name``, or (without a name) none is hardware.
    """
    if name:
        matches = [a for a in found if name.lower() in describe(a).lower()]
        if not matches:
            listed = "; ".join(describe(a) for a in found) or "none"
            raise RuntimeError(f"no WebGPU adapter matches {name!r} (found: {listed})")
        return min(matches, key=_rank)
    hardware = [a for a in found if a.info.get("adapter_type") in _HARDWARE]
    if not hardware:
        listed = "; ".join(describe(a) for a in found) or "none"
        raise RuntimeError(f"backend 'webgpu' finds no hardware GPU adapter (found: {listed}); "
                           f"set {ADAPTER_ENV}=<name> to use a software one")
    return min(hardware, key=_rank)


def report(name: str | None = None) -> list[str]:
    """One line per adapter wgpu finds, the one :func:`device` would use marked ``*``
    (for ``lutsr info``-style listings); a single line saying why when there is none.

    Parameters
    ----------
    name : str, optional
        As for :func:`device` (default :data:`ADAPTER_ENV`).
    """
    if name is None:
        name = os.environ.get(ADAPTER_ENV) or None
    try:
        found = adapters()
    except RuntimeError as e:
        return [str(e)]
    try:
        chosen = choose(found, name)
    except RuntimeError as e:
        chosen, note = None, [f"  (none chosen: {e})"]
    else:
        note = []
    return [f"{'*' if a is chosen else ' '} {describe(a)}" for a in found] + note


def device(name: str | None = None):
    """``(adapter, device)`` for the adapter named ``name`` (default: :data:`ADAPTER_ENV`,
    else the best hardware adapter), created once per name and shared.

    The device asks for the adapter's own storage-buffer and buffer-size limits
    (WebGPU's defaults, 128 MiB, would cap the frame size needlessly).
    """
    if name is None:
        name = os.environ.get(ADAPTER_ENV) or None
    key = (name or "").lower()
    with _lock:
        if key not in _devices:
            adapter = choose(adapters(), name)
            limits = {k: adapter.limits[k] for k in ("max-storage-buffer-binding-size",
                                                     "max-buffer-size",
                                                     "max-storage-buffers-per-shader-stage")}
            _devices[key] = adapter, adapter.request_device_sync(required_limits=limits)
        return _devices[key]
