"""Layered LUT stages: networks of small 1-D tables (ShiftLUT, CVPR 2026; TinyLUT-like).

A :class:`LayeredStage` maps a uint8 plane to a uint8 plane ``r`` times larger
by a small network whose every layer is a set of 1-D look-up tables. The exact
arithmetic (that of the ShiftLUT authors' inference script) is specified by
:func:`lutsr.reference.run_layered_stage`; in short, for each of the 4
rotations of the plane:

1. ``x = pixel - 128`` is split into its high part ``h = x >> 2`` (-32..31)
   and its low bits ``l = x & 3`` (0..3).
2. Block 0's depthwise layer maps ``h + 32`` to ``C`` channels, plus ``h``
   (the residual, broadcast); the low-bit layer maps ``l`` to ``C`` channels
   plus ``l``, clamped to 0..3, and added. Every later layer of a block adds
   its input (the residual); after each layer the channels are clamped to
   -32..31.
3. Each pointwise layer first shifts each input channel by its own integer
   ``(dy, dx)`` (replicate padding); the shifted plane is also the residual.
4. The last layer (``up``) is pointwise with ``r*r`` outputs, plus its input,
   clamped to -128..127, and arranged by pixel shuffle.
5. The 4 rotated-back outputs are summed, 128 is added, and the result is
   clipped to 0..255.

A layer of 1-D tables (:class:`TableLayer`) reads, per output channel ``o``,
``A`` inputs ``v_a`` (the 3x3 window of one channel, replicate padding, for a
depthwise layer; the ``C`` channels of the pixel for a pointwise one) and
outputs ``round(sum_a Q(tables[a, o], steps[a, o], v_a) / A)`` with round half
to even, where ``Q(t, s, v) = t[v // s] * (1 - f) + t[v // s + 1] * f`` with
``f = (v % s) / s`` (``t[v]`` for ``s = 1``): linear interpolation between
table entries sampled every ``s`` input levels. Every ``Q`` is a multiple of
``1/16`` (``s <= 16``), so the whole stage is exact in integers.

This module holds the model and its invariants, and the numpy-level helpers
every backend shares (:func:`expanded_tables`); it imports nothing from the
rest of lutsr.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Bits of the low part of each input: ``l = x & 3``, ``h = x >> 2``.
LOW_BITS = 2

#: Input levels of the layers that read the high part (``h + 32``: 0..63) and
#: of the low-bit layer (``l``: 0..3).
HIGH_LEVELS = 2 ** (8 - LOW_BITS)
LOW_LEVELS = 2**LOW_BITS

#: Sampling steps a table may have, in input levels.
STEPS = (1, 2, 4, 8, 16)

#: Fraction bits of an interpolated table value: every ``Q`` is a multiple of ``2**-Q_BITS``.
Q_BITS = 4

#: Side of a depthwise layer's window (3x3), and so its number of inputs ``A``.
WINDOW = 3

#: Bounds that keep a file from asking for unbounded work.
MAX_CHANNELS = 32
MAX_BLOCKS = 32
MAX_SHIFT = 15

KINDS = ("depthwise", "pointwise")


def table_entries(step: int, levels: int) -> int:
    """Entries a table sampled every ``step`` levels needs to cover inputs ``0..levels-1``."""
    return levels if step == 1 else (levels - 1) // step + 2


@dataclass(frozen=True, eq=False)
class TableLayer:
    """One layer of 1-D look-up tables.

    Parameters
    ----------
    kind : {"depthwise", "pointwise"}
        A depthwise layer reads the 3x3 window (replicate padding) of one
        channel per output channel (or of the single input channel, for every
        output channel, when its input has one channel); a pointwise layer
        reads every input channel of the pixel.
    tables : numpy.ndarray
        int8 of shape ``(A, C_out, N)``: table ``tables[a, o]`` maps input ``a``
        (window position ``a = 3 * dy + dx`` for depthwise, ``A = 9``; input
        channel ``a`` for pointwise) to output channel ``o``. Only its first
        :func:`table_entries` entries are used; the rest must be 0.
    steps : numpy.ndarray
        uint8 of shape ``(A, C_out)``, each in :data:`STEPS`.
    shifts : numpy.ndarray or None
        Pointwise layers only: int8 of shape ``(2, A)``, the ``(dy, dx)`` by
        which input channel ``a`` is read (``x[y + dy, x + dx]``, replicate
        padding), ``|dy|, |dx| <= MAX_SHIFT``. None means no shift.
    """

    kind: str
    tables: np.ndarray
    steps: np.ndarray
    shifts: np.ndarray | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"layer kind must be one of {KINDS}, got {self.kind!r}")
        tables, steps = np.asarray(self.tables), np.asarray(self.steps)
        if tables.dtype != np.int8 or tables.ndim != 3 or 0 in tables.shape:
            raise ValueError(f"layer tables must be int8 of shape (A, C_out, N), got "
                             f"{tables.dtype} {tables.shape}")
        inputs, outputs, size = tables.shape
        if self.kind == "depthwise" and inputs != WINDOW * WINDOW:
            raise ValueError(f"a depthwise layer has {WINDOW * WINDOW} inputs, got {inputs}")
        if not 1 <= outputs <= MAX_CHANNELS or not 1 <= inputs <= max(MAX_CHANNELS, 9):
            raise ValueError(f"layer of {inputs} inputs and {outputs} outputs: at most "
                             f"{MAX_CHANNELS} channels")
        if size > HIGH_LEVELS:
            raise ValueError(f"tables have at most {HIGH_LEVELS} entries, got {size}")
        if steps.shape != (inputs, outputs) or not np.isin(steps, STEPS).all():
            raise ValueError(f"layer steps must be of shape {(inputs, outputs)} with values in "
                             f"{STEPS}, got {steps.dtype} {steps.shape}")
        object.__setattr__(self, "tables", np.ascontiguousarray(tables))
        object.__setattr__(self, "steps", np.ascontiguousarray(steps, np.uint8))
        if self.shifts is not None:
            shifts = np.asarray(self.shifts)
            if self.kind != "pointwise":
                raise ValueError("only pointwise layers have shifts")
            # The range is checked in Python integers: a cast first would wrap a uint64
            # 2**64-1 to -1, and abs() of an int64 -2**63 overflows to itself.
            if (shifts.shape != (2, inputs) or shifts.dtype.kind not in "iu"
                    or not -MAX_SHIFT <= int(shifts.min()) <= int(shifts.max()) <= MAX_SHIFT):
                raise ValueError(f"layer shifts must be integers of shape (2, {inputs}) within "
                                 f"+-{MAX_SHIFT}, got {shifts.dtype} {shifts.shape}")
            object.__setattr__(self, "shifts", np.ascontiguousarray(shifts, np.int8))

    @property
    def inputs(self) -> int:
        """``A``: window positions (depthwise) or input channels (pointwise)."""
        return self.tables.shape[0]

    @property
    def outputs(self) -> int:
        """``C_out``, the output channels."""
        return self.tables.shape[1]

    def check_levels(self, levels: int, what: str) -> None:
        """Raise ValueError unless every table covers inputs ``0..levels-1`` exactly."""
        need = np.vectorize(lambda s: table_entries(int(s), levels))(self.steps)
        if (need > self.tables.shape[2]).any():
            a, o = np.argwhere(need > self.tables.shape[2])[0]
            raise ValueError(f"{what}: table i{a}o{o} (step {self.steps[a, o]}) needs "
                             f"{need[a, o]} entries, the layer stores {self.tables.shape[2]}")
        unused = np.arange(self.tables.shape[2]) >= need[..., None]
        if (self.tables[unused] != 0).any():
            raise ValueError(f"{what}: entries past a table's last sample must be 0")


@dataclass(frozen=True, eq=False)
class LayeredStage:
    """A stage that is a network of 1-D table layers (see the module docstring).

    Parameters
    ----------
    r : int
        Upscale factor of this stage; ``r*r`` must equal the channels ``C``.
    blocks : tuple of (TableLayer, TableLayer)
        Per block a depthwise layer then a pointwise layer (with or without
        shifts), each ``C`` channels in and out (block 0's depthwise layer
        reads the single input channel).
    low : TableLayer
        Block 0's depthwise layer over the low bits (1 channel in, ``C`` out).
    up : TableLayer
        The last pointwise layer, ``C`` channels in, ``r*r`` out, no shifts.
    """

    r: int
    blocks: tuple[tuple[TableLayer, TableLayer], ...]
    low: TableLayer
    up: TableLayer

    def __post_init__(self):
        if isinstance(self.r, bool) or not isinstance(self.r, (int, np.integer)) \
                or not 1 <= self.r <= 8:
            raise ValueError(f"stage r must be an integer in 1..8, got {self.r!r}")
        object.__setattr__(self, "r", int(self.r))
        blocks = tuple(tuple(b) for b in self.blocks)
        object.__setattr__(self, "blocks", blocks)
        if not 1 <= len(blocks) <= MAX_BLOCKS:
            raise ValueError(f"a layered stage has 1..{MAX_BLOCKS} blocks, got {len(blocks)}")
        layers = [*(layer for b in blocks for layer in b), self.low, self.up]
        if not all(isinstance(layer, TableLayer) for layer in layers) \
                or not all(len(b) == 2 for b in blocks):
            raise TypeError("blocks must be (depthwise, pointwise) pairs of TableLayer")
        channels = self.channels
        if self.r * self.r != channels:
            raise ValueError(f"r*r = {self.r * self.r} must equal the {channels} channels "
                             "(the last layer adds its input)")
        for i, (dw, pw) in enumerate(blocks):
            if dw.kind != "depthwise" or pw.kind != "pointwise":
                raise ValueError(f"block {i}: want a depthwise then a pointwise layer")
            if dw.outputs != channels or pw.inputs != channels or pw.outputs != channels:
                raise ValueError(f"block {i}: every layer must have {channels} channels in and out")
            dw.check_levels(HIGH_LEVELS, f"block {i} depthwise")
            pw.check_levels(HIGH_LEVELS, f"block {i} pointwise")
        if self.low.kind != "depthwise" or self.low.outputs != channels:
            raise ValueError(f"the low-bit layer must be depthwise with {channels} outputs")
        self.low.check_levels(LOW_LEVELS, "low-bit layer")
        if self.up.kind != "pointwise" or self.up.inputs != channels or self.up.shifts is not None:
            raise ValueError(f"the up layer must be pointwise over {channels} channels, no shifts")
        if self.up.outputs != self.r * self.r:
            # Every backend writes exactly r*r outputs per pixel (the pixel shuffle).
            raise ValueError(f"the up layer has {self.up.outputs} outputs; r = {self.r} needs "
                             f"r*r = {self.r * self.r}")
        self.up.check_levels(HIGH_LEVELS, "up layer")

    @property
    def channels(self) -> int:
        """``C``, the feature channels between layers."""
        return self.blocks[0][0].outputs if self.blocks else 0

    @property
    def layers(self) -> tuple[TableLayer, ...]:
        """Every layer, in the order they run: block 0's depthwise, the low-bit
        layer, block 0's pointwise, ..., up."""
        (dw0, pw0), *rest = self.blocks
        return (dw0, self.low, pw0, *(layer for b in rest for layer in b), self.up)

    @property
    def nbytes(self) -> int:
        """Bytes of table entries actually used (as the authors' files store them)."""
        total = 0
        for layer, levels in zip(self.layers, self._levels(), strict=True):
            total += sum(table_entries(int(s), levels) for s in layer.steps.ravel())
        return total

    def _levels(self):
        return [LOW_LEVELS if layer is self.low else HIGH_LEVELS for layer in self.layers]

    def describe(self) -> str:
        """One line: blocks, channels, shifts, bytes."""
        shifted = sum(pw.shifts is not None for _, pw in self.blocks)
        return (f"r={self.r} layered: {len(self.blocks)} block(s) of depthwise+pointwise 1-D "
                f"tables over {self.channels} channels ({shifted} shifted), low-bit layer, "
                f"up layer; {self.nbytes / 1e3:.1f} KB of table entries")


