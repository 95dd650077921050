"""Exact least-squares fitting of one LUT stage's tables (numba, CPU).

With every earlier stage fixed, a stage's output before rounding is *linear*
in its table entries: each output value is ``sum(w * T[row, col]) / (q *
divisor) + bias`` over 4 rotations x patterns x 5 simplex vertices. So the
MSE-optimal float tables solve a sparse linear least-squares problem, which
conjugate gradients solve over the *whole* training set in a few minutes on a
CPU, where stochastic gradient descent on the same tables needs thousands of
mini-batches. Rarely visited table rows are regularised toward a prior table
(the sampled net) and toward their grid neighbours (a smoothness term).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np

from lutsr._cpu import block_permutations, tap_indices
from lutsr.model import Stage, grid_size

# BT.601 luma weights 65.481 : 128.553 : 24.966 as small integers (0.294 : 0.588 :
# 0.118 of their sum against 0.299 : 0.587 : 0.114) that fit, times the
# simplex weights (at most 16 at interval 4), in uint8 sample weights.
LUMA_MIX = (5, 10, 2)


@numba.njit(parallel=True, cache=True)
def _vertices(plane, rows, cols, interval, grid, n_rows, idx, wts):
    """Simplex vertices and weights of every pixel of ``plane``.

    idx[n, p, k, v] is the flat table row (pattern p's table offset included)
    of vertex v in rotation k; wts[n, p, k, v] its integer weight (sum = q).
    """
    height, width = plane.shape
    q = 1 << interval
    mask = q - 1
    strides = np.array([grid**3, grid**2, grid, 1])
    n_pat = rows.shape[0]
    for y in numba.prange(height):
        keys = np.empty(4, np.int64)
        for x in range(width):
            n = y * width + x
            for p in range(n_pat):
                for k in range(4):
                    base = 0
                    for t in range(4):
                        v = np.int64(plane[rows[p, k, t, y], cols[p, k, t, x]])
                        base = base * grid + (v >> interval)
                        keys[t] = ((v & mask) << 2) | (3 - t)  # fraction, tap (ties apart)
                    # Descending by a 5-comparator network: a general sort of 4 was
                    # most of the time here.
                    for a, b in ((0, 1), (2, 3), (0, 2), (1, 3), (1, 2)):
                        if keys[a] < keys[b]:
                            keys[a], keys[b] = keys[b], keys[a]
                    vertex = p * n_rows + base
                    prev = q
                    for j in range(4):
                        key = keys[j]
                        f = key >> 2
                        idx[n, p, k, j] = vertex
                        wts[n, p, k, j] = prev - f
                        prev = f
                        vertex += strides[3 - (key & 3)]
                    idx[n, p, k, 4] = vertex
                    wts[n, p, k, 4] = prev


@numba.njit(parallel=True, cache=True)
def _forward(idx, wts, table, perm, scale, pred):
    """pred[n, pos] = scale * sum_{p,k,v} wts * table[idx, perm[k, pos]]."""
    n_samples, n_pat = idx.shape[0], idx.shape[1]
    rr = table.shape[1]
    for n in numba.prange(n_samples):
        acc = np.zeros(rr)
        for p in range(n_pat):
            for k in range(4):
                for v in range(5):
                    w = np.float64(wts[n, p, k, v])
                    row = idx[n, p, k, v]
                    for pos in range(rr):
                        acc[pos] += w * table[row, perm[k, pos]]
        for pos in range(rr):
            pred[n, pos] = acc[pos] * scale


@numba.njit(parallel=True, cache=True)
def _adjoint(idx, wts, weight, resid, perm, scale, square, grads):
    """grads[chunk] += weight * scale * wts * resid scattered to (idx, perm[k, pos]).

    ``weight`` is the per-sample weight of the least-squares objective. One
    chunk of samples per thread, each into its own gradient copy. With
    ``square`` the interpolation weights are squared and ``resid`` ignored:
    the diagonal of the normal matrix, for the Jacobi preconditioner.
    """
    n_samples, n_pat = idx.shape[0], idx.shape[1]
    n_chunks, _, rr = grads.shape
    size = (n_samples + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        g = grads[c]
        for n in range(c * size, min(n_samples, (c + 1) * size)):
            sw = np.float64(weight[n])
            for p in range(n_pat):
                for k in range(4):
                    for v in range(5):
                        w = wts[n, p, k, v] * scale
                        row = idx[n, p, k, v]
                        if square:
                            for pos in range(rr):
                                g[row, perm[k, pos]] += sw * w * w
                        else:
                            w *= sw
                            for pos in range(rr):
                                g[row, perm[k, pos]] += w * resid[n, pos]


@numba.njit(parallel=True, cache=True)
def _clipped_targets(target, pred):
    """``pred[:] = target``, except where pred overshoots a saturated target (0 or 255).

    There the runtime's clipping already gives the target, so the prediction
    itself is the target that costs nothing.
    """
    for n in numba.prange(target.shape[0]):
        for j in range(target.shape[1]):
            y = target[n, j]
            p = pred[n, j]
            if not ((y >= 255 and p > 255) or (y <= 0 and p < 0)):
                pred[n, j] = y


@numba.njit(cache=True)
def _permute_rows(rows, order):
    """``rows[:] = rows[order]`` in place, cycle by cycle (``order`` a permutation)."""
    done = np.zeros(order.shape[0], np.bool_)
    held = np.empty_like(rows[0])
    for start in range(order.shape[0]):
        if done[start]:
            continue
        held[:] = rows[start]
        i = start
        while True:
            done[i] = True
            j = order[i]
            if j == start:
                rows[i] = held
                break
            rows[i] = rows[j]
            i = j


def _smooth_apply(t: np.ndarray, grid: int) -> np.ndarray:
    """D^T D t for first differences along the four grid axes of each table."""
    x = t.reshape(-1, grid, grid, grid, grid, t.shape[-1])
    out = np.zeros_like(x)
    for axis in range(1, 5):
        d = np.diff(x, axis=axis)
        lo = [slice(None)] * 6
        hi = [slice(None)] * 6
        lo[axis], hi[axis] = slice(0, grid - 1), slice(1, grid)
        out[tuple(lo)] -= d
        out[tuple(hi)] += d
    return out.reshape(t.shape)


@dataclass
class Samples:
    """Simplex vertices/weights of training pixels for one stage, and their targets.

    Attributes
    ----------
    idx : ndarray of int32, shape (N, P, 4, 5)
    wts : ndarray of uint8 (uint16 where a channel mix needs it), shape (N, P, 4, 5)
    target : ndarray of uint8 (float32 if any target given was not uint8), shape (N, r*r)
        The desired stage output (0..255) of each pixel's r x r block, row-major.
    weight : ndarray of float32, shape (N,)
        Each sample's weight in the squared error.
    gain : int
        Each rotation's ``wts`` sum to ``q * gain``: 1 for a plane's samples,
        ``sum(mix)`` for the channel-mixed ones of ``collect(..., mix=...)``
        (whose targets are the mix of the channels divided by ``sum(mix)``).
    """

    idx: np.ndarray
    wts: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    gain: int = 1


def collect(stage: Stage, interval: int, pairs, sort: bool = True, weights=None,
            mix=None, margin: int = 0) -> Samples:
    """Vertices and targets for ``pairs`` of (input plane (H, W) uint8, target plane (H*r, W*r)).

    ``stage`` supplies patterns, padding and r (its tables are not used).
    ``weights`` (an iterable beside ``pairs``, default all 1) gives each
    plane's pixels their weight in the squared error. Samples come sorted by
    table row (see below) unless ``sort`` is False, in which case they are in
    pixel order, plane after plane. Pixels within ``margin`` of a plane's
    edge get weight 0: the papers' metric shaves the HR border, so those
    pixels' outputs, made from padding, are never measured.

    With ``mix`` (small positive integers, one per channel), ``pairs`` hold
    (H, W, C) and (H*r, W*r, C) images instead, and a sample is a pixel whose
    output is ``sum(mix[c] * stage output of channel c) / sum(mix)``: the
    same table applied to every channel, the error measured on one mix of
    them, e.g. luma (the metric of the papers) with ``LUMA_MIX``.
    """
    grid, r = grid_size(interval), stage.r
    pairs = list(pairs)
    weights = [1.0] * len(pairs) if weights is None else list(weights)
    if len(weights) != len(pairs):
        raise ValueError(f"{len(weights)} weights for {len(pairs)} planes")
    mix = None if mix is None else np.asarray(mix, np.int64)
    if mix is not None and (mix.ndim != 1 or (mix < 1).any() or mix.max() > 255):
        raise ValueError(f"mix {mix.tolist()} must be integers in 1..255")
    n_ch = 1 if mix is None else len(mix)
    channels = () if mix is None else (n_ch,)  # the trailing shape of images and targets
    n_pat = len(stage.patterns)
    # Filled in place, plane after plane: concatenating per-plane parts would
    # hold every sample twice at the peak (gigabytes for a whole training set).
    n = sum(plane.shape[0] * plane.shape[1] for plane, _ in pairs)
    idx = np.empty((n, n_ch * n_pat, 4, 5), np.int32)
    # Simplex weights (at most 2**interval) times the mix: uint8 while they fit.
    small = mix is None or mix.max() << interval <= 255
    wts = np.empty_like(idx, dtype=np.uint8 if small else np.uint16)
    # uint8 HR targets stay uint8: a quarter of float32's memory, so more samples fit.
    exact = mix is None and all(target.dtype == np.uint8 for _, target in pairs)
    tgt = np.empty((n, r * r), np.uint8 if exact else np.float32)
    weight = np.empty(n, np.float32)
    start = 0
    for (plane, target), plane_weight in zip(pairs, weights):
        h, w = plane.shape[:2]
        if plane.shape[2:] != channels or target.shape != (h * r, w * r) + channels:
            want = "(H, W" + "".join(f", {c}" for c in channels) + ")"
            raise ValueError(f"input {plane.shape} and target {target.shape} are not {want} "
                             f"and its x{r}")
        rows, cols = tap_indices(stage, h, w)
        span = slice(start, start + h * w)
        if mix is None:
            _vertices(np.ascontiguousarray(plane), rows, cols, interval, grid, grid**4,
                      idx[span], wts[span])
        else:
            for c in range(n_ch):
                part = slice(c * n_pat, (c + 1) * n_pat)
                _vertices(np.ascontiguousarray(plane[:, :, c]), rows, cols, interval, grid,
                          grid**4, idx[span, part], wts[span, part])
                wts[span, part] *= mix[c].astype(wts.dtype)
            target = (target.astype(np.float32) @ mix.astype(np.float32)) / mix.sum()
        tgt[span] = target.reshape(h, r, w, r).transpose(0, 2, 1, 3).reshape(h * w, r * r)
        weight[span] = plane_weight
        if margin:
            ring = np.ones((h, w), bool)
            ring[margin:h - margin, margin:w - margin] = False
            weight[span][ring.ravel()] = 0
        start += h * w
    gain = 1 if mix is None else int(mix.sum())
    if not sort:
        return Samples(idx, wts, tgt, weight, gain)
    # Samples ordered by their first table row: neighbouring samples then read
    # and write neighbouring rows, which keeps the gathers and scatters of
    # every CG iteration in cache. Permuted in place: a copy of idx alone
    # would be gigabytes at the peak.
    order = np.argsort(idx[:, 0, 0, 0], kind="stable")
    for a in (idx, wts, tgt, weight):
        _permute_rows(a.reshape(n, -1), order)
    return Samples(idx, wts, tgt, weight, gain)


def predict(samples: Samples, tables: np.ndarray, stage: Stage, interval: int,
            out: np.ndarray | None = None) -> np.ndarray:
    """Unrounded stage output (N, r*r) for float tables of shape (P, L**4, r*r).

    ``out`` (float64 or float32, the shape of ``samples.target``) is written
    instead of a new array: for a whole training set that is gigabytes.
    """
    pred = np.empty(samples.target.shape, np.float64) if out is None else out
    scale = 1.0 / (2**interval * stage.divisor * samples.gain)
    flat = np.ascontiguousarray(tables.reshape(-1, tables.shape[-1]), np.float64)
    _forward(samples.idx, samples.wts, flat, block_permutations(stage.r), scale, pred)
    pred += stage.bias
    return pred


def fit(samples: Samples, stage: Stage, interval: int, prior: np.ndarray,
        prior_weight: float = 1e-5, smooth_weight: float = 1e-4, iters: int = 12,
        log=print, clip_rounds: int = 0) -> np.ndarray:
    """Minimise ``|A t - y|_W^2 + a |t - prior|^2 + b |D t|^2`` by Jacobi-preconditioned CG.

    ``W`` is the diagonal of the samples' weights. With ``clip_rounds`` > 0,
    that many more rounds of ``iters`` CG iterations each follow, each
    after replacing the target of every output that overshoots a saturated
    target (target 255, prediction above; 0, below) by the prediction: the
    runtime clips those outputs to their target anyway, so their error is
    zero and fitting them would only cost the other outputs.

    Parameters
    ----------
    samples : Samples
    stage : Stage
        Supplies r, divisor, bias and the number of patterns P.
    interval : int
    prior : ndarray, shape (P, L**4, r*r)
        Table values that unvisited rows fall back to (e.g. the sampled net).
    prior_weight, smooth_weight : float
        ``a`` and ``b`` above, relative to the mean diagonal of ``A^T A``
        (so they mean the same for any data size).
    iters : int
        CG iterations (per round).
    clip_rounds : int
        Rounds of re-targeting for the runtime's clipping (above).

    Returns
    -------
    ndarray of float64, shape (P, L**4, r*r)
        The float tables (not rounded or clipped).
    """
    grid = grid_size(interval)
    shape = prior.shape
    perm = block_permutations(stage.r)
    scale = 1.0 / (2**interval * stage.divisor * samples.gain)
    threads = numba.get_num_threads()
    grads = np.zeros((threads, shape[0] * shape[1], shape[2]))
    # float32 scratch (the sums themselves are float64): half the memory per sample.
    pred = np.empty(samples.target.shape, np.float32)

    def normal(t):  # A^T A t
        _forward(samples.idx, samples.wts, t.reshape(-1, shape[2]), perm, scale, pred)
        grads[:] = 0
        _adjoint(samples.idx, samples.wts, samples.weight, pred, perm, scale, False, grads)
        return grads.sum(0).reshape(shape)

    grads[:] = 0
    _adjoint(samples.idx, samples.wts, samples.weight, pred, perm, scale, True, grads)
    diag = grads.sum(0).reshape(shape)
    mean_diag = diag[diag > 0].mean()
    a, b = prior_weight * mean_diag, smooth_weight * mean_diag

    def operator(t):
        out = normal(t) + a * t
        if b:
            out += b * _smooth_apply(t, grid)
        return out

    precond = 1.0 / (diag + a + 8 * b)
    t = prior.astype(np.float64).copy()
    # The targets (less the bias) go into the scratch: not another array of every sample.
    np.copyto(pred, samples.target, casting="unsafe")
    start = time.process_time()
    for round_ in range(clip_rounds + 1):
        if round_:
            predict(samples, t, stage, interval, out=pred)
            _clipped_targets(samples.target, pred)
        pred -= stage.bias
        grads[:] = 0
        _adjoint(samples.idx, samples.wts, samples.weight, pred, perm, scale, False, grads)
        rhs = grads.sum(0).reshape(shape) + a * prior
        res = rhs - operator(t)
        z = precond * res
        d = z.copy()
        rz = (res * z).sum()
        for it in range(iters):
            ad = operator(d)
            alpha = rz / (d * ad).sum()
            t += alpha * d
            res -= alpha * ad
            z = precond * res
            rz_new = (res * z).sum()
            d = z + (rz_new / rz) * d
            rz = rz_new
            if log and (it % 10 == 0 or it == iters - 1):
                predict(samples, t, stage, interval, out=pred)  # pred is scratch here
                np.clip(pred, 0, 255, out=pred)  # as the runtime does
                pred -= samples.target
                pred **= 2
                mse = float(pred.mean(1, dtype=np.float64) @ samples.weight
                            / samples.weight.sum())
                psnr = 10 * np.log10(255**2 / mse)
                log(f"  cg {it + 1}/{iters}{f' (clip round {round_})' if round_ else ''}: "
                    f"train mse {mse:.3f} (psnr {psnr:.2f} dB), "
                    f"cpu {time.process_time() - start:.0f}s")
    return t
