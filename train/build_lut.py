"""Train a LUT model on folders of images and write it as a .lutsr file.

The command line of :func:`train.build.build` (``tools/build_lut.py`` runs
:func:`main`), whose docstring describes the phases: each flag sets the field
of :class:`train.config.BuildConfig` of the same name (:data:`FLAGS`), and
the phases keep their checkpoints in ``<out>.ckpt/``. The library's refusals
name those fields (``config.tap_window``); :func:`in_flags` tells the user
them as flags (``--tap-window``).

Example::

    python tools/build_lut.py --data ../shared/data/train --scale 4 --out x4.lutsr
    python tools/build_lut.py --quick --data DIR --out /tmp/q.lutsr    # a CI-sized run
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import re
import sys
from pathlib import Path

from train.config import BuildConfig, BuildError, check, quick

#: Each field of :class:`BuildConfig` and the flag that sets it (argparse's rule:
#: ``tap_window`` is set by ``--tap-window``).
FLAGS = {f.name: "--" + f.name.replace("_", "-") for f in dataclasses.fields(BuildConfig)}

# A field as the library's messages name it, ``config.tap_window``, or with a value,
# ``config.layout='mulut'`` or ``config.lsq_iters=0``; not inside a path or a word.
_FIELD = re.compile(r"(?<![\w./\\-])config\.(\w+)"
                    r"""(?:=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s,;:()]+))?""")


def in_flags(message: str) -> str:
    """A :class:`BuildError`'s message in the command line's terms.

    ``config.tap_window`` becomes ``--tap-window``, and ``config.layout='mulut'``
    becomes ``--layout mulut``; what names no field is left as it is.
    """
    def flag(match: re.Match) -> str:
        field, value = match.groups()
        if field not in FLAGS:
            return match.group(0)
        if value is None:
            return FLAGS[field]
        if value[0] in "'\"":
            value = ast.literal_eval(value)
        return f"{FLAGS[field]} {value}"

    return _FIELD.sub(flag, message)


def parse_args(argv=None) -> tuple[BuildConfig, Path]:
    """The build's configuration and the output path; exits with status 2 on bad flags."""
    p = _parser()
    args = p.parse_args(argv)
    out = Path(args.out)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(BuildConfig)}
    if given["lsq_iters"] is None:  # a layered stage has no least-squares phase
        given["lsq_iters"] = 0 if args.layout == "layered" else BuildConfig.lsq_iters
    config = BuildConfig(**{**given, "data": tuple(args.data), "scale_aug": tuple(args.scale_aug),
                            **{k: tuple(given[k]) for k in ("degrade_jpeg", "degrade_h264",
                                                            "val_degrade", "table_steps")},
                            "name": args.name or out.stem,
                            "checkpoint_dir": args.checkpoint_dir or f"{out}.ckpt"})
    if args.quick:
        config = quick(config)
    try:
        check(config)
    except BuildError as exc:
        p.error(in_flags(str(exc)))
    return config, out


