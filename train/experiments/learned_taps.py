"""Measurement, not pipeline: would learned tap positions pay for x4 S+D+Y?

AutoLUT (CVPR 2025) replaces each LUT's fixed 4-pixel pattern by 4 learned
linear combinations of a window of pixels. This script trains the x4 S+D+Y
nets of ``tools/build_lut.py`` that way (each tap a WxW combination anchored
where the pattern's window is, initialised one-hot on the fixed pattern's
pixel, rounded with a straight-through estimator and clipped to 0..255),
samples them into tables, refits the last stage by the same least squares,
and prints the Y-PSNR of the held-out tenth after each step (and, with
``--test``, of test sets after the refit). ``--fixed`` freezes
the one-hot weights: the standard model, trained identically, as the control;
``--learned-stages 1`` learns the first stage's taps only.
The runtime has no such taps; this answers whether adding them is worth it
(see the README, "Training your own LUT").

    python train/experiments/learned_taps.py --data ../shared/data/train/T91 \
        ../shared/data/train/BSD200 [--window 3] [--fixed | --learned-stages N ...] \
        [--refine-stages 2] --out DIR \
        [--test ../shared/data/test/Set5 ../shared/data/test/Set14 ../shared/data/test/B100]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import lutsr  # noqa: E402
from lutsr.metrics import psnr_y  # noqa: E402
from lutsr.model import PATTERNS, TAP_BITS  # noqa: E402
from train import data as tdata  # noqa: E402
from train import fit, lsq  # noqa: E402
from train.nets import (  # noqa: E402
    NetModel,
    finish_stage,
    mulut_layout,
    round_ste,
    simplex_interpolate,
)


def quantized(weight: torch.Tensor) -> torch.Tensor:
    """Tap weights as the runtime stores them: multiples of ``2**-TAP_BITS`` (straight-through)."""
    return round_ste(weight * 2**TAP_BITS) / 2**TAP_BITS


def learned_taps(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 4, H, W): sums over a window anchored top-left, rounded half up
    and clipped, as the runtime computes them (exact in float32 for these magnitudes)."""
    win = weight.shape[-1]
    padded = F.pad(x, (0, win - 1, 0, win - 1), mode="replicate")  # the stages' edge padding
    total = F.conv2d(padded, quantized(weight))
    return torch.clamp(total + (torch.floor(total + 0.5) - total).detach(), 0, 255)


class LearnedTapsNet(NetModel):
    """:class:`NetModel` whose patterns read learned tap combinations; or its sampled tables."""

    def __init__(self, layout, window: int, learned_stages=()):
        super().__init__(layout, 32, 3)
        weights = []
        for i, spec in enumerate(layout):
            for pattern in spec.patterns:
                w = torch.zeros(4, 1, window, window)
                for t, (dy, dx) in enumerate(PATTERNS[pattern]):
                    w[t, 0, dy, dx] = 1.0
                weights.append(torch.nn.Parameter(w, requires_grad=i in learned_stages))
        self.sample_w = torch.nn.ParameterList(weights)
        self.tables = None  # per stage, per pattern (L**4, r*r) tensors: run them instead

    def _weight(self, stage: int, p: int) -> torch.Tensor:
        return self.sample_w[sum(len(s.patterns) for s in self.layout[:stage]) + p]

    def taps(self, stage: int, p: int, k: int, x: torch.Tensor) -> torch.Tensor:
        """Taps of rotation ``k`` at each unrotated pixel (the layout of ``train.lsq`` samples)."""
        return torch.rot90(learned_taps(torch.rot90(x, k, (2, 3)), self._weight(stage, p)),
                           -k, (2, 3))

    def run_stage(self, stage: int, x: torch.Tensor, quantize: bool = False) -> torch.Tensor:
        """One stage; ``quantize`` rounds each net output as its sampled table stores it."""
        spec, out = self.layout[stage], 0
        for p in range(len(spec.patterns)):
            for k in range(4):
                taps = learned_taps(torch.rot90(x, k, (2, 3)), self._weight(stage, p))
                if self.tables is not None:
                    values = simplex_interpolate(taps, self.tables[stage][p], 4)
                else:
                    values = self.nets[stage][p](taps)
                    values = torch.round(values) if quantize else values
                out = out + torch.rot90(F.pixel_shuffle(values, spec.r), -k, (2, 3))
        return finish_stage(out, spec)

    def forward(self, x: torch.Tensor, quantize: bool = False) -> torch.Tensor:
        for stage in range(len(self.layout)):
            x = self.run_stage(stage, x, quantize)
        return x


