"""A layered stage (:mod:`lutsr.layered`) as a torch module, trained as its tables.

Every layer of a layered stage is a set of 1-D functions of one input level
(64 high-part levels, or 4 low-bit levels), so a table sampled every ``step``
levels *is* the layer's function: no net needs sampling into it, and the
trainable parameters here are the tables' samples themselves (float, rounded
to int8 on the way forward, straight-through). The forward pass is the
runtime's arithmetic (:func:`lutsr.reference.run_layered_stage`): integer
levels between layers (round half to even, straight-through), clamps,
replicate padding, shifts, the 4 rotations summed. Its output equals the
runtime's exactly (``tests/test_train_layered.py``); what training adds is
gradients:

- a table's output with respect to its input is the slope of its linear
  interpolation at the input level (:func:`train.table_ops.table_sum`);
- rounding and int8 quantisation pass gradients straight through;
- while a pointwise layer learns its shifts (:class:`LearnedShift`), its
  input is each channel sampled bilinearly at a continuous offset, rounded to
  levels (straight-through), so the offsets get the gradient of the sampling;
  :meth:`LayeredNet.frozen_shifts` rounds them to the integer shifts the
  runtime applies, and from then on the forward is the runtime's again.

Float32 is exact here: table values are multiples of 1/16 below 2**11 in
magnitude, sums of at most 16 of them, and ``sum / A`` is a tie exactly when
the integer arithmetic's is (A = 9 or 16).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lutsr.layered import (
    HIGH_LEVELS,
    LOW_LEVELS,
    MAX_SHIFT,
    WINDOW,
    LayeredStage,
    TableLayer,
    table_entries,
)

from .nets import round_ste
from .table_ops import table_sum

HALF = HIGH_LEVELS // 2


class TableLayerNet(nn.Module):
    """One layer of 1-D tables, each sampled every ``steps[a, o]`` input levels.

    Parameters
    ----------
    kind : {"depthwise", "pointwise"}
    samples : Tensor (A, C_out, N)
        Initial table samples (table units); only the first
        ``table_entries(steps[a, o], levels)`` of each table are used.
    steps : array of int (A, C_out)
        Sampling steps (1, 2, 4, 8 or 16 levels).
    levels : int
        Input levels (64, or 4 for the low-bit layer).
    shifts : array of int, shape (2, A), optional
        Pointwise layers: each input channel's fixed ``(dy, dx)``, kept for
        :meth:`to_layer`; the caller shifts the input (it is also the residual).
    """

    def __init__(self, kind: str, samples: torch.Tensor, steps, levels: int, shifts=None):
        super().__init__()
        self.kind, self.levels = kind, levels
        self.steps = np.asarray(steps, np.int64)
        v = np.arange(levels)
        lo = v // self.steps[..., None]
        frac = (v % self.steps[..., None]) / self.steps[..., None]
        hi = np.minimum(lo + 1, samples.shape[2] - 1)
        self.register_buffer("lo", torch.from_numpy(lo), persistent=False)
        self.register_buffer("hi", torch.from_numpy(hi), persistent=False)
        self.register_buffer("frac", torch.from_numpy(frac).float(), persistent=False)
        self.samples = nn.Parameter(samples.clone().float())
        self.shifts = None if shifts is None else np.asarray(shifts, np.int64)
        #: Pointwise layers while their shifts are learned (then ``shifts`` is unused).
        self.learned: LearnedShift | None = None

    @classmethod
    def from_layer(cls, layer: TableLayer, levels: int) -> TableLayerNet:
        """A trainable copy of a runtime layer (its tables, steps and shifts)."""
        return cls(layer.kind, torch.from_numpy(layer.tables.astype(np.float32)), layer.steps,
                   levels, layer.shifts)

    @property
    def inputs(self) -> int:
        return self.samples.shape[0]

    def expanded(self) -> torch.Tensor:
        """``Q`` at every input level: (A, C_out, levels), from the int8-rounded samples."""
        q = torch.clamp(round_ste(self.samples), -128, 127)
        # frac is a multiple of 1/step (a power of two): exact in float32
        return (torch.gather(q, 2, self.lo) * (1 - self.frac)
                + torch.gather(q, 2, self.hi) * self.frac)

    def resampled(self, steps) -> TableLayerNet:
        """This layer's function sampled every ``steps[a, o]`` levels: a new layer to
        fine-tune, equal to this one at every sampled level.

        A coarser table's last sample lies past the last level; it is set by
        extending the last segment linearly so the table meets this layer at
        the last level too, before rounding.
        """
        self._refuse_learning("resampled")
        steps = np.broadcast_to(np.asarray(steps, np.int64), self.steps.shape)
        values = self.expanded().detach()
        last = self.levels - 1
        n = max(table_entries(int(st), self.levels) for st in np.unique(steps))
        samples = torch.zeros(*values.shape[:2], n)
        for st in (int(v) for v in np.unique(steps)):
            where = torch.from_numpy(steps == st)[..., None]
            k = table_entries(st, self.levels)
            t = values[..., :last + 1:st]  # the sampled levels below the last
            if st > 1:
                gap = last - (k - 2) * st
                t = torch.cat([t, t[..., -1:] + (values[..., last:] - t[..., -1:]) * st / gap], -1)
            samples[..., :k] = torch.where(where, t, samples[..., :k])
        return TableLayerNet(self.kind, samples, steps, self.levels, self.shifts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``round(sum_a Q(v_a) / A)`` per output channel; ``x`` (B, C_in, H, W) holds
        integer levels (with gradients), the result (B, C_out, H, W) too."""
        e = self.expanded()
        # the slope of each segment, for the gradient with respect to the input
        slope = torch.cat([e[..., 1:] - e[..., :-1], e[..., -1:] - e[..., -2:-1]], -1)
        total = table_sum(e, slope, x, self.kind == "depthwise")
        return round_ste(total / self.inputs)

    def _refuse_learning(self, what: str) -> None:
        if self.learned is not None:
            raise ValueError(f"a layer still learning its shifts cannot be {what}: round them "
                             "first (LayeredNet.frozen_shifts)")

    def to_layer(self) -> TableLayer:
        """The runtime layer: the int8 tables (unused entries 0), steps and shifts.

        Raises ValueError while the layer learns its shifts (continuous offsets
        have no runtime form)."""
        self._refuse_learning("exported")
        q = torch.clamp(torch.round(self.samples.detach()), -128, 127).to(torch.int8).numpy()
        used = np.vectorize(lambda st: table_entries(int(st), self.levels))(self.steps)
        q = np.where(np.arange(q.shape[2]) < used[..., None], q, 0).astype(np.int8)
        return TableLayer(self.kind, q, self.steps.astype(np.uint8),
                          None if self.shifts is None else self.shifts.astype(np.int8))


