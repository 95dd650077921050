"""The naive numpy implementation of a LUT model: the specification.

Every fast backend must reproduce :func:`run_lut` bit for bit. The arithmetic,
for one stage applied to one uint8 plane:

1. For each rotation ``rot`` in 0, 90, 180, 270 degrees, rotate the plane
   (``np.rot90``) and pad it at the bottom and right by the pattern's extent
   (1 pixel for ``S``, 2 for ``D`` and ``Y``; ``w - 1`` for learned taps of
   window ``w``) with the stage's padding mode.
2. For each pixel take the pattern's 4 pixels ``a, b, c, d`` (with learned
   taps, the 4 integers of :func:`learned_taps` instead); the base row is
   ``((a//q * L + b//q) * L + c//q) * L + d//q`` and the fractions are
   ``a % q`` etc.
3. 4-D simplex interpolation: sort the fractions descending ``f1 >= ... >= f4``
   and walk from the base vertex one grid step along each sorted dimension in
   turn; the five vertices get weights ``q-f1, f1-f2, f2-f3, f3-f4, f4``; the
   value is the weighted sum of table rows divided by ``q``.
4. Row ``u*r + v`` of the ``r*r`` output goes to the pixel's output block at
   ``(u, v)``; the output plane is rotated back.
5. Sum over rotations and the stage's patterns, then
   ``clip(round(sum / divisor + bias + base), 0, 255)`` with numpy's round
   half to even, as uint8. ``base`` is 0, or the stage's linear term
   (:func:`base_term`): a multiple of ``2**-BASE_BITS``. Every term is then
   an integer over a power of two far below ``2**53``, so the float sum is
   exact and any backend may compute it in integers.

This module favours clarity over speed: it is the spec and the test oracle.
"""

from __future__ import annotations

import numpy as np

from .model import (
    BASE_BITS,
    BASE_RADIUS,
    BASE_SIDE,
    LUT,
    PATTERNS,
    TAP_BITS,
    Stage,
    pattern_extent,
)


def pattern_taps(plane: np.ndarray, pattern: str, padding: str) -> np.ndarray:
    """The pattern's 4 pixels at every pixel of a (rotated) uint8 plane: (4, H, W) int64."""
    H, W = plane.shape
    ext = pattern_extent(pattern)
    padded = np.pad(plane, ((0, ext), (0, ext)), mode=padding).astype(np.int64)
    return np.stack([padded[dy:dy + H, dx:dx + W] for dy, dx in PATTERNS[pattern]])


def learned_taps(plane: np.ndarray, weights: np.ndarray, padding: str) -> np.ndarray:
    """Learned taps at every pixel of a (rotated) uint8 plane: (4, H, W) int64.

    ``weights`` (4, w, w) int16: tap ``t`` at ``(i, j)`` is
    ``clip(floor(s / 2**TAP_BITS + 1/2), 0, 255)`` for ``s`` the sum of
    ``weights[t] * padded[i:i + w, j:j + w]``, the plane padded by ``w - 1``
    at the bottom and right (``s`` is an integer: exact).
    """
    H, W = plane.shape
    w = weights.shape[-1]
    padded = np.pad(plane, ((0, w - 1), (0, w - 1)), mode=padding).astype(np.int64)
    sums = np.zeros((4, H, W), np.int64)
    for a in range(w):
        for b in range(w):
            sums += weights[:, a, b, None, None].astype(np.int64) * padded[a:a + H, b:b + W]
    return np.clip((sums + 2 ** (TAP_BITS - 1)) >> TAP_BITS, 0, 255)


