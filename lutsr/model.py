"""The LUT model: stages of (pattern, table) pairs, and their invariants.

A LUT model maps a uint8 plane to a uint8 plane ``scale`` times larger. It is a
sequence of *stages*; each stage reads the previous stage's uint8 output. The
exact arithmetic of a stage is specified by :mod:`lutsr.reference`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from .layered import LayeredStage

#: The 4-pixel neighbourhoods a table is indexed by, as (row, col) offsets of
#: the pixels ``a, b, c, d`` from the pixel being upscaled.
PATTERNS = MappingProxyType(
    {
        "S": ((0, 0), (0, 1), (1, 0), (1, 1)),
        "D": ((0, 0), (0, 2), (2, 0), (2, 2)),
        "Y": ((0, 0), (1, 1), (1, 2), (2, 1)),
    }
)

#: Padding modes a stage may use, with numpy's ``np.pad`` meaning.
PADDINGS = ("reflect", "edge")

#: Supported sampling intervals ``k`` (``q = 2**k``, ``L = 2**(8 - k) + 1``).
INTERVALS = range(1, 8)

#: Fraction bits of a stage's linear base weights: weight ``w`` means ``w / 2**BASE_BITS``.
BASE_BITS = 12

#: A stage's linear base reads the input pixels up to this many rows and columns
#: from each pixel: a window of ``BASE_SIDE`` x ``BASE_SIDE`` pixels.
BASE_RADIUS = 2
BASE_SIDE = 2 * BASE_RADIUS + 1

#: Fraction bits of learned tap weights (see :class:`Stage`): ``w`` means ``w / 2**TAP_BITS``.
TAP_BITS = 10

#: Largest side of a learned tap's window.
MAX_TAP_WINDOW = 7

#: Bounds on what a model may ask for, so that a small file cannot make the
#: runtime take unbounded time or memory per pixel, and every backend's integer
#: arithmetic holds: ``|bias| <= MAX_BIAS``, ``2**-16 <= divisor <= 2**16``, at
#: most ``MAX_STAGES`` stages and an overall scale of at most ``MAX_SCALE``.
MAX_BIAS = 2**15
DIVISOR_RANGE = (2.0**-16, 2.0**16)
MAX_STAGES = 16
MAX_SCALE = 16


def pattern_extent(pattern: str) -> int:
    """Rows (and columns) of padding a pattern needs at the bottom and right."""
    return max(max(dy, dx) for dy, dx in PATTERNS[pattern])


def one_hot_taps(patterns, window: int) -> np.ndarray:
    """Learned taps that read the fixed patterns' own pixels: int16 ``(P, 4, w, w)``.

    A stage given these as ``taps`` computes exactly what it computes with its
    fixed patterns (the start of learned taps, and a way to measure their cost).

    Raises
    ------
    ValueError
        If ``window`` is outside ``1..MAX_TAP_WINDOW`` or a pattern's pixels
        do not fit in it.
    """
    need = max(pattern_extent(p) + 1 for p in patterns)
    if not need <= window <= MAX_TAP_WINDOW:
        raise ValueError(f"tap window {window} must be {need} (to hold the patterns) to "
                         f"{MAX_TAP_WINDOW}")
    taps = np.zeros((len(patterns), 4, window, window), np.int16)
    for p, pattern in enumerate(patterns):
        for t, (dy, dx) in enumerate(PATTERNS[pattern]):
            taps[p, t, dy, dx] = 2**TAP_BITS
    return taps


def grid_size(interval: int) -> int:
    """Number of samples per input dimension, ``L = 2**(8 - interval) + 1``."""
    return 2 ** (8 - interval) + 1


@dataclass(frozen=True, eq=False)
class Stage:
    """One stage of a LUT model.

    Parameters
    ----------
    r : int
        Upscale factor of this stage (1 for a refinement stage).
    patterns : tuple of str
        Pattern names (keys of :data:`PATTERNS`), one per table.
    tables : tuple of numpy.ndarray
        One int8 C-contiguous array of shape ``(L**4, r*r)`` per pattern.
    divisor, bias : float
        The stage output is ``clip(round(sum / divisor + bias), 0, 255)``;
        ``divisor`` in ``[2**-16, 2**16]`` and ``|bias| <= 2**15``
        (:data:`MAX_BIAS`, :data:`DIVISOR_RANGE`).
    padding : {"reflect", "edge"}
        How the rotated plane is padded at its bottom and right (and, for
        ``base``, at every side).
    base : numpy.ndarray or None
        An optional linear term added before the rounding: int16 of shape
        ``(r, r, 5, 5)``; output pixel ``(i*r + u, j*r + v)`` gains
        ``sum(base[u, v, a, b] * x[i + a - 2, j + b - 2]) / 2**BASE_BITS``
        over the 5x5 input pixels around ``(i, j)`` (:data:`BASE_RADIUS`;
        they include the 4x4 that bicubic interpolation reads for every
        phase), ``x`` the stage input padded as below. The tables then hold
        a residual over that linear prediction. A stage with a base needs
        ``q * divisor`` a power of two up to ``2**BASE_BITS`` and an integer
        ``bias``, so that its arithmetic stays exact in integers (see
        :mod:`lutsr.reference`).
    taps : numpy.ndarray or None
        Optional learned taps (AutoLUT's learned sampling): int16 of shape
        ``(P, 4, w, w)`` with ``1 <= w <= MAX_TAP_WINDOW``. Table ``p`` is then
        indexed not by its pattern's 4 pixels but, in each rotation, by
        ``clip(floor(sum(taps[p, t] * x[i:i + w, j:j + w]) / 2**TAP_BITS + 1/2), 0, 255)``
        for ``t`` = 0..3, ``x`` the rotated input padded by ``w - 1`` at the
        bottom and right (:data:`TAP_BITS`); the pattern names then only say
        which fixed pattern the taps were initialised from.
    """

    r: int
    patterns: tuple[str, ...]
    tables: tuple[np.ndarray, ...]
    divisor: float = 1.0
    bias: float = 0.0
    padding: str = "edge"
    base: np.ndarray | None = None
    taps: np.ndarray | None = None

    def __post_init__(self):
        object.__setattr__(self, "patterns", tuple(self.patterns))
        object.__setattr__(
            self, "tables", tuple(np.ascontiguousarray(t) for t in self.tables)
        )
        if isinstance(self.r, bool) or not isinstance(self.r, (int, np.integer)) \
                or not 1 <= self.r <= 8:
            raise ValueError(f"stage r must be an integer in 1..8, got {self.r!r}")
        object.__setattr__(self, "r", int(self.r))
        if not self.patterns:
            raise ValueError("a stage needs at least one pattern")
        unknown = [p for p in self.patterns if p not in PATTERNS]
        if unknown:
            raise ValueError(f"unknown pattern(s) {unknown}; known: {sorted(PATTERNS)}")
        if len(set(self.patterns)) != len(self.patterns):
            raise ValueError(f"repeated pattern in {self.patterns}")
        if len(self.tables) != len(self.patterns):
            raise ValueError(
                f"{len(self.patterns)} patterns but {len(self.tables)} tables"
            )
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        for name in ("divisor", "bias"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer,
                                                                 np.floating)):
                raise ValueError(f"stage {name} must be a number, got {value!r}")
            try:
                object.__setattr__(self, name, float(value))
            except OverflowError:
                raise ValueError(f"stage {name} {value} is out of range") from None
        lo, hi = DIVISOR_RANGE
        if not lo <= self.divisor <= hi:
            raise ValueError(f"stage divisor must be in [2**-16, 2**16], got {self.divisor!r}")
        if not -MAX_BIAS <= self.bias <= MAX_BIAS:
            raise ValueError(f"stage bias must be in [-{MAX_BIAS}, {MAX_BIAS}], got "
                             f"{self.bias!r}")
        rows = {t.shape[0] for t in self.tables}
        for pattern, table in zip(self.patterns, self.tables):
            if table.dtype != np.int8:
                raise ValueError(f"table {pattern!r} must be int8, got {table.dtype}")
            if table.ndim != 2 or table.shape[1] != self.r * self.r:
                raise ValueError(
                    f"table {pattern!r} must have shape (L**4, {self.r * self.r}), "
                    f"got {table.shape}"
                )
        if len(rows) != 1:
            raise ValueError(f"tables of one stage differ in rows: {sorted(rows)}")
        if self.base is not None:
            base = np.asarray(self.base)
            want = (self.r, self.r, BASE_SIDE, BASE_SIDE)
            if base.dtype != np.int16 or base.shape != want:
                raise ValueError(f"stage base must be int16 of shape {want}, got "
                                 f"{base.dtype} {base.shape}")
            if self.bias != int(self.bias):
                raise ValueError(f"a stage with a base needs an integer bias, got {self.bias}")
            object.__setattr__(self, "base", np.ascontiguousarray(base))
        if self.taps is not None:
            taps = np.asarray(self.taps)
            if (taps.dtype != np.int16 or taps.ndim != 4
                    or taps.shape[:2] != (len(self.patterns), 4)
                    or taps.shape[2] != taps.shape[3] or not 1 <= taps.shape[2] <= MAX_TAP_WINDOW):
                raise ValueError(f"stage taps must be int16 of shape ({len(self.patterns)}, 4, "
                                 f"w, w) with 1 <= w <= {MAX_TAP_WINDOW}, "
                                 f"got {taps.dtype} {taps.shape}")
            object.__setattr__(self, "taps", np.ascontiguousarray(taps))

    @property
    def rows(self) -> int:
        """``L**4``, the number of rows of each table."""
        return self.tables[0].shape[0]


@dataclass(frozen=True, eq=False)
class LUT:
    """A look-up-table super-resolution model.

    Parameters
    ----------
    stages : tuple of Stage or LayeredStage
        Applied in order (1 to :data:`MAX_STAGES` of them, simplex and layered
        stages in any mix); the product of their ``r`` is the model's scale,
        at most :data:`MAX_SCALE`.
    interval : int
        Sampling interval exponent ``k`` of the simplex stages: inputs are
        sampled every ``q = 2**k`` levels, so each table has ``L**4`` rows with
        ``L = 2**(8 - k) + 1``. Layered stages (:mod:`lutsr.layered`) carry
        their own sampling steps and ignore it.
    name : str
        A short human-readable name (e.g. ``"x4"``).
    metadata : dict
        JSON-serialisable provenance: training data, iterations, CPU time,
        metrics. Not used by the arithmetic.
    """

    stages: tuple[Stage | LayeredStage, ...]
    interval: int = 4
    name: str = ""
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(self.stages))
        if not 1 <= len(self.stages) <= MAX_STAGES:
            raise ValueError(f"a LUT has 1..{MAX_STAGES} stages, got {len(self.stages)}")
        if not all(isinstance(s, (Stage, LayeredStage)) for s in self.stages):
            raise TypeError("stages must be Stage or LayeredStage instances")
        scale = math.prod(s.r for s in self.stages)
        if scale > MAX_SCALE:
            raise ValueError(f"the stages' overall scale x{scale} exceeds x{MAX_SCALE}")
        if isinstance(self.interval, bool) or self.interval not in INTERVALS:
            raise ValueError(f"interval must be in 1..7, got {self.interval!r}")
        object.__setattr__(self, "interval", int(self.interval))
        want = grid_size(self.interval) ** 4
        for i, stage in enumerate(self.stages):
            if isinstance(stage, LayeredStage):
                continue
            if stage.rows != want:
                raise ValueError(
                    f"stage {i}: tables have {stage.rows} rows, interval "
                    f"{self.interval} needs L**4 = {want}"
                )
            if stage.base is not None and sum_shift(stage, self.interval) is None:
                raise ValueError(
                    f"stage {i}: a base needs q * divisor (here {2**self.interval} * "
                    f"{stage.divisor:g}) to be a power of two up to 2**{BASE_BITS}"
                )

    @property
    def scale(self) -> int:
        """Overall upscale factor, the product of the stages' ``r``."""
        return math.prod(s.r for s in self.stages)

    @property
    def q(self) -> int:
        """Sampling step ``2**interval`` in input levels."""
        return 2**self.interval

    @property
    def L(self) -> int:  # noqa: N802 - the papers' name
        """Samples per input dimension, ``2**(8 - interval) + 1``."""
        return grid_size(self.interval)

    @property
    def nbytes(self) -> int:
        """Total bytes of all tables."""
        return sum(s.nbytes if isinstance(s, LayeredStage) else sum(t.nbytes for t in s.tables)
                   for s in self.stages)

    def describe(self) -> str:
        """A one-paragraph human-readable summary of the model."""
        simplex = any(isinstance(s, Stage) for s in self.stages)
        lines = [
            f"LUT {printable(self.name) or '(unnamed)'}: x{self.scale}, "
            + (f"interval {self.interval} (q={self.q}, L={self.L}), " if simplex else "")
            + f"{len(self.stages)} stage(s) ("
            + " then ".join("layered" if isinstance(s, LayeredStage) else
                            "".join(s.patterns) + (" + linear base" if s.base is not None else "")
                            + (" (learned taps)" if s.taps is not None else "")
                            for s in self.stages)
            + f"), {self.nbytes / 1e6:.2f} MB of tables"
        ]
        for i, s in enumerate(self.stages, 1):
            if isinstance(s, LayeredStage):
                lines.append(f"  stage {i}: {s.describe()}")
                continue
            lines.append(
                f"  stage {i}: r={s.r} patterns={''.join(s.patterns)} "
                f"divisor={s.divisor:g} bias={s.bias:g} padding={s.padding}"
                + (" base=linear 5x5" if s.base is not None else "")
                + ("" if s.taps is None else f" taps=learned {s.taps.shape[2]}x{s.taps.shape[2]}")
            )
        return "\n".join(lines)


def printable(text: str) -> str:
    """``text`` with control and other unprintable characters as Python escapes (for terminals)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def sum_shift(stage: Stage, interval: int) -> int | None:
    """``m`` with ``q * divisor == 2**m`` and ``0 <= m <= BASE_BITS``, else None.

    A stage's table sum ``s`` (an integer: the reference's float sum times
    ``q``) then enters its output as ``s / 2**m``; with a base, output
    ``clip(round((s * 2**(BASE_BITS - m) + sum(base * x)) / 2**BASE_BITS) + bias, 0, 255)``
    is integer arithmetic.
    """
    m = np.log2(2.0**interval * stage.divisor)
    return int(m) if m == int(m) and 0 <= m <= BASE_BITS else None