def expanded_tables(layer: TableLayer, levels: int) -> np.ndarray:
    """Every table's interpolated value at every input, times 16: int16 ``(A, C_out, levels)``.

    ``out[a, o, v] = 16 * Q(tables[a, o], steps[a, o], v)``, an exact integer
    (``|out| <= 2048``): the form the fast backends look values up in.
    """
    v = np.arange(levels)
    steps = layer.steps.astype(np.int64)[..., None]
    lo = np.minimum(v // steps, layer.tables.shape[2] - 1)
    hi = np.minimum(lo + 1, layer.tables.shape[2] - 1)
    f = v % steps
    t = layer.tables.astype(np.int64)
    a_lo = np.take_along_axis(t, lo, axis=2)
    a_hi = np.take_along_axis(t, hi, axis=2)
    # (t[lo] * (s - f) + t[hi] * f) / s in units of 1/16; f = 0 for s = 1.
    return ((a_lo * (steps - f) + a_hi * f) * (16 // steps)).astype(np.int16)


def device_layers(stage: LayeredStage) -> list[tuple]:
    """The layers the GPU kernels run after block 0's depthwise one, in order.

    Block 0's pointwise, block 1's depthwise, block 1's pointwise, ...: each
    ``(expanded, shifts)``, ``expanded`` from :func:`expanded_tables` and
    ``shifts`` None for a depthwise layer, int32 ``(2, C)`` (zeros when
    unshifted) for a pointwise one, both contiguous.
    """
    def entry(layer, shifts):
        return (np.ascontiguousarray(expanded_tables(layer, HIGH_LEVELS)),
                None if shifts is None else np.ascontiguousarray(shifts, np.int32))

    (_, pw0), *rest = stage.blocks
    layers = []
    for dw, pw in ((None, pw0), *rest):
        if dw is not None:
            layers.append(entry(dw, None))
        layers.append(entry(pw, np.zeros((2, pw.inputs), np.int32) if pw.shifts is None
                            else pw.shifts))
    return layers
