"""A stage's linear base (``lutsr.Stage.base``), fitted by least squares.

A single S table sees a 3x3 neighbourhood (2x2 in 4 rotations). A linear
term over the 4x4 input pixels of bicubic interpolation, per output phase,
adds the rows and columns beyond it at the cost of 16 multiply-adds per
output; the table then fits the residual. Fitted first and alone (its normal
equations are 16 x 16 per phase, over every training pixel), then frozen: the
table's least squares (``train/lsq.py``) absorbs whatever linear part lies
within its own reach.
"""

from __future__ import annotations

import numpy as np

from lutsr.model import BASE_BITS, base_origin
from lutsr.reference import base_term


def _taps(padded: np.ndarray, u: int, v: int, r: int) -> np.ndarray:
    """The 16 base inputs of output phase (u, v) at every pixel: (H*W, 16) float64.

    ``padded`` is the input plane padded by 2 on every side, as float64.
    """
    h, w = padded.shape[0] - 4, padded.shape[1] - 4
    oy, ox = base_origin(u, r) + 2, base_origin(v, r) + 2
    return np.stack([padded[oy + a:oy + a + h, ox + b:ox + b + w].ravel()
                     for a in range(4) for b in range(4)], axis=1)


def fit_linear_base(planes, r: int, padding: str, weights=None) -> np.ndarray:
    """The MSE-optimal base for (input plane (H, W) uint8, target (H*r, W*r)) pairs.

    Parameters
    ----------
    planes : iterable of (ndarray, ndarray)
    r : int
    padding : {"reflect", "edge"}
        The stage's padding (the base reads 2 pixels beyond every edge).
    weights : iterable of float, optional
        Each pair's weight in the squared error (default 1).

    Returns
    -------
    ndarray of int16, shape (r, r, 4, 4)
        Weights in units of ``2**-BASE_BITS`` (see :class:`lutsr.Stage`).
    """
    gram = np.zeros((r, r, 16, 16))
    moment = np.zeros((r, r, 16))
    planes = list(planes)
    weights = [1.0] * len(planes) if weights is None else list(weights)
    if len(weights) != len(planes) or not planes:
        raise ValueError(f"{len(planes)} planes and {len(weights)} weights")
    for (plane, target), weight in zip(planes, weights):
        padded = np.pad(plane, 2, mode=padding).astype(np.float64)
        for u in range(r):
            for v in range(r):
                x = _taps(padded, u, v, r)
                y = target[u::r, v::r].ravel().astype(np.float64)
                gram[u, v] += weight * (x.T @ x)
                moment[u, v] += weight * (x.T @ y)
    coef = np.linalg.solve(gram, moment[..., None])[..., 0]
    scaled = np.round(coef * 2**BASE_BITS)
    if np.abs(scaled).max() >= 2**15:
        raise ValueError("the fitted base does not fit int16 weights (degenerate training data?)")
    return scaled.astype(np.int16).reshape(r, r, 4, 4)


def residual_target(plane: np.ndarray, target: np.ndarray, base: np.ndarray,
                    padding: str) -> np.ndarray:
    """What the tables of a stage with ``base`` must add: ``target - base`` (float32)."""
    return (target - base_term(plane, base, padding)).astype(np.float32)
