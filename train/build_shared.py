"""What both build pipelines share: a :class:`Run` (the data phase, checkpoints, metadata).

:func:`train.build.build` dispatches to the simplex pipeline
(:func:`train.build.build_simplex`) or the layered one
(:func:`train.build_layered.build_layered`); each starts a :class:`Run`,
which loads the training data, keeps the phase checkpoints and records
every phase's CPU time in the metadata, and ends with :meth:`Run.finish`,
which scores the held-out images and names the LUT.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import lutsr
from lutsr.metrics import psnr_y
from train import data as tdata
from train import fit
from train.config import BuildConfig, BuildError, degrade_mix, parse_degradation
from train.degrade import degrade_pairs, library_versions
from train.teacher import teacher_pairs


@dataclass
class Run:
    """One build in progress: its configuration, data, checkpoints and metadata.

    Attributes
    ----------
    config : BuildConfig
    ckdir : Path or None
        The checkpoint folder (None: no checkpoints).
    log : callable
        Called with each line of progress (str).
    meta : dict
        The metadata the LUT will carry; each phase adds its entry to
        ``meta["phases"]``.
    pairs : list of (ndarray, ndarray)
        The training (LR, HR) uint8 RGB pairs, scale augmentation, teacher
        targets and degradation applied.
    sampler : train.fit.PatchSampler
        Patches of ``pairs``.
    held_out : list of Path
        The held-out images (``config.val_every``), sorted by path.
    val_pairs : list of (ndarray, ndarray)
        Their clean (LR, HR) pairs.
    """

    config: BuildConfig
    ckdir: Path | None
    log: Callable[[str], object]
    meta: dict
    pairs: list
    sampler: fit.PatchSampler
    held_out: list
    val_pairs: list

    @classmethod
    def start(cls, config: BuildConfig, ckdir: Path | None, log=print) -> Run:
        """The data phase: the training images loaded (and held-out ones set aside).

        The metadata gets the provenance (data folders, configuration,
        machine) and the data phase's CPU time; ``ckdir`` is from
        :func:`checkpoint_dir`.

        Raises
        ------
        BuildError
            For training data that cannot be used.
        """
        meta = {"layout": config.layout, "data": data_names(config.data),
                "config": _recorded(config),
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
        return cls(config, ckdir, log, meta, pairs, sampler, held_out, val_pairs)

    def checkpoint(self, name: str) -> Path | None:
        """The path of the checkpoint file ``name`` (None without a checkpoint folder)."""
        return None if self.ckdir is None else self.ckdir / name

    def optimise(self, phase: str, model: torch.nn.Module, iters: int, lr: float,
                 shape: dict | None = None) -> None:
        """A gradient phase: ``model`` trained by :func:`train.fit.optimise` on the
        training patches, checkpointed as ``<phase>.pt`` (with ``shape``: what rebuilds
        the model), its iterations, CPU time and last loss recorded as ``phase``."""
        state = fit.optimise(model, self.sampler, iters, lr, self.config.batch,
                             self.checkpoint(f"{phase}.pt"), log=self.log, desc=phase,
                             config=shape)
        self.meta["phases"][phase] = {"iterations": int(state["iteration"]),
                                      "cpu_seconds": round(state["cpu_seconds"], 1),
                                      "train_mse": round(float(state["loss"]), 3)}

    @contextmanager
    def timed(self, phase: str) -> Iterator[dict]:
        """Record the CPU time of the ``with`` block as ``phase`` (after what the
        block puts in the dict it is given)."""
        record: dict = {}
        t0 = time.process_time()
        yield record
        self.meta["phases"][phase] = {**record, **_seconds(t0)}

    def finish(self, make_lut: Callable[..., lutsr.LUT]) -> lutsr.LUT:
        """The LUT, ``make_lut(name=..., metadata=...)``, its metadata completed.

        The total CPU time (with an ``init`` LUT's own) and, with held-out
        images, the Y-PSNR of ``make_lut()`` on them are recorded first.
        """
        meta = self.meta
        # End to end from images: a LUT started from another one also cost what that one did.
        meta["cpu_seconds_total"] = round(
            sum(p["cpu_seconds"] for p in meta["phases"].values())
            + meta.get("init", {}).get("cpu_seconds_total", 0.0), 1)
        if self.val_pairs:
            meta["validation"] = self._validation(make_lut())
            self.log(f"validation: {meta['validation']}")
        return make_lut(name=self.config.name, metadata=meta)

    def _validation(self, lut: lutsr.LUT) -> dict:
        """Y-PSNR of ``lut`` on the held-out images: overall, per data folder (folders of
        different kinds of image disagree) and, with ``val_degrade``, on degraded LR."""
        config, val_pairs = self.config, self.val_pairs
        scores = [psnr_y(lutsr.upscale(lr, lut), hr, config.scale) for lr, hr in val_pairs]
        folders = [next(name for d, name in zip(config.data, self.meta["data"])
                        if Path(d) in f.parents)
                   for f in self.held_out]
        result = {
            "images": len(val_pairs), "psnr_y": round(float(np.mean(scores)), 4),
            "psnr_y_by_folder": {folder: round(float(np.mean(
                [v for v, f in zip(scores, folders) if f == folder])), 4)
                for folder in dict.fromkeys(folders)}}
        if config.val_degrade:  # the same images, their LR compressed: the target stays clean
            result["psnr_y_degraded"] = {
                spec: round(float(np.mean([psnr_y(lutsr.upscale(deg(lr), lut), hr,
                                                  config.scale)
                                           for lr, hr in val_pairs])), 4)
                for spec, deg in ((s, parse_degradation(s)) for s in config.val_degrade)}
        return result


def resolve_init(source: str) -> lutsr.LUT:
    """The LUT ``config.init`` names (a .lutsr path or a bundled name).

    Raises
    ------
    BuildError
        If there is none, or it cannot be read.
    """
    try:
        return lutsr.api.resolve_lut(source)
    except (ValueError, OSError) as exc:  # LUTFormatError is a ValueError
        raise BuildError(f"config.init={source!r}: {exc}") from None


def init_record(lut: lutsr.LUT) -> dict:
    """What the metadata records of an ``init`` LUT: its name, total CPU time and phases."""
    return {"lut": lut.name, "cpu_seconds_total": lut.metadata.get("cpu_seconds_total", 0.0),
            "phases": lut.metadata.get("phases", {})}


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


def checkpoint_dir(config: BuildConfig) -> Path | None:
    """The checkpoint folder, created (None without ``config.checkpoint_dir``).

    Raises
    ------
    BuildError
        If it holds checkpoints and ``config.resume`` is off.
    """
    if not config.checkpoint_dir:
        return None
    ckdir = Path(config.checkpoint_dir)
    ckdir.mkdir(parents=True, exist_ok=True)
    if not config.resume and any(ckdir.glob("*.pt")):
        raise BuildError(f"{ckdir} holds checkpoints: continue them (config.resume) or "
                         "remove them")
    return ckdir


def _seconds(t0: float) -> dict:
    return {"cpu_seconds": round(time.process_time() - t0, 1)}