def _parser() -> argparse.ArgumentParser:
    """The flags: one per field of :class:`BuildConfig` (its defaults; ``--lsq-iters``'s
    depends on ``--layout``), ``--out`` and ``--quick``, in the order ``--help`` lists them."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, help="folders of HR training images")
    p.add_argument("--out", required=True, help="output .lutsr file")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), help="upscaling factor")
    _layout_flags(p)
    _phase_flags(p)
    _data_flags(p)
    p.add_argument("--batch", type=int, help="patches per Adam step")
    p.add_argument("--patch", type=int,
                   help="LR patch side (every training image must be at least this big in LR)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--checkpoint-dir", help="where phase checkpoints go (default: <out>.ckpt/)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints")
    p.add_argument("--name", help="the LUT's name (default: the output file's stem)")
    p.add_argument("--seed", type=int, help="of torch and the patch sampler")
    p.add_argument("--quick", action="store_true",
                   help="tiny settings for CI (they replace the phase sizes given): a smoke "
                        "test of the whole pipeline")
    p.set_defaults(**{**{f.name: f.default for f in dataclasses.fields(BuildConfig)
                         if f.default is not dataclasses.MISSING},
                      "lsq_iters": None})
    return p


def _layout_flags(p: argparse.ArgumentParser) -> None:
    """What is trained: the layout, its stages or blocks, and where it starts."""
    p.add_argument("--layout", choices=("srlut", "mulut", "layered"),
                   help="srlut: one stage; mulut: refinement stage(s) at LR (--refine-stages) then "
                        "the upscaling stage; layered: a network of 1-D tables (ShiftLUT-like)")
    p.add_argument("--blocks", type=int,
                   help="a layered layout's depthwise+pointwise blocks (2; with --init its LUT's, "
                        "more appends identity blocks to train)")
    p.add_argument("--table-steps", type=int, nargs=4, metavar=("DW", "PW", "LOW", "UP"),
                   help="a layered layout: sample the trained tables every this many levels "
                        "(per layer kind), then fine-tune them (default: every level)")
    p.add_argument("--shift-radius", type=int,
                   help="a layered layout: pointwise layers read channels shifted within this "
                        "radius (0: none)")
    p.add_argument("--learn-shifts", type=int, metavar="R",
                   help="a layered layout: learn the pointwise layers' shifts within radius R "
                        "(a shifts phase before the net phase, starting from --shift-radius's "
                        "spread; 0: the fixed spread)")
    p.add_argument("--shift-iters", type=int,
                   help="with --learn-shifts, Adam steps of the shifts phase")
    p.add_argument("--shift-lr", type=float,
                   help="with --learn-shifts, the offsets' Adam step size in pixels")
    p.add_argument("--patterns", help="patterns of a mulut layout (S, D, Y)")
    p.add_argument("--refine-stages", type=int, metavar="N",
                   help="a mulut layout's stages at LR (r = 1) before the upscaling stage; with "
                        "--init of a LUT with fewer, the missing ones are inserted before its last "
                        "stage as pixel replication (a way to grow a trained model)")
    p.add_argument("--interval", type=int, help="k: sample every 2**k levels")
    p.add_argument("--base", choices=("none", "linear"),
                   help="linear: the last stage adds a least-squares linear term over the 5x5 "
                        "input pixels around each pixel and its tables fit the residual (see "
                        "lutsr.Stage); least squares only: --layout srlut --net-iters 0, or --init "
                        "LUT (its earlier stages kept) and no fine-tuning")
    p.add_argument("--init", metavar="LUT",
                   help="start from this LUT's tables (a .lutsr path or bundled name of the same "
                        "layout) instead of training and sampling nets: continues its fine-tuning "
                        "and least-squares phases")
    p.add_argument("--tap-window", type=int, metavar="W",
                   help="learned taps (AutoLUT): each table reads 4 learned combinations of the "
                        "W x W window at each pixel instead of its fixed pattern's 4 pixels, "
                        "trained with the nets (W at least 3 for D and Y)")


def _phase_flags(p: argparse.ArgumentParser) -> None:
    """The phases' sizes: nets, fine-tuning, least squares."""
    p.add_argument("--net-iters", type=int, help="Adam steps of the pattern nets (0: none)")
    p.add_argument("--net-lr", type=float, help="their Adam step size")
    p.add_argument("--net-width", type=int, help="their MLP width")
    p.add_argument("--net-depth", type=int, help="their hidden layers")
    p.add_argument("--finetune-iters", type=int, help="Adam steps of LUT-aware fine-tuning")
    p.add_argument("--finetune-lr", type=float, help="Adam step size in table units (int8 levels)")
    p.add_argument("--finetune-taps", action="store_true",
                   help="fine-tune the learned taps too (of a LUT that has them: --tap-window, "
                        "or --init of such a LUT), in steps of their stored units")
    p.add_argument("--finetune-freeze-last", action="store_true",
                   help="fine-tune only the earlier stages; the last stage keeps its tables (the "
                        "lsq phase refits it exactly afterwards): alternating optimisation")
    p.add_argument("--lsq-iters", type=int,
                   help="CG iterations (0: skip; default 40, and 0 for --layout layered)")
    p.add_argument("--lsq-prior", type=float,
                   help="pull of the least-squares fit toward the sampled tables")
    p.add_argument("--lsq-smooth", type=float, help="grid smoothness weight")
    p.add_argument("--lsq-no-flips", action="store_true",
                   help="least squares on the images only, not also their mirror images "
                        "(halves its memory and time)")


def _data_flags(p: argparse.ArgumentParser) -> None:
    """What the phases train on and are scored on: augmentation, held-out images,
    degradations, a teacher."""
    p.add_argument("--scale-aug", type=float, nargs="*",
                   help="also train on each HR image downscaled by these factors (e.g. 0.75 0.5)")
    p.add_argument("--val-every", type=int, metavar="N",
                   help="hold out every N-th image (sorted by path) and record the LUT's Y-PSNR "
                        "on them in its metadata (0: train on all)")
    p.add_argument("--degrade-jpeg", type=int, nargs=2, metavar=("LO", "HI"),
                   help="degrade training LR by Pillow JPEG at a quality drawn in LO..HI (the HR "
                        "targets stay clean)")
    p.add_argument("--degrade-h264", type=int, nargs=2, metavar=("LO", "HI"),
                   help="degrade training LR by H.264 (libx264, one intra frame) at a CRF drawn in "
                        "LO..HI")
    p.add_argument("--degrade-share", type=float,
                   help="with --degrade-jpeg/--degrade-h264, the share of training LR images "
                        "degraded (the rest stay clean)")
    p.add_argument("--val-degrade", nargs="+", metavar="SPEC",
                   help="with --val-every, also record the held-out Y-PSNR on LR degraded by each "
                        "of these (jpeg:Q, h264:CRF)")
    p.add_argument("--teacher", metavar="PTH",
                   help="an RLFN state dict of this scale (../shared/models/rlfn/): train toward "
                        "its output on each training LR image instead of the HR (held-out scoring "
                        "stays against the HR)")
    p.add_argument("--teacher-mix", type=float, metavar="A",
                   help="with --teacher, each target is A * teacher + (1 - A) * HR")


def main(argv=None) -> int:
    config, out = parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("error: training needs torch: pip install 'lutsr[train]'", file=sys.stderr)
        return 2
    import lutsr
    from train.build import build

    try:
        lut = build(config)
    except BuildError as exc:
        print(f"error: {in_flags(str(exc))}", file=sys.stderr)
        return 2
    lutsr.save(lut, out)
    print(lut.describe())
    print(json.dumps(lut.metadata["phases"]))
    print(f"wrote {out}")
    return 0
