"""Measurement: would wider intermediate stages (channel expansion) pay for x4 S+D+Y?

SPF-LUT (CVPR 2024) and the DNN-of-LUTs line pass several feature planes from
stage to stage where MuLUT passes one. This script measures that lever before
any runtime support is written, as float nets: the three-stage model of
``tools/build_lut.py --refine-stages 2 --tap-window 5`` (width 32, depth 3),
except that each refinement stage outputs ``--channels`` C planes (each net C
outputs, summed over rotations, each plane rounded and clipped as a uint8
plane is) and the next stage's learned taps read a 5 x 5 x C window. C = 1 is
the shipped model class. Extra planes start unread (tap weights 0), so every
C starts as the same model; a plane comes into use as the taps learn to read
it. It prints the nets' Y-PSNR on the held-out tenth (outputs rounded as a
sampled table would store them), the measure the other levers were chosen on.

    python train/experiments/channels.py --data ../shared/data/train/T91 \
        ../shared/data/train/BSD200 --channels 2 --iters 4000 --out DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from learned_taps import mean_psnr_y  # noqa: E402

from lutsr.model import TAP_BITS, one_hot_taps  # noqa: E402
from train import data as tdata  # noqa: E402
from train import fit  # noqa: E402
from train.nets import NetModel, mulut_layout  # noqa: E402


class ChannelNetModel(NetModel):
    """:class:`NetModel` with learned taps whose refinement stages output ``channels`` planes."""

    def __init__(self, layout, channels: int, width: int, depth: int, window: int):
        super().__init__(layout, width, depth)  # the taps, wider than NetModel's, are built below
        for spec, nets in zip(self.layout[:-1], self.nets):
            assert spec.r == 1, "only refinement stages widen"
            for net in nets:
                # Zero-initialised like PatternNet's own output layer: every plane starts
                # as pixel replication (its skip term broadcasts over the planes).
                net.body[-1] = nn.Conv2d(width, channels, 1)
                nn.init.zeros_(net.body[-1].weight)
                nn.init.zeros_(net.body[-1].bias)
        weights = []
        for i, spec in enumerate(self.layout):
            for taps in one_hot_taps(spec.patterns, window):
                w = np.zeros((4, 1 if i == 0 else channels, window, window), np.float32)
                w[:, 0] = taps / 2.0**TAP_BITS  # plane 0 as the fixed pattern; the rest unread
                weights.append(nn.Parameter(torch.from_numpy(w)))
        self.tap_weights = nn.ParameterList(weights)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--out", required=True, help="folder for the checkpoint (resumed if present)")
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--iters", type=int, default=4000)
    ap.add_argument("--refine-stages", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    files = tdata.list_images(args.data)
    held = files[::10]
    train_pairs = tdata.load_pairs([f for f in files if f not in set(held)], 4, min_size=16)
    net = ChannelNetModel(mulut_layout(4, refine_stages=args.refine_stages), args.channels,
                          32, 3, 5)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state = fit.optimise(net, fit.PatchSampler(train_pairs, 4, 16), args.iters, 5e-3, 64,
                         out / "net.pt", desc=f"nets, {args.channels} planes")
    print(f"{state['cpu_seconds']:.0f} CPU s; held-out tenth, nets: "
          f"{mean_psnr_y(net, tdata.load_pairs(held, 4))}")


if __name__ == "__main__":
    main()
