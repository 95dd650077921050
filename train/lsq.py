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
its taps (4 bytes per pattern and rotation) and its target; the kernels
recompute the simplex vertices from the taps on every pass, and the
normal operator ``A^T A t`` runs as one pass with no array of predictions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np

from lutsr.indexmaps import block_permutations, tap_indices
from lutsr.model import Stage, grid_size
from lutsr.reference import learned_taps
from train.data import output_blocks


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
def _simplex(taps, n0, nb, interval, grid, idx, wts):
    """Simplex vertices and weights of samples ``n0 .. n0 + nb``, recomputed from their taps.

    idx[p, k, v, i] is the flat table row (its table's offset included) of
    vertex v of pattern p in rotation k for sample n0 + i; wts[p, k, v, i]
    its weight (the five sum to q). Recomputing them costs a few
    integer operations per row; storing them (5 int32 rows and 5 weights)
    took 25 bytes where the taps take 4, and memory is what limits how many
    samples a fit can hold.
    """
    q = 1 << interval
    mask = q - 1
    g1, g2, g3 = grid, grid * grid, grid * grid * grid
    for p in range(taps.shape[1]):
        offset = p * g3 * grid
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
                wts[p, k, 0, i] = q - (k0 >> 2)
                vertex += _stride(k0 & 3, g1, g2, g3)
                idx[p, k, 1, i] = vertex
                wts[p, k, 1, i] = (k0 >> 2) - (k1 >> 2)
                vertex += _stride(k1 & 3, g1, g2, g3)
                idx[p, k, 2, i] = vertex
                wts[p, k, 2, i] = (k1 >> 2) - (k2 >> 2)
                vertex += _stride(k2 & 3, g1, g2, g3)
                idx[p, k, 3, i] = vertex
                wts[p, k, 3, i] = (k2 >> 2) - (k3 >> 2)
                vertex += _stride(k3 & 3, g1, g2, g3)
                idx[p, k, 4, i] = vertex
                wts[p, k, 4, i] = k3 >> 2


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
def _forward(taps, interval, grid, table, perm, scale, n_chunks, pred):
    """pred[n, pos] = scale * sum_{p,k,v} wts * table[idx, perm[k, pos]], in ``n_chunks`` runs."""
    n_samples, n_pat = taps.shape[0], taps.shape[1]
    rr = table.shape[1]
    size = (n_samples + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        idx, wts, acc, out = _scratch(n_pat, rr)
        end = min(n_samples, (c + 1) * size)
        for n0 in range(c * size, end, BLOCK):
            nb = min(BLOCK, end - n0)
            _simplex(taps, n0, nb, interval, grid, idx, wts)
            for i in range(nb):
                _gather(idx, wts, i, table, perm, acc, out)
                for pos in range(rr):
                    pred[n0 + i, pos] = out[pos] * scale


@numba.njit(parallel=True, cache=True)
def _adjoint(taps, interval, grid, mode, table, target, bias, perm, scale, grads):
    """grads[chunk] += scale * wts * value scattered to (idx, perm[k, pos]).

    ``value`` per ``mode``: 0, ``scale * A table`` (so the sum is ``A^T A
    table``, the normal operator, with no array of predictions in between);
    1, ``target - bias`` (the right-hand side); 2, ``scale * wts`` (the
    diagonal of the normal matrix, for the Jacobi preconditioner). One chunk
    of samples per thread, each into its own gradient copy.
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
            _simplex(taps, n0, nb, interval, grid, idx, wts)
            for i in range(nb):
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
                            w = wts[p, k, v, i] * scale
                            if mode == 2:
                                w *= wts[p, k, v, i] * scale
                            row = idx[p, k, v, i]
                            for col in range(rr):
                                g[row, col] += w * acc[k, col]


@numba.njit(parallel=True, cache=True)
def _squared_error(taps, interval, grid, table, target, bias, perm, scale, rounded, sums):
    """sums[chunk] = sum over its samples of the mean over pos of (clip(pred) - target)**2.

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
            _simplex(taps, n0, nb, interval, grid, idx, wts)
            for i in range(nb):
                _gather(idx, wts, i, table, perm, acc, out)
                err = 0.0
                for pos in range(rr):
                    y = out[pos] * scale + bias
                    if rounded:
                        y = np.round(y)
                    e = min(max(y, 0.0), 255.0) - target[n0 + i, pos]
                    err += e * e
                total += err / rr
        sums[c] = total


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
    simplex vertices and weights follow from them) and its target: 64 bytes
    per pixel for 3 patterns at x4, 32 for one.

    Attributes
    ----------
    taps : ndarray of uint8, shape (N, P, 4, 4)
        ``taps[n, p, k, t]``: tap ``t`` of pattern ``p`` in rotation ``k``.
    target : ndarray of uint8 (float32 if any target given was not uint8), shape (N, r*r)
        The desired stage output (0..255) of each pixel's r x r block, row-major.
    """

    taps: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return self.taps.shape[0]


def collect(stage: Stage, interval: int, pairs, sort: bool = True) -> Samples:
    """Taps and targets for ``pairs`` of (input plane (H, W) uint8, target plane (H*r, W*r)).

    ``stage`` supplies patterns (or learned taps), padding and r (its tables
    are not used). Samples come sorted by the table row of their first
    vertex (see below) unless ``sort`` is False, in which case they are in
    pixel order, plane after plane.
    """
    r = stage.r
    pairs = list(pairs)
    n_pat = len(stage.patterns)
    # Filled in place, plane after plane: concatenating per-plane parts would
    # hold every sample twice at the peak (gigabytes for a whole training set).
    n = sum(plane.shape[0] * plane.shape[1] for plane, _ in pairs)
    taps = np.empty((n, n_pat, 4, 4), np.uint8)
    # uint8 HR targets stay uint8: a quarter of float32's memory, so more samples fit.
    exact = all(target.dtype == np.uint8 for _, target in pairs)
    tgt = np.empty((n, r * r), np.uint8 if exact else np.float32)
    start = 0
    for plane, target in pairs:
        if plane.ndim != 2 or target.shape != (plane.shape[0] * r, plane.shape[1] * r):
            raise ValueError(f"input {plane.shape} and target {target.shape} are not (H, W) "
                             f"and its x{r}")
        if plane.dtype != np.uint8:
            raise ValueError(f"input planes must be uint8, not {plane.dtype}")
        h, w = plane.shape
        span = slice(start, start + h * w)
        plane = np.ascontiguousarray(plane)
        if stage.taps is None:
            _gather_taps(plane, *tap_indices(stage, h, w), taps[span])
        else:
            _learned_taps(plane, stage, taps[span])
        tgt[span] = output_blocks(target, r)
        start += h * w
    samples = Samples(taps, tgt)
    if not sort:
        return samples
    # Samples ordered by their first vertex's table row: neighbouring samples
    # then read and write neighbouring rows, which keeps the gathers and
    # scatters of every CG iteration in cache. Permuted in place: a copy of
    # the taps would be gigabytes at the peak.
    order = np.argsort(first_rows(samples, interval), kind="stable")
    for a in (taps, tgt):
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
    """The table row of each sample's first vertex (pattern 0, rotation 0): (N,) int64."""
    grid = grid_size(interval)
    cell = samples.taps[:, 0, 0, :] >> interval
    return cell.astype(np.int64) @ grid ** np.arange(3, -1, -1)


