"""Index maps of the numba backend: where each tap and window pixel is read, and the rounding.

Plain numpy, computed once per LUT or frame size (see :mod:`lutsr._cpu`).
"""

from __future__ import annotations

import math

import numpy as np

from ..model import PATTERNS, Stage, pattern_extent
from .kernels import MARGIN


def _offset_maps(offsets, ext: int, padding: str, height: int, width: int):
    """Source rows (4, T, height) and columns (4, T, width) of the (dy, dx) ``offsets``
    of a rotated plane padded by ``ext`` at the bottom and right, for every rotation."""
    rows = np.empty((4, len(offsets), height), np.int64)
    cols = np.empty((4, len(offsets), width), np.int64)
    y, x = np.arange(height), np.arange(width)
    pad_h = np.pad(np.arange(height), (0, ext), mode=padding)
    pad_w = np.pad(np.arange(width), (0, ext), mode=padding)
    for t, (dy, dx) in enumerate(offsets):
        # np.rot90(img, k) puts original pixel (y, x) at rotated (i, j);
        # the tap sits at rotated (i + dy, j + dx), padded, mapped back.
        rows[0, t], cols[0, t] = pad_h[y + dy], pad_w[x + dx]
        rows[1, t], cols[1, t] = pad_h[y + dx], width - 1 - pad_w[width - 1 - x + dy]
        rows[2, t] = height - 1 - pad_h[height - 1 - y + dy]
        cols[2, t] = width - 1 - pad_w[width - 1 - x + dx]
        rows[3, t], cols[3, t] = height - 1 - pad_h[height - 1 - y + dx], pad_w[x + dy]
    return rows, cols


def tap_indices(stage: Stage, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Source row and column of every tap, for every rotation.

    Returns
    -------
    rows : ndarray of int64, shape (P, 4, 4, height)
        ``rows[p, k, t, y]`` is the source row of tap ``t`` of pattern ``p`` in
        rotation ``k`` for output pixel row ``y``.
    cols : ndarray of int64, shape (P, 4, 4, width)
        Likewise for columns.
    """
    maps = [_offset_maps(PATTERNS[p], pattern_extent(p), stage.padding, height, width)
            for p in stage.patterns]
    return np.stack([m[0] for m in maps]), np.stack([m[1] for m in maps])


def window_indices(stage: Stage, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Source row and column of every pixel of a learned tap's ``w x w`` window.

    Returns
    -------
    rows : ndarray of int64, shape (4, w*w, height)
        ``rows[k, a * w + b, y]``: the source row of window pixel ``(a, b)`` in
        rotation ``k`` for output pixel row ``y``.
    cols : ndarray of int64, shape (4, w*w, width)
        Likewise for columns.
    """
    w = stage.taps.shape[2]
    offsets = [(a, b) for a in range(w) for b in range(w)]
    return _offset_maps(offsets, w - 1, stage.padding, height, width)


def stack_tables(stage: Stage) -> np.ndarray:
    """The stage's tables as one C-contiguous int8 array of shape (P, L**4, r*r)."""
    return np.ascontiguousarray(np.stack(stage.tables))


def rotated_offsets(pattern: str) -> np.ndarray:
    """Tap offsets of ``pattern`` in every rotation, in unrotated coordinates.

    Returns
    -------
    ndarray of int64, shape (4, 4, 2)
        ``[k, t] = (dy, dx)``: in rotation ``k`` (``np.rot90(plane, k)``), tap
        ``t`` of the pixel at ``(y, x)`` is the pixel at ``(y + dy, x + dx)`` of
        the plane padded on all sides (see :func:`padded_index`).
    """
    out = np.empty((4, 4, 2), np.int64)
    for t, (dy, dx) in enumerate(PATTERNS[pattern]):
        # rot90 by k turns a rotated-frame step (dy, dx) into these steps.
        out[:, t] = [(dy, dx), (dx, -dy), (-dy, -dx), (-dx, dy)]
    return out


def padded_index(n: int, padding: str, margin: int = MARGIN) -> np.ndarray:
    """Source index of each position of an axis of length ``n`` padded by ``margin`` on both sides.

    Returns
    -------
    ndarray of int64, shape (n + 2 * margin,)
        ``np.pad(np.arange(n), margin, mode=padding)``: numpy's own padding, so
        edge cases (``n`` of 1 or 2 with ``reflect``) match the reference.
    """
    return np.pad(np.arange(n, dtype=np.int64), margin, mode=padding)


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