@torch.no_grad()
def mean_psnr_y(model, pairs) -> float:
    scores = []
    for lr, hr in pairs:
        planes = [model(torch.from_numpy(lr[None, None, :, :, c].astype(np.float32)), True)[0, 0]
                  for c in range(lr.shape[2])]
        scores.append(psnr_y(torch.stack(planes, -1).numpy().astype(np.uint8), hr, 4))
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


@torch.no_grad()
def last_stage_samples(model, pairs) -> lsq.Samples:
    """``train.lsq`` samples of the last stage (every plane and its mirror), learned taps."""
    planes = list(tdata.plane_pairs(pairs))
    last = len(model.layout) - 1
    n_pat, r = len(model.layout[last].patterns), model.layout[last].r
    n = sum(lr.size for lr, _ in planes)
    samples = lsq.Samples(np.empty((n, n_pat, 4, 4), np.uint8), np.arange(n_pat),
                          np.ones(n_pat, np.int64), np.empty((n, r * r), np.uint8),
                          np.ones(n, np.float32))
    start = 0
    for lr, hr in planes:
        span = slice(start, start + lr.size)
        x = torch.from_numpy(lr[None, None].astype(np.float32))
        for stage in range(last):
            x = model.run_stage(stage, x)
        for p in range(n_pat):
            for k in range(4):
                samples.taps[span, p, k] = model.taps(last, p, k, x)[0].reshape(4, -1).T.numpy()
        samples.target[span] = tdata.output_blocks(hr, r)
        start = span.stop
    # Sorted as lsq.collect sorts them: the CG kernels' gathers stay in cache.
    order = np.argsort(lsq.first_rows(samples, 4), kind="stable")
    return dataclasses.replace(samples, taps=samples.taps[order], target=samples.target[order])

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
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    files = tdata.list_images(args.data)
    held = files[::args.val_every] if args.val_every else []
    train_pairs = tdata.load_pairs([f for f in files if f not in set(held)], 4, min_size=16)
    val_pairs = tdata.load_pairs(held, 4) if held else []

    def report(what: str) -> None:
        if val_pairs:
            print(f"held-out, {what}: {mean_psnr_y(model, val_pairs)}")

    layout = mulut_layout(4, refine_stages=args.refine_stages)
    learned = (() if args.fixed else range(len(layout)) if args.learned_stages is None
               else [n - 1 for n in args.learned_stages])
    model = LearnedTapsNet(layout, args.window, learned)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fit.optimise(model, fit.PatchSampler(train_pairs, 4, 16), args.iters, 5e-3, 64,
                 out / "net.pt", desc="net")
    report("nets")
    tables = model.sample_tables(4)
    model.tables = [[torch.tensor(t, dtype=torch.float32) for t in ts] for ts in tables]
    report("sampled tables")
    t0 = time.process_time()
    spec = model.layout[-1]
    stage = lutsr.Stage(spec.r, spec.patterns, tuple(tables[-1]), spec.divisor, spec.bias,
                        spec.padding)
    fitted = lsq.fit(last_stage_samples(model, train_pairs), stage, 4,
                     np.stack(tables[-1]).astype(np.float64), prior_weight=1e-4,
                     smooth_weight=1e-3, iters=args.lsq_iters)
    refit = np.clip(np.round(fitted), -128, 127).astype(np.int8)
    model.tables[-1] = [torch.tensor(t, dtype=torch.float32) for t in refit]
    print(f"last stage refitted in {time.process_time() - t0:.0f} CPU s")
    report("last stage refitted")
    for folder in args.test:
        name, pairs = test_pairs(folder)
        print(f"{name}: {mean_psnr_y(model, pairs)}")

if __name__ == "__main__":
    main()
