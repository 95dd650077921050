"""Numba CPU kernels for one LUT stage, all four rotations fused in one pass.

The spec is :mod:`lutsr.reference`. Instead of rotating and padding copies of
the image, a rotation is an axis permutation plus flips, so for every rotation
and pattern tap the source row depends only on the output pixel's row and the
source column only on its column. :func:`tap_indices` precomputes those 1-D
index maps (padding included, via ``np.pad`` itself so the edge cases match
numpy exactly), and each pixel then accumulates all rotations into its own
``r x r`` output block: no write conflicts, so row bands run in parallel
threads with the GIL released.
"""

from __future__ import annotations

import numba
import numpy as np

from .model import PATTERNS, Stage, pattern_extent


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
    n_pat = len(stage.patterns)
    rows = np.empty((n_pat, 4, 4, height), np.int64)
    cols = np.empty((n_pat, 4, 4, width), np.int64)
    y, x = np.arange(height), np.arange(width)
    for p, pattern in enumerate(stage.patterns):
        ext = pattern_extent(pattern)
        pad_h = np.pad(np.arange(height), (0, ext), mode=stage.padding)
        pad_w = np.pad(np.arange(width), (0, ext), mode=stage.padding)
        for t, (dy, dx) in enumerate(PATTERNS[pattern]):
            # np.rot90(img, k) puts original pixel (y, x) at rotated (i, j);
            # the tap sits at rotated (i + dy, j + dx), padded, mapped back.
            rows[p, 0, t], cols[p, 0, t] = pad_h[y + dy], pad_w[x + dx]
            rows[p, 1, t], cols[p, 1, t] = pad_h[y + dx], width - 1 - pad_w[width - 1 - x + dy]
            rows[p, 2, t] = height - 1 - pad_h[height - 1 - y + dy]
            cols[p, 2, t] = width - 1 - pad_w[width - 1 - x + dx]
            rows[p, 3, t], cols[p, 3, t] = height - 1 - pad_h[height - 1 - y + dx], pad_w[x + dy]
    return rows, cols


def block_permutations(r: int) -> np.ndarray:
    """``perm[k, pos]``: the table column that lands at block position ``pos`` in rotation ``k``."""
    block = np.arange(r * r).reshape(r, r)
    return np.stack([np.rot90(block, -k).ravel() for k in range(4)]).astype(np.int64)


def stack_tables(stage: Stage) -> np.ndarray:
    """The stage's tables as one C-contiguous int8 array of shape (P, L**4, r*r)."""
    return np.ascontiguousarray(np.stack(stage.tables))


@numba.njit(nogil=True, cache=True)
def _rint(v):
    # Round half to even, as np.round: the spec's rounding.
    f = np.floor(v)
    d = v - f
    if d > 0.5 or (d == 0.5 and f % 2.0 != 0.0):
        return f + 1.0
    return f


@numba.njit(nogil=True, cache=True, boundscheck=False)
def _stage_rows(src, dst, tables, rows, cols, perm, interval, grid, r, divisor, bias, y0, y1):
    """Run one stage on source rows ``y0:y1`` of ``src`` (H, W, C) into ``dst`` (H*r, W*r, C)."""
    n_pat = tables.shape[0]
    rr = r * r
    width, channels = src.shape[1], src.shape[2]
    q = 1 << interval
    mask = q - 1
    strides = np.array([grid * grid * grid, grid * grid, grid, 1], np.int64)
    acc = np.zeros((4, rr), np.int32)
    taprow = np.empty((n_pat, 4, 4), np.int64)
    keys = np.empty(4, np.int64)
    for y in range(y0, y1):
        for p in range(n_pat):
            for k in range(4):
                for t in range(4):
                    taprow[p, k, t] = rows[p, k, t, y]
        for x in range(width):
            for c in range(channels):
                acc[:, :] = 0
                for k in range(4):
                    for p in range(n_pat):
                        base = 0
                        for t in range(4):
                            v = np.int64(src[taprow[p, k, t], cols[p, k, t, x], c])
                            base = base * grid + (v >> interval)
                            # fraction in the high bits, dimension in the low
                            # two: sorting the keys sorts the dimensions.
                            keys[t] = ((v & mask) << 2) | t
                        k0, k1, k2, k3 = keys[0], keys[1], keys[2], keys[3]
                        if k0 < k1:
                            k0, k1 = k1, k0
                        if k2 < k3:
                            k2, k3 = k3, k2
                        if k0 < k2:
                            k0, k2 = k2, k0
                        if k1 < k3:
                            k1, k3 = k3, k1
                        if k1 < k2:
                            k1, k2 = k2, k1
                        f1, f2, f3, f4 = k0 >> 2, k1 >> 2, k2 >> 2, k3 >> 2
                        i1 = base + strides[k0 & 3]
                        i2 = i1 + strides[k1 & 3]
                        i3 = i2 + strides[k2 & 3]
                        i4 = i3 + strides[k3 & 3]
                        w0, w1, w2, w3, w4 = q - f1, f1 - f2, f2 - f3, f3 - f4, f4
                        for m in range(rr):
                            acc[k, m] += np.int32(
                                w0 * tables[p, base, m] + w1 * tables[p, i1, m]
                                + w2 * tables[p, i2, m] + w3 * tables[p, i3, m]
                                + w4 * tables[p, i4, m])
                for pos in range(rr):
                    s = acc[0, perm[0, pos]] + acc[1, perm[1, pos]] \
                        + acc[2, perm[2, pos]] + acc[3, perm[3, pos]]
                    v = _rint((s / q) / divisor + bias)
                    v = min(max(v, 0.0), 255.0)
                    dst[y * r + pos // r, x * r + pos % r, c] = np.uint8(v)
