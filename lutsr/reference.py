"""The naive numpy implementation of a LUT model: the specification.

Every fast backend must reproduce :func:`run_lut` bit for bit. The arithmetic,
for one stage applied to one uint8 plane:

1. For each rotation ``rot`` in 0, 90, 180, 270 degrees, rotate the plane
   (``np.rot90``) and pad it at the bottom and right by the pattern's extent
   (1 pixel for ``S``, 2 for ``D`` and ``Y``; ``w - 1`` for learned taps of
   window ``w``) with the stage's padding mode.
2. For each pixel take the pattern's 4 pixels ``a, b, c, d`` (with learned
   taps, the 4 integers of :func:`learned_taps` instead); the origin row is
   ``((a//q * L + b//q) * L + c//q) * L + d//q`` and the fractions are
   ``a % q`` etc.
3. 4-D simplex interpolation: sort the fractions descending ``f1 >= ... >= f4``
   and walk from the origin vertex one grid step along each sorted dimension in
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

A :class:`~lutsr.layered.LayeredStage` (a network of 1-D table layers, the
ShiftLUT family) follows instead :func:`run_layered_stage`, whose arithmetic is
stated in :mod:`lutsr.layered`; it is all integer. :func:`run_lut` runs each
stage by its own rule, so a model may mix both kinds.

This module favours clarity over speed: it is the spec and the test oracle.
"""

from __future__ import annotations

import numpy as np

from .layered import (
    HIGH_LEVELS,
    LOW_LEVELS,
    Q_BITS,
    WINDOW,
    LayeredStage,
    TableLayer,
    table_entries,
)
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
    origin = ((msb[0] * L + msb[1]) * L + msb[2]) * L + msb[3]
    strides = np.array([L**3, L**2, L, 1])
    order = np.argsort(-frac, axis=0, kind="stable")   # dims by descending fraction
    f = np.take_along_axis(frac, order, axis=0)
    weights = [q - f[0], f[0] - f[1], f[1] - f[2], f[2] - f[3], f[3]]
    tab = table.astype(np.int64)
    vertex = origin
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


def round_half_even_div(num: np.ndarray, den: int) -> np.ndarray:
    """``num / den`` rounded half to even, in integers: int64 like ``num``."""
    q, rem = np.divmod(num, den)                       # floor division: 0 <= rem < den
    up = (2 * rem > den) | ((2 * rem == den) & (q % 2 == 1))
    return q + up


