"""Preparation and planning of layered stages for the kernels of :mod:`.layered`.

:class:`PreparedLayered` holds what depends only on the stage (expanded
tables, rotated offsets, rounding constants, pipeline reach), read-only and
shared by every thread; :class:`LayeredPlan` what depends on the frame size
(ring layout, bands) and the scratch of the tasks that run them. Plain numpy
and threading: the jitted code is in :mod:`.layered`.
"""

from __future__ import annotations

import threading

import numpy as np

from ..indexmaps import block_permutations
from ..layered import HIGH_LEVELS, LOW_LEVELS, Q_BITS, WINDOW, LayeredStage, expanded_tables
from .kernels import _write_rows, avx2_available, avx512bw_available, neon_available
from .layered import _ROW_BLOCK, _SLICES, _TAPS, CHAINS, OUTS, VEC, VEC2, _layered_band

#: Set to True to run the portable kernels even where AVX-512BW or AVX2 is available
#: (read when a stage is prepared; for tests and comparisons). The environment
#: variable ``LUTSR_PORTABLE_KERNEL=1`` does the same for every numba kernel.
PORTABLE = False

#: Set to True to run the AVX2 kernels even where AVX-512BW is available (read when a
#: stage is prepared; for tests and comparisons).
AVX2 = False

#: Most inputs a layer may have for the 16-bit lanes: ``16 * 2048`` is the
#: largest sum that int16 holds (and ``t`` of :func:`division_magic`, uint16).
MAX_LANE_INPUTS = 16

#: Largest accumulator of a band (int16 sums of the up layer over the rotations): bands
#: of large frames are cut to fit it.
ACC_BYTES = 8 << 20

#: Scale of the table entries: ``expanded_tables`` holds ``2**Q_BITS * Q``.
_UNIT = 2**Q_BITS


def rotate_offset(dy: int, dx: int, k: int) -> tuple[int, int]:
    """Where a step ``(dy, dx)`` of ``np.rot90(plane, k)`` goes in the unrotated plane."""
    for _ in range(k % 4):
        dy, dx = dx, -dy
    return dy, dx


