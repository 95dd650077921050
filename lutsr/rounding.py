"""The final rounding of a simplex stage as a lookup table, shared by every backend.

Plain numpy, computed once per LUT and stage. The CPU backend also rounds with
shifts where they are exact (:func:`lutsr._cpu.rounding.power_of_two_rounding`).
"""

from __future__ import annotations

import numpy as np

from .model import Stage


def rounding_table(stage: Stage, interval: int) -> tuple[np.ndarray, int]:
    """The stage's final rounding as a lookup over the integer accumulator.

    A kernel's accumulator ``s`` is the spec's ``sum`` times ``q``: each of the
    ``4 * P`` interpolations is a weighted sum of int8 values with weights
    adding up to ``q``. The reference sums ``acc / q`` over rotations and
    patterns in float64; every term is an integer over a power of two (at most
    128 in magnitude), so the float sum is exactly ``s / q``.

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
