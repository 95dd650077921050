"""The final rounding of a simplex stage, as the numba kernels compute it.

Plain numpy, computed once per LUT (see :mod:`lutsr._cpu`).
"""

from __future__ import annotations

import math

import numpy as np

from ..model import Stage


def rounding_table(stage: Stage, interval: int) -> tuple[np.ndarray, int]:
    """The stage's final rounding as a lookup over the integer accumulator.

    The reference sums ``acc / q`` over rotations and patterns in float64; every
    term is an integer over a power of two, so the float sum is exactly
    ``s / q`` for the integer ``s`` that the kernels accumulate.

    Returns
    -------
    table : ndarray of uint8, shape (s_max - s_min + 1,)
        ``table[s - s_min] = clip(round(s / q / divisor + bias), 0, 255)``,
        evaluated with numpy exactly as :func:`lutsr.reference.run_stage` does.
    s_min : int
        The smallest possible ``s``: ``-4 * P * 128 * q``.
    """
    q = 2**interval
    n_terms = 4 * len(stage.patterns) * q  # sum of all simplex weights
    s_min, s_max = -128 * n_terms, 127 * n_terms
    total = np.arange(s_min, s_max + 1, dtype=np.int64) / q
    rounded = np.clip(np.round(total / stage.divisor + stage.bias), 0, 255)
    return rounded.astype(np.uint8), s_min


def power_of_two_rounding(stage: Stage, interval: int) -> tuple[int, int] | None:
    """``(m, b)`` when the stage's rounding is ``clip(round(s / 2**m + b), 0, 255)``, else None.

    That holds when ``q * divisor`` is ``2**m`` (``m >= 1``) and ``bias`` is
    the integer ``b``: SR-LUT-S, for one. The kernels then round with shifts,
    which vectorise, instead of one table lookup per output byte. The formula
    (half to even: add ``2**(m-1) - 1`` plus the parity of ``(s >> m) + b``,
    since the reference adds the bias before rounding) is checked here against
    :func:`rounding_table` over every reachable ``s``, evaluated as the kernels
    evaluate it: in int16 (when every sum fits) and in int32, wrapping on
    overflow as machine integers do. So either path is exact, for every bias
    and divisor a :class:`~lutsr.model.Stage` accepts; where the shifts would
    overflow, the lookup is used.
    """
    m = math.log2(2**interval * stage.divisor)
    if m != int(m) or not 1 <= m <= _MAX_ROUNDING_SHIFT or stage.bias != int(stage.bias):
        return None
    m, b = int(m), int(stage.bias)
    table, s_min = rounding_table(stage, interval)
    s = np.arange(s_min, s_min + len(table), dtype=np.int64)
    for dtype in (np.int16, np.int32):
        info = np.iinfo(dtype)
        if dtype is np.int16 and not info.min <= s_min <= s[-1] <= info.max:
            continue  # the kernels accumulate such sums in int32 only
        if not info.min <= b <= info.max:
            return None
        with np.errstate(over="ignore"):
            t, m_, b_ = s.astype(dtype), dtype(m), dtype(b)
            one = dtype(1)
            half = (one << (m_ - one)) - one
            odd = ((t >> m_) + b_) & one
            formula = np.clip(((t + half + odd) >> m_) + b_, 0, 255)
        if not np.array_equal(formula, table):
            return None
    return m, b


#: Largest rounding shift the kernels use; sums below 2**15 keep every shift defined in int16.
_MAX_ROUNDING_SHIFT = 14
