"""The build pipeline: folders of HR images in, a :class:`lutsr.LUT` out (:func:`build`).

Phases, each optional and each recorded in the LUT's metadata with its CPU time:

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
own phases: shifts (with ``learn_shifts``: the tables trained with continuous
shifts, which are then rounded and fixed), net (its tables trained at every
input level), sample (every ``table_steps`` levels) and finetune.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

import lutsr
from lutsr.layered import LayeredStage
from lutsr.metrics import psnr_y
from train import data as tdata
from train import fit, refit
from train.config import (
    DEFAULT_BLOCKS,
    BuildConfig,
    BuildError,
    check,
    degrade_mix,
    parse_degradation,
)
from train.degrade import degrade_pairs, library_versions
from train.layered import LAYER_KINDS, LayeredNet, spread_shifts
from train.nets import NetModel, TableModel, layout_of, mulut_layout, srlut_layout, to_lut
from train.teacher import teacher_pairs


def build(config: BuildConfig, log=print) -> lutsr.LUT:
    """Train a LUT as ``config`` says (see :class:`train.config.BuildConfig`).

    Seeds torch's global generator with ``config.seed`` and, with
    ``config.threads``, sets torch's thread count. Phase checkpoints go to
    ``config.checkpoint_dir`` (if given), so that a build can resume.

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
        For a configuration, training data or starting LUT that cannot be used;
        its message names the fields of ``config`` (``config.tap_window``).
    """
    check(config)
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    ckdir = _checkpoint_dir(config)
    layout = (srlut_layout(config.scale) if config.layout == "srlut"
              else mulut_layout(config.scale, config.patterns.upper(), config.refine_stages))
    if not config.init and config.layout != "layered":
        try:
            net = NetModel(layout, config.net_width, config.net_depth, config.tap_window)
        except ValueError as exc:
            raise BuildError(f"config.tap_window: {exc}") from None
    names = data_names(config.data)
    meta = {"layout": config.layout, "data": names, "config": _recorded(config),
            "machine": f"{platform.machine()} {platform.processor() or ''} "
                       f"{torch.get_num_threads()} torch threads".strip(),
            "phases": {}}
    t0 = time.process_time()
    try:
        files = tdata.list_images(config.data)
        held_out = files[::config.val_every] if config.val_every else []
        skip = set(held_out)
        train_files = [f for f in files if f not in skip]
        pairs = tdata.load_pairs(train_files, config.scale, min_size=config.patch,
                                 scale_aug=config.scale_aug, log=log)
        if config.teacher:  # on the clean LR, before any degradation: the targets stay clean
            pairs, meta["teacher"] = teacher_pairs(pairs, config, ckdir, log)
        mix = degrade_mix(config)
        if mix.active:  # every later phase reads these LR images: nets, base, least squares
            pairs, counts = degrade_pairs(pairs, mix)
            meta["degrade"] = {"counts": counts, "libraries": library_versions()}
            log(f"degraded training LR: {counts}")
        val_pairs = tdata.load_pairs(held_out, config.scale)
        sampler = fit.PatchSampler(pairs, config.scale, config.patch, seed=config.seed)
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    meta["images"] = len(train_files)
    meta["training_pairs"] = len(pairs)
    meta["phases"]["data"] = _seconds(t0)
    log(f"{len(train_files)} training images ({len(pairs)} with scale augmentation), "
        f"x{config.scale}, layout {config.layout}")

    if config.layout == "layered":
        stage = _layered_phases(config, sampler, ckdir, meta, log)
        meta["cpu_seconds_total"] = _total_cpu(meta)
        lut = lutsr.LUT(stages=(stage,), name=config.name, metadata=meta)
        if val_pairs:
            meta["validation"] = _validation(lut, config, names, held_out, val_pairs)
            log(f"validation: {meta['validation']}")
        return lut

    if config.init:
        layout, tables, meta["init"] = _init_tables(config.init, layout, config.interval)
    else:
        if config.net_iters:
            shape = {"layout": [dataclasses.asdict(s) for s in layout],
                     "width": config.net_width, "depth": config.net_depth,
                     "tap_window": config.tap_window}
            state = fit.optimise(net, sampler, config.net_iters, config.net_lr, config.batch,
                                 _file(ckdir, "net.pt"), log=log, desc="net", config=shape)
            meta["phases"]["net"] = _phase(state)
        t0 = time.process_time()
        tables = net.sample_tables(config.interval)
        layout = net.tapped_layout()
        meta["phases"]["sample"] = _seconds(t0)

    flips = not config.lsq_no_flips
    base = None
    if config.base == "linear":
        t0 = time.process_time()
        layout = (*layout[:-1], refit.power_of_two_divisor(layout[-1], log))
        base = refit.fit_base(layout, tables, config.interval, pairs, flips,
                              _file(ckdir, "base.npy"), config.resume)
        tables[-1] = [np.zeros_like(t) for t in tables[-1]]  # the residual starts at 0
        meta["phases"]["base"] = _seconds(t0)
        gain = base.sum((2, 3)).mean() / 2**lutsr.model.BASE_BITS
        log(f"base: linear, weights sum to {gain:.4f} on average")

    if config.finetune_iters:
        tm = TableModel(layout, tables, config.interval, learn_taps=config.finetune_taps)
        if config.finetune_taps and not tm.tap_steps:
            raise BuildError("config.finetune_taps: the model has no learned taps "
                             "(config.tap_window, or config.init of a LUT with them)")
        if config.finetune_freeze_last:
            tm.tables[-1].requires_grad_(False)
        state = fit.optimise(tm, sampler, config.finetune_iters, config.finetune_lr,
                             config.batch, _file(ckdir, "finetune.pt"), log=log,
                             desc="finetune")
        meta["phases"]["finetune"] = _phase(state)
        tables, layout = tm.int8_tables(), tm.tapped_layout()

    if config.lsq_iters:
        t0 = time.process_time()
        tables[-1], psnr = refit.fit_last_stage(
            layout, tables, config.interval, pairs, iters=config.lsq_iters,
            prior_weight=config.lsq_prior, smooth_weight=config.lsq_smooth, flips=flips,
            base=base, cache=_file(ckdir, "lsq.npy"), resume=config.resume, log=log)
        meta["phases"]["lsq"] = {"iterations": config.lsq_iters, "train_psnr": psnr,
                                 **_seconds(t0)}

    meta["cpu_seconds_total"] = _total_cpu(meta)
    if val_pairs:
        meta["validation"] = _validation(to_lut(layout, tables, config.interval, base=base),
                                         config, names, held_out, val_pairs)
        log(f"validation: {meta['validation']}")
    return to_lut(layout, tables, config.interval, name=config.name, metadata=meta, base=base)


def _total_cpu(meta: dict) -> float:
    # End to end from images: a LUT started from another one also cost what that one did.
    return round(sum(p["cpu_seconds"] for p in meta["phases"].values())
                 + meta.get("init", {}).get("cpu_seconds_total", 0.0), 1)


def _layered_phases(config: BuildConfig, sampler, ckdir, meta: dict, log) -> LayeredStage:
    """A layered stage's phases: with ``learn_shifts``, its tables trained with learned
    shifts, which are then fixed (``shifts``); its tables trained at every input level
    (``net``; or an ``init`` LUT's), sampled every ``table_steps`` levels (``sample``),
    then fine-tuned at those steps (``finetune``)."""
    if config.init:
        lut = _resolve(config.init)
        if len(lut.stages) != 1 or not isinstance(lut.stages[0], LayeredStage) \
                or lut.scale != config.scale:
            raise BuildError(f"config.init={config.init!r}: config.layout='layered' starts "
                             f"from a LUT of one layered stage at x{config.scale}")
        net = LayeredNet.from_stage(lut.stages[0])
        if config.blocks:
            try:
                net = net.deepened(config.blocks)
            except ValueError as exc:
                raise BuildError(f"config.init={config.init!r}: {exc}") from None
        meta["init"] = {"lut": lut.name,
                        "cpu_seconds_total": lut.metadata.get("cpu_seconds_total", 0.0),
                        "phases": lut.metadata.get("phases", {})}
    else:
        blocks = config.blocks or DEFAULT_BLOCKS
        net = LayeredNet.random(config.scale, blocks,
                                shifts=spread_shifts(blocks, config.scale**2, config.shift_radius),
                                init_std=0.5, seed=config.seed)
        if config.learn_shifts:
            _learn_shifts(net, config, sampler, ckdir, meta, log)
        if config.net_iters:
            state = fit.optimise(net, sampler, config.net_iters, config.net_lr, config.batch,
                                 _file(ckdir, "net.pt"), log=log, desc="net")
            meta["phases"]["net"] = _phase(state)
    if config.table_steps:
        t0 = time.process_time()
        net = net.resampled(dict(zip(LAYER_KINDS, config.table_steps, strict=True)))
        meta["phases"]["sample"] = _seconds(t0)
    if config.finetune_iters:
        state = fit.optimise(net, sampler, config.finetune_iters, config.finetune_lr,
                             config.batch, _file(ckdir, "finetune.pt"), log=log,
                             desc="finetune")
        meta["phases"]["finetune"] = _phase(state)
    stage = net.to_stage()
    log(f"layered stage: {stage.describe()}")
    return stage


def _learn_shifts(net: LayeredNet, config: BuildConfig, sampler, ckdir, meta: dict, log):
    """The ``shifts`` phase: ``net``'s tables and continuous shifts trained together, the
    shifts then rounded to integers and fixed (in place)."""
    # One Adam step size for both: a step of net_lr on an offset's parameter moves it
    # about shift_lr pixels.
    net.learning_shifts(config.learn_shifts, config.shift_lr / config.net_lr)
    state = fit.optimise(net, sampler, config.shift_iters, config.net_lr, config.batch,
                         _file(ckdir, "shifts.pt"), log=log, desc="shifts")
    net.frozen_shifts()
    meta["phases"]["shifts"] = _phase(state)
    log(f"learned shifts (dy; dx per channel): {[pw.shifts.tolist() for pw in net.pw]}")


def _validation(lut: lutsr.LUT, config: BuildConfig, names, held_out, val_pairs) -> dict:
    """Y-PSNR of ``lut`` on the held-out images: overall, per data folder (folders of
    different kinds of image disagree) and, with ``val_degrade``, on degraded LR."""
    scores = [psnr_y(lutsr.upscale(lr, lut), hr, config.scale) for lr, hr in val_pairs]
    folders = [next(name for d, name in zip(config.data, names) if Path(d) in f.parents)
               for f in held_out]
    result = {
        "images": len(val_pairs), "psnr_y": round(float(np.mean(scores)), 4),
        "psnr_y_by_folder": {folder: round(float(np.mean(
            [v for v, f in zip(scores, folders) if f == folder])), 4)
            for folder in dict.fromkeys(folders)}}
    if config.val_degrade:  # the same images, their LR compressed: the target stays clean
        result["psnr_y_degraded"] = {
            spec: round(float(np.mean([psnr_y(lutsr.upscale(deg(lr), lut), hr, config.scale)
                                       for lr, hr in val_pairs])), 4)
            for spec, deg in ((s, parse_degradation(s)) for s in config.val_degrade)}
    return result


def data_names(folders) -> list[str]:
    """The training folders relative to their common parent, the data root (POSIX paths).

    What a LUT records of its data: never the build machine's absolute paths.
    """
    paths = [Path(f).resolve() for f in folders]
    root = Path(os.path.commonpath(paths))
    if root in paths:  # one folder, or one inside another: name it too
        root = root.parent
    return [p.relative_to(root).as_posix() for p in paths]


def _recorded(config: BuildConfig) -> dict:
    """The configuration as a LUT's metadata holds it: no paths of the build machine."""
    fields = dataclasses.asdict(config)
    del fields["checkpoint_dir"], fields["data"]  # the data: the metadata's "data"
    if config.init:
        fields["init"] = Path(config.init).name  # a file's name, or a bundled LUT's
    if config.teacher:
        fields["teacher"] = Path(config.teacher).name
    return fields


def _checkpoint_dir(config: BuildConfig) -> Path | None:
    """The checkpoint folder, created; refused if it holds checkpoints and ``resume`` is off."""
    if not config.checkpoint_dir:
        return None
    ckdir = Path(config.checkpoint_dir)
    ckdir.mkdir(parents=True, exist_ok=True)
    if not config.resume and any(ckdir.glob("*.pt")):
        raise BuildError(f"{ckdir} holds checkpoints: continue them (config.resume) or "
                         "remove them")
    return ckdir


def _file(ckdir: Path | None, name: str) -> Path | None:
    return None if ckdir is None else ckdir / name


def _seconds(t0: float) -> dict:
    return {"cpu_seconds": round(time.process_time() - t0, 1)}


def _phase(state: dict) -> dict:
    return {"iterations": int(state["iteration"]), "cpu_seconds": round(state["cpu_seconds"], 1),
            "train_mse": round(float(state["loss"]), 3)}


def _init_tables(source: str, layout, interval: int):
    """An existing LUT's layout (with its learned taps), int8 tables, and what to record.

    A LUT that lacks some of the layout's middle stages (it has the first
    and the last, and fewer between) gets them as pixel replication, the
    untrained nets' tables, inserted before its last stage.
    """
    lut = _resolve(source)
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
    return ((*have[:k], *missing, have[-1]), tables,
            {"lut": lut.name, "cpu_seconds_total": lut.metadata.get("cpu_seconds_total", 0.0),
             "phases": lut.metadata.get("phases", {})})


def _resolve(source: str) -> lutsr.LUT:
    try:
        return lutsr.api.resolve_lut(source)
    except (ValueError, OSError) as exc:  # LUTFormatError is a ValueError
        raise BuildError(f"config.init={source!r}: {exc}") from None
