"""Nets saved by the build pipeline (`net.pt`): rebuilt, and run as the "full CNN" baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from train.nets import NetModel, StageSpec


def load_net(path) -> NetModel:
    """The :class:`NetModel` saved in a ``net.pt`` checkpoint of ``tools/build_lut.py``."""
    saved = torch.load(Path(path), weights_only=True)
    config = saved.get("config") or {}
    if "layout" not in config:
        raise ValueError(f"{path}: not a net checkpoint of tools/build_lut.py (no config)")
    layout = tuple(StageSpec(**{**s, "patterns": tuple(s["patterns"])}) for s in config["layout"])
    net = NetModel(layout, config["width"], config["depth"], config.get("tap_window"))
    net.load_state_dict(saved["model"])
    return net.eval()


def load_cnn_method(path):
    """``(name, scale, fn)``; ``fn`` maps uint8 (H, W[, C]) to the net's upscaled uint8 image.

    Each channel is run through the net separately, as the LUT does; this is the
    network before it is sampled into a table (the "full CNN").
    """
    net = load_net(path)
    scale = int(np.prod([s.r for s in net.layout]))

    @torch.no_grad()
    def upscale(img: np.ndarray) -> np.ndarray:
        planes = img[..., None] if img.ndim == 2 else img
        x = torch.from_numpy(planes.transpose(2, 0, 1).copy()).float()[:, None]
        out = net(x)[:, 0].numpy().astype(np.uint8).transpose(1, 2, 0)
        return out[..., 0] if img.ndim == 2 else out

    return f"CNN ({Path(path).parent.name})", scale, upscale
