"""Exact least-squares fitting of one LUT stage's tables (numba, CPU).

With every earlier stage fixed, a stage's output before rounding is *linear*
in its table entries: each output value is ``sum(w * T[row, col]) / (q *
divisor) + bias`` over 4 rotations x patterns x 5 simplex vertices. So the
MSE-optimal float tables solve a sparse linear least-squares problem, which
conjugate gradients solve over the *whole* training set in a few minutes on a
CPU, where stochastic gradient descent on the same tables needs thousands of
mini-batches. Rarely visited table rows are regularised toward a prior table
(the sampled net) and toward their grid neighbours (a smoothness term).

Memory bounds how much training data a fit can use, so a sample holds only
its taps (4 bytes per pattern and rotation), its target and its weight; the
kernels recompute the simplex vertices from the taps on every pass, and the
normal operator ``A^T W A t`` runs as one pass with no array of predictions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np

from lutsr._cpu import block_permutations, tap_indices
from lutsr.model import Stage, grid_size
from lutsr.reference import learned_taps
from train.data import output_blocks

# BT.601 luma weights 65.481 : 128.553 : 24.966 as small integers (0.294 : 0.588 :
# 0.118 of their sum against 0.299 : 0.587 : 0.114) that fit, times the
# simplex weights (at most 16 at interval 4), in uint8 sample weights.
LUMA_MIX = (5, 10, 2)


@numba.njit(parallel=True, cache=True)
def _gather_taps(plane, rows, cols, taps):
    """taps[y * W + x, p, k, t] = plane[rows[p, k, t, y], cols[p, k, t, x]]."""
    height, width = plane.shape
    for y in numba.prange(height):
        for x in range(width):
            n = y * width + x
            for p in range(rows.shape[0]):
                for k in range(4):
                    for t in range(4):
                        taps[n, p, k, t] = plane[rows[p, k, t, y], cols[p, k, t, x]]


#: Samples whose simplex vertices are computed together, in one vectorisable loop.
BLOCK = 64


@numba.njit(inline="always")
def _stride(e, g1, g2, g3):
    """grid**e for e in 0..3, as arithmetic rather than a lookup (which does not vectorise)."""
    return 1 + (e >= 1) * (g1 - 1) + (e >= 2) * (g2 - g1) + (e >= 3) * (g3 - g2)


@numba.njit(cache=True)
def _simplex(taps, n0, nb, table_of, mult, interval, grid, idx, wts):
    """Simplex vertices and weights of samples ``n0 .. n0 + nb``, recomputed from their taps.

    idx[p, k, v, i] is the flat table row (its table's offset included) of
    vertex v of pattern row p in rotation k for sample n0 + i; wts[p, k, v,
    i] its weight (the five sum to q * mult[p]). Recomputing them costs a few
    integer operations per row; storing them (5 int32 rows and 5 weights)
    took 25 bytes where the taps take 4, and memory is what limits how many
    samples a fit can hold.
    """
    q = 1 << interval
    mask = q - 1
    g1, g2, g3 = grid, grid * grid, grid * grid * grid
    for p in range(taps.shape[1]):
        offset = table_of[p] * g3 * grid
        m = np.float64(mult[p])
        for k in range(4):
            for i in range(nb):
                v0, v1 = np.int64(taps[n0 + i, p, k, 0]), np.int64(taps[n0 + i, p, k, 1])
                v2, v3 = np.int64(taps[n0 + i, p, k, 2]), np.int64(taps[n0 + i, p, k, 3])
                vertex = offset + ((v0 >> interval) * g3 + (v1 >> interval) * g2
                                   + (v2 >> interval) * g1 + (v3 >> interval))
                # Keys: fraction, then the exponent of the tap's stride (tap t's is
                # grid**(3 - t), which also keeps ties apart). Sorted descending by a
                # 5-comparator network of max/min: branch-free, and the keys are random.
                k0, k1 = ((v0 & mask) << 2) | 3, ((v1 & mask) << 2) | 2
                k2, k3 = ((v2 & mask) << 2) | 1, (v3 & mask) << 2
                k0, k1 = max(k0, k1), min(k0, k1)
                k2, k3 = max(k2, k3), min(k2, k3)
                k0, k2 = max(k0, k2), min(k0, k2)
                k1, k3 = max(k1, k3), min(k1, k3)
                k1, k2 = max(k1, k2), min(k1, k2)
                idx[p, k, 0, i] = vertex
                wts[p, k, 0, i] = (q - (k0 >> 2)) * m
                vertex += _stride(k0 & 3, g1, g2, g3)
                idx[p, k, 1, i] = vertex
                wts[p, k, 1, i] = ((k0 >> 2) - (k1 >> 2)) * m
                vertex += _stride(k1 & 3, g1, g2, g3)
                idx[p, k, 2, i] = vertex
                wts[p, k, 2, i] = ((k1 >> 2) - (k2 >> 2)) * m
                vertex += _stride(k2 & 3, g1, g2, g3)
                idx[p, k, 3, i] = vertex
                wts[p, k, 3, i] = ((k2 >> 2) - (k3 >> 2)) * m
                vertex += _stride(k3 & 3, g1, g2, g3)
                idx[p, k, 4, i] = vertex
                wts[p, k, 4, i] = (k3 >> 2) * m


@numba.njit(cache=True)
def _gather(idx, wts, i, table, perm, acc, out):
    """out[pos] = sum_{p,k,v} wts * table[idx, perm[k, pos]] for sample i of a block.

    Each rotation's rows are summed whole into ``acc[k]`` (contiguous, so
    vectorised), and permuted once at the end: not one indirect read per
    output and vertex.
    """
    acc[:] = 0
    for p in range(idx.shape[0]):
        for k in range(4):
            for v in range(5):
                w = wts[p, k, v, i]
                row = idx[p, k, v, i]
                for col in range(acc.shape[1]):
                    acc[k, col] += w * table[row, col]
    for pos in range(out.shape[0]):
        out[pos] = acc[0, perm[0, pos]] + acc[1, perm[1, pos]] + acc[2, perm[2, pos]] \
            + acc[3, perm[3, pos]]


@numba.njit(cache=True)
def _scratch(n_pat, rr):
    """A thread's vertices and weights (:func:`_simplex`), rotation sums and output row."""
    return (np.empty((n_pat, 4, 5, BLOCK), np.int64), np.empty((n_pat, 4, 5, BLOCK)),
            np.empty((4, rr)), np.empty(rr))


