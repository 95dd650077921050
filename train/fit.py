"""Training loops: the pattern nets, then LUT-aware fine-tuning of the tables.

Both loops draw random LR patches (one channel, random flip/transpose) with
their HR targets, minimise the MSE of the model's exact runtime output, use
Adam with cosine learning-rate decay, and checkpoint so a run can resume.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lutsr.progress import progress_bar


class PatchSampler:
    """Random aligned (LR, HR) single-channel patches from RGB image pairs.

    Images are drawn in proportion to their area, as a crop of a big mosaic
    would be; every LR image must be at least ``patch`` pixels on each side.
    """

    def __init__(self, pairs, scale: int, patch: int, seed: int = 0):
        self.scale, self.patch = scale, patch
        self.pairs = list(pairs)
        small = [lr.shape for lr, _ in self.pairs if min(lr.shape[:2]) < patch]
        if small or not self.pairs:
            raise ValueError(f"patches need training images of at least {patch} LR pixels "
                             f"a side; got {len(self.pairs)} images, {len(small)} smaller")
        areas = np.array([lr.shape[0] * lr.shape[1] for lr, _ in self.pairs], np.float64)
        self.p = areas / areas.sum()
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 1, P, P) LR and (n, 1, P*s, P*s) HR float tensors, values 0..255."""
        s, p = self.scale, self.patch
        lrs = np.empty((n, 1, p, p), np.float32)
        hrs = np.empty((n, 1, p * s, p * s), np.float32)
        for i, j in enumerate(self.rng.choice(len(self.pairs), n, p=self.p)):
            lr, hr = self.pairs[j]
            y = self.rng.integers(0, lr.shape[0] - p + 1)
            x = self.rng.integers(0, lr.shape[1] - p + 1)
            c = self.rng.integers(0, lr.shape[2])
            a = lr[y:y + p, x:x + p, c]
            b = hr[y * s:(y + p) * s, x * s:(x + p) * s, c]
            if self.rng.random() < 0.5:  # mirror: rotations add nothing (see plane_pairs)
                a, b = a[:, ::-1], b[:, ::-1]
            lrs[i, 0], hrs[i, 0] = a, b
        return torch.from_numpy(lrs), torch.from_numpy(hrs)


def cosine_lr(base: float, it: int, total: int, floor: float = 0.01) -> float:
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(it, total) / total)))


def optimise(model: torch.nn.Module, sampler: PatchSampler, iters: int, lr: float, batch: int,
             checkpoint: Path | None = None, every: int = 200, log=print, desc: str = "train",
             config: dict | None = None) -> dict:
    """Adam on MSE with cosine decay; resumes from and writes ``checkpoint``.

    ``config`` (JSON-like) is stored in the checkpoint so the model can be
    rebuilt from it alone (see :func:`train.checkpoint.load_net`).
    Returns a dict of what was done: iterations, CPU seconds, final loss.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    state = {"iteration": 0, "cpu_seconds": 0.0, "loss": float("nan")}
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        state = saved["state"]
        sampler.rng = np.random.default_rng(int(state["iteration"]) + 12345)
        log(f"{desc}: resumed at iteration {state['iteration']} from {checkpoint}")

    def save():
        if checkpoint is not None:
            tmp = checkpoint.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "state": state, "config": config or {}}, tmp)
            tmp.replace(checkpoint)

    # training works without tqdm, just silently (then with the plain lines below)
    bar = progress_bar(iters, enabled=sys.stderr.isatty(), desc=desc, initial=state["iteration"],
                       mininterval=2.0)
    ema = None
    cpu0 = time.process_time() - state["cpu_seconds"]
    wall0, start_it = time.time(), state["iteration"]
    while state["iteration"] < iters:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(lr, state["iteration"], iters)
        x, y = sampler.batch(batch)
        loss = torch.mean((model(x) - y) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["iteration"] += 1
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        state["loss"] = ema
        state["cpu_seconds"] = time.process_time() - cpu0
        bar.update(1)
        bar.set_postfix_str(f"mse {ema:.2f} psnr {10 * math.log10(255**2 / max(ema, 1e-9)):.2f}")
        if state["iteration"] % every == 0 or state["iteration"] == iters:
            save()
            if bar.disable:  # no terminal: a plain line instead of the bar
                done = state["iteration"]
                rate = (time.time() - wall0) / max(done - start_it, 1)
                log(f"{desc}: {done}/{iters} mse {ema:.2f} "
                    f"(psnr {10 * math.log10(255**2 / max(ema, 1e-9)):.2f}) "
                    f"eta {rate * (iters - done) / 60:.1f} min")
    bar.close()
    return dict(state)
