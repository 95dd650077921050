"""Torch models with exactly the runtime's semantics: pattern nets and differentiable LUTs.

Both :class:`NetModel` (small MLPs on 4-pixel patterns) and :class:`TableModel`
(the LUT's tables as parameters, read through differentiable 4-D simplex
interpolation) compute a LUT model's forward pass the way :mod:`lutsr.reference`
does: 4 rotations, padding at the bottom/right of the rotated plane, sum over
rotations and patterns, ``/ divisor + bias``, rounding (straight-through) and
clipping between stages. So what is trained is what runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lutsr.model import LUT, PATTERNS, Stage, grid_size, pattern_extent

_TORCH_PAD = {"reflect": "reflect", "edge": "replicate"}


@dataclass(frozen=True)
class StageSpec:
    """The shape of one stage, without tables (see :class:`lutsr.Stage`)."""

    r: int
    patterns: tuple[str, ...]
    divisor: float
    bias: float
    padding: str


def srlut_layout(scale: int) -> tuple[StageSpec, ...]:
    """SR-LUT-S: one stage, pattern S, reflect padding."""
    return (StageSpec(scale, ("S",), 1.0, 0.0, "reflect"),)


def mulut_layout(scale: int, patterns: str = "SDY", first_divisor: float | None = None,
                 refine_stages: int = 1) -> tuple[StageSpec, ...]:
    """MuLUT-style: refinement stages (r = 1) then the upscaling stage, edge padding.

    The first stage's divisor is MuLUT's ``4 * len(patterns)`` unless
    ``first_divisor`` is given. Further refinement stages (``refine_stages``
    above 1) take bias 128, so that pixel replication (entries ``a - 128``)
    fits int8 for every level 0..255 (they start as replication when a
    model is grown, see ``tools/build_lut.py --refine-stages``).
    """
    n, pats = len(patterns), tuple(patterns)
    middle = StageSpec(1, pats, 4.0 * n, 128.0, "edge")
    return (StageSpec(1, pats, first_divisor or 4.0 * n, 127.0, "edge"),
            *[middle] * (refine_stages - 1),
            StageSpec(scale, pats, float(n), 0.0, "edge"))


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even in the forward pass, identity gradient (straight-through)."""
    return x + (torch.round(x) - x).detach()


def rotated_taps(x: torch.Tensor, pattern: str, padding: str) -> torch.Tensor:
    """The pattern's 4 pixels for every pixel of ``x`` (B, 1, H, W): returns (B, 4, H, W)."""
    ext = pattern_extent(pattern)
    h, w = x.shape[-2:]
    padded = F.pad(x, (0, ext, 0, ext), mode=_TORCH_PAD[padding])
    return torch.cat([padded[:, :, dy:dy + h, dx:dx + w] for dy, dx in PATTERNS[pattern]], 1)


def finish_stage(total: torch.Tensor, spec: StageSpec) -> torch.Tensor:
    """``clip(round(total / divisor + bias), 0, 255)`` with a straight-through round."""
    return torch.clamp(round_ste(total / spec.divisor + spec.bias), 0, 255)


def ensemble(x: torch.Tensor, spec: StageSpec, per_pattern) -> torch.Tensor:
    """Sum of ``per_pattern(p, taps)`` over patterns and the 4 rotations, rotated back.

    ``per_pattern`` maps (pattern index, taps (B', 4, H', W')) to (B', r*r, H', W').
    For square inputs the four rotations are batched into one call.
    """
    h, w = x.shape[-2:]
    out = 0
    for p, pattern in enumerate(spec.patterns):
        if h == w:
            rots = torch.cat([torch.rot90(x, k, (2, 3)) for k in range(4)])
            vals = F.pixel_shuffle(per_pattern(p, rotated_taps(rots, pattern, spec.padding)),
                                   spec.r)
            for k, chunk in enumerate(vals.chunk(4)):
                out = out + torch.rot90(chunk, -k, (2, 3))
        else:
            for k in range(4):
                taps = rotated_taps(torch.rot90(x, k, (2, 3)), pattern, spec.padding)
                vals = F.pixel_shuffle(per_pattern(p, taps), spec.r)
                out = out + torch.rot90(vals, -k, (2, 3))
    return out


class PatternNet(nn.Module):
    """4 pixel values (0..255) -> ``r*r`` values in table units (int8 range).

    1x1 convolutions: the net sees only its 4 inputs, so sampling it on the
    grid loses nothing but the interpolation between samples. The MLP learns a
    residual over ``gain * (a - offset)`` (``a`` the pattern's first pixel),
    chosen so that an untrained model already upscales by pixel replication:
    training starts from a sensible image, not from black.
    """

    def __init__(self, r: int, width: int = 64, depth: int = 4, gain: float = 0.0,
                 offset: float = 0.0):
        super().__init__()
        self.gain, self.offset = gain, offset
        layers, c = [], 4
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 1), nn.ReLU(inplace=True)]
            c = width
        layers.append(nn.Conv2d(c, r * r, 1))
        # Zero-initialised output: an untrained net is exactly pixel replication.
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.body = nn.Sequential(*layers)

    def forward(self, taps: torch.Tensor) -> torch.Tensor:
        # Table units: the sampled table stores round(clamp(out)).
        skip = self.gain * (taps[:, :1] - self.offset)
        return torch.clamp(self.body(taps / 255.0) * 64.0 + skip, -128, 127)


