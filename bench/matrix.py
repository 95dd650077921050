"""The cases of the speed matrix (``bench/test_bench_matrix.py``, ``bench/make_results.py``).

A :class:`Case` is one method on one frame size at one thread count;
:func:`matrix_cases` lists them, :func:`build` makes the callable a case times
and :func:`check_output` checks what it returned.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import lutsr
from bench.helpers import SHARED, SIZES, random_shiftlut
from train.evaluate import RLFN_PREFIX

ROOT = Path(__file__).resolve().parents[1]
_RLFN = SHARED / "models" / "rlfn"
_NETS = ROOT / "train" / "checkpoints"
#: The CNNs: ``{row label: (tools/evaluate.py --cnn spec, scale)}``; the scale is
#: known here so that collection needs no torch, and is checked when a case runs.
CNNS = {
    "RLFN x4": (f"{RLFN_PREFIX}{_RLFN / 'rlfn_x4.pth'}", 4),
    "RLFN-ntire x4": (f"{RLFN_PREFIX}{_RLFN / 'rlfn_ntire_x4.pth'}", 4),
    # The float nets that x4-sdy and x4-sdy-taps were sampled from (README, "x4-sdy").
    "net of x4-sdy": (str(_NETS / "x4-sdy-net12k" / "net.pt"), 4),
    "net of x4-sdy-taps": (str(_NETS / "x4-sdy3-taps5-net12k" / "net.pt"), 4),
}
#: Row label of a layered LUT of a :data:`bench.helpers.SHIFTLUT_BLOCKS` shape.
LAYERED_LABEL = "{} (random tables)"
#: (size, scale) of each group, in table order.
GROUPS = (("320x180", 4), ("480x270", 4), ("960x540", 2))
#: The only size the (slow) numpy reference runs on.
REFERENCE_SIZE = "320x180"
THREADS = (1, 2)
#: The OpenCV baselines: row label -> cv2 interpolation flag name.
CV2_METHODS = {"cv2 INTER_CUBIC": "INTER_CUBIC", "cv2 INTER_LANCZOS4": "INTER_LANCZOS4"}
#: The row every ratio is taken against (same size, same thread count).
BICUBIC = "cv2 INTER_CUBIC"
#: Timed rounds per kind in the pytest run; the CNNs and the reference take ~0.5-20 s a frame.
ROUNDS = {"cv2": 30, "lutsr": 30, "layered": 30, "cnn": 3, "reference": 1}
#: Environment variable: extra ``.lutsr`` files to benchmark beside the bundled LUTs.
EXTRA_LUTS_ENV = "LUTSR_BENCH_LUTS"
#: Frame size (rows, cols) the reference and the CNNs use when benchmarks are disabled.
SMOKE_CROP = (36, 64)


@dataclass(frozen=True)
class Case:
    """One row of the matrix: a method on one frame size at one thread count.

    Parameters
    ----------
    kind : {"cv2", "lutsr", "reference", "layered", "cnn"}
    method : str
        The row label, e.g. ``"lutsr x4"`` or ``"cv2 INTER_CUBIC"``.
    size : str
        A key of :data:`bench.helpers.SIZES` (``"480x270"``): the input frame.
    scale : int
    threads : int
    source : str
        What the method runs: a cv2 flag name, a bundled LUT name or a
        ``.lutsr`` path, a :data:`bench.helpers.SHIFTLUT_BLOCKS` key, or a
        ``tools/evaluate.py --cnn`` spec.
    """

    kind: str
    method: str
    size: str
    scale: int
    threads: int
    source: str

    @property
    def group(self) -> str:
        """The pytest-benchmark group (one table per size)."""
        w, h = SIZES[self.size]
        return f"x{self.scale} {self.size} RGB -> {w * self.scale}x{h * self.scale}"

    @property
    def id(self) -> str:
        """A test id: ``480x270-lutsr_x4-t2``."""
        return f"{self.size}-{re.sub(r'[^A-Za-z0-9.+-]+', '_', self.method)}-t{self.threads}"


def lut_sources(extra: Iterable[str] = ()) -> dict[str, tuple[str, int]]:
    """``{row label: (source, scale)}`` of the bundled LUTs and of ``extra`` ``.lutsr`` paths.

    Raises
    ------
    ValueError
        An extra path that is not a readable LUT, or two LUTs with one label.
    """
    found: dict[str, tuple[str, int]] = {}
    for name in lutsr.bundled_names():
        found[f"lutsr {name}"] = (name, lutsr.load_bundled(name).scale)
    for path in extra:
        label = f"lutsr {Path(path).stem}"
        if label in found:
            raise ValueError(f"two LUTs would both be labelled {label!r}: rename {path}")
        found[label] = (str(path), lutsr.load(path).scale)
    return found


def env_luts() -> list[str]:
    """The paths in ``$LUTSR_BENCH_LUTS`` (empty when unset)."""
    return [p for p in os.environ.get(EXTRA_LUTS_ENV, "").split(os.pathsep) if p]


def matrix_cases(luts: Mapping[str, tuple[str, int]],
                 cnns: Mapping[str, tuple[str, int]] | None = None,
                 layered: Iterable[str] = (), groups=GROUPS, threads=THREADS) -> list[Case]:
    """Every case of the matrix, grouped by size then thread count.

    Parameters
    ----------
    luts : mapping
        ``{label: (source, scale)}`` as from :func:`lut_sources`; a LUT joins
        the groups of its scale.
    cnns : mapping, optional
        ``{label: (spec, scale)}`` as :data:`CNNS`; each joins the groups of its scale.
    layered : iterable of str
        :data:`bench.helpers.SHIFTLUT_BLOCKS` keys; each joins the x4 groups.
    groups, threads
        Override :data:`GROUPS` and :data:`THREADS` (tests, quick runs).
    """
    cases = []
    for size, scale in groups:
        for n in threads:
            cases += [Case("cv2", label, size, scale, n, flag)
                      for label, flag in CV2_METHODS.items()]
            cases += [Case("lutsr", label, size, scale, n, source)
                      for label, (source, s) in luts.items() if s == scale]
            if scale == 4:
                cases += [Case("layered", LAYERED_LABEL.format(name), size, scale, n, name)
                          for name in layered]
            cases += [Case("cnn", label, size, scale, n, spec)
                      for label, (spec, s) in (cnns or {}).items() if s == scale]
            if size == REFERENCE_SIZE and n == min(threads):
                cases += [Case("reference", label.replace("lutsr", "reference", 1), size,
                               scale, n, source)
                          for label, (source, s) in luts.items() if s == scale]
    return cases


def build(case: Case, frame: np.ndarray) -> Callable[[], np.ndarray]:
    """A zero-argument callable that upscales ``frame`` by ``case``'s method.

    Parameters
    ----------
    case : Case
    frame : ndarray of uint8, shape (H, W, 3)

    Returns
    -------
    callable
        Returns the uint8 ``(H*s, W*s, 3)`` output; lutsr and cv2 write into
        one output array allocated here, the CNNs allocate their own.
    """
    h, w, c = frame.shape
    s = case.scale
    out = np.empty((h * s, w * s, c), np.uint8)
    out.fill(0)  # fault its pages in now, as a reused video buffer would be, not in the call
    if case.kind == "cv2":
        import cv2

        flag = getattr(cv2, case.source)
        return lambda: cv2.resize(frame, (w * s, h * s), dst=out, interpolation=flag)
    if case.kind in ("lutsr", "reference", "layered"):
        backend = "reference" if case.kind == "reference" else "numba"
        threads = None if case.kind == "reference" else case.threads
        lut = random_shiftlut(case.source) if case.kind == "layered" else case.source
        up = lutsr.Upscaler(lut, backend=backend, threads=threads)
        if up.scale != s:
            raise ValueError(f"{case.source}: LUT is x{up.scale}, case {case.id} is x{s}")
        return lambda: up(frame, out=out)
    if case.kind == "cnn":
        from train.evaluate import cnn_method

        _, fn = cnn_method(case.source, s)  # raises unless the CNN is x{s}
        return lambda: fn(frame)
    raise ValueError(f"unknown case kind {case.kind!r}")


@contextmanager
def thread_settings(n: int, torch_too: bool = False):
    """OpenCV's (and torch's) thread pools set to ``n`` inside the block, restored after."""
    import cv2

    old_cv2 = cv2.getNumThreads()
    cv2.setNumThreads(n)
    torch = None
    if torch_too or "torch" in sys.modules:
        import torch
        old_torch = torch.get_num_threads()
        torch.set_num_threads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(old_cv2)
        if torch is not None:
            torch.set_num_threads(old_torch)


def check_output(case: Case, frame: np.ndarray, result: np.ndarray) -> None:
    """Assert ``result`` is a plausible upscale of ``frame``.

    Shrunk back with ``INTER_AREA`` it must stay close to the input (mean
    absolute difference under 12 levels): catches a method that returns
    garbage, a blank or a shifted image, or the wrong scale. A layered LUT's
    random tables make no image: only its shape and dtype are checked.
    """
    import cv2

    h, w, c = frame.shape
    assert isinstance(result, np.ndarray) and result.dtype == np.uint8, \
        f"{case.id}: returned {type(result).__name__} {getattr(result, 'dtype', '')}"
    assert result.shape == (h * case.scale, w * case.scale, c), \
        f"{case.id}: output {result.shape} for input {frame.shape} at x{case.scale}"
    if case.kind == "layered":
        return
    back = cv2.resize(result, (w, h), interpolation=cv2.INTER_AREA)
    err = np.abs(back.astype(np.int16) - frame).mean()
    assert err < 12, f"{case.id}: output shrunk back differs from the input by {err:.1f} levels"


def cnn_missing(spec: str) -> str | None:
    """Why the CNN of ``tools/evaluate.py --cnn`` spec ``spec`` cannot run here, or None."""
    if importlib.util.find_spec("torch") is None:
        return "the CNNs need torch"
    path = Path(spec.removeprefix(RLFN_PREFIX))
    return None if path.is_file() else f"{path} not present"


@functools.cache
def layered_missing() -> str | None:
    """Why lutsr's numba backend cannot run a layered stage, or None when it can."""
    try:
        lutsr.Upscaler(random_shiftlut("ShiftLUT-S"), backend="numba", threads=1)(
            np.zeros((4, 4, 3), np.uint8))
    except (AttributeError, NotImplementedError, TypeError, ValueError) as exc:
        return f"lutsr's numba backend does not run layered stages ({type(exc).__name__}: {exc})"
    return None
