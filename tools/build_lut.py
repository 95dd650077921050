#!/usr/bin/env python
"""Train a LUT model on a folder of images and write it as a .lutsr file.

Phases, each optional and each recorded in the LUT's metadata with its CPU time:

1. net: train the pattern nets (runtime semantics, 4-rotation ensemble; with
   ``--tap-window``, each table's 4 inputs are learned combinations of a window
   of pixels, trained with them: ``lutsr.Stage.taps``);
2. sample: evaluate the nets on the uniform input grid into int8 tables
   (``--first-stage prefilter``: a multi-stage layout's first stage is then
   fitted by least squares to a sharpened LR image instead, see
   train/data.py:prefilter);
3. finetune: LUT-aware fine-tuning, the table values optimised through the
   differentiable simplex interpolation (all stages jointly);
4. lsq: the last stage's tables re-fitted exactly by least squares over the
   whole training set, with the earlier stages fixed (see train/lsq.py);
   with ``--base linear``, over the residual of a linear term fitted first
   (see train/base.py).

Example::

    python tools/build_lut.py --data ../shared/data/train --scale 4 --out x4.lutsr
    python tools/build_lut.py --quick --data DIR --out /tmp/q.lutsr    # a CI-sized run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lutsr  # noqa: E402
from train import data as tdata  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, help="folders of HR training images")
    p.add_argument("--out", required=True, help="output .lutsr file")
    p.add_argument("--scale", type=int, default=4, choices=(2, 3, 4))
    p.add_argument("--layout", choices=("srlut", "mulut"), default="srlut",
                   help="srlut: one stage; mulut: refinement stage(s) at LR (--refine-stages) then "
                        "the upscaling stage")
    p.add_argument("--patterns", default="SDY", help="patterns of a mulut layout (S, D, Y)")
    p.add_argument("--first-divisor", type=float, default=None, metavar="D",
                   help="a mulut layout's first stage outputs sum / D + 127 (default 4 * "
                        "patterns, MuLUT's: a table entry then spans no more than the output); "
                        "a smaller D lets its int8 entries reach further")
    p.add_argument("--refine-stages", type=int, default=1, metavar="N",
                   help="a mulut layout's stages at LR (r = 1) before the upscaling stage; with "
                        "--init of a LUT with fewer, the missing ones are inserted before its last "
                        "stage as pixel replication (a way to grow a trained model)")
    p.add_argument("--interval", type=int, default=4, help="k: sample every 2**k levels")
    p.add_argument("--base", choices=("none", "linear"), default="none",
                   help="linear: the last stage adds a least-squares linear term over the 5x5 "
                        "input pixels around each pixel and its tables fit the residual (see "
                        "lutsr.Stage); least squares only: --layout srlut --net-iters 0, or --init "
                        "LUT (its earlier stages kept) and no fine-tuning")
    p.add_argument("--init", default=None, metavar="LUT",
                   help="start from this LUT's tables (a .lutsr path or bundled name of the same "
                        "layout) instead of training and sampling nets: continues its fine-tuning "
                        "and least-squares phases")
    p.add_argument("--tap-window", type=int, default=None, metavar="W",
                   help="learned taps (AutoLUT): each table reads 4 learned combinations of the "
                        "W x W window at each pixel instead of its fixed pattern's 4 pixels, "
                        "trained with the nets (W at least 3 for D and Y)")
    p.add_argument("--net-iters", type=int, default=2000)
    p.add_argument("--net-lr", type=float, default=2e-3)
    p.add_argument("--net-width", type=int, default=64)
    p.add_argument("--net-depth", type=int, default=4)
    p.add_argument("--finetune-iters", type=int, default=0)
    p.add_argument("--finetune-lr", type=float, default=0.5,
                   help="Adam step size in table units (int8 levels)")
    p.add_argument("--finetune-taps", action="store_true",
                   help="fine-tune the learned taps too (of a LUT that has them: --tap-window, "
                        "or --init of such a LUT), in steps of their stored units")
    p.add_argument("--finetune-freeze-last", action="store_true",
                   help="fine-tune only the earlier stages; the last stage keeps its tables (the "
                        "lsq phase refits it exactly afterwards): alternating optimisation")
    p.add_argument("--lsq-iters", type=int, default=40, help="CG iterations (0: skip)")
    p.add_argument("--lsq-prior", type=float, default=1e-5,
                   help="pull of the least-squares fit toward the sampled tables")
    p.add_argument("--lsq-smooth", type=float, default=1e-4, help="grid smoothness weight")
    p.add_argument("--lsq-no-flips", action="store_true",
                   help="least squares on the images only, not also their mirror images "
                        "(halves its memory and time)")
    p.add_argument("--lsq-balance", type=float, default=0.0, metavar="ALPHA",
                   help="weight each image's pixels by (mean pixels / its pixels)**ALPHA in the "
                        "least squares: 0 every pixel counts the same, 1 every image")
    p.add_argument("--lsq-reweight", type=int, default=0, metavar="N",
                   help="refit the last stage N more times, each image's pixels weighted by 1 / "
                        "its MSE under the previous fit: toward the mean of per-image PSNRs (the "
                        "papers' metric) rather than the PSNR of all pixels pooled")
    p.add_argument("--lsq-luma", action="store_true",
                   help="least squares on the luma of the RGB output (the papers' metric) "
                        "instead of on each channel's own error")
    p.add_argument("--lsq-clip-rounds", type=int, default=0, metavar="N",
                   help="refit N more times, each time not penalising outputs that overshoot a "
                        "target of 0 or 255 (the runtime clips them to it)")
    p.add_argument("--lsq-skip-border", action="store_true",
                   help="leave the outermost LR pixel ring out of the least squares: its outputs "
                        "are made from padding and the papers' metric shaves them")
    p.add_argument("--first-stage", choices=("net", "prefilter"), default="net",
                   help="a multi-stage layout's first stage: the sampled net (untrained: pixel "
                        "replication), or its tables fitted by least squares to the LR image whose "
                        "bicubic upscale is closest to the HR image (a sharper input for the next "
                        "stage; see train.data.prefilter)")
    p.add_argument("--lsq-first", action="store_true",
                   help="also refit the last stage before fine-tuning, so fine-tuning starts "
                        "from the best last stage for the sampled earlier stages")
    p.add_argument("--scale-aug", type=float, nargs="*", default=[],
                   help="also train on each HR image downscaled by these factors (e.g. 0.75 0.5)")
    p.add_argument("--shift-aug", type=_shift, nargs="*", default=[], metavar="DY,DX",
                   help="also train on each HR image cropped by these offsets (HR pixels, below "
                        "the scale, e.g. 2,2): the same photos sampled on a shifted LR grid")
    p.add_argument("--invert-aug", action="store_true",
                   help="also train on the photographic negative (255 - HR) of every HR image")
    p.add_argument("--val-every", type=int, default=0, metavar="N",
                   help="hold out every N-th image (sorted by path) and report the LUT's Y-PSNR on "
                        "them; how the defaults here were chosen (0: train on all)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--patch", type=int, default=16,
                   help="LR patch side (every training image must be at least this big in LR)")
    p.add_argument("--patch-margin", type=int, default=0, metavar="M",
                   help="net and fine-tuning patches carry M more LR pixels of context on "
                        "each side, outside the loss, so that outputs next to a patch's "
                        "border are not trained on padding (images smaller than "
                        "patch + 2M in LR are left out of those phases)")
    p.add_argument("--threads", type=int, default=None, help="torch/numba threads")
    p.add_argument("--checkpoint-dir", default=None,
                   help="where phase checkpoints go (default: <out>.ckpt/)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints")
    p.add_argument("--name", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="tiny settings for CI: a smoke test of the whole pipeline")
    args = p.parse_args(argv)
    if args.quick:
        args.net_iters, args.finetune_iters, args.lsq_iters = 20, 10, 3
        args.batch, args.patch, args.net_width, args.net_depth = 4, 16, 16, 2
        args.interval = max(args.interval, 6)
        if args.base == "linear":  # least squares alone
            args.net_iters = args.finetune_iters = 0
    if args.tap_window is not None and args.init:
        p.error("--tap-window trains new taps with the nets; --init keeps its LUT's own")
    if args.patch_margin < 0:
        p.error("--patch-margin must be 0 or more")
    if args.first_divisor is not None and (args.layout != "mulut" or not args.first_divisor > 0):
        p.error("--first-divisor needs --layout mulut and a positive value")
    if args.refine_stages != 1 and (args.layout != "mulut" or not 1 <= args.refine_stages <= 4):
        p.error("--refine-stages needs --layout mulut and a value in 1..4")
    if args.base == "linear":
        clashes = [flag for flag, on in (
            ("--layout mulut without --init", args.layout != "srlut" and not args.init),
            ("--net-iters", args.net_iters and not args.init),
            ("--finetune-iters", args.finetune_iters), ("--first-stage prefilter",
                                                        args.first_stage == "prefilter"),
            ("--lsq-luma", args.lsq_luma), ("--lsq-clip-rounds", args.lsq_clip_rounds),
            ("--lsq-reweight", args.lsq_reweight), ("--lsq-iters 0", not args.lsq_iters)) if on]
        if clashes:
            p.error(f"--base linear is fitted by least squares alone, on the last stage (--layout "
                    f"srlut --net-iters 0, or --init LUT for the stages before it); it does not "
                    f"combine with {', '.join(clashes)}")
    if args.first_stage == "prefilter" and (args.layout != "mulut" or not args.lsq_iters):
        p.error("--first-stage prefilter needs a layout of two stages (--layout mulut) and "
                "--lsq-iters above 0")
    return args


def _shift(text: str) -> tuple[int, int]:
    try:
        dy, dx = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not DY,DX (two integers)") from None
    return dy, dx


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        print("error: training needs torch: pip install 'lutsr[train]'", file=sys.stderr)
        return 2
    from train import fit, lsq
    from train.nets import NetModel, TableModel, mulut_layout, srlut_layout, to_lut

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    ckdir = Path(args.checkpoint_dir or f"{out}.ckpt")
    ckdir.mkdir(parents=True, exist_ok=True)
    if not args.resume and any(ckdir.glob("*.pt")):
        print(f"error: {ckdir} holds checkpoints; pass --resume to continue them or remove them",
              file=sys.stderr)
        return 2
    layout = (srlut_layout(args.scale) if args.layout == "srlut"
              else mulut_layout(args.scale, args.patterns.upper(), args.first_divisor,
                                args.refine_stages))
    if not args.init:
        try:
            net = NetModel(layout, args.net_width, args.net_depth, args.tap_window)
        except ValueError as exc:
            print(f"error: --tap-window: {exc}", file=sys.stderr)
            return 2
    log = print
    meta = {"layout": args.layout, "data": [str(Path(d).resolve().name) for d in args.data],
            "args": {k: v for k, v in vars(args).items() if k not in ("out", "checkpoint_dir")},
            "machine": f"{platform.machine()} {platform.processor() or ''} "
                       f"{torch.get_num_threads()} torch threads".strip(),
            "phases": {}}
    t0 = time.process_time()
    try:
        files = tdata.list_images(args.data)
        held_out = files[::args.val_every] if args.val_every else []
        skip = set(held_out)
        train_files = [f for f in files if f not in skip]
        groups = tdata.load_groups(train_files, args.scale, min_size=args.patch,
                                   scale_aug=args.scale_aug, log=log,
                                   shift_aug=args.shift_aug, invert_aug=args.invert_aug)
        pairs = [pair for group in groups for pair in group]
        weights = tdata.balance_weights(groups, args.lsq_balance)
        val_pairs = tdata.load_pairs(held_out, args.scale)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta["images"] = len(train_files)
    meta["training_pairs"] = len(pairs)
    meta["phases"]["data"] = {"cpu_seconds": round(time.process_time() - t0, 1)}
    log(f"{len(train_files)} training images ({len(pairs)} with scale augmentation), "
        f"x{args.scale}, layout {args.layout}")
    try:
        sampler = fit.PatchSampler(pairs, args.scale, args.patch, seed=args.seed,
                                   margin=args.patch_margin)
    except ValueError as exc:
        print(f"error: {exc} (--patch plus twice --patch-margin)", file=sys.stderr)
        return 2
    if len(sampler.pairs) < len(pairs):
        log(f"patches: {len(pairs) - len(sampler.pairs)} of {len(pairs)} training pairs are "
            f"below {sampler.side} LR pixels and left out of patch sampling")

    if args.init:
        layout, tables, meta["init"] = _init_tables(args.init, layout, args.interval)
    else:
        if args.net_iters:
            config = {"layout": [dataclasses.asdict(s) for s in layout], "width": args.net_width,
                      "depth": args.net_depth, "tap_window": args.tap_window}
            state = fit.optimise(net, sampler, args.net_iters, args.net_lr, args.batch,
                                 ckdir / "net.pt", log=log, desc="net", config=config)
            meta["phases"]["net"] = _phase(state)
        t0 = time.process_time()
        tables = net.sample_tables(args.interval)
        layout = net.tapped_layout()
        meta["phases"]["sample"] = {"cpu_seconds": round(time.process_time() - t0, 1)}

    base = None
    if args.base == "linear":
        t0 = time.process_time()
        layout = (*layout[:-1], _power_of_two_divisor(layout[-1], log))
        base = _fit_base(layout, tables, args, pairs, weights, ckdir / "base.npy")
        tables[-1] = [np.zeros_like(t) for t in tables[-1]]  # the residual starts at 0
        meta["phases"]["base"] = {"cpu_seconds": round(time.process_time() - t0, 1)}
        gain = base.sum((2, 3)).mean() / 2**lutsr.model.BASE_BITS
        log(f"base: linear, weights sum to {gain:.4f} on average")

    if args.first_stage == "prefilter":
        t0 = time.process_time()
        prefiltered = [(lr, tdata.prefilter(hr, args.scale)) for lr, hr in pairs]
        tables[0], psnr = _fit_stage(0, layout, tables, args, prefiltered, weights, lsq, log,
                                     ckdir / "lsq_stage1.npy")
        meta["phases"]["lsq_stage1"] = {"iterations": args.lsq_iters, "train_psnr": psnr,
                                        "cpu_seconds": round(time.process_time() - t0, 1)}

    if args.lsq_iters and args.lsq_first and args.finetune_iters:
        t0 = time.process_time()
        tables[-1], _ = _fit_stage(-1, layout, tables, args, pairs, weights, lsq, log,
                                   ckdir / "lsq_first.npy")
        meta["phases"]["lsq_first"] = {"iterations": args.lsq_iters,
                                       "cpu_seconds": round(time.process_time() - t0, 1)}

    if args.finetune_iters:
        tm = TableModel(layout, tables, args.interval, learn_taps=args.finetune_taps)
        if args.finetune_taps and not tm.tap_steps:
            _fail("--finetune-taps: the model has no learned taps (--tap-window, or --init of "
                  "a LUT with them)")
        if args.finetune_freeze_last:
            tm.tables[-1].requires_grad_(False)
        state = fit.optimise(tm, sampler, args.finetune_iters, args.finetune_lr, args.batch,
                             ckdir / "finetune.pt", log=log, desc="finetune")
        meta["phases"]["finetune"] = _phase(state)
        tables, layout = tm.int8_tables(), tm.tapped_layout()

    if args.lsq_iters:
        t0 = time.process_time()
        fit_weights = weights
        for round_ in range(args.lsq_reweight + 1):
            if round_:
                errors = tdata.error_weights(pairs, to_lut(layout, tables, args.interval))
                fit_weights = [w * e for w, e in zip(weights, errors)]
            tables[-1], psnr = _fit_stage(-1, layout, tables, args, pairs, fit_weights, lsq, log,
                                          ckdir / (f"lsq_reweight{round_}.npy" if round_
                                                   else "lsq.npy"), base)
        meta["phases"]["lsq"] = {"iterations": args.lsq_iters, "train_psnr": psnr,
                                 "reweight_rounds": args.lsq_reweight,
                                 "cpu_seconds": round(time.process_time() - t0, 1)}

    # End to end from images: a LUT started from another one also cost what that one did.
    meta["cpu_seconds_total"] = round(sum(p["cpu_seconds"] for p in meta["phases"].values())
                                      + meta.get("init", {}).get("cpu_seconds_total", 0.0), 1)
    name = args.name or out.stem
    if val_pairs:
        from lutsr.metrics import psnr_y

        val_lut = to_lut(layout, tables, args.interval, base=base)
        scores = [psnr_y(lutsr.upscale(lr, val_lut), hr, args.scale) for lr, hr in val_pairs]
        # Per data folder too: folders of different kinds of image disagree.
        folders = [next(Path(d).name for d in args.data if Path(d) in f.parents)
                   for f in held_out]
        meta["validation"] = {
            "images": len(val_pairs), "psnr_y": round(float(np.mean(scores)), 4),
            "psnr_y_by_folder": {folder: round(float(np.mean(
                [v for v, f in zip(scores, folders) if f == folder])), 4)
                for folder in dict.fromkeys(folders)}}
        log(f"validation: {meta['validation']}")
    lut = to_lut(layout, tables, args.interval, name=name, metadata=meta, base=base)
    lutsr.save(lut, out)
    log(lut.describe())
    log(json.dumps(meta["phases"]))
    log(f"wrote {out}")
    return 0


def _fail(message: str):
    """Exit with status 2 and ``error: message`` on stderr, as every refused input does."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _init_tables(source: str, layout, interval: int):
    """An existing LUT's layout (with its learned taps), int8 tables, and what to record.

    A LUT that lacks some of the layout's middle stages (it has the first
    and the last, and fewer between) gets them as pixel replication, the
    untrained nets' tables, inserted before its last stage.
    """
    from train.nets import NetModel, layout_of

    try:
        lut = lutsr.api.resolve_lut(source)
    except (ValueError, OSError) as exc:  # LUTFormatError is a ValueError
        _fail(f"--init {source}: {exc}")
    if any(s.base is not None for s in lut.stages):
        _fail(f"--init {source}: its tables fit the residual of a linear base (--base "
              "linear), which later phases do not model")
    have, want = layout_of(lut), tuple(layout)
    k = len(have) - 1  # the stages before the last
    if (not 1 <= len(have) <= len(want) or have[:k] != want[:k] or have[-1] != want[-1]
            or lut.interval != interval):
        _fail(f"--init {source}: its layout {have} (interval {lut.interval}) is not {want} "
              f"(interval {interval}) or the start of it")
    tables = [list(s.tables) for s in lut.stages]
    missing = want[k:-1]
    if missing:
        tables[k:k] = NetModel(missing, width=1, depth=1).sample_tables(interval)
    return ((*have[:k], *missing, have[-1]), tables,
            {"lut": lut.name, "cpu_seconds_total": lut.metadata.get("cpu_seconds_total", 0.0),
             "phases": lut.metadata.get("phases", {})})


