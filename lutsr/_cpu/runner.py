"""NumbaRunner: a LUT's stages run band by band on a thread pool (see :mod:`lutsr._cpu`)."""

from __future__ import annotations

import itertools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from ..indexmaps import padded_index, rotated_offsets, stack_tables
from ..layered import LayeredStage
from ..model import BASE_BITS, BASE_RADIUS, BASE_SIDE, LUT, Stage, grid_size, sum_shift
from ..rounding import rounding_table
from .kernels import (
    BASE_PAIRS,
    CHUNK,
    LANES,
    MARGIN,
    _learned_tap_band,
    _pair_taps,
    _stage_band,
    avx512bw_available,
    vnni_available,
)
from .layered_plan import LayeredPlan, PreparedLayered
from .rounding import power_of_two_rounding

#: Row bands per worker thread: more bands than threads balance the load when
#: one core runs slower than the other (measured on a 2-vCPU VM: the pool
#: thread's bands took 1.4-1.7x the caller's; 4 per thread beat 2 by ~10%).
BANDS_PER_THREAD = 4


def _span(a: np.ndarray, writeable: bool) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """A flat 1-D uint8 view over ``a`` and ``a``'s strides in it, or None if it has none.

    Element ``i`` of ``a`` is ``span[dot(i, strides)]``. A C-contiguous ``a``
    gives a plain reshape; otherwise the span also covers the bytes between
    elements, which belong to the same buffer and are never written. Strides
    of length-1 axes are irrelevant and reported as 0. None when a stride is
    negative, or (for ``writeable``) when elements overlap.
    """
    strides = tuple(s if n > 1 else 0 for n, s in zip(a.shape, a.strides, strict=True))
    if min(strides) < 0 or (writeable and any(s == 0 and n > 1 for n, s in
                                              zip(a.shape, strides, strict=True))):
        return None
    if a.flags.c_contiguous:
        flat = a.reshape(-1)
    else:
        size = 1 + sum((n - 1) * s for n, s in zip(a.shape, strides, strict=True))
        flat = np.lib.stride_tricks.as_strided(a, (size,), (1,), writeable=writeable)
    if not writeable and flat.flags.writeable:
        # One numba signature for every input: always read-only.
        flat = flat.view()
        flat.flags.writeable = False
    return flat, strides


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


#: Most threads a runner uses (more are capped): one caller plus the shared pool's workers.
MAX_THREADS = max(64, _default_threads())

