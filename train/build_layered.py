"""The layered pipeline: one :class:`lutsr.LayeredStage` trained (:func:`build_layered`).

Its phases, each optional and recorded in the LUT's metadata with its CPU
time: shifts (with ``learn_shifts``: the tables trained with continuous
shifts, which are then rounded and fixed), net (the tables trained at every
input level; or an ``init`` LUT's), sample (every ``table_steps`` levels)
and finetune. :func:`train.build.build` runs it for ``layout="layered"``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import lutsr
from lutsr.layered import LayeredStage
from train.build_shared import Run, init_record, resolve_init
from train.config import DEFAULT_BLOCKS, BuildConfig, BuildError
from train.layered import LAYER_KINDS, LayeredNet, spread_shifts


def build_layered(config: BuildConfig, ckdir: Path | None, log=print) -> lutsr.LUT:
    """A LUT of one layered stage, trained as ``config`` says (``config.layout`` "layered").

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
        As :func:`train.build.build` describes.

    Raises
    ------
    BuildError
        For training data or a starting LUT that cannot be used.
    """
    run = Run.start(config, ckdir, log)
    net = _started_net(run) if config.init else _trained_net(run)
    if config.table_steps:
        with run.timed("sample"):
            net = net.resampled(dict(zip(LAYER_KINDS, config.table_steps, strict=True)))
    if config.finetune_iters:
        run.optimise("finetune", net, config.finetune_iters, config.finetune_lr)
    stage = net.to_stage()
    log(f"layered stage: {stage.describe()}")
    return run.finish(functools.partial(lutsr.LUT, stages=(stage,)))


def _started_net(run: Run) -> LayeredNet:
    """The ``init`` LUT's stage as a net, with ``blocks`` more than it has appended as
    identity blocks (recorded as the metadata's ``init``)."""
    config = run.config
    lut = resolve_init(config.init)
    if len(lut.stages) != 1 or not isinstance(lut.stages[0], LayeredStage) \
            or lut.scale != config.scale:
        raise BuildError(f"config.init={config.init!r}: config.layout='layered' starts from a "
                         f"LUT of one layered stage at x{config.scale}")
    net = LayeredNet.from_stage(lut.stages[0])
    if config.blocks:
        try:
            net = net.deepened(config.blocks)
        except ValueError as exc:
            raise BuildError(f"config.init={config.init!r}: {exc}") from None
    run.meta["init"] = init_record(lut)
    return net


def _trained_net(run: Run) -> LayeredNet:
    """A new net of ``blocks`` blocks, its shifts spread (and with ``learn_shifts``
    learned: the ``shifts`` phase), its tables trained at every input level (``net``)."""
    config = run.config
    blocks = config.blocks or DEFAULT_BLOCKS
    net = LayeredNet.random(config.scale, blocks,
                            shifts=spread_shifts(blocks, config.scale**2, config.shift_radius),
                            init_std=0.5, seed=config.seed)
    if config.learn_shifts:
        # One Adam step size for both: a step of net_lr on an offset's parameter moves it
        # about shift_lr pixels.
        net.learning_shifts(config.learn_shifts, config.shift_lr / config.net_lr)
        run.optimise("shifts", net, config.shift_iters, config.net_lr)
        net.frozen_shifts()  # rounded to integers and fixed for the later phases
        run.log(f"learned shifts (dy; dx per channel): {[pw.shifts.tolist() for pw in net.pw]}")
    if config.net_iters:
        run.optimise("net", net, config.net_iters, config.net_lr)
    return net