def _phase(state: dict) -> dict:
    return {"iterations": int(state["iteration"]), "cpu_seconds": round(state["cpu_seconds"], 1),
            "train_mse": round(float(state["loss"]), 3)}


def _stage_inputs(k: int, layout, tables, args, pairs, weights):
    """((input plane of stage ``k``, target), weight) of every training plane (and mirror).

    The input is the LR plane run through the stages before ``k``.
    """
    from train.nets import to_lut

    earlier = to_lut(layout[:k], tables[:k], args.interval) if k else None
    for (lr, target), weight in tdata.plane_pairs(pairs, not args.lsq_no_flips, weights,
                                                  split=not args.lsq_luma):
        yield ((lr if earlier is None else lutsr.upscale(lr, earlier), target), weight)


def _power_of_two_divisor(spec, log):
    """``spec`` with its divisor raised to a power of two if it is not one: a base needs that.

    (S+D+Y: 3 -> 4. The stage's tables are fitted afresh over the base, so the
    divisor only sets their scale.)
    """
    divisor = 2.0 ** np.ceil(np.log2(spec.divisor))
    if divisor == spec.divisor:
        return spec
    log(f"base: the last stage's divisor {spec.divisor:g} becomes {divisor:g} (a power of two)")
    return dataclasses.replace(spec, divisor=divisor)


