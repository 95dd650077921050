"""Measurement: what do learned tap positions pay for x4 S+D+Y, against a control?

AutoLUT (CVPR 2025) replaces each LUT's fixed 4-pixel pattern by 4 learned
linear combinations of a window of pixels. This script trains the x4 S+D+Y
nets of ``tools/build_lut.py`` that way (``NetModel(tap_window=W)``: each tap
a WxW combination anchored where the pattern's window is, initialised
one-hot on the fixed pattern's pixel, its weights rounded as the runtime
stores them), samples them into tables, refits the last stage by the same
least squares, and prints the Y-PSNR of the held-out tenth after each step
(and, with ``--test``, of test sets after the refit). ``--fixed`` freezes
the one-hot weights: the standard model, trained identically, as the
control; ``--learned-stages 1`` learns the first stage's taps only.
``--export`` writes the result as a LUT (``build_lut.py --tap-window``
builds the same in one command, without the controls).

    python train/experiments/learned_taps.py --data ../shared/data/train/T91 \
        ../shared/data/train/BSD200 [--window 3] [--fixed | --learned-stages N ...] \
        [--refine-stages 2] --out DIR \
        [--test ../shared/data/test/Set5 ../shared/data/test/Set14 ../shared/data/test/B100]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import lutsr  # noqa: E402
from lutsr.metrics import psnr_y  # noqa: E402
from train import data as tdata  # noqa: E402
from train import fit, lsq  # noqa: E402
from train.nets import NetModel, mulut_layout, to_lut  # noqa: E402


@torch.no_grad()
def mean_psnr_y(upscale, pairs) -> float:
    """Mean Y-PSNR of ``upscale`` (a LUT or a net) over (LR, HR) RGB pairs."""
    scores = []
    for lr, hr in pairs:
        if isinstance(upscale, lutsr.LUT):
            out = lutsr.upscale(lr, upscale)
        else:
            x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))).float()[:, None]
            out = upscale(x, True)[:, 0].numpy().transpose(1, 2, 0).astype(np.uint8)
        scores.append(psnr_y(out, hr, 4))
    return round(float(np.mean(scores)), 4)


def test_pairs(folder):
    """A test set's name and (LR_bicubic, modcropped HR) RGB pairs, read as by tools/evaluate.py."""
    sys.path.insert(0, str(ROOT / "tools"))
    import evaluate  # tools/evaluate.py: the evaluation tool's own reading of a test set

    dataset = evaluate.find_dataset(folder, 4)
    pairs = []
    for path in dataset.hr_paths:
        lr, hr, _ = evaluate.load_pair(dataset, path, 4)
        if lr.ndim == 2:  # gray: replicated to RGB, as the protocol does
            lr, hr = np.repeat(lr[..., None], 3, 2), np.repeat(hr[..., None], 3, 2)
        pairs.append((lr, hr))
    return dataset.name, pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--out", required=True, help="folder for the checkpoint (resumed if present)")
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--fixed", action="store_true")
    ap.add_argument("--learned-stages", type=int, nargs="+", metavar="N",
                    help="learn these stages' taps (1 = first; default all)")
    ap.add_argument("--iters", type=int, default=4000)
    ap.add_argument("--val-every", type=int, default=10, metavar="N",
                    help="hold out every Nth image and score it (0: train on all)")
    ap.add_argument("--lsq-iters", type=int, default=12)
    ap.add_argument("--refine-stages", type=int, default=1)
    ap.add_argument("--test", nargs="*", default=[], help="also score these test folders")
    ap.add_argument("--export", metavar="FILE",
                    help="write the refitted model as a .lutsr file (a start for build_lut --init)")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    files = tdata.list_images(args.data)
    held = files[::args.val_every] if args.val_every else []
    train_pairs = tdata.load_pairs([f for f in files if f not in set(held)], 4, min_size=16)
    val_pairs = tdata.load_pairs(held, 4) if held else []

    def report(what: str, upscale) -> None:
        if val_pairs:
            print(f"held-out, {what}: {mean_psnr_y(upscale, val_pairs)}")

    layout = mulut_layout(4, refine_stages=args.refine_stages)
    learned = (() if args.fixed else range(len(layout)) if args.learned_stages is None
               else [n - 1 for n in args.learned_stages])
    net = NetModel(layout, 32, 3, tap_window=args.window)
    first = 0
    for i, spec in enumerate(layout):  # --fixed: one-hot weights kept, the fixed patterns
        for w in net.tap_weights[first:first + len(spec.patterns)]:
            w.requires_grad_(i in learned)
        first += len(spec.patterns)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state = fit.optimise(net, fit.PatchSampler(train_pairs, 4, 16), args.iters, 5e-3, 64,
                         out / "net.pt", desc="net")
    report("nets", net)
    layout, tables = net.tapped_layout(), net.sample_tables(4)
    report("sampled tables", to_lut(layout, tables, 4))
    t0 = time.process_time()
    earlier = to_lut(layout[:-1], tables[:-1], 4)
    planes = [(lutsr.upscale(lr, earlier), hr) for lr, hr in tdata.plane_pairs(train_pairs)]
    spec = layout[-1]
    stage = lutsr.Stage(spec.r, spec.patterns, tuple(tables[-1]), spec.divisor, spec.bias,
                        spec.padding, taps=spec.taps)
    fitted = lsq.fit(lsq.collect(stage, 4, planes), stage, 4,
                     np.stack(tables[-1]).astype(np.float64), prior_weight=1e-4,
                     smooth_weight=1e-3, iters=args.lsq_iters)
    tables[-1] = list(np.clip(np.round(fitted), -128, 127).astype(np.int8))
    refit_seconds = time.process_time() - t0
    print(f"last stage refitted in {refit_seconds:.0f} CPU s")
    phases = {"net": {"iterations": int(state["iteration"]),
                      "cpu_seconds": round(state["cpu_seconds"], 1)},
              "lsq": {"iterations": args.lsq_iters, "cpu_seconds": round(refit_seconds, 1)}}
    lut = to_lut(layout, tables, 4, Path(args.export or "taps").stem, {
        "layout": "mulut", "data": [Path(d).resolve().name for d in args.data],
        "args": vars(args), "phases": phases,
        "cpu_seconds_total": round(sum(p["cpu_seconds"] for p in phases.values()), 1)})
    report("last stage refitted", lut)
    if args.export:
        lutsr.save(lut, args.export)
        print(f"wrote {args.export}")
    for folder in args.test:
        name, pairs = test_pairs(folder)
        print(f"{name}: {mean_psnr_y(lut, pairs)}")


if __name__ == "__main__":
    main()
