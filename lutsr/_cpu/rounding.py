"""The final rounding of a simplex stage as shifts, where the numba kernels may use them.

Plain numpy, computed once per LUT (see :mod:`lutsr._cpu`); the lookup table it
is checked against is :func:`lutsr.rounding.rounding_table`, shared by every backend.
"""

from __future__ import annotations

import math

import numpy as np

from ..model import Stage
from ..rounding import rounding_table


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