def division_magic(divisor: int, top: int, mul_bits: int = 16) -> tuple[int, int] | None:
    """``(mul, shift)`` with ``(t * mul) >> shift == t // divisor`` for ``0 <= t <= top``.

    The smallest ``shift >= 16`` with ``mul < 2**mul_bits``, checked here for
    every ``t`` (None when there is none). With 16 bits, the quotient of a
    uint16 ``t`` is one unsigned 16-bit multiply-high (``>> 16``) and a shift
    by ``shift - 16``.
    """
    t = np.arange(top + 1, dtype=np.int64)
    want = t // divisor
    for shift in range(16, 16 + mul_bits + 1):
        mul = -(-(1 << shift) // divisor)
        if mul >= 1 << mul_bits:
            return None
        if np.array_equal((t * mul) >> shift, want):
            return mul, shift
    return None


class PreparedLayered:
    """What a layered stage's kernels need that depends only on the stage.

    Read-only arrays shared by every thread: the expanded tables, each
    layer's rounding and clamps, the rotated window, shifts and output
    permutation, and the reach of each pipeline step (see
    :func:`~.layered._layered_band`). ``lanes`` says whether the AVX-512
    kernels run (the CPU has AVX-512BW, every layer has at most
    :data:`MAX_LANE_INPUTS` inputs, :data:`PORTABLE` and :data:`AVX2` are
    off); ``avx2`` whether the AVX2 kernels run instead (the same, but the CPU
    has AVX2 and not AVX-512BW, or :data:`AVX2` is set); ``neon`` whether the
    NEON kernels run (numba targets aarch64, the layers fit the lanes,
    :data:`PORTABLE` off).
    """

    def __init__(self, stage: LayeredStage):
        self.r = stage.r
        n_ch = stage.channels
        (dw0, pw0), *rest = stage.blocks
        layers = [stage.low, dw0, pw0, *(layer for block in rest for layer in block), stage.up]
        n = len(layers)
        a_max = max(_TAPS, n_ch)  # as _layer_row reads them
        tables = np.zeros((n, a_max, n_ch, HIGH_LEVELS), np.int16)
        self.n_in = np.array([layer.inputs for layer in layers], np.int64)
        self.is_dw = np.array([layer.kind == "depthwise" for layer in layers])
        self.magic = np.zeros((n, 6), np.int64)
        self.epi = np.zeros((n, 3), np.int64)
        lanes = True
        for li, layer in enumerate(layers):
            levels = LOW_LEVELS if li == 0 else HIGH_LEVELS
            tables[li, :layer.inputs, :, :levels] = expanded_tables(layer, levels)
            divisor = _UNIT * layer.inputs
            top = _magic_range(layer.inputs)
            found = division_magic(divisor, top)
            lanes &= found is not None and layer.inputs <= MAX_LANE_INPUTS
            mul, shift = found or (0, 16)
            wide = division_magic(divisor, top, 32)
            assert wide is not None  # (t < 2**17, divisor < 2**10): 32-bit multipliers exist
            self.magic[li] = (mul, shift - 16, divisor, divisor // 2 + 128 * divisor) + wide
            # Outputs: the low bits 0..3; h + 32 (0..63); the up layer's -128..127 (its
            # residual is h + 32, so its bias -32).
            self.epi[li] = ((0, 3, 0) if li == 0 else (-128, 127, -32) if li == n - 1
                            else (0, 63, 0))
        self.tables = _aligned_zeros(tables.size, np.int16)
        self.tables[:] = tables.reshape(-1)
        # The portable kernels also read every input's row of C outputs: (n, A, 64, C).
        self.tables_by_input = np.ascontiguousarray(tables.transpose(0, 1, 3, 2)).reshape(-1)
        self.win = np.array([[rotate_offset(a // WINDOW - 1, a % WINDOW - 1, k)
                              for a in range(WINDOW * WINDOW)] for k in range(4)], np.int64)
        self.shifts = np.zeros((4, n, n_ch, 2), np.int64)
        for li, layer in enumerate(layers):
            if layer.shifts is not None:
                for k in range(4):
                    for c in range(layer.inputs):
                        self.shifts[k, li, c] = rotate_offset(int(layer.shifts[0, c]),
                                                             int(layer.shifts[1, c]), k)
        perm = block_permutations(self.r)
        self.dest = np.argsort(perm, axis=1).astype(np.int64)  # dest[k, perm[k, pos]] = pos
        # Step s >= 1 reads step s - 1's rows y - up .. y + down; step 1 is layers 0 and 1.
        self.reach = np.zeros((4, n, 2), np.int64)
        for k in range(4):
            for s in range(1, n):
                dys = self.win[k, :, 0] if self.is_dw[s] else self.shifts[k, s, :, 0]
                self.reach[k, s] = max(0, -dys.min()), max(0, dys.max())
        # Ring 0: the input; 1: the low-bit layer's row (read at once); li + 1: layer li's output.
        self.ring_rows = np.ones(n, np.int64)
        self.ring_rows[0] = (self.reach[:, 1].sum(axis=1)).max() + 1
        for li in range(1, n - 1):
            self.ring_rows[li + 1] = (self.reach[:, li + 1].sum(axis=1)).max() + 1
        self.ring_rows[1] = 1
        self.ring_channels = np.full(n, n_ch, np.int64)
        self.ring_channels[0] = 2
        self.margin = int(max(1, np.abs(self.shifts).max(initial=0)))
        self.lanes = lanes and not PORTABLE and not AVX2 and avx512bw_available()
        self.avx2 = lanes and not PORTABLE and not self.lanes and avx2_available()
        self.neon = lanes and not PORTABLE and neon_available()
        if self.lanes:  # unused: an empty array keeps one numba signature
            self.tables_by_input = self.tables[:0]
        if self.avx2 or self.neon:  # the NEON kernels read the AVX2 kernels' layouts
            self.tables, self.tables_by_input = _avx2_layouts(tables)
        for a in (self.tables, self.tables_by_input, self.n_in, self.is_dw, self.magic,
                  self.epi, self.win, self.shifts, self.dest, self.reach, self.ring_rows):
            a.flags.writeable = False

    @property
    def path(self) -> str:
        """The kernels that run this stage: AVX-512BW, AVX2, NEON or portable."""
        return ("AVX-512BW" if self.lanes else "AVX2" if self.avx2 else "NEON" if self.neon
                else "portable")

    def halo(self) -> int:
        """Most rows a band's first output row reaches up or down, over all layers."""
        return int(self.reach.sum(axis=1).max())


def _avx2_layouts(tables: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The AVX2 kernels' two layouts of ``tables`` ``(n, A, C, 64)`` int16, each flat int16.

    For :func:`~.layered._depthwise_avx2`, each 64-entry table's low bytes then its high
    bytes (``(n, A, C, 2, 64)`` bytes, the same size); for
    :func:`~.layered._shared_inputs_avx2`, one row of every output's entry per input and
    value, ``(n, A, 64, 16)``, zeros past the ``C`` outputs.
    """
    n, a_max, n_ch, levels = tables.shape
    planes = tables.view(np.uint8).reshape(n, a_max, n_ch, levels, 2)  # little-endian pairs
    by_output = _aligned_zeros(tables.size, np.int16)
    by_output.view(np.uint8)[:] = planes.transpose(0, 1, 2, 4, 3).reshape(-1)
    rows = np.zeros((n, a_max, levels, VEC2), np.int16)
    rows[..., :n_ch] = tables.transpose(0, 1, 3, 2)
    by_input = _aligned_zeros(rows.size, np.int16)
    by_input[:] = rows.reshape(-1)
    return by_output, by_input


def _aligned_zeros(size: int, dtype) -> np.ndarray:
    """A 1-D array of zeros whose data starts on a 64-byte boundary (a vector's width):
    a load that crosses two cache lines costs two."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.zeros(size * itemsize + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start:start + size * itemsize].view(dtype)


def _magic_range(inputs: int) -> int:
    """The largest ``t = T + D/2 + 128 D`` of a layer of ``inputs`` inputs (``|16 Q| <= 2048``)."""
    return 4096 * inputs


class LayeredPlan:
    """Per frame size: the bands of a layered stage, and scratch for the threads running them.

    A task is one (channel, band of rows) pair; each takes a scratch set
    (rings, accumulator, offsets) from a free list, so that tasks on different
    threads never share one. Plans are per calling thread (see
    :class:`~lutsr._cpu.NumbaRunner`).
    """

    def __init__(self, ps: PreparedLayered, height: int, width: int, channels: int,
                 threads: int):
        self.ps = ps
        self.height, self.width, self.channels = height, width, channels
        self.wr = -(-width // VEC) * VEC
        # A ring row: VEC columns (margin <= MAX_SHIFT < VEC, then padding), wr, VEC more;
        # every row and pixel 0 of each start on a 64-byte boundary.
        self.wp = self.wr + 2 * VEC
        sizes = ps.ring_channels * ps.ring_rows * self.wp
        ring_base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        # Where ring j keeps row y: a lookup, not a division per row and tap.
        rows = np.arange(height)
        self.row_at = ring_base[:, None] + rows % ps.ring_rows[:, None] * self.wp
        self.work_size = int(sizes.sum())
        # Tasks for about two per thread (a slower thread then takes fewer); a band at
        # least two halos tall (a band recomputes up to a halo of rows at each inner edge),
        # and its accumulator at most ACC_BYTES (large frames; smaller measured no faster).
        n_ch = ps.dest.shape[1]
        per_channel = 1 if threads == 1 else -(-2 * threads // channels)
        per_channel = max(1, min(per_channel, height // max(8, 2 * ps.halo())),
                          -(-height * n_ch * self.wr * 2 // ACC_BYTES))
        edges = np.linspace(0, height, per_channel + 1).round().astype(int)
        self.bands = list(zip(edges[:-1].tolist(), edges[1:].tolist()))
        self.band_rows = max(y1 - y0 for y0, y1 in self.bands)
        self.tasks = [(c, band) for band in self.bands for c in range(channels)]
        # The next stage's input, channel-planar (C, H*r, W*r); None for the last stage.
        self.output = None
        self.planar = None  # the same for an interleaved output (see :meth:`run`)
        out_edges = np.linspace(0, height * ps.r, len(self.tasks) + 1).round().astype(int)
        self._out_bands = [(int(a), int(b)) for a, b in zip(out_edges[:-1], out_edges[1:])
                           if b > a]
        self._free = []
        self._lock = threading.Lock()

    def _scratch(self):
        with self._lock:
            if self._free:
                return self._free.pop()
        n_ch = self.ps.dest.shape[1]
        return (_aligned_zeros(self.work_size + VEC, np.int16),
                _aligned_zeros(self.band_rows * n_ch * self.wr + VEC, np.int16),
                np.zeros((9, max(len(self.ps.n_in), n_ch, WINDOW * WINDOW)), np.int64),
                np.zeros(max(self.wr, n_ch * _ROW_BLOCK), np.int64),
                _aligned_zeros(WINDOW * _SLICES * self.wp, np.uint8) if self.ps.avx2 else None)

    def run(self, parallel, src, s_y, s_x, s_c, dst, d_y, d_x, d_c) -> None:
        """Run the stage from the span ``src`` into the span ``dst`` (see :mod:`.runner`).

        ``parallel(count, task)`` runs ``task(0 .. count-1)`` on the runner's threads.
        The AVX-512, AVX2 and NEON kernels write an output whose pixels are contiguous
        (``d_x == 1``) with vector stores; any other goes through a channel-planar frame, then
        interleaved in bands of rows (:func:`~lutsr._cpu.kernels._write_rows`):
        a task holds one channel, and its bytes alone are every ``d_x``-th one.
        """
        if not (self.ps.lanes or self.ps.avx2 or self.ps.neon) or d_x == 1:
            parallel(len(self.tasks), lambda i: self._run_task(i, src, s_y, s_x, s_c, dst, d_y,
                                                               d_x, d_c))
            return
        r = self.ps.r
        if self.planar is None:
            self.planar = np.empty((self.channels, self.height * r, self.width * r), np.uint8)
        flat = self.planar.reshape(-1)
        parallel(len(self.tasks), lambda i: self._run_task(
            i, src, s_y, s_x, s_c, flat, self.width * r, 1, self.planar[0].size))
        def interleave(i):
            y0, y1 = self._out_bands[i]
            _write_rows(self.planar[:, y0:y1], dst, y0 * d_y, d_y, d_x, d_c)

        parallel(len(self._out_bands), interleave)

    def _run_task(self, task: int, src, s_y, s_x, s_c, dst, d_y, d_x, d_c) -> None:
        """Task ``task`` of :attr:`tasks`: one channel, one band of rows."""
        c, (y0, y1) = self.tasks[task]
        ps = self.ps
        scratch = self._scratch()
        work, acc, offs, sums, planes = scratch
        try:
            _layered_band(src, s_y, s_x, c * s_c, self.height, self.width, y0, y1,
                          (ps.tables, ps.tables_by_input),
                          ps.n_in, ps.is_dw, ps.magic, ps.epi, ps.win, ps.shifts, ps.dest,
                          ps.reach, ps.ring_rows, self.row_at, ps.margin, self.wp, self.wr,
                          work, acc, offs, sums, dst, d_y, d_x, c * d_c, (0,) * ps.r,
                          (0,) * (ps.r * ps.r), (0,) * OUTS,
                          (0,) * CHAINS if ps.lanes else None, planes,
                          () if ps.neon else None)
        finally:
            with self._lock:
                self._free.append(scratch)