def _kernel_args(samples: Samples, interval: int):
    return samples.taps, interval, grid_size(interval)


def _scale(stage: Stage, interval: int) -> float:
    return 1.0 / (2**interval * stage.divisor)


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
             _scale(stage, interval), numba.get_num_threads(), pred)
    pred += stage.bias
    return pred


def mse(samples: Samples, tables: np.ndarray, stage: Stage, interval: int,
        rounded: bool = False) -> float:
    """Mean squared error of the stage's output, clipped to 0..255 as the runtime does.

    ``rounded`` rounds the output first (the runtime's output for integer
    tables). No array of predictions is made.
    """
    sums = np.zeros(numba.get_num_threads())
    _squared_error(*_kernel_args(samples, interval), _flat(tables), samples.target, stage.bias,
                   block_permutations(stage.r), _scale(stage, interval), rounded, sums)
    return float(sums.sum() / len(samples))


def fit(samples: Samples, stage: Stage, interval: int, prior: np.ndarray,
        prior_weight: float = 1e-5, smooth_weight: float = 1e-4, iters: int = 12,
        log=print) -> np.ndarray:
    """Minimise ``|A t - y|^2 + a |t - prior|^2 + b |D t|^2`` by Jacobi-preconditioned CG.

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
        CG iterations.

    Returns
    -------
    ndarray of float64, shape (P, L**4, r*r)
        The float tables (not rounded or clipped).
    """
    grid = grid_size(interval)
    shape = prior.shape
    args = _kernel_args(samples, interval)
    perm = block_permutations(stage.r)
    scale = _scale(stage, interval)
    grads = np.zeros((numba.get_num_threads(), shape[0] * shape[1], shape[2]))

    def scatter(mode, table=grads[0]):  # the table is unused in modes 1 and 2
        grads[:] = 0
        _adjoint(*args, mode, table, samples.target, float(stage.bias), perm, scale, grads)
        return grads.sum(0).reshape(shape)

    diag = scatter(2)
    mean_diag = diag[diag > 0].mean()
    a, b = prior_weight * mean_diag, smooth_weight * mean_diag

    def operator(t):  # (A^T A + a I + b D^T D) t
        out = scatter(0, t.reshape(-1, shape[2])) + a * t
        if b:
            out += b * _smooth_apply(t, grid)
        return out

    precond = 1.0 / (diag + a + 8 * b)
    t = prior.astype(np.float64).copy()
    start = time.process_time()
    rhs = scatter(1) + a * prior
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
            log(f"  cg {it + 1}/{iters}: train mse {err:.3f} "
                f"(psnr {10 * np.log10(255**2 / err):.2f} dB), "
                f"cpu {time.process_time() - start:.0f}s")
    return t