def _fit_base(layout, tables, args, pairs, weights, cache: Path) -> np.ndarray:
    """The last stage's linear base, fitted by least squares on its inputs (kept in ``cache``)."""
    from train.base import fit_linear_base

    if args.resume and cache.exists():
        return np.load(cache)
    k = len(layout) - 1
    planes = list(_stage_inputs(k, layout, tables, args, pairs, weights))
    base = fit_linear_base([pair for pair, _ in planes], layout[k].r, layout[k].padding,
                           [w for _, w in planes])
    np.save(cache, base)
    return base


def _fit_stage(k: int, layout, tables, args, pairs, weights, lsq, log, cache: Path,
               base=None):
    """Least-squares fit of stage ``k``'s tables, its inputs computed by the stages before it.

    ``pairs`` hold (LR, target of stage ``k``): the HR image for the last
    stage. With ``base`` (of the last stage), the tables fit the target less
    that linear term. Returns the int8 tables and the stage's training
    PSNR with them (None when reused). The result is kept in ``cache`` so
    that ``--resume`` does not redo it.
    """
    from train.base import residual_target
    from train.nets import to_lut

    if args.resume and cache.exists():
        log(f"lsq: reusing {cache}")
        return list(np.load(cache)), None

    k = k % len(layout)
    spec = layout[k]
    planes, plane_weights = [], []
    for (lr, target), weight in _stage_inputs(k, layout, tables, args, pairs, weights):
        if base is not None:
            target = residual_target(lr, target, base, spec.padding)
        planes.append((lr, target))
        plane_weights.append(weight)
    stage = lutsr.Stage(spec.r, spec.patterns, tuple(tables[k]), spec.divisor, spec.bias,
                        spec.padding, taps=spec.taps)
    samples = lsq.collect(stage, args.interval, planes, weights=plane_weights,
                          mix=lsq.LUMA_MIX if args.lsq_luma else None,
                          margin=1 if args.lsq_skip_border else 0)
    log(f"lsq: {len(samples)} samples")
    prior = np.stack(tables[k]).astype(np.float64)
    fitted = lsq.fit(samples, stage, args.interval, prior, prior_weight=args.lsq_prior,
                     smooth_weight=args.lsq_smooth, iters=args.lsq_iters, log=log,
                     clip_rounds=args.lsq_clip_rounds)
    result = np.clip(np.round(fitted), -128, 127).astype(np.int8)
    np.save(cache, result)
    if base is not None:  # the residual is not the output: run the model itself
        lut = to_lut(layout, [*tables[:-1], list(result)], args.interval, base=base)
        del samples, planes
        mse = tdata.pair_mse(pairs, lut).mean()
        return list(result), round(10 * np.log10(255**2 / mse), 3)
    # The stage's real output: int8 tables, rounded and clipped like the runtime; every
    # pixel counts. (With --lsq-luma: of the luma mix, rounded and clipped as a whole,
    # where the runtime does that per channel: close, not exact.)
    mse = lsq.mse(samples, result, stage, args.interval, rounded=True, weighted=False)
    return list(result), round(10 * np.log10(255**2 / mse), 3)


if __name__ == "__main__":
    sys.exit(main())
