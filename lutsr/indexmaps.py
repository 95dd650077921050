"""Index maps shared by every backend: where each tap, window pixel and output phase goes.

Plain numpy, computed once per LUT or frame size. The numba kernels compile
:func:`block_permutations` into their code: after changing it, delete
``lutsr/_cpu/__pycache__`` (numba's cache watches only a kernel's own file).
"""

from __future__ import annotations

import numpy as np

from .model import PATTERNS, Stage, pattern_extent


def block_permutations(r: int) -> np.ndarray:
    """``perm[k, pos]``: the table column that lands at block position ``pos`` in rotation ``k``."""
    block = np.arange(r * r).reshape(r, r)
    return np.stack([np.rot90(block, -k).ravel() for k in range(4)]).astype(np.int64)


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


def table_words(stage: Stage) -> np.ndarray:
    """The stage's tables with each row zero-padded to whole 32-bit words, as words.

    Returns
    -------
    ndarray of int32, shape (P, L**4, ceil(r*r / 4))
        Byte ``m`` of a row (table column ``m``) is bits ``8 (m % 4)`` and up of
        word ``m // 4``, little-endian whatever the host's byte order.
    """
    tables = stack_tables(stage)
    words = -(-tables.shape[2] // 4)
    padded = np.zeros((*tables.shape[:2], 4 * words), np.int8)
    padded[..., :tables.shape[2]] = tables
    return padded.view("<i4").astype(np.int32)


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


def padded_index(n: int, padding: str, margin: int) -> np.ndarray:
    """Source index of each position of an axis of length ``n`` padded by ``margin`` on both sides.

    Returns
    -------
    ndarray of int64, shape (n + 2 * margin,)
        ``np.pad(np.arange(n), margin, mode=padding)``: numpy's own padding, so
        edge cases (``n`` of 1 or 2 with ``reflect``) match the reference.
    """
    return np.pad(np.arange(n, dtype=np.int64), margin, mode=padding)
