"""The build's least-squares phases: a linear base and the last stage's tables, refitted.

Both fit the last stage on its own inputs, the training planes run through
the stages before it (fixed), against the HR planes. See :mod:`train.lsq`
for the solver and :mod:`train.base` for the base.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

import lutsr
from train import data as tdata
from train import lsq
from train.base import fit_linear_base, residual_target
from train.nets import to_lut


def stage_inputs(k: int, layout, tables, interval: int, pairs, flips: bool = True):
    """(input plane of stage ``k``, HR plane) of every channel of ``pairs`` (and its mirror).

    The input is the LR plane run through the stages before ``k``; see
    :func:`train.data.plane_pairs` for the planes.
    """
    earlier = to_lut(layout[:k], tables[:k], interval) if k else None
    for lr, target in tdata.plane_pairs(pairs, flips):
        yield (lr if earlier is None else lutsr.upscale(lr, earlier)), target


def power_of_two_divisor(spec, log=print):
    """``spec`` with its divisor raised to a power of two if it is not one: a base needs that.

    (S+D+Y: 3 -> 4. The stage's tables are fitted afresh over the base, so the
    divisor only sets their scale.)
    """
    divisor = 2.0 ** np.ceil(np.log2(spec.divisor))
    if divisor == spec.divisor:
        return spec
    log(f"base: the last stage's divisor {spec.divisor:g} becomes {divisor:g} (a power of two)")
    return dataclasses.replace(spec, divisor=divisor)


def fit_base(layout, tables, interval: int, pairs, flips: bool = True,
             cache: Path | None = None, resume: bool = False) -> np.ndarray:
    """The last stage's linear base (int16, (r, r, 5, 5)), fitted on its inputs.

    Written to ``cache``; with ``resume``, read from it if it is there.
    """
    if resume and cache is not None and cache.exists():
        return np.load(cache)
    k = len(layout) - 1
    base = fit_linear_base(stage_inputs(k, layout, tables, interval, pairs, flips),
                           layout[k].r, layout[k].padding)
    if cache is not None:
        np.save(cache, base)
    return base


def fit_last_stage(layout, tables, interval: int, pairs, *, iters: int, prior_weight: float,
                   smooth_weight: float, flips: bool = True, base=None,
                   cache: Path | None = None, resume: bool = False,
                   log=print) -> tuple[list[np.ndarray], float | None]:
    """The last stage's int8 tables, refitted by least squares; and its training PSNR.

    Parameters
    ----------
    layout : sequence of StageSpec
    tables : list of list of ndarray
        int8 tables per stage; the last stage's are the prior of the fit.
    interval : int
    pairs : list of (ndarray, ndarray)
        (LR, HR) uint8 RGB training pairs.
    iters, prior_weight, smooth_weight : int, float, float
        See :func:`train.lsq.fit`.
    flips : bool
        Also fit the mirror image of every plane.
    base : ndarray of int16, shape (r, r, 5, 5), optional
        The last stage's linear base: the tables fit the HR planes less it.
    cache : Path, optional
        Where the result is kept.
    resume : bool
        Return the result kept in ``cache`` (with PSNR None) if it is there:
        a resumed build does not redo the fit.
    log : callable

    Returns
    -------
    tables : list of ndarray of int8, each (L**4, r*r)
    psnr : float or None
        Of the whole model's output (rounded and clipped, every pixel
        alike) on the training planes, in dB.
    """
    if resume and cache is not None and cache.exists():
        log(f"lsq: reusing {cache}")
        return list(np.load(cache)), None
    k = len(layout) - 1
    spec = layout[k]
    planes = []
    for lr, target in stage_inputs(k, layout, tables, interval, pairs, flips):
        if base is not None:
            target = residual_target(lr, target, base, spec.padding)
        planes.append((lr, target))
    stage = lutsr.Stage(spec.r, spec.patterns, tuple(tables[k]), spec.divisor, spec.bias,
                        spec.padding, taps=spec.taps)
    samples = lsq.collect(stage, interval, planes)
    log(f"lsq: {len(samples)} samples")
    prior = np.stack(tables[k]).astype(np.float64)
    fitted = lsq.fit(samples, stage, interval, prior, prior_weight=prior_weight,
                     smooth_weight=smooth_weight, iters=iters, log=log)
    result = np.clip(np.round(fitted), -128, 127).astype(np.int8)
    if cache is not None:
        np.save(cache, result)
    if base is None:
        # The stage's real output: int8 tables, rounded and clipped like the runtime.
        mse = lsq.mse(samples, result, stage, interval, rounded=True)
    else:  # the samples hold the residual, not the output: run the model itself
        del samples, planes
        lut = to_lut(layout, [*tables[:-1], list(result)], interval, base=base)
        mse = tdata.pair_mse(pairs, lut).mean()
    return list(result), round(10 * np.log10(255**2 / mse), 3)
