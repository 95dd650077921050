"""The build pipeline: folders of HR images in, a :class:`lutsr.LUT` out (:func:`build`).

:func:`build` runs one of two pipelines, both on :class:`train.build_shared.Run`
(the data phase, checkpoints, metadata, held-out scores). The simplex pipeline
(:func:`build_simplex`, layouts srlut and mulut) has these phases, each
optional and each recorded in the LUT's metadata with its CPU time:

1. net: train the pattern nets (runtime semantics, 4-rotation ensemble; with
   ``tap_window``, each table's 4 inputs are learned combinations of a window
   of pixels, trained with them: ``lutsr.Stage.taps``);
2. sample: evaluate the nets on the uniform input grid into int8 tables (with
   ``init``, phases 1 and 2 are an existing LUT's tables instead);
3. base: with ``base="linear"``, the last stage's linear term, fitted by least
   squares, its tables then fitting the residual (train/base.py);
4. finetune: LUT-aware fine-tuning, the table values optimised through the
   differentiable simplex interpolation (all stages jointly, train/nets.py);
5. lsq: the last stage's tables refitted exactly by least squares over the
   whole training set, the earlier stages fixed (train/refit.py, train/lsq.py).

A layered layout (one :class:`lutsr.LayeredStage`, train/layered.py) has its
own pipeline and phases (:mod:`train.build_layered`): shifts (with
``learn_shifts``: the tables trained with continuous shifts, which are then
rounded and fixed), net (its tables trained at every input level), sample
(every ``table_steps`` levels) and finetune.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import torch

import lutsr
from train import refit
from train.build_layered import build_layered
from train.build_shared import Run, checkpoint_dir, init_record, resolve_init
from train.config import BuildConfig, BuildError, check
from train.nets import NetModel, TableModel, layout_of, mulut_layout, srlut_layout, to_lut


def build(config: BuildConfig, log=print) -> lutsr.LUT:
    """Train a LUT as ``config`` says (see :class:`train.config.BuildConfig`).

    Seeds torch's global generator with ``config.seed`` and, with
    ``config.threads``, sets torch's thread count. Phase checkpoints go to
    ``config.checkpoint_dir`` (if given), so that a build can resume. Runs
    :func:`build_simplex`, or :func:`train.build_layered.build_layered` for
    the layered layout.

    Parameters
    ----------
    config : BuildConfig
    log : callable
        Called with each line of progress (str).

    Returns
    -------
    LUT
        Named ``config.name``; its metadata holds the provenance: the data
        folders relative to their common parent, the configuration, each
        phase's iterations and CPU seconds, and with ``val_every`` the Y-PSNR
        on the held-out images.

    Raises
    ------
    BuildError
        For a configuration, training data or starting LUT that cannot be
        used; its message names the fields of ``config``
        (``config.tap_window``).
    """
    check(config)
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    ckdir = checkpoint_dir(config)
    if config.layout == "layered":
        return build_layered(config, ckdir, log)
    return build_simplex(config, ckdir, log)


def build_simplex(config: BuildConfig, ckdir: Path | None, log=print) -> lutsr.LUT:
    """A LUT of simplex stages (``config.layout`` "srlut" or "mulut"), trained as
    ``config`` says: phases net, sample (or ``init``), base, finetune, lsq.

    Parameters
    ----------
    config : BuildConfig
        Checked (:func:`train.config.check`).
    ckdir : Path or None
        The checkpoint folder (:func:`train.build_shared.checkpoint_dir`).
    log : callable
        Called with each line of progress (str).

    Returns
    -------
    LUT
        As :func:`build` describes.

    Raises
    ------
    BuildError
        For training data or a starting LUT that cannot be used.
    """
    layout = (srlut_layout(config.scale) if config.layout == "srlut"
              else mulut_layout(config.scale, config.patterns.upper(), config.refine_stages))
    net = None
    if not config.init:  # before the data loads: the nets' weights are torch's first draws
        try:
            net = NetModel(layout, config.net_width, config.net_depth, config.tap_window)
        except ValueError as exc:
            raise BuildError(f"config.tap_window: {exc}") from None
    run = Run.start(config, ckdir, log)
    if config.init:
        layout, tables, run.meta["init"] = _init_tables(config.init, layout, config.interval)
    else:
        layout, tables = _sampled_nets(run, net, layout)
    base = None
    if config.base == "linear":
        layout, tables, base = _fitted_base(run, layout, tables)
    if config.finetune_iters:
        layout, tables = _finetuned(run, layout, tables)
    if config.lsq_iters:
        tables = _refitted_last_stage(run, layout, tables, base)
    return run.finish(functools.partial(to_lut, layout, tables, config.interval, base=base))


def _sampled_nets(run: Run, net: NetModel, layout) -> tuple[tuple, list]:
    """The ``net`` phase (the pattern nets trained) and the ``sample`` phase (their
    tables): the tapped layout and int8 tables per stage."""
    config = run.config
    if config.net_iters:
        shape = {"layout": [dataclasses.asdict(s) for s in layout],
                 "width": config.net_width, "depth": config.net_depth,
                 "tap_window": config.tap_window}
        run.optimise("net", net, config.net_iters, config.net_lr, shape=shape)
    with run.timed("sample"):
        tables = net.sample_tables(config.interval)
        layout = net.tapped_layout()
    return layout, tables


def _fitted_base(run: Run, layout, tables: list) -> tuple[tuple, list, np.ndarray]:
    """The ``base`` phase: the last stage's linear base fitted by least squares (its
    divisor a power of two), its tables then zero, to fit the residual."""
    config = run.config
    with run.timed("base"):
        layout = (*layout[:-1], refit.power_of_two_divisor(layout[-1], run.log))
        base = refit.fit_base(layout, tables, config.interval, run.pairs,
                              not config.lsq_no_flips, run.checkpoint("base.npy"),
                              config.resume)
        tables = [*tables[:-1], [np.zeros_like(t) for t in tables[-1]]]
    gain = base.sum((2, 3)).mean() / 2**lutsr.model.BASE_BITS
    run.log(f"base: linear, weights sum to {gain:.4f} on average")
    return layout, tables, base


def _finetuned(run: Run, layout, tables: list) -> tuple[tuple, list]:
    """The ``finetune`` phase: the tables (and with ``finetune_taps`` the learned taps)
    optimised through the differentiable simplex interpolation, all stages jointly."""
    config = run.config
    tm = TableModel(layout, tables, config.interval, learn_taps=config.finetune_taps)
    if config.finetune_taps and not tm.tap_steps:
        raise BuildError("config.finetune_taps: the model has no learned taps "
                         "(config.tap_window, or config.init of a LUT with them)")
    if config.finetune_freeze_last:
        tm.tables[-1].requires_grad_(False)
    run.optimise("finetune", tm, config.finetune_iters, config.finetune_lr)
    tables = tm.int8_tables()
    return tm.tapped_layout(), tables


def _refitted_last_stage(run: Run, layout, tables: list, base) -> list:
    """The ``lsq`` phase: the last stage's tables refitted exactly by least squares
    over the whole training set, the earlier stages fixed."""
    config = run.config
    with run.timed("lsq") as record:
        last, psnr = refit.fit_last_stage(
            layout, tables, config.interval, run.pairs, iters=config.lsq_iters,
            prior_weight=config.lsq_prior, smooth_weight=config.lsq_smooth,
            flips=not config.lsq_no_flips, base=base, cache=run.checkpoint("lsq.npy"),
            resume=config.resume, log=run.log)
        record.update(iterations=config.lsq_iters, train_psnr=psnr)
    return [*tables[:-1], last]


def _init_tables(source: str, layout, interval: int):
    """An existing LUT's layout (with its learned taps), int8 tables, and what to record.

    A LUT that lacks some of the layout's middle stages (it has the first
    and the last, and fewer between) gets them as pixel replication, the
    untrained nets' tables, inserted before its last stage.
    """
    lut = resolve_init(source)
    if not all(isinstance(s, lutsr.Stage) for s in lut.stages):
        raise BuildError(f"config.init={source!r}: it has layered stages, which the simplex "
                         "pipeline does not train")
    if any(s.base is not None for s in lut.stages):
        raise BuildError(f"config.init={source!r}: its tables fit the residual of a linear "
                         "base (config.base='linear'), which later phases do not model")
    have, want = layout_of(lut), tuple(layout)
    k = len(have) - 1  # the stages before the last
    if (not 1 <= len(have) <= len(want) or have[:k] != want[:k] or have[-1] != want[-1]
            or lut.interval != interval):
        raise BuildError(f"config.init={source!r}: its layout {have} (interval {lut.interval}) "
                         f"is not {want} (interval {interval}) or the start of it")
    tables = [list(s.tables) for s in lut.stages]
    missing = want[k:-1]
    if missing:
        tables[k:k] = NetModel(missing, width=1, depth=1).sample_tables(interval)
    return (*have[:k], *missing, have[-1]), tables, init_record(lut)
