"""Torch models with exactly the runtime's semantics: pattern nets and differentiable LUTs.

Both :class:`NetModel` (small MLPs on 4-pixel patterns) and :class:`TableModel`
(the LUT's tables as parameters, read through differentiable 4-D simplex
interpolation) compute a LUT model's forward pass the way :mod:`lutsr.reference`
does: 4 rotations, padding at the bottom/right of the rotated plane, sum over
rotations and patterns, ``/ divisor + bias``, rounding (straight-through) and
clipping between stages. So what is trained is what runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lutsr.model import (
    LUT,
    PATTERNS,
    TAP_BITS,
    Stage,
    grid_size,
    one_hot_taps,
    pattern_extent,
)

_TORCH_PAD = {"reflect": "reflect", "edge": "replicate"}


@dataclass(frozen=True)
class StageSpec:
    """The shape of one stage, without tables (see :class:`lutsr.Stage`).

    ``taps``: the stage's learned taps (int16, (P, 4, w, w)) or None for the
    fixed patterns. Not compared: two layouts are the same shape whatever
    their taps' values.
    """

    r: int
    patterns: tuple[str, ...]
    divisor: float
    bias: float
    padding: str
    taps: np.ndarray | None = field(default=None, compare=False, repr=False)


def srlut_layout(scale: int) -> tuple[StageSpec, ...]:
    """SR-LUT-S: one stage, pattern S, reflect padding."""
    return (StageSpec(scale, ("S",), 1.0, 0.0, "reflect"),)


def mulut_layout(scale: int, patterns: str = "SDY",
                 refine_stages: int = 1) -> tuple[StageSpec, ...]:
    """MuLUT-style: refinement stages (r = 1) then the upscaling stage, edge padding.

    The refinement stages' divisor is MuLUT's ``4 * len(patterns)`` (a
    table entry then spans no more than the output). Those after the first
    (``refine_stages`` above 1) take bias 128, so that pixel replication
    (entries ``a - 128``) fits int8 for every level 0..255 (they start as
    replication when a model is grown, see ``BuildConfig.refine_stages``).
    """
    n, pats = len(patterns), tuple(patterns)
    middle = StageSpec(1, pats, 4.0 * n, 128.0, "edge")
    return (StageSpec(1, pats, 4.0 * n, 127.0, "edge"),
            *[middle] * (refine_stages - 1),
            StageSpec(scale, pats, float(n), 0.0, "edge"))


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even in the forward pass, identity gradient (straight-through)."""
    return x + (torch.round(x) - x).detach()


def window_taps(x: torch.Tensor, weights: torch.Tensor, padding: str) -> torch.Tensor:
    """Learned taps of every pixel of ``x`` (B, 1, H, W): returns (B, 4, H, W).

    ``weights`` (4, 1, w, w), multiples of ``2**-TAP_BITS``. The window sums
    are computed in float64, where they are exact; they are rounded half up
    (straight-through) and clipped, as :func:`lutsr.reference.learned_taps`
    computes them.
    """
    ext = weights.shape[-1] - 1
    padded = F.pad(x.double(), (0, ext, 0, ext), mode=_TORCH_PAD[padding])
    total = F.conv2d(padded, weights.double())
    return torch.clamp(total + (torch.floor(total + 0.5) - total).detach(), 0, 255).float()


def quantized_taps(weights: torch.Tensor) -> torch.Tensor:
    """Tap weights as the runtime stores them: int16 multiples of ``2**-TAP_BITS``
    (rounded half to even, straight-through)."""
    return round_ste(torch.clamp(weights * 2**TAP_BITS, -2**15, 2**15 - 1)) / 2**TAP_BITS


def stored_taps(weights: torch.Tensor) -> np.ndarray:
    """Tap weights (pixel units) as the runtime's ``Stage.taps`` holds them: int16 steps."""
    return (quantized_taps(weights.detach()) * 2**TAP_BITS).numpy().astype(np.int16)