def shift_channels(x: torch.Tensor, shifts: np.ndarray) -> torch.Tensor:
    """Channel ``c`` of ``x`` (B, C, H, W) read at ``[y + dy_c, x + dx_c]``, replicate padding."""
    m = int(np.abs(shifts).max()) if shifts.size else 0
    if m == 0:
        return x
    H, W = x.shape[-2:]
    padded = F.pad(x, (m, m, m, m), mode="replicate")
    return torch.stack([padded[:, c, m + dy:m + dy + H, m + dx:m + dx + W]
                        for c, (dy, dx) in enumerate(shifts.T.tolist())], 1)


def bilinear_shift(x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Channel ``c`` of ``x`` (B, C, H, W) read at ``[y + oy_c, x + ox_c]`` for continuous
    offsets ``offsets`` (2, C) (row 0 ``oy``, row 1 ``ox``), bilinear between the four
    integer shifts around each offset, replicate padding.

    At integer offsets it is :func:`shift_channels` exactly (the other corners get
    weight 0). Differentiable in ``x`` and in ``offsets``; at an integer offset the
    gradient with respect to it is the one-sided one toward the next integer up.
    """
    base = torch.floor(offsets.detach())
    frac = offsets - base  # carries the gradient with respect to the offsets
    m = int(base.abs().max()) + 1 if offsets.numel() else 0
    if m == 0:
        return x
    H, W = x.shape[-2:]
    padded = F.pad(x, (m, m, m, m), mode="replicate")
    planes = []
    for c, (dy, dx) in enumerate(base.long().T.tolist()):
        win = padded[:, c, m + dy:m + dy + H + 1, m + dx:m + dx + W + 1]
        ty, tx = frac[0, c], frac[1, c]
        top = win[:, :H, :W] * (1 - tx) + win[:, :H, 1:] * tx
        bottom = win[:, 1:, :W] * (1 - tx) + win[:, 1:, 1:] * tx
        planes.append(top * (1 - ty) + bottom * ty)
    return torch.stack(planes, 1)


class LearnedShift(nn.Module):
    """A pointwise layer's per-channel ``(dy, dx)`` while they are learned: continuous
    offsets within ``radius`` (clamped), each channel sampled bilinearly there.

    Parameters
    ----------
    start : array of int or float, shape (2, C)
        The starting offsets (e.g. the fixed spread's shifts).
    radius : int
        The largest ``|dy|`` and ``|dx|`` (at most :data:`lutsr.layered.MAX_SHIFT`).
    unit : float
        Pixels per unit of the trained parameter: an optimiser step of ``lr``
        on it moves an offset by about ``lr * unit`` pixels, so offsets and
        tables (stepped in table units) can share one step size.
    """

    def __init__(self, start, radius: int, unit: float):
        super().__init__()
        if not 1 <= radius <= MAX_SHIFT or unit <= 0:
            raise ValueError(f"radius must be in 1..{MAX_SHIFT} and unit positive")
        self.radius, self.unit = radius, float(unit)
        start = torch.as_tensor(np.asarray(start, np.float64), dtype=torch.float32)
        self.raw = nn.Parameter(start / self.unit)

    def offsets(self) -> torch.Tensor:
        """The current offsets (2, C) in pixels, within ``radius``."""
        return torch.clamp(self.raw * self.unit, -self.radius, self.radius)

    def rounded(self) -> np.ndarray:
        """The integer shifts (2, C) the offsets round to (half to even)."""
        return torch.round(self.offsets().detach()).long().numpy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (levels) sampled at the offsets, rounded to levels (straight-through)."""
        return round_ste(bilinear_shift(x, self.offsets()))


def spread_shifts(blocks: int, channels: int, radius: int) -> list:
    """Fixed shifts for each block's pointwise layer: channel ``c`` of block ``b``
    reads offset ``(c + 5 b) mod n`` of the ``n = (2 radius + 1)**2`` offsets within
    ``radius``, nearest first, so each block and channel looks somewhere else
    (ShiftLUT's way to widen what a pixel sees; its shifts are learned). None
    per block for ``radius`` 0."""
    if radius == 0:
        return [None] * blocks
    offsets = sorted(((dy, dx) for dy in range(-radius, radius + 1)
                      for dx in range(-radius, radius + 1)),
                     key=lambda o: (o[0] ** 2 + o[1] ** 2, o))
    return [np.array([offsets[(c + 5 * b) % len(offsets)] for c in range(channels)]).T
            for b in range(blocks)]


#: Layer kinds of a layered stage, as :class:`LayeredNet` names its sampling steps.
LAYER_KINDS = ("depthwise", "pointwise", "low", "up")


class LayeredNet(nn.Module):
    """A layered stage in torch: ``forward`` maps (B, 1, H, W) levels 0..255 to
    (B, 1, H*r, W*r), exactly as the runtime would with :meth:`to_stage`'s tables.

    Parameters
    ----------
    r : int
        Upscale factor; the stage has ``r*r`` channels.
    dw, pw : sequence of TableLayerNet
        Per block its depthwise and its pointwise layer.
    low, up : TableLayerNet
        The low-bit layer and the last (up) layer.
    """

    def __init__(self, r: int, dw, pw, low: TableLayerNet, up: TableLayerNet):
        super().__init__()
        self.r = r
        self.dw, self.pw = nn.ModuleList(dw), nn.ModuleList(pw)
        self.low, self.up = low, up

    @classmethod
    def random(cls, r: int, blocks: int, shifts=None, steps=None, init_std: float = 1.0,
               seed: int = 0) -> LayeredNet:
        """A new network with random tables.

        Parameters
        ----------
        shifts : sequence of arrays (2, r*r) or None
            Per block, its pointwise layer's shifts (None: no shift).
        steps : dict
            Sampling step per kind of layer (:data:`LAYER_KINDS`; default 1).
        init_std : float
            Standard deviation of the tables' initial samples (table units).
        """
        c, area = r * r, WINDOW * WINDOW
        steps = {**dict.fromkeys(LAYER_KINDS, 1), **(steps or {})}
        shifts = list(shifts) if shifts is not None else [None] * blocks
        if len(shifts) != blocks:
            raise ValueError(f"{blocks} blocks need {blocks} shift entries, got {len(shifts)}")
        g = torch.Generator().manual_seed(seed)

        def layer(kind, inputs, levels, step, shift=None):
            n = table_entries(step, levels)
            samples = torch.randn(inputs, c, n, generator=g) * init_std
            return TableLayerNet("depthwise" if kind == "low" else kind, samples,
                                 np.full((inputs, c), step), levels, shift)

        return cls(r, [layer("depthwise", area, HIGH_LEVELS, steps["depthwise"])
                       for _ in range(blocks)],
                   [layer("pointwise", c, HIGH_LEVELS, steps["pointwise"], s) for s in shifts],
                   layer("low", area, LOW_LEVELS, steps["low"]),
                   layer("pointwise", c, HIGH_LEVELS, steps["up"]))

    @classmethod
    def from_stage(cls, stage: LayeredStage) -> LayeredNet:
        """A trainable copy of a runtime stage (e.g. imported ShiftLUT tables)."""
        return cls(stage.r, [TableLayerNet.from_layer(dw, HIGH_LEVELS) for dw, _ in stage.blocks],
                   [TableLayerNet.from_layer(pw, HIGH_LEVELS) for _, pw in stage.blocks],
                   TableLayerNet.from_layer(stage.low, LOW_LEVELS),
                   TableLayerNet.from_layer(stage.up, HIGH_LEVELS))

    def resampled(self, steps: dict) -> LayeredNet:
        """This network with each kind of layer's tables sampled every ``steps[kind]``
        levels (:meth:`TableLayerNet.resampled`); kinds not given keep theirs."""
        def again(layer, kind):
            return layer.resampled(steps[kind]) if kind in steps else layer

        return LayeredNet(self.r, [again(dw, "depthwise") for dw in self.dw],
                          [again(pw, "pointwise") for pw in self.pw],
                          again(self.low, "low"), again(self.up, "up"))

    def deepened(self, blocks: int) -> LayeredNet:
        """This network with identity blocks appended up to ``blocks``: zero tables at
        every level and no shifts, so its output is unchanged until they are trained.

        Raises ValueError for fewer blocks than it has."""
        if blocks < len(self.dw):
            raise ValueError(f"it has {len(self.dw)} blocks: {blocks} would drop some")
        c, area = self.r * self.r, WINDOW * WINDOW

        def zeros(inputs):
            return torch.zeros(inputs, c, table_entries(1, HIGH_LEVELS))

        extra = range(blocks - len(self.dw))
        return LayeredNet(
            self.r, [*self.dw, *(TableLayerNet("depthwise", zeros(area), np.ones((area, c)),
                                               HIGH_LEVELS) for _ in extra)],
            [*self.pw, *(TableLayerNet("pointwise", zeros(c), np.ones((c, c)), HIGH_LEVELS)
                         for _ in extra)],
            self.low, self.up)

    def learning_shifts(self, radius: int, unit: float) -> LayeredNet:
        """Every pointwise layer set to learn its shifts (:class:`LearnedShift`), starting
        from its shifts (none: 0) clamped to ``radius``; in place, returns the network."""
        for pw in self.pw:
            start = pw.shifts if pw.shifts is not None else np.zeros((2, pw.inputs), np.int64)
            pw.learned = LearnedShift(np.clip(start, -radius, radius), radius, unit)
        return self

    def frozen_shifts(self) -> LayeredNet:
        """Every learned shift rounded to its integer shift and fixed, in place (returns
        the network): from then on its forward is the runtime's (:meth:`to_stage`) exactly."""
        for pw in self.pw:
            if pw.learned is not None:
                pw.shifts, pw.learned = pw.learned.rounded(), None
        return self

    def rotation(self, plane: torch.Tensor) -> torch.Tensor:
        """The network on (B, 1, H, W) levels: (B, 1, H*r, W*r) in -128..127."""
        x = plane - 128
        low = torch.remainder(x, LOW_LEVELS).detach()
        high = torch.div(x, LOW_LEVELS, rounding_mode="floor")
        for b, (dw, pw) in enumerate(zip(self.dw, self.pw, strict=True)):
            high = dw(high + HALF) + high
            if b == 0:
                low = torch.clamp(self.low(low) + low, 0, LOW_LEVELS - 1)
                high = high + low
            high = torch.clamp(high, -HALF, HALF - 1)
            if pw.learned is not None:  # the shifted planes are the input and the residual
                high = pw.learned(high)
            elif pw.shifts is not None:
                high = shift_channels(high, pw.shifts)
            high = torch.clamp(pw(high + HALF) + high, -HALF, HALF - 1)
        out = torch.clamp(self.up(high + HALF) + high, -128, 127)
        return F.pixel_shuffle(out, self.r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = 0
        for k in range(4):
            total = total + torch.rot90(self.rotation(torch.rot90(x, k, (2, 3))), -k, (2, 3))
        return torch.clamp(total + 128, 0, 255)

    def to_stage(self) -> LayeredStage:
        """The runtime stage holding this network's rounded tables."""
        blocks = tuple((dw.to_layer(), pw.to_layer()) for dw, pw in zip(self.dw, self.pw,
                                                                       strict=True))
        return LayeredStage(self.r, blocks, self.low.to_layer(), self.up.to_layer())
