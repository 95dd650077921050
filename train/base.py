"""A stage's linear base (``lutsr.Stage.base``), fitted by least squares.

A single S table sees a 3x3 neighbourhood (2x2 in 4 rotations). A linear
term over the 5x5 input pixels around each pixel, per output phase, adds the
rows and columns beyond it at the cost of 25 multiply-adds per output; the
table then fits the residual. Fitted first and alone (one 25 x 25 system of
normal equations over every training pixel, a right-hand side per phase),
then frozen: the table's least squares (``train/lsq.py``) absorbs whatever
linear part lies within its own reach. (Refitting the base to what the table
leaves, then the table again, lowered the training MSE by 0.007 % in a
measurement stopped after that refit's first iteration.)
"""

from __future__ import annotations

import numpy as np

from lutsr.model import BASE_BITS, BASE_RADIUS, BASE_SIDE
from lutsr.reference import base_term
from train.data import output_blocks


def _taps(padded: np.ndarray) -> np.ndarray:
    """The base inputs of every pixel: (H*W, 25) float64.

    ``padded`` is the input plane padded by ``BASE_RADIUS`` on every side, as float64.
    """
    h, w = padded.shape[0] - BASE_SIDE + 1, padded.shape[1] - BASE_SIDE + 1
    return np.stack([padded[a:a + h, b:b + w].ravel()
                     for a in range(BASE_SIDE) for b in range(BASE_SIDE)], axis=1)


def fit_linear_base(planes, r: int, padding: str) -> np.ndarray:
    """The MSE-optimal base for (input plane (H, W) uint8, target (H*r, W*r)) pairs.

    Parameters
    ----------
    planes : iterable of (ndarray, ndarray)
    r : int
    padding : {"reflect", "edge"}
        The stage's padding (the base reads ``BASE_RADIUS`` pixels beyond every edge).

    Returns
    -------
    ndarray of int16, shape (r, r, 5, 5)
        Weights in units of ``2**-BASE_BITS`` (see :class:`lutsr.Stage`).
    """
    n = BASE_SIDE * BASE_SIDE
    gram = np.zeros((n, n))  # the same inputs for every phase
    moment = np.zeros((n, r * r))
    empty = True
    for plane, target in planes:
        x = _taps(np.pad(plane, BASE_RADIUS, mode=padding).astype(np.float64))
        y = output_blocks(target, r)
        gram += x.T @ x
        moment += x.T @ y.astype(np.float64)
        empty = False
    if empty:
        raise ValueError("no planes to fit a base to")
    coef = np.linalg.solve(gram, moment).T  # (phase u * r + v, tap)
    scaled = np.round(coef * 2**BASE_BITS)
    if np.abs(scaled).max() >= 2**15:
        raise ValueError("the fitted base does not fit int16 weights (degenerate training data?)")
    return scaled.astype(np.int16).reshape(r, r, BASE_SIDE, BASE_SIDE)


def residual_target(plane: np.ndarray, target: np.ndarray, base: np.ndarray,
                    padding: str) -> np.ndarray:
    """What the tables of a stage with ``base`` must add: ``target - base`` (float32)."""
    return (target - base_term(plane, base, padding)).astype(np.float32)