@numba.njit(parallel=True, cache=True)
def _forward(taps, table_of, mult, interval, grid, table, perm, scale, n_chunks, pred):
    """pred[n, pos] = scale * sum_{p,k,v} wts * table[idx, perm[k, pos]], in ``n_chunks`` runs."""
    n_samples, n_pat = taps.shape[0], taps.shape[1]
    rr = table.shape[1]
    size = (n_samples + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        idx, wts, acc, out = _scratch(n_pat, rr)
        end = min(n_samples, (c + 1) * size)
        for n0 in range(c * size, end, BLOCK):
            nb = min(BLOCK, end - n0)
            _simplex(taps, n0, nb, table_of, mult, interval, grid, idx, wts)
            for i in range(nb):
                _gather(idx, wts, i, table, perm, acc, out)
                for pos in range(rr):
                    pred[n0 + i, pos] = out[pos] * scale


@numba.njit(parallel=True, cache=True)
def _adjoint(taps, table_of, mult, interval, grid, weight, mode, table, target, bias, perm,
             scale, grads):
    """grads[chunk] += weight * scale * wts * value scattered to (idx, perm[k, pos]).

    ``value`` per ``mode``: 0, ``scale * A table`` (so the sum is ``A^T W A
    table``, the normal operator, with no array of predictions in between);
    1, ``target - bias`` (the right-hand side); 2, ``scale * wts`` (the
    diagonal of the normal matrix, for the Jacobi preconditioner). ``weight``
    is each sample's weight in the objective. One chunk of samples per
    thread, each into its own gradient copy.
    """
    n_samples, n_pat = taps.shape[0], taps.shape[1]
    n_chunks, _, rr = grads.shape
    size = (n_samples + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        g = grads[c]
        idx, wts, acc, value = _scratch(n_pat, rr)
        end = min(n_samples, (c + 1) * size)
        for n0 in range(c * size, end, BLOCK):
            nb = min(BLOCK, end - n0)
            _simplex(taps, n0, nb, table_of, mult, interval, grid, idx, wts)
            for i in range(nb):
                sw = np.float64(weight[n0 + i])
                if sw == 0:
                    continue
                if mode == 0:
                    _gather(idx, wts, i, table, perm, acc, value)
                    for pos in range(rr):
                        value[pos] *= scale
                elif mode == 1:
                    for pos in range(rr):
                        value[pos] = target[n0 + i, pos] - bias
                else:
                    value[:] = 1
                # acc[k, perm[k, pos]] = value[pos]: what each rotation adds to its table
                # row, in the row's own order (contiguous, so vectorised).
                for k in range(4):
                    for pos in range(rr):
                        acc[k, perm[k, pos]] = value[pos]
                for p in range(n_pat):
                    for k in range(4):
                        for v in range(5):
                            w = wts[p, k, v, i] * scale * sw
                            if mode == 2:
                                w *= wts[p, k, v, i] * scale
                            row = idx[p, k, v, i]
                            for col in range(rr):
                                g[row, col] += w * acc[k, col]


@numba.njit(parallel=True, cache=True)
def _squared_error(taps, table_of, mult, interval, grid, weight, table, target, bias, perm,
                   scale, rounded, sums):
    """sums[chunk] = sum of weight[n] * mean over pos of (clip(pred) - target)**2.

    ``pred`` is the stage's output before rounding, or rounded half to even
    (as ``np.round``) with ``rounded``; clipped to 0..255 as the runtime does.
    """
    n_samples, n_pat = taps.shape[0], taps.shape[1]
    n_chunks = sums.shape[0]
    rr = table.shape[1]
    size = (n_samples + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        idx, wts, acc, out = _scratch(n_pat, rr)
        total = 0.0
        end = min(n_samples, (c + 1) * size)
        for n0 in range(c * size, end, BLOCK):
            nb = min(BLOCK, end - n0)
            _simplex(taps, n0, nb, table_of, mult, interval, grid, idx, wts)
            for i in range(nb):
                _gather(idx, wts, i, table, perm, acc, out)
                err = 0.0
                for pos in range(rr):
                    y = out[pos] * scale + bias
                    if rounded:
                        y = np.round(y)
                    e = min(max(y, 0.0), 255.0) - target[n0 + i, pos]
                    err += e * e
                total += weight[n0 + i] * err / rr
        sums[c] = total


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
    """The table inputs of training pixels for one stage, and their targets.

    A sample keeps the 4 tap values of each pattern in each rotation (its
    simplex vertices and weights follow from them), its target and its
    weight: about 68 bytes per pixel for 3 patterns at x4, 36 for one.

    Attributes
    ----------
    taps : ndarray of uint8, shape (N, P', 4, 4)
        ``taps[n, p, k, t]``: tap ``t`` of pattern row ``p`` in rotation ``k``.
        ``P'`` is the number of patterns, times the channels with ``mix``.
    table_of : ndarray of int64, shape (P',)
        The pattern (table) each pattern row reads.
    mult : ndarray of int64, shape (P',)
        Each pattern row's factor on its simplex weights (a channel's mix
        weight; 1 for a plane's samples).
    target : ndarray of uint8 (float32 if any target given was not uint8), shape (N, r*r)
        The desired stage output (0..255) of each pixel's r x r block, row-major.
    weight : ndarray of float32, shape (N,)
        Each sample's weight in the squared error.
    gain : int
        Each rotation's simplex weights sum to ``q * gain``: 1 for a plane's
        samples, ``sum(mix)`` for the channel-mixed ones of ``collect(...,
        mix=...)`` (whose targets are the mix of the channels divided by
        ``sum(mix)``).
    """

    taps: np.ndarray
    table_of: np.ndarray
    mult: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    gain: int = 1

    def __len__(self) -> int:
        return self.taps.shape[0]


def collect(stage: Stage, interval: int, pairs, sort: bool = True, weights=None,
            mix=None, margin: int = 0) -> Samples:
    """Taps and targets for ``pairs`` of (input plane (H, W) uint8, target plane (H*r, W*r)).

    ``stage`` supplies patterns (or learned taps), padding and r (its tables are not used).
    ``weights`` (an iterable beside ``pairs``, default all 1) gives each
    plane's pixels their weight in the squared error. Samples come sorted by
    the table row of their first vertex (see below) unless ``sort`` is
    False, in which case they are in pixel order, plane after plane. Pixels
    within ``margin`` of a plane's edge get weight 0: the papers' metric
    shaves the HR border, so those pixels' outputs, made from padding, are
    never measured.

    With ``mix`` (small positive integers, one per channel), ``pairs`` hold
    (H, W, C) and (H*r, W*r, C) images instead, and a sample is a pixel whose
    output is ``sum(mix[c] * stage output of channel c) / sum(mix)``: the
    same table applied to every channel, the error measured on one mix of
    them, e.g. luma (the metric of the papers) with ``LUMA_MIX``.
    """
    r = stage.r
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
    taps = np.empty((n, n_ch * n_pat, 4, 4), np.uint8)
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
        if plane.dtype != np.uint8:
            raise ValueError(f"input planes must be uint8, not {plane.dtype}")
        span = slice(start, start + h * w)
        for c in range(n_ch):
            channel = np.ascontiguousarray(plane if mix is None else plane[:, :, c])
            out = taps[span, c * n_pat:(c + 1) * n_pat]
            if stage.taps is None:
                _gather_taps(channel, *tap_indices(stage, h, w), out)
            else:
                _learned_taps(channel, stage, out)
        if mix is not None:
            target = (target.astype(np.float32) @ mix.astype(np.float32)) / mix.sum()
        tgt[span] = output_blocks(target, r)
        weight[span] = plane_weight
        if margin:
            ring = np.ones((h, w), bool)
            ring[margin:h - margin, margin:w - margin] = False
            weight[span][ring.ravel()] = 0
        start += h * w
    table_of = np.tile(np.arange(n_pat), n_ch)
    mult = np.ones(n_pat, np.int64) if mix is None else np.repeat(mix, n_pat)
    samples = Samples(taps, table_of, mult, tgt, weight, 1 if mix is None else int(mix.sum()))
    if not sort:
        return samples
    # Samples ordered by their first vertex's table row: neighbouring samples
    # then read and write neighbouring rows, which keeps the gathers and
    # scatters of every CG iteration in cache. Permuted in place: a copy of
    # the taps would be gigabytes at the peak.
    order = np.argsort(first_rows(samples, interval), kind="stable")
    for a in (taps, tgt, weight):
        _permute_rows(a.reshape(n, -1), order)
    return samples


def _learned_taps(plane: np.ndarray, stage: Stage, out: np.ndarray) -> None:
    """out[y * W + x, p, k] = the learned taps of rotation k at unrotated pixel (y, x).

    The reference's arithmetic (exact integers), each rotation's taps rotated back.
    """
    for p, weights in enumerate(stage.taps):
        for k in range(4):
            rotated = learned_taps(np.rot90(plane, k), weights, stage.padding)
            out[:, p, k] = np.rot90(rotated, -k, axes=(1, 2)).reshape(4, -1).T


def first_rows(samples: Samples, interval: int) -> np.ndarray:
    """The table row of each sample's first vertex (pattern row 0, rotation 0): (N,) int64."""
    grid = grid_size(interval)
    cell = samples.taps[:, 0, 0, :] >> interval
    return (cell.astype(np.int64) @ grid ** np.arange(3, -1, -1)
            + samples.table_of[0] * grid**4)


def _kernel_args(samples: Samples, interval: int):
    return samples.taps, samples.table_of, samples.mult, interval, grid_size(interval)


def _scale(samples: Samples, stage: Stage, interval: int) -> float:
    return 1.0 / (2**interval * stage.divisor * samples.gain)


def _flat(tables: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(tables.reshape(-1, tables.shape[-1]), np.float64)


def predict(samples: Samples, tables: np.ndarray, stage: Stage, interval: int,
            out: np.ndarray | None = None) -> np.ndarray:
    """Unrounded stage output (N, r*r) for float tables of shape (P, L**4, r*r).

    ``out`` (float64 or float32, the shape of ``samples.target``) is written
    instead of a new array: for a whole training set that is gigabytes.
    """
    pred = np.empty(samples.target.shape, np.float64) if out is None else out
    _forward(*_kernel_args(samples, interval), _flat(tables), block_permutations(stage.r),
             _scale(samples, stage, interval), numba.get_num_threads(), pred)
    pred += stage.bias
    return pred


def mse(samples: Samples, tables: np.ndarray, stage: Stage, interval: int,
        rounded: bool = False, weighted: bool = True) -> float:
    """Mean squared error of the stage's output, clipped to 0..255 as the runtime does.

    ``rounded`` rounds the output first (the runtime's output for integer
    tables); ``weighted`` weighs each sample by ``samples.weight``, else
    every sample counts the same. No array of predictions is made.
    """
    sums = np.zeros(numba.get_num_threads())
    weight = samples.weight if weighted else np.ones(len(samples), np.float32)
    _squared_error(*_kernel_args(samples, interval), weight, _flat(tables), samples.target,
                   stage.bias, block_permutations(stage.r), _scale(samples, stage, interval),
                   rounded, sums)
    return float(sums.sum() / weight.sum(dtype=np.float64))


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
    args = _kernel_args(samples, interval)
    perm = block_permutations(stage.r)
    scale = _scale(samples, stage, interval)
    grads = np.zeros((numba.get_num_threads(), shape[0] * shape[1], shape[2]))

    def scatter(mode, table=grads[0], target=samples.target):  # the table is unused in modes 1, 2
        grads[:] = 0
        _adjoint(*args, samples.weight, mode, table, target, float(stage.bias), perm, scale,
                 grads)
        return grads.sum(0).reshape(shape)

    diag = scatter(2)
    mean_diag = diag[diag > 0].mean()
    a, b = prior_weight * mean_diag, smooth_weight * mean_diag

    def operator(t):  # (A^T W A + a I + b D^T D) t
        out = scatter(0, t.reshape(-1, shape[2])) + a * t
        if b:
            out += b * _smooth_apply(t, grid)
        return out

    precond = 1.0 / (diag + a + 8 * b)
    t = prior.astype(np.float64).copy()
    target = samples.target
    start = time.process_time()
    for round_ in range(clip_rounds + 1):
        if round_:
            # A float copy of the targets, only in these rounds (4 bytes per output).
            target = predict(samples, t, stage, interval,
                             out=np.empty(samples.target.shape, np.float32))
            _clipped_targets(samples.target, target)
        rhs = scatter(1, target=target) + a * prior
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
                err = mse(samples, t, stage, interval)
                log(f"  cg {it + 1}/{iters}{f' (clip round {round_})' if round_ else ''}: "
                    f"train mse {err:.3f} (psnr {10 * np.log10(255**2 / err):.2f} dB), "
                    f"cpu {time.process_time() - start:.0f}s")
    return t