class NetModel(nn.Module):
    """A LUT model's layout with a :class:`PatternNet` per (stage, pattern)."""

    def __init__(self, layout, width: int = 64, depth: int = 4):
        super().__init__()
        self.layout = tuple(layout)
        # Replication: each of the 4 rotations x P patterns contributes
        # (a - bias) * divisor / (4 P), so the stage outputs a.
        self.nets = nn.ModuleList(
            nn.ModuleList(PatternNet(s.r, width, depth, s.divisor / (4 * len(s.patterns)), s.bias)
                          for _ in s.patterns)
            for s in self.layout)

    def forward(self, x: torch.Tensor, quantize: bool = False) -> torch.Tensor:
        """(B, 1, H, W) values 0..255 -> (B, 1, H*s, W*s) values 0..255 (integers).

        With ``quantize`` each net output is rounded as the sampled table
        stores it: at grid inputs the model then equals its LUT exactly.
        """
        for spec, nets in zip(self.layout, self.nets):
            def per_pattern(p, taps, nets=nets):
                out = nets[p](taps)
                return torch.round(out) if quantize else out
            x = finish_stage(ensemble(x, spec, per_pattern), spec)
        return x

    @torch.no_grad()
    def sample_tables(self, interval: int) -> list[list[np.ndarray]]:
        """Each net on the uniform grid: int8 tables of shape (L**4, r*r), top sample 255."""
        grid = grid_size(interval)
        levels = torch.clamp(torch.arange(grid) * 2**interval, max=255).float()
        a, b, c, d = torch.meshgrid(levels, levels, levels, levels, indexing="ij")
        inputs = torch.stack([a, b, c, d]).reshape(1, 4, -1, 1)
        tables = []
        for nets in self.nets:
            tables.append([])
            for net in nets:
                out = torch.cat([net(chunk) for chunk in inputs.split(65536, dim=2)], 2)
                tables[-1].append(torch.round(out)[0, :, :, 0].T.numpy().astype(np.int8))
        return tables


def simplex_interpolate(taps: torch.Tensor, table: torch.Tensor, interval: int) -> torch.Tensor:
    """4-D simplex interpolation, differentiable in the table and in the taps.

    taps : (B, 4, H, W) values 0..255; table : (L**4, r*r).
    Returns (B, r*r, H, W), the weighted table rows divided by q.
    """
    q, grid = 2**interval, grid_size(interval)
    msb = torch.div(taps.detach(), q, rounding_mode="floor")
    frac = taps - msb * q
    msb = msb.long()
    base = ((msb[:, 0] * grid + msb[:, 1]) * grid + msb[:, 2]) * grid + msb[:, 3]
    fs, order = torch.sort(frac, dim=1, descending=True)
    strides = torch.tensor([grid**3, grid**2, grid, 1], device=taps.device)[order]
    vertices = torch.cat([base[:, None], base[:, None] + strides.cumsum(1)], 1)  # (B, 5, H, W)
    weights = torch.cat([q - fs[:, :1], fs[:, :-1] - fs[:, 1:], fs[:, 3:]], 1)
    rows = table[vertices.reshape(-1)].reshape(*vertices.shape, table.shape[1])
    out = (weights[..., None] * rows).sum(1) / q  # (B, H, W, rr)
    return out.permute(0, 3, 1, 2)


class TableModel(nn.Module):
    """A LUT model whose table entries are the parameters (LUT-aware fine-tuning).

    Tables are kept as floats and read rounded and clamped to int8 with a
    straight-through estimator, so the forward pass is bit-exact with the
    runtime on the rounded tables.
    """

    def __init__(self, layout, tables, interval: int):
        super().__init__()
        self.layout = tuple(layout)
        self.interval = interval
        self.tables = nn.ParameterList(
            nn.Parameter(torch.tensor(np.stack(ts), dtype=torch.float32)) for ts in tables)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for spec, tabs in zip(self.layout, self.tables):
            q_tabs = torch.clamp(round_ste(tabs), -128, 127)
            x = finish_stage(ensemble(
                x, spec, lambda p, taps, t=q_tabs: simplex_interpolate(taps, t[p], self.interval)),
                spec)
        return x

    def int8_tables(self) -> list[list[np.ndarray]]:
        return [[np.clip(np.round(t.detach().numpy()), -128, 127).astype(np.int8) for t in tabs]
                for tabs in self.tables]


def to_lut(layout, tables, interval: int, name: str = "", metadata=None, base=None) -> LUT:
    """A :class:`lutsr.LUT` from a layout and int8 tables per stage (``base``: the last one's)."""
    stages = tuple(Stage(s.r, s.patterns, tuple(ts), s.divisor, s.bias, s.padding,
                         base if i == len(layout) - 1 else None)
                   for i, (s, ts) in enumerate(zip(layout, tables)))
    return LUT(stages=stages, interval=interval, name=name, metadata=dict(metadata or {}))


def layout_of(lut: LUT) -> tuple[StageSpec, ...]:
    """The :class:`StageSpec` layout of an existing LUT."""
    return tuple(StageSpec(s.r, s.patterns, s.divisor, s.bias, s.padding) for s in lut.stages)