_shared_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The process-wide pool that every runner's ``workers`` helpers run on.

    One pool of at most ``MAX_THREADS - 1`` workers whatever the runners'
    thread counts (``workers`` is below that: :class:`NumbaRunner` caps it).
    ``ThreadPoolExecutor`` starts a worker only when a task finds none idle,
    so the live workers are as many as the most helpers ever running at once,
    not the sum over every ``threads`` value ever asked for (one pool per
    value left 317 threads behind after 32 values).
    """
    global _shared_pool
    with _pool_lock:
        if _shared_pool is None:
            _shared_pool = ThreadPoolExecutor(MAX_THREADS - 1, thread_name_prefix="lutsr")
        return _shared_pool


def _forget_pool_after_fork() -> None:
    # A forked child inherits the pool but not its threads (nor, possibly,
    # a free lock): start afresh so that it runs in parallel too.
    global _shared_pool, _pool_lock
    _shared_pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


class _PreparedStage:
    """Everything about one stage that depends only on the LUT."""

    def __init__(self, stage: Stage, interval: int):
        L = grid_size(interval)
        rr = stage.r * stage.r
        self.r = stage.r
        self.padding = stage.padding
        self.interval = interval
        tables = stack_tables(stage)
        if tables.size >= 2**32:
            raise ValueError(f"{tables.size / 2**30:.1f} GiB of tables are too large for the "
                             "numba backend's 32-bit offsets; use backend='reference'")
        # 3 bytes of padding: the r = 1 gathers read 4 bytes at a row's offset.
        self.tables = np.concatenate([tables.reshape(-1), np.zeros(3, np.int8)])
        # Offset of the table that (pattern p, rotation k) = combination p * 4 + k reads.
        self.table_offsets = np.repeat(np.arange(len(stage.patterns), dtype=np.int64), 4) \
            * (stage.rows * rr)
        self.offsets = np.concatenate([rotated_offsets(p) for p in stage.patterns])  # (4P, 4, 2)
        self.strides = np.array([L**3 * rr, L**2 * rr, L * rr, rr], np.int64)
        self.shift = int(self.strides[0]).bit_length()
        rnd, s_min = rounding_table(stage, interval)
        # Weights are packed as bytes (q <= 128 for every interval); r must be 4. (For
        # r = 2 the same idea with gathered 4-byte rows, 4 pixels per vector, measured
        # 1.28x the portable kernel's time: not used.)
        self.vnni = stage.r == 4 and vnni_available()
        # VNNI sums are int32; so are sums that a base shifts up.
        if max(-s_min, len(rnd) - 1 + s_min) < 2**15 and not self.vnni and stage.base is None:
            acc_type = np.int16
            self.rnd = np.zeros(2**16, np.uint8)
            self.rnd[np.arange(s_min, s_min + len(rnd)) & 0xFFFF] = rnd
            self.low = 0
        else:
            acc_type = np.int32
            self.rnd, self.low = rnd, -s_min
        self.lanes = ((np.int32(0),) * (LANES * rr if stage.r <= 2 else 1)
                      if avx512bw_available() else None)
        # (m, bias) of shift rounding, or m = 0 to use the lookup ``rnd``.
        self.shift_round, self.shift_bias = power_of_two_rounding(stage, interval) or (0, 0)
        self.sum_shift, self.base = 0, None
        if stage.base is not None:  # LUT validation guarantees sum_shift is not None
            self.sum_shift = BASE_BITS - sum_shift(stage, interval)
            self.shift_round, self.shift_bias = BASE_BITS, int(stage.bias)
            # (r, r, 5, 5) -> (row, pixel pair, m, 2), a row's last pair padded by a 0 weight.
            n, pairs = BASE_SIDE, BASE_PAIRS
            dense = np.zeros((n, 2 * pairs, rr), np.int16)
            dense[:, :n] = stage.base.reshape(rr, n, n).transpose(1, 2, 0)
            self.base = dense.reshape(n, pairs, 2, rr).transpose(0, 1, 3, 2).reshape(-1)
            self.base.flags.writeable = False
        self.block = (acc_type(0),) * rr
        self.side = (0,) * stage.r
        # Learned taps: per (pattern, rotation) = combination j and tap t at j * 4 + t,
        # pairs of window pixels (steps (dy, dx) in unrotated coordinates) and their weights.
        self.tap_steps = self.tap_weights = None
        if stage.taps is not None:
            n_pat, w = len(stage.patterns), stage.taps.shape[2]
            a, b = np.divmod(np.arange(w * w), w)
            # Rotation k's steps, as in rotated_offsets.
            steps = np.array([(a, b), (b, -a), (-a, -b), (-b, a)]).transpose(0, 2, 1)
            all_steps = np.broadcast_to(steps[None, :, None], (n_pat, 4, 4, w * w, 2))
            all_weights = np.broadcast_to(stage.taps.reshape(n_pat, 1, 4, w * w),
                                          (n_pat, 4, 4, w * w))
            self.tap_steps, self.tap_weights = _pair_taps(all_steps.reshape(-1, w * w, 2),
                                                          all_weights.reshape(-1, w * w))
            self.tap_margin = w - 1
            self.tap_weights.flags.writeable = False
        for a in (self.tables, self.table_offsets, self.offsets, self.strides, self.rnd):
            a.flags.writeable = False  # shared by every thread


def _slack_empty(shape: tuple[int, ...], slack: int) -> np.ndarray:
    """An empty C-contiguous uint8 array of ``shape`` whose buffer goes on ``slack`` bytes."""
    size = math.prod(shape)
    return np.empty(size + slack, np.uint8)[:size].reshape(shape)


class SimplexPlan:
    """A simplex stage's plan per frame size and calling thread: index maps, bands and their
    scratch; :meth:`run` runs it (as :class:`~.layered_plan.LayeredPlan` runs a layered stage).

    ``shared_tap_planes`` maps a tap-plane shape to its array, shared by the
    stages of one :class:`_FramePlan`.
    """

    def __init__(self, ps: _PreparedStage, height: int, width: int, channels: int, bands: int,
                 shared_tap_planes: dict):
        self.ps = ps
        wp = width + 2 * MARGIN
        self.prow = padded_index(height, ps.padding, MARGIN)
        self.pcol = padded_index(width, ps.padding, MARGIN)
        self.tapoff = np.ascontiguousarray(ps.offsets[..., 0] * wp + ps.offsets[..., 1])
        edges = np.linspace(0, height, min(bands, height) + 1).round().astype(int)
        self.bands = list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))
        # 8 bytes of slack past each window: :func:`_add_base` reads 8 bytes at a row's offset.
        self.windows = [_slack_empty((channels, y1 - y0 + 2 * MARGIN, wp), 8)
                        for y0, y1 in self.bands]
        self.bufs = [np.empty(ps.offsets.shape[0] * 10 * CHUNK, np.uint32) for _ in self.bands]
        self.packed = [np.empty(ps.offsets.shape[0] // 4 * 5 * CHUNK, np.uint32) if ps.vnni
                       else None for _ in self.bands]
        self.rows = [np.empty((channels, ps.r, width * ps.r), np.uint8) for _ in self.bands]
        self.base_offsets = None
        if ps.base is not None:
            self.base_offsets = np.array([dy * wp - BASE_RADIUS
                                          for dy in range(-BASE_RADIUS, BASE_RADIUS + 1)], np.int64)
        # Learned taps: per band a window padded by w - 1, and one array of tap planes
        # (4P * 4, C, H, W) that pass 1 reads at the pixel's own position.
        self.tap_planes = None
        if ps.tap_weights is not None:
            m = ps.tap_margin
            self.tap_prow = padded_index(height, ps.padding, m)
            self.tap_pcol = padded_index(width, ps.padding, m)
            self.tap_offsets = np.ascontiguousarray(ps.tap_steps[..., 0] * (width + 2 * m)
                                                    + ps.tap_steps[..., 1])
            self.tap_windows = [np.empty((channels, y1 - y0 + 2 * m, width + 2 * m), np.uint8)
                                for y0, y1 in self.bands]
            self.tap_pairs = [np.empty(win.size, np.uint32) for win in self.tap_windows]
            n_taps = len(ps.tap_weights)
            # Stages run one after another: those with the same plane shape share one array.
            shape = (n_taps, channels, height, width)
            if shape not in shared_tap_planes:
                shared_tap_planes[shape] = np.empty(shape, np.uint8)
            self.tap_planes = shared_tap_planes[shape]
            self.tapoff = (np.arange(n_taps, dtype=np.int64) * self.tap_planes[0].size
                           ).reshape(-1, 4)
        # The next stage's input, channel-planar (C, H*r, W*r); None for the last stage.
        self.output = None

    def run(self, parallel, src, s_y, s_x, s_c, dst, d_y, d_x, d_c) -> None:
        """The stage from ``src`` (uint8, read at ``y * s_y + x * s_x + c * s_c``) into
        ``dst`` (written likewise with ``d_*``), its bands run by ``parallel(count, task)``;
        as :meth:`~.layered_plan.LayeredPlan.run` for a layered stage."""
        ps = self.ps

        def band(b):
            y0, y1 = self.bands[b]
            if self.tap_planes is not None:
                _learned_tap_band(src, s_y, s_x, s_c, self.tap_windows[b], self.tap_pairs[b],
                                  self.tap_prow, self.tap_pcol, y0, y1, self.tap_offsets,
                                  ps.tap_weights, self.tap_planes)
            _stage_band(src, s_y, s_x, s_c, self.windows[b], self.prow, self.pcol, y0, y1,
                        ps.tables, ps.table_offsets, self.tapoff, ps.strides, ps.shift,
                        ps.interval, self.bufs[b], self.packed[b], ps.rnd, ps.low,
                        ps.shift_round, ps.shift_bias, self.rows[b], dst, d_y, d_x, d_c,
                        ps.block, ps.side, ps.lanes, ps.base, self.base_offsets, ps.sum_shift,
                        None if self.tap_planes is None else self.tap_planes.reshape(-1))

        parallel(len(self.bands), band)


class _FramePlan:
    def __init__(self, stages: list[_PreparedStage | PreparedLayered], height: int, width: int,
                 channels: int, bands: int, threads: int):
        self.stage_plans = []
        tap_planes = {}
        for i, ps in enumerate(stages):
            if isinstance(ps, PreparedLayered):
                plan = LayeredPlan(ps, height, width, channels, threads)
            else:
                plan = SimplexPlan(ps, height, width, channels, bands, tap_planes)
            height, width = height * ps.r, width * ps.r
            if i + 1 < len(stages):
                plan.output = np.empty((channels, height, width), np.uint8)
            self.stage_plans.append(plan)
        self.frame_in = None   # scratch for inputs with negative strides
        self.frame_out = None  # scratch for outputs that cannot be written in place


class NumbaRunner:
    """Runs a :class:`~lutsr.model.LUT` with the numba kernels of this module.

    Parameters
    ----------
    lut : LUT
    threads : int or None
        Threads working on one frame (the caller plus ``threads - 1`` pool
        workers); None means every core this process may use. At most
        :data:`MAX_THREADS` are used.

    Notes
    -----
    The constructor prepares what depends only on the LUT (stacked tables,
    rotated tap offsets, the rounding lookup); these are read-only and shared. What
    depends on the frame size (index maps, band windows, stage buffers) is
    built on the first frame of that size and kept per calling thread, so
    :meth:`run` is thread-safe and allocates nothing more for later frames of
    that size.
    """

    def __init__(self, lut: LUT, threads: int | None = None):
        if threads is None:
            threads = _default_threads()
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        self.lut = lut
        self.threads = min(int(threads), MAX_THREADS)
        self._stages = [PreparedLayered(s) if isinstance(s, LayeredStage)
                        else _PreparedStage(s, lut.interval) for s in lut.stages]
        self._bands = 1 if self.threads == 1 else self.threads * BANDS_PER_THREAD
        self._local = threading.local()

    def _plan(self, height: int, width: int, channels: int) -> _FramePlan:
        plans = getattr(self._local, "plans", None)
        if plans is None:
            plans = self._local.plans = {}
        key = (height, width, channels)
        plan = plans.get(key)
        if plan is None:
            if len(plans) >= 4:  # a few sizes per thread; drop the oldest
                plans.pop(next(iter(plans)))
            plan = plans[key] = _FramePlan(self._stages, height, width, channels, self._bands,
                                           self.threads)
        return plan

    def run(self, frames: np.ndarray, out: np.ndarray) -> None:
        """Upscale ``frames`` (N, H, W, C) uint8 into ``out`` (N, H*s, W*s, C) uint8.

        Either may be any strided view (negative strides are staged through a
        scratch copy); ``out`` must not overlap ``frames``.
        """
        n, height, width, channels = frames.shape
        plan = self._plan(height, width, channels)
        for i in range(n):
            source = _span(frames[i], writeable=False)
            if source is None:
                if plan.frame_in is None:
                    plan.frame_in = np.empty(frames.shape[1:], np.uint8)
                np.copyto(plan.frame_in, frames[i])
                source = _span(plan.frame_in, writeable=False)
            target = _span(out[i], writeable=True)
            if target is None:
                if plan.frame_out is None:
                    plan.frame_out = np.empty(out.shape[1:], np.uint8)
                self._run_frame(plan, source, _span(plan.frame_out, writeable=True))
                np.copyto(out[i], plan.frame_out)
            else:
                self._run_frame(plan, source, target)

    def _run_frame(self, plan: _FramePlan, source, target) -> None:
        src, (s_y, s_x, s_c) = source
        for sp in plan.stage_plans:
            if sp.output is None:
                dst, (d_y, d_x, d_c) = target
            else:
                dst, (d_c, d_y, d_x) = _span(sp.output, writeable=True)

            sp.run(self._parallel, src, s_y, s_x, s_c, dst, d_y, d_x, d_c)
            if sp.output is not None:
                src, (s_c, s_y, s_x) = _span(sp.output, writeable=False)

    def _parallel(self, count: int, task) -> None:
        """Run ``task(0 .. count-1)`` on the caller and the pool; return when all are done."""
        if self.threads == 1 or count == 1:
            for b in range(count):
                task(b)
            return
        lock = threading.Lock()
        counter = itertools.count()

        def drain():
            while True:
                with lock:
                    b = next(counter)
                if b >= count:
                    return
                task(b)

        pool = _pool(self.threads - 1)
        futures = [pool.submit(drain) for _ in range(min(self.threads - 1, count - 1))]
        try:
            drain()
        finally:
            # Helpers that have not started (queued behind other callers' work,
            # or in a forked child whose pool has no threads) would find no band
            # left: cancel them. Wait only for those already running, which
            # may still be inside a band. (concurrent.futures.wait would also
            # wait for a cancelled helper until a worker dequeues it.)
            running = [f for f in futures if not f.cancel()]
            wait(running)
        for f in running:
            f.result()  # re-raise a helper's exception
