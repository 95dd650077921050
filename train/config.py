"""What a LUT build does: :class:`BuildConfig`, its checks and the CI-sized settings.

Plain Python (no torch), so that a command line can check a configuration
before the training libraries load. :func:`train.build.build` runs one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from lutsr.layered import MAX_SHIFT
from train.degrade import DegradeMix
from train.degrade import parse as parse_degradation

#: A new layered stage's blocks when ``blocks`` is not given.
DEFAULT_BLOCKS = 2


class BuildError(ValueError):
    """A build refused: its configuration, data or starting LUT cannot be used as given."""


@dataclass(frozen=True)
class BuildConfig:
    """One run of the build pipeline (``tools/build_lut.py`` sets one field per flag).

    The phases, each optional: the pattern nets trained and sampled into
    tables (``net_iters``; skipped with ``init``), a linear base fitted
    (``base``), LUT-aware fine-tuning of the tables (``finetune_iters``),
    and the last stage refitted exactly by least squares (``lsq_iters``).
    See :func:`train.build.build`.

    Parameters
    ----------
    data : tuple of str
        Folders of HR training images (searched recursively).
    scale : {2, 3, 4}
    layout : {"srlut", "mulut", "layered"}
        ``srlut``: one stage of pattern S. ``mulut``: ``refine_stages``
        stages at LR (r = 1) of ``patterns``, then the upscaling stage.
        ``layered``: one layered stage (:class:`lutsr.LayeredStage`) of
        ``blocks`` blocks over ``scale**2`` channels (phases net, sample,
        finetune: see :func:`train.build.build`).
    patterns : str
        A mulut layout's patterns, from "S", "D", "Y".
    refine_stages : int
        A mulut layout's stages at LR, 1..4. With ``init`` of a LUT that
        has fewer, the missing ones are inserted before its last stage as
        pixel replication (a way to grow a trained model).
    blocks : int or None
        A layered layout's depthwise + pointwise blocks, 1..8 (default 2;
        with ``init``, its LUT's). More than an ``init`` LUT has appends
        identity blocks (zero tables, unshifted) after its own, a way to
        grow a trained stage before fine-tuning it.
    table_steps : tuple of int
        A layered layout: ``()`` keeps every table at every input level;
        four steps (depthwise, pointwise, low-bit, up layers; 1, 2, 4, 8 or
        16) sample the trained tables that coarsely, then fine-tune them.
    shift_radius : int
        A layered layout: its pointwise layers read each channel at a fixed
        offset within this radius (:func:`train.layered.spread_shifts`; 0: none).
        With ``learn_shifts``, where the learned shifts start.
    learn_shifts : int
        A layered layout: its pointwise layers' shifts are learned, within
        this radius (1..15; 0: the fixed spread alone). A ``shifts`` phase
        before ``net`` trains the tables with continuous offsets, each
        channel sampled bilinearly (:class:`train.layered.LearnedShift`),
        rounds them to integer shifts and fixes them for the later phases.
    shift_iters, shift_lr : int, float
        The ``shifts`` phase's Adam steps (at ``net_lr`` for the tables), and
        the offsets' step size in pixels.
    interval : int
        k: simplex tables sample every ``2**k`` levels.
    base : {"none", "linear"}
        ``linear``: the last stage adds a least-squares linear term over the
        5x5 input pixels around each pixel and its tables fit the residual
        (see :class:`lutsr.Stage`). Fitted by least squares alone: a srlut
        layout with ``net_iters`` 0, or ``init`` (its earlier stages kept),
        and no fine-tuning.
    init : str or None
        A LUT (a .lutsr path or a bundled name, of this layout) to start from
        instead of training and sampling nets; its learned taps are kept.
    tap_window : int or None
        Learned taps (AutoLUT): each table reads 4 learned combinations of
        the W x W window at each pixel, trained with the nets (W at least 3
        for D and Y).
    net_iters, net_lr, net_width, net_depth : int, float, int, int
        Pattern-net training: Adam steps, step size, MLP width and depth.
    finetune_iters, finetune_lr : int, float
        LUT-aware fine-tuning: Adam steps, step size in table units (int8 levels).
    finetune_taps : bool
        Fine-tune the learned taps too, in steps of their stored units.
    finetune_freeze_last : bool
        Fine-tune only the earlier stages; the last keeps its tables (the
        least squares refits it afterwards): alternating optimisation.
    lsq_iters : int
        Conjugate-gradient iterations of the last stage's refit (0: none).
    lsq_prior, lsq_smooth : float
        Pull of the refit toward the tables it starts from, and toward
        smooth tables (see :func:`train.lsq.fit`).
    lsq_no_flips : bool
        Refit on the images only, not also their mirror images (half the
        memory and time).
    scale_aug : tuple of float
        Also train on each HR image downscaled by these factors (e.g. 0.75, 0.5).
    val_every : int
        Hold out every N-th image (sorted by path) and record the LUT's
        Y-PSNR on them (0: train on all).
    degrade_jpeg, degrade_h264 : tuple of int
        ``()`` or ``(lo, hi)``: degrade the training LR (after the bicubic
        downscale; the HR targets stay clean) by JPEG at a quality drawn in
        lo..hi, or by H.264 at a CRF drawn in lo..hi (``train/degrade.py``).
        With both, each degraded image draws one of the two evenly.
    degrade_share : float
        With a degradation given, the share of training LR images (scale
        augmentation copies included, each drawn on its own) degraded; the
        rest stay clean.
    teacher : str or None
        An RLFN state dict (``train/rlfn.py``) of this scale: the training
        targets become its output on each training LR image (run once per
        image, cached: :mod:`train.teacher`), mixed with the HR by
        ``teacher_mix``. Held-out scoring stays against the HR.
    teacher_mix : float
        With ``teacher``, alpha in 0..1: each target is ``alpha * teacher +
        (1 - alpha) * HR`` (1: the teacher's output alone).
    val_degrade : tuple of str
        With ``val_every``, also record the held-out Y-PSNR on LR degraded by
        each of these (``"jpeg:30"``, ``"h264:28"``): how to choose a mix
        without the test sets.
    batch, patch : int
        Mini-batch size and LR patch side of the nets and fine-tuning (every
        training image must be at least ``patch`` pixels in LR).
    seed : int
    threads : int or None
        torch threads (None: torch's default).
    checkpoint_dir : str or None
        Where the phases keep their checkpoints (None: nowhere).
    resume : bool
        Continue from the checkpoints in ``checkpoint_dir``; without it a
        folder that holds some is refused.
    name : str
        The LUT's name.
    """

    data: tuple[str, ...]
    scale: int = 4
    layout: str = "srlut"
    patterns: str = "SDY"
    refine_stages: int = 1
    blocks: int | None = None
    table_steps: tuple[int, ...] = ()
    shift_radius: int = 1
    learn_shifts: int = 0
    shift_iters: int = 1000
    shift_lr: float = 0.02
    interval: int = 4
    base: str = "none"
    init: str | None = None
    tap_window: int | None = None
    net_iters: int = 2000
    net_lr: float = 2e-3
    net_width: int = 64
    net_depth: int = 4
    finetune_iters: int = 0
    finetune_lr: float = 0.5
    finetune_taps: bool = False
    finetune_freeze_last: bool = False
    lsq_iters: int = 40
    lsq_prior: float = 1e-5
    lsq_smooth: float = 1e-4
    lsq_no_flips: bool = False
    scale_aug: tuple[float, ...] = ()
    val_every: int = 0
    degrade_jpeg: tuple[int, ...] = ()
    degrade_h264: tuple[int, ...] = ()
    degrade_share: float = 0.8
    val_degrade: tuple[str, ...] = ()
    teacher: str | None = None
    teacher_mix: float = 1.0
    batch: int = 64
    patch: int = 16
    seed: int = 0
    threads: int | None = None
    checkpoint_dir: str | None = None
    resume: bool = False
    name: str = ""


def degrade_mix(config: BuildConfig) -> DegradeMix:
    """How ``config`` degrades its training LR (inactive without a JPEG or H.264 range)."""
    return DegradeMix(tuple(config.degrade_jpeg), tuple(config.degrade_h264),
                      config.degrade_share, config.seed)


def quick(config: BuildConfig) -> BuildConfig:
    """Tiny settings for CI: a smoke test of the whole pipeline in seconds.

    They replace the phase sizes given (``--quick`` on the command line);
    with ``base="linear"`` the least squares alone.
    """
    small = dict(net_iters=20, finetune_iters=10, lsq_iters=3, batch=4, patch=16, net_width=16,
                 net_depth=2, interval=max(config.interval, 6))
    if config.layout == "layered":
        small.update(lsq_iters=0, blocks=config.blocks and min(config.blocks, 2))
        if config.learn_shifts:
            small.update(shift_iters=10)
    if config.base == "linear":
        small.update(net_iters=0, finetune_iters=0)
    return dataclasses.replace(config, **small)


def _check_learned_shifts(config: BuildConfig) -> None:
    if not config.learn_shifts:
        if (config.shift_iters, config.shift_lr) != (BuildConfig.shift_iters,
                                                     BuildConfig.shift_lr):
            raise BuildError("config.shift_iters and config.shift_lr are for "
                             "config.learn_shifts")
        return
    if config.init:
        raise BuildError("config.learn_shifts learns the shifts with new tables; config.init "
                         "keeps its LUT's own shifts")
    if not config.shift_radius <= config.learn_shifts <= MAX_SHIFT:
        raise BuildError(f"config.learn_shifts takes a radius in "
                         f"{max(config.shift_radius, 1)}..{MAX_SHIFT} (at least "
                         f"config.shift_radius, where the shifts start)")
    if config.shift_iters < 1 or config.shift_lr <= 0 or config.net_lr <= 0:
        raise BuildError("config.learn_shifts needs config.shift_iters at least 1 and a "
                         "positive config.shift_lr and config.net_lr")


def _check_teacher(config: BuildConfig) -> None:
    if config.teacher is None:
        if config.teacher_mix != BuildConfig.teacher_mix:
            raise BuildError("config.teacher_mix mixes a teacher's output into the targets: it "
                             "needs config.teacher")
        return
    if not 0 <= config.teacher_mix <= 1:
        raise BuildError(f"config.teacher_mix must be in 0..1, got {config.teacher_mix}")
    if not Path(config.teacher).is_file():
        raise BuildError(f"config.teacher={config.teacher!r}: no such file")


def check(config: BuildConfig) -> None:
    """Raise :class:`BuildError` if ``config`` asks for something the pipeline does not do.

    Its message names the fields as ``config.tap_window``, and a field with
    its value as ``config.layout='mulut'`` (the command line
    :mod:`train.build_lut` rewrites them as its flags).
    """
    choices = {"scale": (2, 3, 4), "layout": ("srlut", "mulut", "layered"),
               "base": ("none", "linear")}
    for key, allowed in choices.items():
        if getattr(config, key) not in allowed:
            raise BuildError(f"config.{key}={getattr(config, key)!r} is not one of {allowed}")
    if not config.data:
        raise BuildError("no training data folders given (config.data)")
    if config.tap_window is not None and config.init:
        raise BuildError("config.tap_window trains new taps with the nets; config.init keeps "
                         "its LUT's own")
    if config.refine_stages != 1 and (config.layout != "mulut"
                                      or not 1 <= config.refine_stages <= 4):
        raise BuildError("config.refine_stages needs config.layout='mulut' and a value in "
                         "1..4")
    if config.layout == "layered":
        clashes = [field for field, on in (
            ("config.base='linear'", config.base != "none"),
            ("config.tap_window", config.tap_window),
            ("config.finetune_taps", config.finetune_taps),
            ("config.finetune_freeze_last", config.finetune_freeze_last),
            ("config.refine_stages", config.refine_stages != 1),
            ("config.lsq_iters", config.lsq_iters))
            if on]
        if clashes:
            raise BuildError(f"config.layout='layered' trains its tables by gradient alone; it "
                             f"does not combine with {', '.join(clashes)}")
        if not 1 <= (config.blocks or DEFAULT_BLOCKS) <= 8 or not 0 <= config.shift_radius <= 3:
            raise BuildError("config.blocks must be in 1..8 and config.shift_radius in 0..3")
        if config.table_steps and (len(config.table_steps) != 4
                                   or not set(config.table_steps) <= {1, 2, 4, 8, 16}):
            raise BuildError("config.table_steps takes four steps (depthwise, pointwise, "
                             "low-bit, up), each 1, 2, 4, 8 or 16")
        _check_learned_shifts(config)
    elif (config.table_steps or config.blocks is not None or config.shift_radius != 1
          or config.learn_shifts):
        raise BuildError("config.blocks, config.table_steps, config.shift_radius and "
                         "config.learn_shifts are for config.layout='layered'")
    if config.resume and not config.checkpoint_dir:
        raise BuildError("config.resume needs a checkpoint folder (config.checkpoint_dir)")
    try:
        degrade_mix(config)
    except ValueError as exc:
        raise BuildError(f"config.degrade_jpeg, config.degrade_h264, config.degrade_share: "
                         f"{exc}") from None
    try:
        for spec in config.val_degrade:
            parse_degradation(spec)
    except ValueError as exc:
        raise BuildError(f"config.val_degrade: {exc}") from None
    _check_teacher(config)
    if config.val_degrade and not config.val_every:
        raise BuildError("config.val_degrade scores the held-out images: it needs "
                         "config.val_every")
    if config.base == "linear":
        clashes = [field for field, on in (
            ("config.layout='mulut' without config.init",
             config.layout != "srlut" and not config.init),
            ("config.net_iters", config.net_iters and not config.init),
            ("config.finetune_iters", config.finetune_iters),
            ("config.lsq_iters=0", not config.lsq_iters)) if on]
        if clashes:
            raise BuildError(
                f"config.base='linear' is fitted by least squares alone, on the last stage "
                f"(config.layout='srlut' with config.net_iters=0, or config.init for the stages "
                f"before it); it does not combine with {', '.join(clashes)}")