def interpolate(pix: np.ndarray, table: np.ndarray, interval: int, r: int) -> np.ndarray:
    """Interpolate one table at the taps of one (already rotated) plane.

    Parameters
    ----------
    pix : ndarray of int64, shape (4, H, W)
        The taps ``a, b, c, d`` of every pixel, 0..255 (:func:`pattern_taps`
        or :func:`learned_taps`).
    table : ndarray of int8, shape (L**4, r*r)
    interval : int
    r : int

    Returns
    -------
    ndarray of float64, shape (H*r, W*r)
        The interpolated values (multiples of ``1/q``), not yet rotated back.
    """
    q = 2**interval
    L = 2 ** (8 - interval) + 1
    H, W = pix.shape[1:]
    msb, frac = pix // q, pix % q                      # (4, H, W) each
    base = ((msb[0] * L + msb[1]) * L + msb[2]) * L + msb[3]
    strides = np.array([L**3, L**2, L, 1])
    order = np.argsort(-frac, axis=0, kind="stable")   # dims by descending fraction
    f = np.take_along_axis(frac, order, axis=0)
    weights = [q - f[0], f[0] - f[1], f[1] - f[2], f[2] - f[3], f[3]]
    tab = table.astype(np.int64)
    vertex = base
    acc = weights[0][..., None] * tab[vertex]
    for n in range(4):
        vertex = vertex + strides[order[n]]
        acc += weights[n + 1][..., None] * tab[vertex]
    block = acc.reshape(H, W, r, r).transpose(0, 2, 1, 3).reshape(H * r, W * r)
    return block / q


def base_term(plane: np.ndarray, base: np.ndarray, padding: str) -> np.ndarray:
    """A stage's linear base (see :class:`~lutsr.model.Stage`) over a plane of shape (H, W).

    Returns
    -------
    ndarray of float64, shape (H*r, W*r)
        Multiples of ``2**-BASE_BITS``, exact.
    """
    r = base.shape[0]
    H, W = plane.shape
    padded = np.pad(plane, BASE_RADIUS, mode=padding).astype(np.int64)
    out = np.zeros((H * r, W * r), np.int64)
    for u in range(r):
        for v in range(r):
            for a in range(BASE_SIDE):
                for b in range(BASE_SIDE):
                    out[u::r, v::r] += int(base[u, v, a, b]) * padded[a:a + H, b:b + W]
    return out / 2**BASE_BITS


def run_stage(plane: np.ndarray, stage: Stage, interval: int) -> np.ndarray:
    """Apply one stage to a uint8 plane of shape (H, W); returns (H*r, W*r) uint8."""
    total = np.zeros((plane.shape[0] * stage.r, plane.shape[1] * stage.r))
    for rot in range(4):
        rotated = np.rot90(plane, rot)
        for p, (pattern, table) in enumerate(zip(stage.patterns, stage.tables)):
            pix = (pattern_taps(rotated, pattern, stage.padding) if stage.taps is None
                   else learned_taps(rotated, stage.taps[p], stage.padding))
            out = interpolate(pix, table, interval, stage.r)
            total += np.rot90(out, -rot)
    value = total / stage.divisor + stage.bias
    if stage.base is not None:
        value += base_term(plane, stage.base, stage.padding)
    return np.clip(np.round(value), 0, 255).astype(np.uint8)


def run_lut(plane: np.ndarray, lut: LUT) -> np.ndarray:
    """Apply every stage of ``lut`` to one uint8 plane of shape (H, W)."""
    for stage in lut.stages:
        plane = run_stage(plane, stage, lut.interval)
    return plane


def upscale_reference(img: np.ndarray, lut: LUT) -> np.ndarray:
    """Upscale ``(..., H, W, C)`` or ``(H, W)`` uint8 channel by channel with :func:`run_lut`."""
    if img.ndim == 2:
        return run_lut(img, lut)
    planes = img.reshape(-1, *img.shape[-3:])
    s = lut.scale
    out = np.empty((planes.shape[0], img.shape[-3] * s, img.shape[-2] * s, img.shape[-1]),
                   np.uint8)
    for n, frame in enumerate(planes):
        for c in range(frame.shape[-1]):
            out[n, :, :, c] = run_lut(frame[:, :, c], lut)
    return out.reshape(*img.shape[:-3], *out.shape[1:])
