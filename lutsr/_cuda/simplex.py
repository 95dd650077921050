"""CUDA kernel (numba.cuda) of a simplex stage, and its device tables and launch.

The arithmetic is :mod:`lutsr.reference`'s, bit for bit. As in the numba CPU
kernels (:mod:`lutsr._cpu`), a rotation is never materialised: the 1-D index
maps of :func:`lutsr.indexmaps.tap_indices` give every tap's source row and column
for every rotation, padding included. One GPU thread handles one input sample
(pixel and channel) of a stage: it reads its taps for all 4 rotations and all
patterns, does the simplex interpolation of each, and writes its own ``r x r``
output block, so there are no write conflicts and one launch runs a stage.

The final ``clip(round(sum / divisor + bias), 0, 255)`` is a lookup table over
the integer accumulator (:func:`lutsr.rounding.rounding_table`), computed on
the host with numpy from the reference's own float expression, so rounding on
the device cannot drift from the spec. A stage with a linear base rounds in
integers instead, as the CPU kernels do (:func:`lutsr.model.sum_shift`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import cuda, int32

from .. import model as _model
from ..indexmaps import table_words
from ..model import Stage, grid_size, sum_shift
from ..rounding import rounding_table

# The model's constants the kernels read, as literals of this file: numba's on-disk
# cache keys on this file alone, so a kernel compiled with an older value of one
# in model.py would be reused. Changing one there fails this import until the
# copy here is changed too (which invalidates the cache).
BASE_BITS, BASE_SIDE, TAP_BITS = 12, 5, 10
if (BASE_BITS, BASE_SIDE, TAP_BITS) != (_model.BASE_BITS, _model.BASE_SIDE, _model.TAP_BITS):
    raise ImportError("lutsr/_cuda/simplex.py: update BASE_BITS, BASE_SIDE, TAP_BITS to model.py's")

#: Input pixels a linear base reads per pixel (a global: local arrays need a constant size).
_BASE_PIXELS = BASE_SIDE * BASE_SIDE

#: Threads per block along (columns, rows) of a stage's input. Tests patch it
#: down so that the simulator runs multi-block grids.
THREADS_PER_BLOCK = (32, 4)

#: Largest grid extent along z (frames x channels); the kernel loops past it.
MAX_GRID_Z = 65535


@functools.cache
def stage_kernel(r: int):
    """The kernel of a simplex stage with upscale factor ``r`` (compiled once per ``r``).

    ``r`` is a compile-time constant of each kernel (a closure variable, part
    of numba's cache key), so every loop over the ``r*r`` block positions
    unrolls and the accumulator stays in registers: no array in the kernel is
    indexed at run time. ``bench/gpu_resources.py`` reads the compiled code:
    no local memory up to ``r = 4``; for ``r = 8`` NVVM does not unroll the
    64 positions and the accumulator is in local memory.

    The kernel maps ``src`` (N, H, W, C) uint8 to ``dst`` (N, H*r, W*r, C)
    uint8. ``words`` (P, L**4, ceil(r*r / 4)) int32 are the tables with each
    row padded to whole words (:func:`lutsr.indexmaps.table_words`), read a
    word (four table columns) per load; ``rows`` (P, 4, 4, H) and ``cols``
    (P, 4, 4, W) int32 come from :func:`tap_indices`; ``rounding`` uint8 maps
    ``sum - s_min`` to the stage output. Thread (x, y, z) handles input pixel
    (y, x) of planes z, z + gridDim.z, ...

    With a linear base, ``sum_shift`` >= 0 and ``base`` (r*r*25,) int32 holds
    its weights, ``base_rows`` (5, H) and ``base_cols`` (5, W) int32 the
    padded source index of offsets -2..2; the output is then rounded in
    integers with ``bias``. Without one, ``sum_shift`` is -1 and those arrays
    are dummies.

    With learned taps, ``taps`` (P, 4, w*w) int32 holds their weights and
    ``rows`` / ``cols`` are :func:`window_indices` as (1, 4, w*w, H) and
    (1, 4, w*w, W) (4-D, so one compiled kernel serves both); without,
    ``taps`` is a (1, 1, 1) dummy.
    """
    if not 1 <= r <= 8:
        raise ValueError(f"no stage kernel for r = {r}")
    R, RR, WORDS = r, r * r, (r * r + 3) // 4

    @cuda.jit(cache=True)
    def kernel(src, dst, words, rows, cols, rounding, s_min, interval, grid, base, base_rows,
               base_cols, sum_shift, bias, taps):
        x, y, z = cuda.grid(3)
        n_img, height, width, channels = src.shape
        if x >= width or y >= height:
            return
        n_pat = words.shape[0]
        learned = taps.shape[1] == 4  # else the (1, 1, 1) dummy
        q = 1 << interval
        mask = q - 1
        grid2 = grid * grid
        grid3 = grid2 * grid
        # Indexed only by unrolled loops' counters: registers, not local memory.
        acc = cuda.local.array(RR, int32)  # per output position (u * r + v)
        val = cuda.local.array(RR, int32)  # one interpolation, per table column
        tap = cuda.local.array(4, int32)  # a, b, c, d of one (pattern, rotation)
        for plane in range(z, n_img * channels, cuda.gridDim.z):
            n = plane // channels
            c = plane - n * channels
            for pos in range(RR):
                acc[pos] = 0
            for k in range(4):
                for p in range(n_pat):
                    for t in range(4):
                        if learned:  # (inline: a device function would need a driver to compile)
                            total = int32(0)
                            for e in range(taps.shape[2]):
                                total += taps[p, t, e] * int32(
                                    src[n, rows[0, k, e, y], cols[0, k, e, x], c])
                            total = (total + (1 << (TAP_BITS - 1))) >> TAP_BITS
                            if total < 0:
                                total = 0
                            elif total > 255:
                                total = 255
                            tap[t] = total
                        else:
                            tap[t] = int32(src[n, rows[p, k, t, y], cols[p, k, t, x], c])
                    v0, v1, v2, v3 = tap[0], tap[1], tap[2], tap[3]
                    i0 = (((v0 >> interval) * grid + (v1 >> interval)) * grid
                          + (v2 >> interval)) * grid + (v3 >> interval)
                    # Fraction in the high bits, dimension in the low two: sorting
                    # the keys descending sorts the dimensions by fraction. Ties
                    # order differently from the reference's stable argsort, which
                    # only moves a vertex whose weight is zero.
                    k0 = ((v0 & mask) << 2) | 0
                    k1 = ((v1 & mask) << 2) | 1
                    k2 = ((v2 & mask) << 2) | 2
                    k3 = ((v3 & mask) << 2) | 3
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
                    # One grid step along dimension d (a..d) is grid**(3 - d) rows.
                    d = k0 & 3
                    i1 = i0 + (grid3 if d == 0 else grid2 if d == 1 else grid if d == 2 else 1)
                    d = k1 & 3
                    i2 = i1 + (grid3 if d == 0 else grid2 if d == 1 else grid if d == 2 else 1)
                    d = k2 & 3
                    i3 = i2 + (grid3 if d == 0 else grid2 if d == 1 else grid if d == 2 else 1)
                    d = k3 & 3
                    i4 = i3 + (grid3 if d == 0 else grid2 if d == 1 else grid if d == 2 else 1)
                    w0, w1, w2, w3, w4 = q - f1, f1 - f2, f2 - f3, f3 - f4, f4
                    for j in range(WORDS):
                        a0, a1, a2 = words[p, i0, j], words[p, i1, j], words[p, i2, j]
                        a3, a4 = words[p, i3, j], words[p, i4, j]
                        for b in range(4):
                            m = 4 * j + b
                            if m < RR:  # byte b of a word, sign-extended: table column m
                                s = 8 * b
                                val[m] = (w0 * ((((a0 >> s) & 255) ^ 128) - 128)
                                          + w1 * ((((a1 >> s) & 255) ^ 128) - 128)
                                          + w2 * ((((a2 >> s) & 255) ^ 128) - 128)
                                          + w3 * ((((a3 >> s) & 255) ^ 128) - 128)
                                          + w4 * ((((a4 >> s) & 255) ^ 128) - 128))
                    # Rotating the block back: column perm[k, pos] of
                    # block_permutations lands at position pos = (u, v). One
                    # branch per rotation keeps every index a constant.
                    if k == 0:
                        for pos in range(RR):
                            acc[pos] += val[pos]
                    elif k == 1:
                        for pos in range(RR):
                            u, v = pos // R, pos % R
                            acc[pos] += val[(R - 1 - v) * R + u]
                    elif k == 2:
                        for pos in range(RR):
                            acc[pos] += val[RR - 1 - pos]
                    else:
                        for pos in range(RR):
                            u, v = pos // R, pos % R
                            acc[pos] += val[v * R + R - 1 - u]
            if sum_shift < 0:
                for pos in range(RR):
                    u, v = pos // R, pos % R
                    dst[n, y * R + u, x * R + v, c] = rounding[acc[pos] - s_min]
                continue
            # int32 suffices: |sum| << sum_shift and the 25 int16 weights times 255 stay
            # below 2**31 (as in lutsr._cpu).
            for pos in range(RR):
                acc[pos] = acc[pos] << sum_shift
            for a in range(BASE_SIDE):
                sy = base_rows[a, y]
                for b in range(BASE_SIDE):
                    pixel = int32(src[n, sy, base_cols[b, x], c])
                    for pos in range(RR):
                        acc[pos] += base[pos * _BASE_PIXELS + a * BASE_SIDE + b] * pixel
            for pos in range(RR):
                u, v = pos // R, pos % R
                total = acc[pos]
                # Round half to even after the (integer) bias, as lutsr._cpu's _round_shift.
                half = (1 << (BASE_BITS - 1)) - 1 + (((total >> BASE_BITS) + bias) & 1)
                value = ((total + half) >> BASE_BITS) + bias
                if value < 0:
                    value = 0
                elif value > 255:
                    value = 255
                dst[n, y * R + u, x * R + v, c] = value

    return kernel


@dataclass(frozen=True)
class DeviceStage:
    """One stage's constant arrays, uploaded to one device."""

    r: int
    words: object  # int32 (P, L**4, ceil(r*r / 4)), see table_words
    rounding: object  # uint8, see rounding_table
    s_min: int
    base: object  # int32 (r*r*25,), or a dummy (1,) without a base
    sum_shift: int  # BASE_BITS - m with a base, else -1
    bias: int
    taps: object  # int32 (P, 4, w*w) learned tap weights, or a dummy (1, 1, 1)


def upload(stage: Stage, interval: int) -> DeviceStage:
    """The stage's tables on the current device (the caller waits for the copies to land:
    :func:`lutsr._cuda.runner.uploaded`)."""
    has_base = stage.base is not None
    # With a base the rounding is arithmetic: skip the (large) lookup table.
    rounding, s_min = (np.zeros(1, np.uint8), 0) if has_base else \
        rounding_table(stage, interval)
    return DeviceStage(
        r=stage.r,
        words=cuda.to_device(table_words(stage)),
        rounding=cuda.to_device(rounding),
        s_min=s_min,
        base=cuda.to_device(stage.base.reshape(-1).astype(np.int32) if has_base
                            else np.zeros(1, np.int32)),
        sum_shift=BASE_BITS - sum_shift(stage, interval) if has_base else -1,
        bias=int(stage.bias) if has_base else 0,
        taps=cuda.to_device(np.zeros((1, 1, 1), np.int32) if stage.taps is None else
                            stage.taps.reshape(*stage.taps.shape[:2], -1).astype(np.int32)),
    )


def run_simplex(src, dst, stage: DeviceStage, maps, interval: int, stream) -> None:
    """Enqueue the stage on ``stream``: one launch of :func:`stage_kernel` over ``src``
    (N, H, W, C) into ``dst``, with ``maps`` from
    :meth:`lutsr._cuda.runner.DeviceModel.tap_maps`."""
    n, h, w, c = src.shape
    rows, cols, base_rows, base_cols = maps
    tx, ty = THREADS_PER_BLOCK
    blocks = (math.ceil(w / tx), math.ceil(h / ty), min(n * c, MAX_GRID_Z))
    stage_kernel(stage.r)[blocks, (tx, ty, 1), stream](
        src, dst, stage.words, rows, cols, stage.rounding, stage.s_min, interval,
        grid_size(interval), stage.base, base_rows, base_cols, stage.sum_shift, stage.bias,
        stage.taps)