def rotated_taps(x: torch.Tensor, spec: StageSpec, p: int) -> torch.Tensor:
    """Table ``p``'s 4 taps for every pixel of ``x`` (B, 1, H, W): returns (B, 4, H, W).

    The fixed pattern's pixels, or the stage's learned taps (:func:`window_taps`).
    """
    if spec.taps is not None:
        return window_taps(x, torch.from_numpy(spec.taps[p, :, None] / 2.0**TAP_BITS),
                           spec.padding)
    h, w = x.shape[-2:]
    ext = pattern_extent(spec.patterns[p])
    padded = F.pad(x, (0, ext, 0, ext), mode=_TORCH_PAD[spec.padding])
    return torch.cat([padded[:, :, dy:dy + h, dx:dx + w]
                      for dy, dx in PATTERNS[spec.patterns[p]]], 1)


def finish_stage(total: torch.Tensor, spec: StageSpec) -> torch.Tensor:
    """``clip(round(total / divisor + bias), 0, 255)`` with a straight-through round."""
    return torch.clamp(round_ste(total / spec.divisor + spec.bias), 0, 255)


def ensemble(x: torch.Tensor, spec: StageSpec, per_pattern, taps_of=None) -> torch.Tensor:
    """Sum of ``per_pattern(p, taps)`` over patterns and the 4 rotations, rotated back.

    ``per_pattern`` maps (pattern index, taps (B', 4, H', W')) to (B', r*r, H', W').
    ``taps_of(x, p)`` gives the taps (default :func:`rotated_taps` of ``spec``).
    For square inputs the four rotations are batched into one call.
    """
    taps_of = taps_of or (lambda x, p: rotated_taps(x, spec, p))
    h, w = x.shape[-2:]
    out = 0
    for p in range(len(spec.patterns)):
        if h == w:
            rots = torch.cat([torch.rot90(x, k, (2, 3)) for k in range(4)])
            vals = F.pixel_shuffle(per_pattern(p, taps_of(rots, p)), spec.r)
            for k, chunk in enumerate(vals.chunk(4)):
                out = out + torch.rot90(chunk, -k, (2, 3))
        else:
            for k in range(4):
                taps = taps_of(torch.rot90(x, k, (2, 3)), p)
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
    """A LUT model's layout with a :class:`PatternNet` per (stage, pattern).

    With ``tap_window`` w, each net reads learned taps (AutoLUT's learned
    sampling): 4 combinations of the w x w window at each pixel, their
    weights trained too, rounded to multiples of ``2**-TAP_BITS`` as the
    runtime stores them (straight-through) and initialised on the fixed
    pattern's pixels. :meth:`tapped_layout` gives the layout with those taps.
    """

    def __init__(self, layout, width: int = 64, depth: int = 4, tap_window: int | None = None):
        super().__init__()
        self.layout = tuple(layout)
        # Replication: each of the 4 rotations x P patterns contributes
        # (a - bias) * divisor / (4 P), so the stage outputs a.
        self.nets = nn.ModuleList(
            nn.ModuleList(PatternNet(s.r, width, depth, s.divisor / (4 * len(s.patterns)), s.bias)
                          for _ in s.patterns)
            for s in self.layout)
        self.tap_weights = None
        if tap_window:
            # Stage-major, one (4, 1, w, w) per pattern, starting as the fixed patterns.
            self.tap_weights = nn.ParameterList(
                nn.Parameter(torch.from_numpy(taps[:, None] / 2.0**TAP_BITS).float())
                for s in self.layout for taps in one_hot_taps(s.patterns, tap_window))

    def _taps_of(self, stage: int):
        """``ensemble``'s ``taps_of`` for a stage: None for the fixed patterns."""
        if self.tap_weights is None:
            return None
        first = sum(len(s.patterns) for s in self.layout[:stage])
        padding = self.layout[stage].padding
        return lambda x, p: window_taps(x, quantized_taps(self.tap_weights[first + p]), padding)

    def tapped_layout(self) -> tuple[StageSpec, ...]:
        """The layout with the learned taps as the runtime stores them (int16), if any."""
        if self.tap_weights is None:
            return self.layout
        weights = iter(self.tap_weights)
        return tuple(dataclasses.replace(s, taps=np.stack(
            [stored_taps(next(weights))[:, 0] for _ in s.patterns])) for s in self.layout)

    def forward(self, x: torch.Tensor, quantize: bool = False) -> torch.Tensor:
        """(B, 1, H, W) values 0..255 -> (B, 1, H*s, W*s) values 0..255 (integers).

        With ``quantize`` each net output is rounded as the sampled table
        stores it: at grid inputs the model then equals its LUT exactly.
        """
        for i, (spec, nets) in enumerate(zip(self.layout, self.nets)):
            def per_pattern(p, taps, nets=nets):
                out = nets[p](taps)
                return torch.round(out) if quantize else out
            x = finish_stage(ensemble(x, spec, per_pattern, self._taps_of(i)), spec)
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
    runtime on the rounded tables. With ``learn_taps``, the learned taps of
    the stages that have them are parameters too, read rounded the same way
    (:meth:`tapped_layout` gives them as the runtime stores them).
    """

    def __init__(self, layout, tables, interval: int, learn_taps: bool = False):
        super().__init__()
        self.layout = tuple(layout)
        self.interval = interval
        self.tables = nn.ParameterList(
            nn.Parameter(torch.tensor(np.stack(ts), dtype=torch.float32)) for ts in tables)
        # In their stored units (steps of 2**-TAP_BITS), so that one step size (table
        # units, about 1) suits both: a tap moves by fractions of a step.
        self.tap_steps = nn.ParameterDict(
            {str(i): nn.Parameter(torch.from_numpy(s.taps.astype(np.float32)))
             for i, s in enumerate(self.layout) if learn_taps and s.taps is not None})

    def _taps_of(self, stage: int):
        """``ensemble``'s ``taps_of``: None (the layout's own taps or patterns) if not learned."""
        if str(stage) not in self.tap_steps:
            return None
        steps, padding = self.tap_steps[str(stage)], self.layout[stage].padding
        return lambda x, p: window_taps(x, quantized_taps(steps[p, :, None] / 2**TAP_BITS),
                                        padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (spec, tabs) in enumerate(zip(self.layout, self.tables)):
            q_tabs = torch.clamp(round_ste(tabs), -128, 127)
            x = finish_stage(ensemble(
                x, spec, lambda p, taps, t=q_tabs: simplex_interpolate(taps, t[p], self.interval),
                self._taps_of(i)), spec)
        return x

    def int8_tables(self) -> list[list[np.ndarray]]:
        return [[np.clip(np.round(t.detach().numpy()), -128, 127).astype(np.int8) for t in tabs]
                for tabs in self.tables]

    def tapped_layout(self) -> tuple[StageSpec, ...]:
        """The layout with the learned taps as they now are (int16), where they are learned."""
        return tuple(
            dataclasses.replace(s, taps=stored_taps(self.tap_steps[str(i)] / 2**TAP_BITS))
            if str(i) in self.tap_steps else s for i, s in enumerate(self.layout))


def to_lut(layout, tables, interval: int, name: str = "", metadata=None, base=None) -> LUT:
    """A :class:`lutsr.LUT` from a layout and int8 tables per stage (``base``: the last one's)."""
    stages = tuple(Stage(s.r, s.patterns, tuple(ts), s.divisor, s.bias, s.padding,
                         base if i == len(layout) - 1 else None, s.taps)
                   for i, (s, ts) in enumerate(zip(layout, tables)))
    return LUT(stages=stages, interval=interval, name=name, metadata=dict(metadata or {}))


def layout_of(lut: LUT) -> tuple[StageSpec, ...]:
    """The :class:`StageSpec` layout of an existing LUT."""
    return tuple(StageSpec(s.r, s.patterns, s.divisor, s.bias, s.padding, s.taps)
                 for s in lut.stages)
