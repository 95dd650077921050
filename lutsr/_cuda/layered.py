"""CUDA kernels (numba.cuda) for layered LUT stages, and the host code that launches them.

The arithmetic is :func:`lutsr.reference.run_layered_stage`'s, bit for bit
(its semantics are stated in :mod:`lutsr.layered`). Every table is looked up
in its :func:`~lutsr.layered.expanded_tables` form, ``16 * Q`` for every
input level as an exact int16, so a layer of ``A`` inputs is an integer sum
``T`` and one rounding, ``round_half_even(T / (16 * A))``: ``T / 144`` for a
depthwise layer, ``T / 256`` for a pointwise layer of 16 channels.

Data path, per stage. The ``N * Ci`` input planes (frames times image
channels) are processed in chunks of whole planes so that device memory stays
bounded (:data:`FEATURE_BYTES`); a chunk's features live in two uint8 buffers
of shape ``(planes, 4, C, H * W)`` (``C`` the stage's channels) that the
layers ping-pong between, every launch on the caller's stream:

1. :func:`_first_kernel`: block 0's depthwise layer and the low-bit layer,
   reading the uint8 input directly through the rotation (no rotated copy),
   one thread per pixel of each of the 4 rotated planes.
2. :func:`_pointwise_kernel` and :func:`_depthwise_kernel` for the layers
   that follow, on the rotated feature maps.
3. :func:`_up_kernel`: one thread per input pixel computes the up layer at
   that pixel's place in all 4 rotations, rotates each ``r x r`` block back,
   sums, adds 128 and clips: it alone writes its output block, so there are
   no write conflicts.

A feature is stored as its table level ``h + 32`` (0..63): the next layer
indexes its tables by it directly. A rotated plane of an ``H x W`` plane is
``W x H`` for odd rotations, but it has the same ``H * W`` pixels, so one
flat pixel index serves all four rotations; rotated coordinates are computed
arithmetically and need no index maps.

The tables are small (at most ``32 * 32 * 64`` int16 per layer, 32 KiB for the
published 16-channel models) and stay in global memory, where the read-only
cache serves them; staging them in shared memory is an optimisation nobody
has measured: there is no GPU in this project's machines or CI. The kernels
run in tests in numba's CUDA simulator, and compile to PTX for a real GPU
(needing a CUDA toolkit's NVVM, no GPU); their speed on a GPU is unmeasured.

Kernels are self-contained, with no device functions and so no ``min`` or
``max`` (numba.cuda implements those as device functions): compiling a device
function for PTX asks the CUDA driver for the device, which a GPU-less machine
lacks, so only self-contained kernels can be checked to compile here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import cuda, int32, uint32

from .. import layered as _layered
from ..layered import HIGH_LEVELS, LOW_LEVELS, LayeredStage, device_layers, expanded_tables

# MAX_CHANNELS as a literal of this file, for numba's on-disk cache (keyed on this
# file alone; see simplex.py): changing it in lutsr/layered.py fails this import.
MAX_CHANNELS = 32
if MAX_CHANNELS != _layered.MAX_CHANNELS:
    raise ImportError("lutsr/_cuda/layered.py: update MAX_CHANNELS to lutsr/layered.py's")

#: Threads per block (1-D, along the flat pixel index). Tests patch it down so
#: that the simulator runs multi-block grids.
THREADS_PER_BLOCK = 128

#: Largest grid extent along z (planes x rotations); the kernels loop past it.
MAX_GRID_Z = 65535

#: Bytes the two feature buffers of one stage may take together; planes are
#: processed in chunks that fit (at least one plane, whatever its size). A
#: plane of ``H x W`` pixels needs ``2 * 4 * C * H * W`` bytes: 256 MiB holds
#: a 1920x1080 plane of a 16-channel model.
FEATURE_BYTES = 256 * 2**20

# Window side and taps of a depthwise layer.
_SIDE = 3
_TAPS = _SIDE * _SIDE


# Every kernel inlines q = round_half_even(t / d) as
#     t += d // 2; q = t // d; if t == q * d and q is odd: q -= 1
# (// floors on the device as in Python): adding half then flooring rounds
# halves up, and t landing on a multiple of d is exactly the half case, where
# an odd q steps back to the even one. d is even (16 * A), so d // 2 is exact.


# --------------------------------------------------------------------------- kernels


@cuda.jit(cache=True)
def _first_kernel(src, feat, high, low, plane0, planes):
    """Block 0's depthwise layer and the low-bit layer, from the uint8 input.

    ``src`` (N, H, W, Ci) uint8, any strides; ``feat`` (P, 4, C, H*W) uint8,
    written with levels ``h + 32``; ``high`` int16 (9, C, 64) and ``low``
    int16 (9, C, 4) expanded tables. Thread ``s`` of block z handles pixel
    ``s`` of rotation ``z % 4`` of chunk plane ``z // 4`` (image plane
    ``plane0 + z // 4``, that is frame ``// Ci`` and channel ``% Ci``), for
    z = blockIdx.z, + gridDim.z, ...
    """
    s = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    _, height, width, n_chan = src.shape
    if s >= height * width:
        return
    channels = feat.shape[2]
    hi = cuda.local.array(_TAPS, int32)
    lo = cuda.local.array(_TAPS, int32)
    for z in range(cuda.blockIdx.z, planes * 4, cuda.gridDim.z):
        u = z >> 2
        k = z & 3
        plane = plane0 + u
        n = plane // n_chan
        c = plane - n * n_chan
        wk = width if k % 2 == 0 else height  # the rotated plane's width
        hk = height * width // wk
        y = s // wk
        x = s - y * wk
        for a in range(_TAPS):
            # Replicate padding in the rotated plane, then back to the source.
            ry = y + a // _SIDE - 1
            ry = 0 if ry < 0 else hk - 1 if ry >= hk else ry
            rx = x + a % _SIDE - 1
            rx = 0 if rx < 0 else wk - 1 if rx >= wk else rx
            if k == 0:
                sy, sx = ry, rx
            elif k == 1:  # np.rot90(a, 1)[y, x] == a[x, W - 1 - y]
                sy, sx = rx, width - 1 - ry
            elif k == 2:
                sy, sx = height - 1 - ry, width - 1 - rx
            else:  # np.rot90(a, 3)[y, x] == a[H - 1 - x, y]
                sy, sx = height - 1 - rx, ry
            v = int32(src[n, sy, sx, c]) - 128
            hi[a] = (v >> 2) + 32  # floor(v / 4) + 32: 0..63
            lo[a] = v & 3
        centre = _TAPS // 2
        for o in range(channels):
            t = 0
            tl = 0
            for a in range(_TAPS):
                t += int32(high[a, o, hi[a]])
                tl += int32(low[a, o, lo[a]])
            t += 72  # round_half_even(t / 144), see above
            q = t // 144
            if t == q * 144 and q & 1:
                q -= 1
            tl += 72
            ql = tl // 144
            if tl == ql * 144 and ql & 1:
                ql -= 1
            ql += lo[centre]
            ql = 0 if ql < 0 else 3 if ql > 3 else ql
            # Level of h' = clamp(q + h + l', -32, 31), h = hi - 32.
            q += hi[centre] + ql
            feat[u, k, o, s] = 0 if q < 0 else 63 if q > 63 else q


@cuda.jit(cache=True)
def _depthwise_kernel(src, dst, tables, planes, height, width):
    """A depthwise layer after block 0: ``src`` -> ``dst``, both (P, 4, C, H*W) uint8 levels.

    ``tables`` int16 (9, C, 64); output channel ``o`` reads the 3x3 window of
    channel ``o`` (replicate padding in the rotated plane) and adds its centre.
    ``height`` and ``width`` are the unrotated plane's. Threads as in
    :func:`_first_kernel`.
    """
    s = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if s >= height * width:
        return
    channels = src.shape[2]
    at = cuda.local.array(_TAPS, int32)
    for z in range(cuda.blockIdx.z, planes * 4, cuda.gridDim.z):
        u = z >> 2
        k = z & 3
        wk = width if k % 2 == 0 else height
        hk = height * width // wk
        y = s // wk
        x = s - y * wk
        for a in range(_TAPS):
            ry = y + a // _SIDE - 1
            ry = 0 if ry < 0 else hk - 1 if ry >= hk else ry
            rx = x + a % _SIDE - 1
            rx = 0 if rx < 0 else wk - 1 if rx >= wk else rx
            at[a] = ry * wk + rx
        for o in range(channels):
            t = 0
            for a in range(_TAPS):
                t += int32(tables[a, o, src[u, k, o, at[a]]])
            t += 72
            q = t // 144
            if t == q * 144 and q & 1:
                q -= 1
            q += int32(src[u, k, o, s])
            dst[u, k, o, s] = 0 if q < 0 else 63 if q > 63 else q


@cuda.jit(cache=True)
def _pointwise_kernel(src, dst, tables, shifts, planes, height, width):
    """A pointwise layer: ``src`` -> ``dst``, both (P, 4, C, H*W) uint8 levels.

    ``tables`` int16 (C, C, 64); ``shifts`` int32 (2, C): input channel ``c``
    is read at ``(y + shifts[0, c], x + shifts[1, c])`` of the rotated plane,
    clamped (replicate padding); the shifted input is also the residual.
    Threads as in :func:`_first_kernel`.
    """
    s = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if s >= height * width:
        return
    channels = src.shape[2]
    div = channels << 4  # 16ths of A = C inputs
    half = channels << 3
    for z in range(cuda.blockIdx.z, planes * 4, cuda.gridDim.z):
        u = z >> 2
        k = z & 3
        wk = width if k % 2 == 0 else height
        hk = height * width // wk
        y = s // wk
        x = s - y * wk
        # The (at most MAX_CHANNELS = 32) input levels, four bytes to a word in eight scalars: an
        # array indexed by the channel would live in local memory (bench/GPU.md).
        w0 = w1 = w2 = w3 = w4 = w5 = w6 = w7 = uint32(0)
        for c in range(channels):
            ry = y + shifts[0, c]
            ry = 0 if ry < 0 else hk - 1 if ry >= hk else ry
            rx = x + shifts[1, c]
            rx = 0 if rx < 0 else wk - 1 if rx >= wk else rx
            v = uint32(src[u, k, c, ry * wk + rx]) << uint32((c & 3) * 8)
            j = c >> 2
            if j == 0:
                w0 |= v
            elif j == 1:
                w1 |= v
            elif j == 2:
                w2 |= v
            elif j == 3:
                w3 |= v
            elif j == 4:
                w4 |= v
            elif j == 5:
                w5 |= v
            elif j == 6:
                w6 |= v
            else:
                w7 |= v
        for o in range(channels):
            t = 0
            own = 0
            for c in range(channels):
                j = c >> 2
                w = (w0 if j == 0 else w1 if j == 1 else w2 if j == 2 else w3 if j == 3 else
                     w4 if j == 4 else w5 if j == 5 else w6 if j == 6 else w7)
                level = int32((w >> uint32((c & 3) * 8)) & uint32(255))
                t += int32(tables[c, o, level])
                if c == o:
                    own = level
            t += half
            q = t // div
            if t == q * div and q & 1:
                q -= 1
            q += own
            dst[u, k, o, s] = 0 if q < 0 else 63 if q > 63 else q


@cuda.jit(cache=True)
def _up_kernel(feat, dst, tables, source, plane0, planes, r):
    """The up layer, the 4 rotations summed, +128, clipped: into ``dst`` (N, H*r, W*r, Ci).

    ``feat`` (P, 4, C, H*W) uint8 levels; ``tables`` int16 (C, r*r, 64);
    ``source`` int32 (4, r*r): output block position ``m`` takes rotation
    ``k``'s table column ``source[k, m]`` (see :func:`block_sources`). Thread
    ``s`` of block z handles input pixel ``s`` (row-major, unrotated) of chunk
    plane z, z + gridDim.z, ...

    Each output is summed over the rotations in one scalar, its levels read
    where they lie (L1): arrays indexed at run time would live in local memory.
    """
    s = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    _, out_h, out_w, n_chan = dst.shape
    height = out_h // r
    width = out_w // r
    if s >= height * width:
        return
    channels = feat.shape[2]
    div = channels << 4
    half = channels << 3
    i = s // width
    j = s - i * width
    # Where pixel (i, j) sits in np.rot90(plane, k), k = 0..3.
    s0 = i * width + j
    s1 = (width - 1 - j) * height + i
    s2 = (height - 1 - i) * width + (width - 1 - j)
    s3 = j * height + (height - 1 - i)
    for u in range(cuda.blockIdx.z, planes, cuda.gridDim.z):
        plane = plane0 + u
        n = plane // n_chan
        c = plane - n * n_chan
        for m in range(r * r):
            acc = 0
            for k in range(4):
                sk = s0 if k == 0 else s1 if k == 1 else s2 if k == 2 else s3
                col = source[k, m]
                t = 0
                for ch in range(channels):
                    t += int32(tables[ch, col, feat[u, k, ch, sk]])
                t += half
                q = t // div
                if t == q * div and q & 1:
                    q -= 1
                q += int32(feat[u, k, col, sk]) - 32
                acc += -128 if q < -128 else 127 if q > 127 else q
            q = acc + 128
            dst[n, i * r + m // r, j * r + m % r, c] = 0 if q < 0 else 255 if q > 255 else q


# --------------------------------------------------------------------------- host side


def block_sources(r: int) -> np.ndarray:
    """``source`` int32 (4, r*r): the table column of rotation ``k`` that lands on
    output block position ``m`` once the plane is rotated back.

    Rotating a pixel-shuffled plane back by ``-k`` quarter turns moves each
    ``r x r`` block whole and turns it in place: ``np.rot90`` of the block of
    position indices says which position comes to each place.
    """
    positions = np.arange(r * r).reshape(r, r)
    return np.stack([np.rot90(positions, -k).ravel() for k in range(4)]).astype(np.int32)


@dataclass(frozen=True)
class DeviceLayeredStage:
    """One layered stage's constant arrays, uploaded to one device.

    ``first`` and ``low`` are block 0's depthwise and low-bit expanded tables;
    ``layers`` is :func:`lutsr.layered.device_layers`, on the device.
    """

    r: int
    channels: int
    first: object  # int16 (9, C, 64)
    low: object  # int16 (9, C, 4)
    layers: tuple  # ((tables int16 (A, C, 64), shifts int32 (2, C) or None), ...)
    up: object  # int16 (C, r*r, 64)
    source: object  # int32 (4, r*r), see block_sources


def upload(stage: LayeredStage) -> DeviceLayeredStage:
    """Copy ``stage``'s expanded tables to the current device (the caller then waits
    for them: ``lutsr._cuda.runner.uploaded``)."""
    def tables(layer, levels=HIGH_LEVELS):
        return cuda.to_device(np.ascontiguousarray(expanded_tables(layer, levels)))

    layers = tuple((cuda.to_device(t), None if s is None else cuda.to_device(s))
                   for t, s in device_layers(stage))
    return DeviceLayeredStage(
        r=stage.r, channels=stage.channels, first=tables(stage.blocks[0][0]),
        low=tables(stage.low, LOW_LEVELS), layers=layers, up=tables(stage.up),
        source=cuda.to_device(block_sources(stage.r)))


def chunk_planes(planes: int, channels: int, height: int, width: int) -> int:
    """Planes per chunk: as many as :data:`FEATURE_BYTES` allows, at least 1."""
    per_plane = 2 * 4 * channels * height * width
    return max(1, min(planes, FEATURE_BYTES // per_plane))


def run_layered(src, dst, stage: DeviceLayeredStage, stream, alloc) -> None:
    """Enqueue one layered stage on ``stream``: ``src`` (N, H, W, Ci) -> ``dst`` (N, H*r, W*r, Ci).

    Parameters
    ----------
    src, dst : numba device arrays of uint8
        Any strides; ``dst`` must not overlap ``src``.
    stage : DeviceLayeredStage
        From :func:`upload`, on the arrays' device.
    stream : numba stream or 0
    alloc : callable
        ``alloc(shape)`` returns a uint8 numba device array of a 4-D shape
        (the runner's intermediates allocator); called twice per call, for
        the two feature buffers, which every chunk reuses.
    """
    n, height, width, n_chan = src.shape
    planes = n * n_chan
    chunk = chunk_planes(planes, stage.channels, height, width)
    shape = (chunk, 4, stage.channels, height * width)
    buffers = alloc(shape), alloc(shape)
    tx = THREADS_PER_BLOCK
    bx = math.ceil(height * width / tx)
    for plane0 in range(0, planes, chunk):
        count = min(chunk, planes - plane0)
        rotated = (bx, 1, min(count * 4, MAX_GRID_Z))
        a, b = buffers
        _first_kernel[rotated, (tx, 1, 1), stream](src, a, stage.first, stage.low, plane0, count)
        for tables, shifts in stage.layers:
            if shifts is None:
                _depthwise_kernel[rotated, (tx, 1, 1), stream](a, b, tables, count, height, width)
            else:
                _pointwise_kernel[rotated, (tx, 1, 1), stream](a, b, tables, shifts, count,
                                                               height, width)
            a, b = b, a
        _up_kernel[(bx, 1, min(count, MAX_GRID_Z)), (tx, 1, 1), stream](
            a, dst, stage.up, stage.source, plane0, count, stage.r)