def table_query16(table: np.ndarray, step: int, v: np.ndarray) -> np.ndarray:
    """``16 * Q(table, step, v)``: one 1-D table linearly interpolated, exact int64.

    ``table`` is the 1-D int8 table as the authors store it (its
    :func:`~lutsr.layered.table_entries` entries, no padding), sampled every
    ``step`` input levels; ``v`` holds inputs ``0..levels-1``. The value is
    ``t[v // s] * (1 - f) + t[v // s + 1] * f`` with ``f = (v % s) / s`` (just
    ``t[v]`` for ``s = 1``), times ``2**Q_BITS = 16``, a multiple of
    ``16 / s``: an integer.
    """
    t = table.astype(np.int64)
    if step == 1:
        return t[v] << Q_BITS
    lo, f = v // step, v % step
    return (t[lo] * (step - f) + t[lo + 1] * f) * (2**Q_BITS // step)


def _layer_table(layer: TableLayer, a: int, o: int, levels: int) -> np.ndarray:
    """Table ``i{a}o{o}`` of a layer cut to the entries its step needs (an index past
    them raises, as it would in the authors' script)."""
    step = int(layer.steps[a, o])
    return layer.tables[a, o, :table_entries(step, levels)]


def run_table_layer(layer: TableLayer, x: np.ndarray, levels: int) -> np.ndarray:
    """One layer of 1-D tables over the feature planes ``x``.

    Parameters
    ----------
    layer : TableLayer
    x : ndarray of int64, shape (C_in, H, W)
        Inputs ``0..levels-1``. A depthwise layer takes ``C_in = 1`` (every
        output channel reads channel 0) or ``C_in = C_out`` (output ``o``
        reads channel ``o``); a pointwise layer takes ``C_in = A``.
    levels : int
        Input levels the tables cover (64 for the high part, 4 for the low bits).

    Returns
    -------
    ndarray of int64, shape (C_out, H, W)
        Per output ``o``: ``round(sum_a Q(tables[a, o], steps[a, o], v_a) / A)``,
        round half to even, ``v_a`` the 3x3 window position ``a = 3*dy + dx``
        (replicate padding) of the channel read, or input channel ``a``.
    """
    _, H, W = x.shape
    out = np.empty((layer.outputs, H, W), np.int64)
    if layer.kind == "depthwise":
        pad = WINDOW // 2
        padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        windows = [padded[:, dy:dy + H, dx:dx + W] for dy in range(WINDOW) for dx in range(WINDOW)]
        for o in range(layer.outputs):
            channel = 0 if x.shape[0] == 1 else o
            total = sum(table_query16(_layer_table(layer, a, o, levels), int(layer.steps[a, o]),
                                      windows[a][channel]) for a in range(layer.inputs))
            out[o] = round_half_even_div(total, layer.inputs << Q_BITS)
    else:
        for o in range(layer.outputs):
            total = sum(table_query16(_layer_table(layer, c, o, levels), int(layer.steps[c, o]),
                                      x[c]) for c in range(layer.inputs))
            out[o] = round_half_even_div(total, layer.inputs << Q_BITS)
    return out


def shift_channels(x: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Channel ``c`` of ``x`` (C, H, W) read at ``[y + dy_c, x + dx_c]``, replicate padding.

    ``shifts`` is ``(2, C)``: row 0 the ``dy``, row 1 the ``dx``. Coordinates
    are those of the (rotated) plane the stage is running on.
    """
    _, H, W = x.shape
    rows, cols = np.arange(H), np.arange(W)
    out = np.empty_like(x)
    for c in range(x.shape[0]):
        dy, dx = int(shifts[0, c]), int(shifts[1, c])
        out[c] = x[c][np.clip(rows + dy, 0, H - 1)[:, None], np.clip(cols + dx, 0, W - 1)]
    return out


def layered_rotation(plane: np.ndarray, stage: LayeredStage) -> np.ndarray:
    """A layered stage on one (already rotated) uint8 plane, before the rotations' sum.

    Returns
    -------
    ndarray of int64, shape (H*r, W*r)
        Values in -128..127, not yet rotated back.
    """
    x = plane.astype(np.int64) - 128
    low, high = x % LOW_LEVELS, x // LOW_LEVELS   # 0..3 and -32..31 (floor division)
    high = high[None]                         # one channel until block 0's depthwise layer
    half = HIGH_LEVELS // 2
    for b, (dw, pw) in enumerate(stage.blocks):
        # Block 0's residual is the one input channel, broadcast to every output.
        high = run_table_layer(dw, high + half, HIGH_LEVELS) + high
        if b == 0:
            low = run_table_layer(stage.low, low[None], LOW_LEVELS) + low
            low = np.clip(low, 0, LOW_LEVELS - 1)
            high = high + low
        high = np.clip(high, -half, half - 1)
        if pw.shifts is not None:
            # The shifted planes are both the layer's input and its residual.
            high = shift_channels(high, pw.shifts)
        high = np.clip(run_table_layer(pw, high + half, HIGH_LEVELS) + high, -half, half - 1)
    out = np.clip(run_table_layer(stage.up, high + half, HIGH_LEVELS) + high, -128, 127)
    r = stage.r
    H, W = plane.shape
    # Pixel shuffle: channel u*r + v is output pixel (i*r + u, j*r + v).
    return out.reshape(r, r, H, W).transpose(2, 0, 3, 1).reshape(H * r, W * r)


def run_layered_stage(plane: np.ndarray, stage: LayeredStage) -> np.ndarray:
    """Apply a layered stage (:mod:`lutsr.layered`) to a uint8 plane of shape (H, W).

    For each rotation ``k`` in 0..3 the network runs on ``np.rot90(plane, k)``
    (:func:`layered_rotation`, its output in -128..127) and its output is
    rotated back by ``-k``; the 4 are summed, 128 is added and the result
    clipped to 0..255.

    Returns
    -------
    ndarray of uint8, shape (H*r, W*r)
    """
    total = np.zeros((plane.shape[0] * stage.r, plane.shape[1] * stage.r), np.int64)
    for rot in range(4):
        total += np.rot90(layered_rotation(np.rot90(plane, rot), stage), -rot)
    return np.clip(total + 128, 0, 255).astype(np.uint8)


def run_lut(plane: np.ndarray, lut: LUT) -> np.ndarray:
    """Apply every stage of ``lut`` to one uint8 plane of shape (H, W)."""
    for stage in lut.stages:
        if isinstance(stage, LayeredStage):
            plane = run_layered_stage(plane, stage)
        else:
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
