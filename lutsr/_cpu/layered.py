"""The numba backend's kernels for layered stages (:class:`~lutsr.layered.LayeredStage`).

The spec is :func:`lutsr.reference.run_layered_stage`; these kernels
reproduce it bit for bit. How a stage runs (:func:`_layered_band`):

* **No rotation is materialised.** The network run on ``np.rot90(plane, k)``
  and rotated back equals the same network run on the unrotated plane with
  every spatial offset rotated: a depthwise layer's 3x3 window positions and
  a pointwise layer's per-channel shifts (replicate padding commutes with the
  rotation: clamping an index is symmetric), and the up layer's outputs
  permuted within each ``r x r`` block (:func:`~lutsr.indexmaps.block_permutations`).
  So the four rotations' outputs share one orientation and are summed in place.
* **Integers only.** Each layer looks its inputs up in
  :func:`~lutsr.layered.expanded_tables` (``16 * Q``, exact int16) and sums
  them into ``T``, an exact integer; ``round_half_even(T / (16 * A))`` (``A``
  inputs) is a multiply and a shift (:func:`~.layered_plan.division_magic`,
  checked for every reachable ``T``) and a parity fix for ties. Feature maps
  hold ``h + 32`` (0..63): the tables' own index.
* **Rows through ring buffers.** A task is one image channel over a band of
  rows. Per rotation the layers run as a pipeline over rows: each keeps, in a
  ring, only the rows of its output that the next layer can still reach (its
  window or shifts; see :class:`~.layered_plan.LayeredPlan`), so a layer's
  input is in cache when read and no row is computed twice, but for the
  halo at a band's edges. The up layer adds its rows into the band's
  accumulator; in the last rotation each finished row is rounded and
  written, pixel-shuffled (:func:`_finish_lanes`).
* **Lanes across pixels** (AVX-512BW). A layer's output channel ``o`` at 32
  neighbouring pixels is a sum over its inputs ``a`` of ``table[a, o][v_a]``:
  the 64-entry int16 table sits in two registers and one ``vpermi2w`` looks
  up 32 pixels. A sum of at most 16 entries of ``|16 Q| <= 2048`` fits int16
  exactly, so 32 lanes per instruction throughout. A depthwise layer keeps an
  output's 9 tables in registers while it sweeps the row
  (:func:`_depthwise_lanes`); a pointwise one loads each input vector once
  for 4 outputs, 4 vectors per call (:func:`_pointwise_lanes`): 16
  independent sums hide the permutes' latency.
* **AVX2** (CPUs with AVX2 but not AVX-512BW; no 16-bit permute there). A
  layer whose inputs every output shares (pointwise, the low-bit layer,
  block 0's depthwise) adds, per pixel and input, one 32-byte row of the 16
  outputs' entries by one ``vpaddw`` from memory, 16 pixels at a time, then
  transposes (:func:`_shared_inputs_avx2`). The other depthwise layers look
  up 32 pixels in a table by 8 ``vpshufb`` over its low and high bytes in 4
  slices of 16, reading the input as control bytes that zero the lanes of
  the other slices (:func:`_control_planes`, :func:`_depthwise_avx2`).
  Rounding as with AVX-512, 16 lanes.
* **NEON** (aarch64). The AVX2 kernels' structure and tables in generic IR
  but for one intrinsic: a depthwise lookup of 16 pixels is one ``tbl`` of
  four registers per byte plane (:func:`_depthwise_neon`); the shared-input
  layers take 8 pixels per call (:func:`_shared_inputs_neon`).
* **Portable kernels** (CPUs without AVX2, stages over 16 channels): a
  layer whose inputs are shared by every output (pointwise, or block 0's
  depthwise over the one input channel) adds per pixel and input one row of
  the ``C`` outputs' values, a generic vector (:func:`_shared_inputs_portable`);
  the other depthwise layers look up 9 values per pixel and output in a
  tight scalar loop (:func:`_depthwise_portable`).

Intrinsics and the kernels that inline them share this file on purpose (see
:mod:`lutsr._cpu.kernels`: numba's cache is invalidated only by changes to a
jitted function's own file).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import layered as _layered
from .kernels import _pointer_name, _splat

# layered.py's constants these kernels read, as literals of this file (numba's cache keys
# on this file alone; see kernels.py): changing one there fails this import.
HIGH_LEVELS, MAX_SHIFT, WINDOW = 64, 15, 3
if (HIGH_LEVELS, MAX_SHIFT, WINDOW) != (_layered.HIGH_LEVELS, _layered.MAX_SHIFT, _layered.WINDOW):
    raise ImportError("lutsr/_cpu/layered.py: copy layered.py's HIGH_LEVELS, MAX_SHIFT, WINDOW")

#: int16 lanes per vector (one 512-bit register).
VEC = 32

# A ring row's replicated columns fit in the vector of padding before its first pixel.
assert MAX_SHIFT < VEC

#: Output channels and vectors per call of :func:`_pointwise_lanes`: each input
#: vector loaded serves ``OUTS`` lookups, and ``OUTS * CHAINS`` independent sums hide
#: the latency of the permutes.
OUTS = 4
CHAINS = 4


class _Lanes:
    """IR building blocks of the AVX-512 intrinsics (:func:`_depthwise_lanes`, ...).

    Vectors are ``<32 x i16>``; ``magic`` and ``epi`` are the indices of the
    arguments holding the layer's rounding ``(mul, shift - 16, D, D // 2 +
    128 * D, ...)`` (:func:`~.layered_plan.division_magic`) and its ``(lo,
    hi, bias)``, numba tuples (None: no rounding).
    """

    def __init__(self, context, builder, signature, args, magic: int | None, epi: int | None,
                 lanes: int = VEC, generic: bool = False):
        self.context, self.builder = context, builder
        self.sig, self.args = signature.args, args
        self.i64 = ir.IntType(64)
        self.vec = ir.VectorType(ir.IntType(16), lanes)
        self.generic = generic  # no x86 intrinsic (NEON): see :meth:`mulhi`
        module = builder.module
        if lanes == VEC and not generic:
            self.permute = cgutils.get_or_insert_function(
                module, ir.FunctionType(self.vec, [self.vec] * 3),
                "llvm.x86.avx512.vpermi2var.hi.512")
        if not generic and magic is not None:
            self._pmulhu = cgutils.get_or_insert_function(
                module, ir.FunctionType(self.vec, [self.vec] * 2),
                "llvm.x86.avx512.pmulhu.w.512" if lanes == VEC else "llvm.x86.avx2.pmulhu.w")

        def field(index, i):
            value = builder.extract_value(args[index], i)
            value = context.cast(builder, value, self.sig[index].dtype, types.int64)
            return _splat(builder, self.vec, builder.trunc(value, ir.IntType(16)))

        if magic is not None:
            self.mul, self.shift, self.divisor, self.t_bias = (field(magic, i) for i in range(4))
            self.lo, self.hi, bias = (field(epi, i) for i in range(3))
            self.bias = builder.sub(bias, self.const(128))  # d = q - 128: see :meth:`finish`

    def const(self, c):
        return ir.Constant(self.vec, [c] * self.vec.count)

    def mulhi(self, a, b):
        """The high halves of the unsigned 16 x 16-bit products, lane by lane: ``vpmulhuw``
        on x86; generic IR otherwise (widen, multiply, shift, narrow: on aarch64 LLVM
        makes it ``umull`` / ``umull2`` and one ``uzp2``)."""
        builder = self.builder
        if not self.generic:
            return builder.call(self._pmulhu, [a, b])
        wide = ir.VectorType(ir.IntType(32), self.vec.count)
        product = builder.mul(builder.zext(a, wide), builder.zext(b, wide))
        high = builder.lshr(product, ir.Constant(wide, [16] * self.vec.count))
        return builder.trunc(high, self.vec)

    def int64(self, index):
        """Argument ``index`` as an i64."""
        return self.context.cast(self.builder, self.args[index], self.sig[index], types.int64)

    def data(self, index):
        """The data pointer of array argument ``index``."""
        return self.context.make_array(self.sig[index])(self.context, self.builder,
                                                        self.args[index]).data

    def at(self, data, *offsets):
        """Pointer to the vector at ``data + sum(offsets)`` (i64 values or ints)."""
        b = self.builder
        total = None
        for off in offsets:
            off = ir.Constant(self.i64, off) if isinstance(off, int) else off
            total = off if total is None else b.add(total, off)
        return b.bitcast(b.gep(data, [total]), self.vec.as_pointer())

    def load(self, data, *offsets):
        return self.builder.load(self.at(data, *offsets), align=2)

    def lookup(self, table, index):
        """``table[index]`` lane by lane: ``table`` a (low, high) pair of 32-entry halves."""
        return self.builder.call(self.permute, [table[0], index, table[1]])

    def finish(self, total, residuals, target, accumulate):
        """Store ``clip(round_half_even(total / D) + sum(residuals) + bias, lo, hi)`` at the
        pointer ``target``, plus what is there when the i1 ``accumulate`` is set."""
        b = self.builder
        # t = T + D/2 + 128 D is 0..65535: q = floor(t / D) = mulhi(t, mul) >> shift, and
        # round_half_even(T / D) = q - 128, but for a tie (t a multiple of D) with q odd:
        # then the even neighbour q - 1.
        t = b.add(total, self.t_bias)
        q = b.lshr(self.mulhi(t, self.mul), self.shift)
        tie = b.icmp_unsigned("==", t, b.mul(q, self.divisor))
        v = b.add(b.select(tie, b.and_(q, self.const(-2)), q), self.bias)
        for residual in residuals:
            v = b.add(v, residual)
        v = b.select(b.icmp_signed("<", v, self.lo), self.lo, v)
        v = b.select(b.icmp_signed(">", v, self.hi), self.hi, v)
        if accumulate is not None:
            previous = b.load(target, align=2)
            v = b.add(v, b.select(accumulate, previous, self.const(0)))
        b.store(v, target, align=2)


#: Window positions of a depthwise layer: its inputs.
_TAPS = WINDOW * WINDOW


@intrinsic
def _depthwise_lanes(typingctx, work, tables, tab_at, tab_step, a_off, o_base, res2, magic, epi,
                     out, out_at, n_vec):
    """One output channel of a depthwise layer over ``32 * n_vec`` pixels.

    For pixel ``i``, with ``v_a = work[o_base + a_off[a] + i]``: ``T =
    sum(tables[tab_at + a * tab_step + v_a] for a < 9)`` (int16, exact: see
    :data:`~.layered_plan.MAX_LANE_INPUTS`), then ``clip(round_half_even(T /
    D) + v_4 + work[res2 + i] + bias, lo, hi)`` (``v_4``, the window's
    centre, is the residual; ``res2`` None: no second one; ``magic``,
    ``epi``: see :class:`_Lanes`) stored at ``out[out_at + i]``. The 9 tables stay in 18
    registers while the loop sweeps the row, two vectors per turn; each lookup
    is one ``vpermi2w`` of 32 lanes (the 64-entry table in two registers, the
    input values 0..63 as indices).
    """
    if not isinstance(work, types.Array):
        return None
    second = not isinstance(res2, (types.NoneType, types.Omitted))

    def codegen(context, builder, signature, args):
        lanes = _Lanes(context, builder, signature, args, magic=7, epi=8)
        b, i64 = builder, lanes.i64
        work_d, tab_d, out_d = lanes.data(0), lanes.data(1), lanes.data(9)
        tab_at, tab_step, o_base = lanes.int64(2), lanes.int64(3), lanes.int64(5)
        off_d = lanes.data(4)
        tabs, offs = [], []
        for a in range(_TAPS):
            at = b.add(tab_at, b.mul(tab_step, ir.Constant(i64, a)))
            tabs.append((lanes.load(tab_d, at), lanes.load(tab_d, at, VEC)))
            offs.append(b.add(o_base, b.load(b.gep(off_d, [ir.Constant(i64, a)]))))
        res2 = lanes.int64(6) if second else None
        out_at, n_vec = lanes.int64(10), lanes.int64(11)

        def body(x, chains):
            for c in range(chains):
                x_c = b.add(x, ir.Constant(i64, c * VEC))
                inputs = [lanes.load(work_d, offs[a], x_c) for a in range(_TAPS)]
                looked = [lanes.lookup(tabs[a], inputs[a]) for a in range(_TAPS)]
                while len(looked) > 1:  # a tree: short dependency chains
                    looked = [b.add(looked[j], looked[j + 1]) if j + 1 < len(looked)
                              else looked[j] for j in range(0, len(looked), 2)]
                residuals = [inputs[_TAPS // 2]]
                if res2 is not None:
                    residuals.append(lanes.load(work_d, res2, x_c))
                lanes.finish(looked[0], residuals, lanes.at(out_d, out_at, x_c), None)

        pairs = b.udiv(n_vec, ir.Constant(i64, 2))
        with cgutils.for_range(b, pairs) as loop:
            body(b.mul(loop.index, ir.Constant(i64, 2 * VEC)), 2)
        odd = b.icmp_unsigned("!=", b.and_(n_vec, ir.Constant(i64, 1)), ir.Constant(i64, 0))
        with b.if_then(odd):
            body(b.mul(pairs, ir.Constant(i64, 2 * VEC)), 1)
        return context.get_dummy_value()

    return types.void(work, tables, tab_at, tab_step, a_off, o_base, res2, magic, epi, out,
                      out_at, n_vec), codegen


@intrinsic
def _pointwise_lanes(typingctx, work, tables, tab_at, tab_step, n_in, a_off, out_at, o, magic,
                     epi, out, accumulate, x, outs, chains):
    """Output channels ``o .. o + len(outs) - 1`` of a pointwise layer at ``32 *
    len(chains)`` pixels from ``x``.

    For output ``p`` and pixel ``i``: ``T = sum(tables[tab_at + p * 64 + a *
    tab_step + work[a_off[a] + i]] for a < n_in)`` (int16, exact: see
    :data:`~.layered_plan.MAX_LANE_INPUTS`), then ``clip(round_half_even(T /
    D) + work[a_off[p] + i] + bias, lo, hi)`` (the shifted input ``p`` is the
    residual; ``magic``, ``epi``: see :class:`_Lanes`), plus ``out[out_at[p]
    + i]`` when ``accumulate``, stored at ``out[out_at[p] + i]``. Each input
    vector is loaded once for the ``len(outs)`` outputs; each lookup is one
    ``vpermi2w``.
    """
    if not (isinstance(outs, types.UniTuple) and isinstance(chains, types.UniTuple)):
        return None
    n_outs, n_chains = outs.count, chains.count

    def codegen(context, builder, signature, args):
        lanes = _Lanes(context, builder, signature, args, magic=8, epi=9)
        b, i64 = builder, lanes.i64
        work_d, tab_d, off_d, dst_d, out_d = (lanes.data(i) for i in (0, 1, 5, 6, 10))
        tab_at, tab_step, x, o = lanes.int64(2), lanes.int64(3), lanes.int64(12), lanes.int64(7)
        zero = lanes.const(0)
        accs = [[cgutils.alloca_once_value(b, zero) for _ in range(n_chains)]
                for _ in range(n_outs)]
        tab_o = b.add(tab_at, b.mul(o, ir.Constant(i64, HIGH_LEVELS)))
        with cgutils.for_range(b, lanes.int64(4)) as loop:
            at = b.add(b.load(b.gep(off_d, [loop.index])), x)
            inputs = [lanes.load(work_d, at, c * VEC) for c in range(n_chains)]
            row = b.add(tab_o, b.mul(loop.index, tab_step))
            for p in range(n_outs):
                table = (lanes.load(tab_d, row, p * HIGH_LEVELS),
                         lanes.load(tab_d, row, p * HIGH_LEVELS + VEC))
                for c in range(n_chains):
                    acc = accs[p][c]
                    b.store(b.add(b.load(acc), lanes.lookup(table, inputs[c])), acc)
        accumulate = context.cast(b, args[11], signature.args[11], types.boolean)
        for p in range(n_outs):
            channel = b.add(o, ir.Constant(i64, p))
            residual_at = b.add(b.load(b.gep(off_d, [channel])), x)
            target_at = b.add(b.load(b.gep(dst_d, [channel])), x)
            for c in range(n_chains):
                lanes.finish(b.load(accs[p][c]), [lanes.load(work_d, residual_at, c * VEC)],
                             lanes.at(out_d, target_at, c * VEC), accumulate)
        return context.get_dummy_value()

    return types.void(work, tables, tab_at, tab_step, n_in, a_off, out_at, o, magic, epi, out,
                      accumulate, x, outs, chains), codegen


@intrinsic
def _finish_lanes(typingctx, acc, at, stride, dst, d_at, n, side):
    """The output bytes of ``n <= 32`` pixels of one output row, pixel-shuffled.

    Block position ``v`` of pixel ``i`` is the sum at ``acc[at + v * stride +
    i]``; ``dst[d_at + i * r + v] = clip(sum + 128, 0, 255)`` for ``v < r`` (the
    length of ``side``): ``r`` vectors clamped, narrowed to bytes, interleaved
    by one shuffle and stored by one masked store (bytes past pixel ``n`` are
    not written).
    """
    if not (isinstance(acc, types.Array) and isinstance(side, types.UniTuple)):
        return None
    r = side.count

    def codegen(context, builder, signature, args):
        lanes = _Lanes(context, builder, signature, args, magic=None, epi=None)
        b, i64 = builder, lanes.i64
        i8, i32 = ir.IntType(8), ir.IntType(32)
        acc_d, dst_d = lanes.data(0), lanes.data(3)
        at, stride, d_at = lanes.int64(1), lanes.int64(2), lanes.int64(4)
        n = b.trunc(lanes.int64(5), i32)
        byte_vec = ir.VectorType(i8, VEC)
        parts = []
        for v in range(r):
            value = b.add(lanes.load(acc_d, at, b.mul(stride, ir.Constant(i64, v))),
                          lanes.const(128))
            value = b.select(b.icmp_signed("<", value, lanes.const(0)), lanes.const(0), value)
            value = b.select(b.icmp_signed(">", value, lanes.const(255)), lanes.const(255), value)
            parts.append(b.trunc(value, byte_vec))
        while len(parts) > 1:  # concatenate: part k's byte i at k * 32 + i
            if len(parts) % 2:
                parts.append(ir.Constant(parts[0].type, ir.Undefined))
            size = parts[0].type.count
            mask = ir.Constant(ir.VectorType(i32, 2 * size), list(range(2 * size)))
            parts = [b.shuffle_vector(parts[j], parts[j + 1], mask)
                     for j in range(0, len(parts), 2)]
        width = VEC * r
        row_t = ir.VectorType(i8, width)
        order = [(j % r) * VEC + j // r for j in range(width)]
        row = b.shuffle_vector(parts[0], ir.Constant(parts[0].type, ir.Undefined),
                               ir.Constant(ir.VectorType(i32, width), order))
        store = cgutils.get_or_insert_function(
            b.module, ir.FunctionType(ir.VoidType(), [
                row_t, row_t.as_pointer(), i32, ir.VectorType(ir.IntType(1), width)]),
            f"llvm.masked.store.v{width}i8.{_pointer_name(row_t)}")
        limit = _splat(b, ir.VectorType(i32, width), b.mul(n, ir.Constant(i32, r)))
        mask = b.icmp_signed("<", ir.Constant(ir.VectorType(i32, width), list(range(width))),
                             limit)
        target = b.bitcast(b.gep(dst_d, [d_at]), row_t.as_pointer())
        b.call(store, [row, target, ir.Constant(i32, 1), mask])
        return context.get_dummy_value()

    return types.void(acc, at, stride, dst, d_at, n, side), codegen


#: int16 lanes per AVX2 vector (one 256-bit register).
VEC2 = 16

#: Table slices of a 64-entry table for ``vpshufb`` (16 entries each).
_SLICES = HIGH_LEVELS // 16


def _unpack_mask(size: int, high: bool) -> list[int]:
    """The i16 shuffle mask of an in-lane unpack (low or high halves) of elements of ``size``
    i16 each, of two 16 x i16 vectors (``vpunpck{l,h}{wd,dq,qdq}``)."""
    per_lane = 8 // size
    half = per_lane // 2
    mask = []
    for lane in range(2):
        for j in range(half):
            src = lane * per_lane + (half if high else 0) + j
            for side in (0, VEC2):
                mask += [side + src * size + e for e in range(size)]
    return mask


def _transpose(builder, rows):
    """The 16 columns of 16 ``<16 x i16>`` rows: three rounds of in-lane unpacks (each an
    8 x 8 transpose per 128-bit lane), then one 128-bit lane move per column (64 shuffles)."""
    i32 = ir.IntType(32)
    # Each vector's labels (row, column), tracked to build the last round's masks.
    vecs = [(row, [(i, j) for j in range(VEC2)]) for i, row in enumerate(rows)]

    def unpack(a, b, size, high):
        mask = _unpack_mask(size, high)
        labels = [(a[1] + b[1])[m] for m in mask]
        return (builder.shuffle_vector(a[0], b[0], ir.Constant(ir.VectorType(i32, VEC2), mask)),
                labels)

    for size, pairs in ((1, [(2 * k, 2 * k + 1) for k in range(8)]),
                        (2, [(4 * m + j, 4 * m + j + 2) for m in range(4) for j in (0, 1)]),
                        (4, [(8 * g + j, 8 * g + j + 4) for g in range(2) for j in range(4)])):
        out = [None] * VEC2
        for n, (p, q) in enumerate(pairs):
            out[2 * n] = unpack(vecs[p], vecs[q], size, False)
            out[2 * n + 1] = unpack(vecs[p], vecs[q], size, True)
        vecs = out
    where = {label: (v, lane) for v, (_, labels) in enumerate(vecs)
             for lane, label in enumerate(labels)}
    columns = []
    for j in range(VEC2):
        found = [where[(i, j)] for i in range(VEC2)]
        sources = sorted({v for v, _ in found})
        assert len(sources) == 2, sources  # two 128-bit halves from two vectors
        mask = [sources.index(v) * VEC2 + lane for v, lane in found]
        columns.append(builder.shuffle_vector(vecs[sources[0]][0], vecs[sources[1]][0],
                                              ir.Constant(ir.VectorType(i32, VEC2), mask)))
    return columns


#: Pixels per call of :func:`_shared_inputs_neon`: their 8 rows of sums fill 16 of the 32
#: NEON registers (16 pixels' rows, all 32, spilled).
PIXELS_NEON = 8


def _transpose8(builder, rows):
    """The 16 columns (``<8 x i16>``) of 8 ``<16 x i16>`` rows: each half of the rows (outputs
    0-7, then 8-15; a register each on NEON) transposed 8 x 8 by three rounds of unpacks
    (``zip1`` / ``zip2`` of 16-, 32- and 64-bit elements: 48 shuffles)."""
    i32 = ir.IntType(32)
    half_t = ir.VectorType(ir.IntType(16), PIXELS_NEON)

    def unpack(a, b, size, high):
        chunks = PIXELS_NEON // size // 2
        mask = [side + (chunks * high + c) * size + e for c in range(chunks)
                for side in (0, PIXELS_NEON) for e in range(size)]
        return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(i32, PIXELS_NEON), mask))

    columns = []
    for h in range(2):
        part = ir.Constant(ir.VectorType(i32, PIXELS_NEON), list(range(8 * h, 8 * h + 8)))
        vecs = [builder.shuffle_vector(row, ir.Constant(row.type, ir.Undefined), part)
                for row in rows]
        assert vecs[0].type == half_t
        for size, pairs in ((1, [(0, 1), (2, 3), (4, 5), (6, 7)]),
                            (2, [(0, 2), (1, 3), (4, 6), (5, 7)]),
                            (4, [(0, 4), (1, 5), (2, 6), (3, 7)])):
            vecs = [unpack(vecs[p], vecs[q], size, high) for p, q in pairs
                    for high in (False, True)]
        columns += vecs  # column 8 h + j: pixel i in lane i
    return columns


def _shared_inputs_codegen(generic: bool, n_ch: int, second: bool, adds: bool):
    """The code of :func:`_shared_inputs_avx2` (``generic``: of :func:`_shared_inputs_neon`,
    no x86 intrinsic, :data:`PIXELS_NEON` pixels), for ``n_ch`` outputs, a second residual
    or not, adding into the output or not."""
    pixels = PIXELS_NEON if generic else VEC2

    def codegen(context, builder, signature, args):
        lanes = _Lanes(context, builder, signature, args, magic=8, epi=9, lanes=pixels,
                       generic=generic)
        b, i64 = builder, lanes.i64
        row_t = ir.VectorType(ir.IntType(16), VEC2)  # one row: the 16 outputs' entries
        work_d, tab_d, off_d, r1_d, out_d, dst_d = (lanes.data(i)
                                                    for i in (0, 1, 4, 6, 10, 11))
        r2_d = lanes.data(7) if second else None
        tab_at, x = lanes.int64(2), lanes.int64(13)
        start = b.add(lanes.int64(5), x)
        sums = [cgutils.alloca_once_value(b, ir.Constant(row_t, [0] * VEC2))
                for _ in range(pixels)]
        with cgutils.for_range(b, lanes.int64(3)) as loop:
            at = b.add(b.load(b.gep(off_d, [loop.index])), start)
            row = b.add(tab_at, b.mul(loop.index, ir.Constant(i64, HIGH_LEVELS * VEC2)))
            for i in range(0, pixels, 4):
                # Four values per load (loads are what these lookups are short of). Feature
                # maps hold 0..63 everywhere, padding included (as the portable kernels
                # assume): no mask.
                four = b.load(b.bitcast(b.gep(work_d, [b.add(at, ir.Constant(i64, i))]),
                                        i64.as_pointer()), align=2)
                for j in range(4):
                    value = b.and_(b.lshr(four, ir.Constant(i64, 16 * j)),
                                   ir.Constant(i64, 0xFFFF))
                    at_row = b.add(row, b.shl(value, ir.Constant(i64, 4)))
                    entry = b.load(b.bitcast(b.gep(tab_d, [at_row]), row_t.as_pointer()),
                                   align=2)
                    b.store(b.add(b.load(sums[i + j]), entry), sums[i + j])
        columns = (_transpose8 if generic else _transpose)(b, [b.load(s) for s in sums])
        accumulate = (context.cast(b, args[12], signature.args[12], types.boolean) if adds
                      else None)
        for o in range(n_ch):
            channel = ir.Constant(i64, o)
            residuals = [lanes.load(work_d, b.load(b.gep(r1_d, [channel])), x)]
            if second:
                residuals.append(lanes.load(work_d, b.load(b.gep(r2_d, [channel])), x))
            target = lanes.at(out_d, b.load(b.gep(dst_d, [channel])), x)
            lanes.finish(columns[o], residuals, target, accumulate)
        return context.get_dummy_value()

    return codegen


@intrinsic
def _shared_inputs_avx2(typingctx, work, tables, tab_at, n_in, a_off, base, res1, res2, magic,
                        epi, out, out_base, accumulate, x, block):
    """A layer whose inputs are the same for every output, at 16 pixels from ``x`` (AVX2).

    The layers of :func:`_shared_inputs_portable`, the same arguments but
    ``tables`` laid out ``(n, A, 64, 16)`` (``C <= 16`` outputs padded to 16):
    per pixel and input, the input's value picks one row of the 16 outputs'
    entries, added to the pixel's int16 sums by one ``vpaddw`` from memory (16
    lookups). The 16 pixels' sums are transposed (:func:`_transpose`) to one
    vector per output, then rounded as the AVX-512 lanes do (:class:`_Lanes`).
    ``res2`` None: no second residual; ``accumulate`` None: never (both known
    when compiled, no test per output).
    """
    if not (isinstance(work, types.Array) and isinstance(block, types.UniTuple)):
        return None
    return types.void(work, tables, tab_at, n_in, a_off, base, res1, res2, magic, epi, out,
                      out_base, accumulate, x, block), _shared_inputs_codegen(
        False, block.count, not isinstance(res2, (types.NoneType, types.Omitted)),
        not isinstance(accumulate, (types.NoneType, types.Omitted)))


@intrinsic
def _shared_inputs_neon(typingctx, work, tables, tab_at, n_in, a_off, base, res1, res2, magic,
                        epi, out, out_base, accumulate, x, block):
    """:func:`_shared_inputs_avx2` in generic LLVM vector IR, for aarch64 (NEON), at
    :data:`PIXELS_NEON` pixels from ``x``.

    The same arguments and tables; each row add is one ``ldp`` of 32 bytes and two 8-lane
    ``add``; 8 pixels' rows of sums take 16 registers, transposed (:func:`_transpose8`) to
    one 8-lane vector per output, rounded with a generic multiply-high (:meth:`_Lanes.mulhi`).
    """
    if not (isinstance(work, types.Array) and isinstance(block, types.UniTuple)):
        return None
    return types.void(work, tables, tab_at, n_in, a_off, base, res1, res2, magic, epi, out,
                      out_base, accumulate, x, block), _shared_inputs_codegen(
        True, block.count, not isinstance(res2, (types.NoneType, types.Omitted)),
        not isinstance(accumulate, (types.NoneType, types.Omitted)))


@intrinsic
def _control_planes(typingctx, work, at, planes, p_at, p_stride, n_vec):
    """The ``vpshufb`` controls of ``32 * n_vec`` int16 values from ``work[at]`` (0..63).

    Plane ``s`` (bytes from ``planes[p_at + s * p_stride]``) holds ``(v ^ 16 s)
    + 0x70``: the value's low 4 bits, and bit 7 set (a zero from ``vpshufb``)
    unless ``v`` is in slice ``s`` (``16 s <= v < 16 s + 16``).
    """
    if not (isinstance(work, types.Array) and isinstance(planes, types.Array)):
        return None

    def codegen(context, builder, signature, args):
        lanes = _Lanes(context, builder, signature, args, magic=None, epi=None, lanes=VEC2)
        b, i64, i8 = builder, lanes.i64, ir.IntType(8)
        work_d, planes_d = lanes.data(0), lanes.data(2)
        at, p_at, p_stride = lanes.int64(1), lanes.int64(3), lanes.int64(4)
        bytes_t = ir.VectorType(i8, VEC)
        both = ir.Constant(ir.VectorType(ir.IntType(32), VEC), list(range(VEC)))
        with cgutils.for_range(b, lanes.int64(5)) as loop:
            x = b.mul(loop.index, ir.Constant(i64, VEC))
            values = b.shuffle_vector(lanes.load(work_d, at, x), lanes.load(work_d, at, x, VEC2),
                                      both)
            values = b.trunc(values, bytes_t)
            for s in range(_SLICES):
                control = b.add(b.xor(values, ir.Constant(bytes_t, [16 * s] * VEC)),
                                ir.Constant(bytes_t, [0x70] * VEC))
                target = b.gep(planes_d, [b.add(b.add(p_at, b.mul(p_stride, ir.Constant(
                    i64, s))), x)])
                b.store(control, b.bitcast(target, bytes_t.as_pointer()), align=1)
        return context.get_dummy_value()

    return types.void(work, at, planes, p_at, p_stride, n_vec), codegen


@intrinsic
def _depthwise_avx2(typingctx, planes, p_off, p_stride, tables, tab_at, tab_step, work, res_at,
                    magic, epi, out, out_at, n_vec):
    """One output channel of a depthwise layer over ``32 * n_vec`` pixels (AVX2).

    What :func:`_depthwise_lanes` computes (one residual, at ``work[res_at]``),
    its input read as the ``vpshufb`` controls of :func:`_control_planes` (tap
    ``a`` at ``planes[p_off[a]]``) and its tables laid out as byte planes:
    each 64-entry table's low bytes, then its high bytes (``tables`` viewed as
    bytes, table ``a`` at ``2 * (tab_at + a * tab_step)``). Per tap and 32
    pixels: 8 ``vpshufb`` (4 slices x 2 bytes), ORed, then widened to int16 by
    two byte unpacks. One sweep of the row per tap, its 8 table slices held in
    registers, adds into int16 sums kept in ``out`` (in the unpacks' in-lane
    order: pixels 0-7, 16-23, then 8-15, 24-31); a last sweep puts the pixels
    back in order and rounds.
    """
    if not (isinstance(work, types.Array) and isinstance(planes, types.Array)):
        return None

    def codegen(context, builder, signature, args):
        lanes = _Lanes(context, builder, signature, args, magic=8, epi=9, lanes=VEC2)
        b, i64, i8, i32 = builder, lanes.i64, ir.IntType(8), ir.IntType(32)
        bytes_t, slice_t = ir.VectorType(i8, VEC), ir.VectorType(i8, 16)
        pshufb = cgutils.get_or_insert_function(
            b.module, ir.FunctionType(bytes_t, [bytes_t, bytes_t]), "llvm.x86.avx2.pshuf.b")
        planes_d, off_d, work_d, out_d = lanes.data(0), lanes.data(1), lanes.data(6), lanes.data(10)
        tab_b = b.bitcast(lanes.data(3), i8.as_pointer())
        p_stride, tab_at, tab_step = lanes.int64(2), lanes.int64(4), lanes.int64(5)
        res_at, out_at, n_vec = lanes.int64(7), lanes.int64(11), lanes.int64(12)
        twice = ir.Constant(ir.VectorType(i32, VEC), [j % 16 for j in range(VEC)])
        unpacks = [ir.Constant(ir.VectorType(i32, VEC), _unpack_bytes(high))
                   for high in (False, True)]
        for a in range(_TAPS):
            at = b.mul(b.add(tab_at, b.mul(tab_step, ir.Constant(i64, a))), ir.Constant(i64, 2))
            slices = []
            for k in range(2 * _SLICES):  # low bytes' slices, then high bytes'
                ptr = b.bitcast(b.gep(tab_b, [b.add(at, ir.Constant(i64, 16 * k))]),
                                slice_t.as_pointer())
                part = b.load(ptr, align=1)
                slices.append(b.shuffle_vector(part, ir.Constant(slice_t, ir.Undefined), twice))
            base = b.load(b.gep(off_d, [ir.Constant(i64, a)]))
            offs = [b.add(base, b.mul(p_stride, ir.Constant(i64, s))) for s in range(_SLICES)]
            with cgutils.for_range(b, n_vec) as loop:
                x = b.mul(loop.index, ir.Constant(i64, VEC))
                controls = [b.load(b.bitcast(b.gep(planes_d, [b.add(off, x)]),
                                             bytes_t.as_pointer()), align=1) for off in offs]
                parts = []
                for plane in range(2):
                    looked = [b.call(pshufb, [slices[plane * _SLICES + s], controls[s]])
                              for s in range(_SLICES)]
                    parts.append(b.or_(b.or_(looked[0], looked[1]), b.or_(looked[2], looked[3])))
                for h, mask in enumerate(unpacks):
                    value = b.bitcast(b.shuffle_vector(parts[0], parts[1], mask), lanes.vec)
                    target = lanes.at(out_d, out_at, x, h * VEC2)
                    if a:
                        value = b.add(b.load(target, align=2), value)
                    b.store(value, target, align=2)
        orders = [list(range(8)) + list(range(16, 24)), list(range(8, 16)) + list(range(24, 32))]
        with cgutils.for_range(b, n_vec) as loop:
            x = b.mul(loop.index, ir.Constant(i64, VEC))
            first, second = (lanes.load(out_d, out_at, x, h * VEC2) for h in range(2))
            for h, order in enumerate(orders):
                total = b.shuffle_vector(first, second,
                                         ir.Constant(ir.VectorType(i32, VEC2), order))
                xh = b.add(x, ir.Constant(i64, h * VEC2))
                lanes.finish(total, [lanes.load(work_d, res_at, xh)],
                             lanes.at(out_d, out_at, xh), None)
        return context.get_dummy_value()

    return types.void(planes, p_off, p_stride, tables, tab_at, tab_step, work, res_at, magic,
                      epi, out, out_at, n_vec), codegen


def _unpack_bytes(high: bool) -> list[int]:
    """The byte shuffle mask of ``vpunpck{l,h}bw`` of two 32-byte vectors: per 128-bit lane,
    bytes 0-7 (or 8-15) of the first interleaved with the second's."""
    start = 8 if high else 0
    return [side + lane * 16 + start + j for lane in range(2) for j in range(8)
            for side in (0, VEC)]


@intrinsic
def _finish_avx2(typingctx, acc, at, stride, dst, d_at, side):
    """The output bytes of 16 pixels of one output row, pixel-shuffled (AVX2).

    What :func:`_finish_lanes` writes, for 16 pixels (all of them: no masked
    byte stores on AVX2): ``r`` vectors clamped, narrowed to bytes,
    interleaved by one shuffle and stored.
    """
    if not (isinstance(acc, types.Array) and isinstance(side, types.UniTuple)):
        return None
    r = side.count

    def codegen(context, builder, signature, args):
        lanes = _Lanes(context, builder, signature, args, magic=None, epi=None, lanes=VEC2)
        b, i64, i8, i32 = builder, lanes.i64, ir.IntType(8), ir.IntType(32)
        acc_d, dst_d = lanes.data(0), lanes.data(3)
        at, stride, d_at = lanes.int64(1), lanes.int64(2), lanes.int64(4)
        parts = []
        for v in range(r):
            value = b.add(lanes.load(acc_d, at, b.mul(stride, ir.Constant(i64, v))),
                          lanes.const(128))
            value = b.select(b.icmp_signed("<", value, lanes.const(0)), lanes.const(0), value)
            value = b.select(b.icmp_signed(">", value, lanes.const(255)), lanes.const(255), value)
            parts.append(b.trunc(value, ir.VectorType(i8, VEC2)))
        while len(parts) > 1:  # concatenate: part k's byte i at k * 16 + i
            if len(parts) % 2:
                parts.append(ir.Constant(parts[0].type, ir.Undefined))
            size = parts[0].type.count
            mask = ir.Constant(ir.VectorType(i32, 2 * size), list(range(2 * size)))
            parts = [b.shuffle_vector(parts[j], parts[j + 1], mask)
                     for j in range(0, len(parts), 2)]
        width = VEC2 * r
        row_t = ir.VectorType(i8, width)
        order = [(j % r) * VEC2 + j // r for j in range(width)]
        row = b.shuffle_vector(parts[0], ir.Constant(parts[0].type, ir.Undefined),
                               ir.Constant(ir.VectorType(i32, width), order))
        b.store(row, b.bitcast(b.gep(dst_d, [d_at]), row_t.as_pointer()), align=1)
        return context.get_dummy_value()

    return types.void(acc, at, stride, dst, d_at, side), codegen


#: ``tbl`` with four registers: 16 byte lanes looked up in a 64-byte table (aarch64).
_TBL4 = "llvm.aarch64.neon.tbl4.v16i8"


@intrinsic
def _depthwise_neon(typingctx, work, tables, tab_at, tab_step, a_off, o_base, res_at, magic, epi,
                    out, out_at, n_vec):
    """One output channel of a depthwise layer over ``32 * n_vec`` pixels (aarch64 NEON).

    What :func:`_depthwise_lanes` computes (one residual, at ``work[res_at]``),
    its tables laid out as for :func:`_depthwise_avx2` (each 64-entry table's
    low bytes, then its high bytes). Per tap and 16 pixels: the int16 input
    narrowed to bytes (one ``uzp1``), looked up in the low and the high byte
    plane by one ``tbl`` of four registers each, the two interleaved back to
    int16 (``zip1`` / ``zip2``) and added into int16 sums kept in ``out``: one
    sweep of the row per tap, its table in 8 registers; a last sweep rounds.
    """
    if not (isinstance(work, types.Array) and isinstance(tables, types.Array)):
        return None

    def codegen(context, builder, signature, args):
        lanes = _Lanes(context, builder, signature, args, magic=7, epi=8, lanes=VEC2,
                       generic=True)
        b, i64, i8, i32 = builder, lanes.i64, ir.IntType(8), ir.IntType(32)
        slice_t, plane_t = ir.VectorType(i8, 16), ir.VectorType(i8, HIGH_LEVELS)
        tbl = cgutils.get_or_insert_function(
            b.module, ir.FunctionType(slice_t, [slice_t] * 5), _TBL4)
        work_d, off_d, out_d = lanes.data(0), lanes.data(4), lanes.data(9)
        tab_b = b.bitcast(lanes.data(1), i8.as_pointer())
        tab_at, tab_step, o_base = lanes.int64(2), lanes.int64(3), lanes.int64(5)
        res_at, out_at, n_vec = lanes.int64(6), lanes.int64(10), lanes.int64(11)
        offs = [b.add(o_base, b.load(b.gep(off_d, [ir.Constant(i64, a)])))
                for a in range(_TAPS)]
        quarters = [ir.Constant(ir.VectorType(i32, 16), list(range(16 * q, 16 * q + 16)))
                    for q in range(_SLICES)]
        interleave = ir.Constant(ir.VectorType(i32, 2 * VEC2),
                                 [j // 2 + (j % 2) * VEC2 for j in range(2 * VEC2)])
        for a in range(_TAPS):
            # One sweep of the row per tap, its two 64-byte planes held in 8 registers (the
            # 9 taps' 72 would not fit in 32: sums kept in registers spilled).
            at = b.mul(b.add(tab_at, b.mul(tab_step, ir.Constant(i64, a))), ir.Constant(i64, 2))
            planes = []
            for h in range(2):  # the low bytes' plane, then the high bytes'
                ptr = b.bitcast(b.gep(tab_b, [b.add(at, ir.Constant(i64, HIGH_LEVELS * h))]),
                                plane_t.as_pointer())
                plane = b.load(ptr, align=1)
                planes.append([b.shuffle_vector(plane, ir.Constant(plane_t, ir.Undefined), q)
                               for q in quarters])
            with cgutils.for_range(b, b.mul(n_vec, ir.Constant(i64, VEC // VEC2))) as loop:
                x = b.mul(loop.index, ir.Constant(i64, VEC2))
                index = b.trunc(lanes.load(work_d, offs[a], x), slice_t)
                low, high = (b.call(tbl, [*plane, index]) for plane in planes)
                pairs = b.shuffle_vector(low, high, interleave)  # little-endian int16
                value = b.bitcast(pairs, lanes.vec)
                target = lanes.at(out_d, out_at, x)
                if a:  # the sums so far, in the output row
                    value = b.add(b.load(target, align=2), value)
                b.store(value, target, align=2)
        with cgutils.for_range(b, b.mul(n_vec, ir.Constant(i64, VEC // VEC2))) as loop:
            x = b.mul(loop.index, ir.Constant(i64, VEC2))
            lanes.finish(lanes.load(out_d, out_at, x), [lanes.load(work_d, res_at, x)],
                         lanes.at(out_d, out_at, x), None)
        return context.get_dummy_value()

    return types.void(work, tables, tab_at, tab_step, a_off, o_base, res_at, magic, epi, out,
                      out_at, n_vec), codegen


@numba.njit(nogil=True, cache=True)
def _depthwise_portable(work, tables, tab_at, tab_step, a_off, o_base, res1, magic, epi, out,
                        out_at, width):
    """One output channel of a depthwise layer over pixels ``0..width-1``, as plain loops.

    For pixel ``i``: ``T = sum(tables[tab_at + a * tab_step + work[o_base +
    a_off[a] + i]] for a < 9)``, then ``clip(round_half_even(T / D) +
    work[res1 + i] + bias, lo, hi)`` (``magic`` as for :func:`_layered_band`,
    ``epi = (lo, hi, bias)``) stored at ``out[out_at + i]``. Each pixel's 9
    lookups are summed in a register; the quotient is a multiply-shift, not a
    division.
    """
    divisor, t_bias, mul, shift = magic[2], magic[3], magic[4], magic[5]
    lo, hi, bias = epi
    # Slices and unsigned indices: numba then checks no index for wraparound (and LLVM
    # keeps the loop scalar but tight).
    w0, w1, w2 = work[o_base + a_off[0]:], work[o_base + a_off[1]:], work[o_base + a_off[2]:]
    w3, w4, w5 = work[o_base + a_off[3]:], work[o_base + a_off[4]:], work[o_base + a_off[5]:]
    w6, w7, w8 = work[o_base + a_off[6]:], work[o_base + a_off[7]:], work[o_base + a_off[8]:]
    t0, t1, t2 = (tables[tab_at:], tables[tab_at + tab_step:],
                  tables[tab_at + 2 * tab_step:])
    t3, t4, t5 = (tables[tab_at + 3 * tab_step:], tables[tab_at + 4 * tab_step:],
                  tables[tab_at + 5 * tab_step:])
    t6, t7, t8 = (tables[tab_at + 6 * tab_step:], tables[tab_at + 7 * tab_step:],
                  tables[tab_at + 8 * tab_step:])
    centre, dst = work[res1:], out[out_at:]
    for i in range(np.uint64(width)):
        t = (t_bias + t0[np.uint64(w0[i])] + t1[np.uint64(w1[i])] + t2[np.uint64(w2[i])]
             + t3[np.uint64(w3[i])] + t4[np.uint64(w4[i])] + t5[np.uint64(w5[i])]
             + t6[np.uint64(w6[i])] + t7[np.uint64(w7[i])] + t8[np.uint64(w8[i])])
        q = (t * mul) >> shift  # t = T + D/2 + 128 D >= 0
        if q * divisor == t and q & 1:
            q -= 1  # a tie: half to even
        dst[i] = min(max(q - 128 + bias + centre[i], lo), hi)


@intrinsic
def _stack_sums(typingctx, block):
    """A pointer to ``len(block)`` int32 on the stack (``block``: a tuple, its length a
    compile-time constant). LLVM then knows the sums alias no array, and keeps them in
    vector registers."""
    if not isinstance(block, types.UniTuple):
        return None

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, ir.IntType(32), size=block.count)

    return types.CPointer(types.int32)(block), codegen


@intrinsic
def _add_row(typingctx, sums, tables, at, block):
    """``sums[o] += tables[at + o]`` for ``o < len(block)``: int16 table values into the
    int32 :func:`_stack_sums`, as one generic vector (whatever the CPU's width).

    Written as a scalar loop, LLVM unrolls it and vectorises the loop around it instead,
    gathering values one by one.
    """
    if not (isinstance(sums, types.CPointer) and isinstance(block, types.UniTuple)):
        return None
    count = block.count

    def codegen(context, builder, signature, args):
        sums_ptr, tables_v, at_v, _ = args
        wide = ir.VectorType(ir.IntType(32), count)
        narrow = ir.VectorType(ir.IntType(16), count)
        data = context.make_array(signature.args[1])(context, builder, tables_v).data
        at = context.cast(builder, at_v, signature.args[2], types.int64)
        row = builder.load(builder.bitcast(builder.gep(data, [at]), narrow.as_pointer()),
                           align=2)
        target = builder.bitcast(sums_ptr, wide.as_pointer())
        builder.store(builder.add(builder.load(target, align=4), builder.sext(row, wide)),
                      target, align=4)
        return context.get_dummy_value()

    return types.void(sums, tables, at, block), codegen


#: Pixels per block of :func:`_shared_inputs_portable`.
_ROW_BLOCK = 32


@numba.njit(nogil=True, cache=True)
def _shared_inputs_portable(work, tables, tab_at, n_in, a_off, base, res1, res2, magic, epi, out,
                            out_base, accumulate, width, block, sums):
    """A layer whose inputs are the same for every output channel, as plain loops.

    Pointwise layers, and the depthwise layers of block 0 (one input
    channel): per pixel and input ``a``, the values of the ``C = len(block)``
    outputs are one row of ``tables`` laid out ``(A, 64, C)`` (from
    ``tab_at``), added into ``C`` int32 sums on the stack (:func:`_add_row`):
    a per-output lookup costs a load each. Input ``a`` of pixel ``i`` is
    ``work[base + a_off[a] + i]``; then, per output ``o``,
    ``clip(round_half_even(T / D) + work[res1[o] + i] + work[res2[o] + i] +
    bias, lo, hi)`` (no second residual when ``res2[o] < 0``; the quotient
    by the multiply-shift ``magic[4:]``, :func:`~.layered_plan.division_magic`
    with 32 bits), plus ``out[out_base[o] + i]`` when ``accumulate``, stored
    there. The sums of :data:`_ROW_BLOCK` pixels go through ``sums`` (int64
    scratch of ``C * _ROW_BLOCK``), so that the rounding runs along rows.
    """
    n_ch = len(block)
    acc_ptr = _stack_sums(block)
    acc = numba.carray(acc_ptr, (n_ch,))
    divisor, t_bias, mul, shift = magic[2], magic[3], magic[4], magic[5]
    lo, hi, bias = epi
    for x0 in range(0, width, _ROW_BLOCK):
        nx = min(_ROW_BLOCK, width - x0)
        for i in range(nx):
            for o in range(n_ch):
                acc[o] = t_bias
            for a in range(n_in):
                value = np.int64(work[base + a_off[a] + x0 + i])
                _add_row(acc_ptr, tables, tab_at + (a * HIGH_LEVELS + value) * n_ch, block)
            for o in range(n_ch):
                sums[o * _ROW_BLOCK + i] = acc[o]
        for o in range(n_ch):
            first, second, at = res1[o] + x0, res2[o] + x0, out_base[o] + x0
            has_second = res2[o] >= 0
            for i in range(nx):
                t = sums[o * _ROW_BLOCK + i]  # T + D/2 + 128 D >= 0
                q = (t * mul) >> shift
                if q * divisor == t and q & 1:
                    q -= 1  # a tie: half to even
                v = q - 128 + bias + work[first + i]
                if has_second:
                    v += work[second + i]
                v = min(max(v, lo), hi)
                if accumulate:
                    v += out[at + i]
                out[at + i] = v


@numba.njit(nogil=True, cache=True)
def _fill_margins(work, at, n_ch, ch_stride, width, margin):
    """Replicate padding: ``margin`` columns left and right of ``n_ch`` rows of ``width``
    that start at column :data:`VEC` of rows at ``at + c * ch_stride``."""
    for c in range(n_ch):
        row = at + c * ch_stride + VEC
        left, right = work[row], work[row + width - 1]
        for j in range(margin):
            work[row - 1 - j] = left
            work[row + width + j] = right


@numba.njit(nogil=True, cache=True)
def _pointwise_row(work, tables, tab_at, tab_step, n_a, a_off, out_base, n_ch, mg, ep, out,
                   accumulate, wr, outs, chains):
    """A pointwise layer's row, ``len(outs)`` output channels (dividing ``n_ch``) at a time."""
    for o in range(0, n_ch, len(outs)):
        x = 0
        while x + len(chains) * VEC <= wr:
            _pointwise_lanes(work, tables, tab_at, tab_step, n_a, a_off, out_base, o, mg, ep,
                             out, accumulate, x, outs, chains)
            x += len(chains) * VEC
        while x < wr:
            _pointwise_lanes(work, tables, tab_at, tab_step, n_a, a_off, out_base, o, mg, ep,
                             out, accumulate, x, outs, (0,))
            x += VEC


@numba.njit(nogil=True, cache=True)
def _layer_row(layer, k, y, y0, height, width, tables, n_in, is_dw, magic, epi, win, shifts, dest,
               ring_rows, row_at, margin, wp, wr, work, acc, offs, sums, block, outs,
               chains, planes, neon):
    """Row ``y`` of layer ``layer`` (0 = low bits, 1 = block 0's depthwise, ..., last = up)
    in rotation ``k``: computes every tap's offset, then each output channel.

    ``tables`` is the pair of layouts ``(n, a_max, C, 64)`` and, for the
    portable kernels, ``(n, a_max, 64, C)``; for the AVX2 kernels (``planes``
    not None) and the NEON ones (``neon`` not None) ``(n, a_max, C, 2, 64)`` bytes and
    ``(n, a_max, 64, 16)`` (see :class:`~.layered_plan.PreparedLayered`).
    """
    n_ch = dest.shape[1]
    n = n_in.shape[0]
    n_a = n_in[layer]
    a_max = max(_TAPS, n_ch)  # as PreparedLayered lays the tables out
    a_off, o_base, res1, res2, out_base = offs[0], offs[1], offs[2], offs[3], offs[4]
    if is_dw[layer]:
        src = 0 if layer <= 1 else layer
        rows = ring_rows[src]
        for a in range(n_a):
            yy = min(max(y + win[k, a, 0], 0), height - 1)
            a_off[a] = row_at[src, yy] + VEC + win[k, a, 1]
        centre = row_at[src, y] + VEC
        for o in range(n_ch):
            # The low-bit layer reads channel 1 of the input ring, block 0's channel 0.
            ch = 1 if layer == 0 else (0 if layer == 1 else o)
            o_base[o] = ch * rows * wp
            res1[o] = o_base[o] + centre
            # Block 0's depthwise layer also adds the low-bit layer's output.
            res2[o] = row_at[1, y] + o * wp + VEC if layer == 1 else -1
    else:
        src = layer
        rows = ring_rows[src]
        for c in range(n_a):
            yy = min(max(y + shifts[k, layer, c, 0], 0), height - 1)
            a_off[c] = row_at[src, yy] + c * rows * wp + VEC + shifts[k, layer, c, 1]
        for o in range(n_ch):
            o_base[o] = 0
            res1[o] = a_off[o]  # the shifted input is the residual
            res2[o] = -1
    last = layer == n - 1
    for o in range(n_ch):
        if last:
            out_base[o] = ((y - y0) * n_ch + dest[k, o]) * wr
        elif layer == 0:
            out_base[o] = row_at[1, y] + o * wp + VEC
        else:
            out_base[o] = row_at[layer + 1, y] + o * ring_rows[layer + 1] * wp + VEC
    mg = (magic[layer, 0], magic[layer, 1], magic[layer, 2], magic[layer, 3], magic[layer, 4],
          magic[layer, 5])
    ep = (epi[layer, 0], epi[layer, 1], epi[layer, 2])
    accumulate = last and k > 0
    out = acc if last else work
    tab_at = layer * a_max * n_ch * HIGH_LEVELS
    tab_step = n_ch * HIGH_LEVELS
    by_output, by_input = tables
    # Numba prunes an `x is None` branch only where x is None: chains is None for the
    # portable, AVX2 and NEON kernels, planes is None but for AVX2, neon None but for
    # NEON, and each CPU compiles only the kernels it can run.
    if chains is None:
        if neon is not None:  # NEON (planes is None)
            if layer >= 2 and is_dw[layer]:  # each output reads its own channel
                for o in range(n_ch):
                    _depthwise_neon(work, by_output, tab_at + o * HIGH_LEVELS, tab_step, a_off,
                                    o_base[o], res1[o], mg, ep, out, out_base[o], wr // VEC)
            else:
                rows_at = layer * a_max * VEC2 * HIGH_LEVELS
                for x in range(0, wr, PIXELS_NEON):
                    if layer == 1:  # block 0's depthwise layer also adds the low bits' output
                        _shared_inputs_neon(work, by_input, rows_at, n_a, a_off, o_base[0], res1,
                                            res2, mg, ep, out, out_base, None, x, block)
                    elif last:  # the up layer adds into the accumulator after rotation 0
                        _shared_inputs_neon(work, by_input, rows_at, n_a, a_off, o_base[0], res1,
                                            None, mg, ep, out, out_base, accumulate, x, block)
                    else:
                        _shared_inputs_neon(work, by_input, rows_at, n_a, a_off, o_base[0], res1,
                                            None, mg, ep, out, out_base, None, x, block)
        elif planes is None:
            if layer >= 2 and is_dw[layer]:  # each output reads its own channel
                for o in range(n_ch):
                    _depthwise_portable(work, by_output, tab_at + o * HIGH_LEVELS, tab_step,
                                        a_off, o_base[o], res1[o], mg, ep, out, out_base[o],
                                        width)
            else:
                _shared_inputs_portable(work, by_input, tab_at, n_a, a_off, o_base[0], res1,
                                        res2, mg, ep, out, out_base, accumulate, width, block,
                                        sums)
        else:  # AVX2
            if layer >= 2 and is_dw[layer]:  # each output reads its own channel
                p_off = offs[8]
                for a in range(n_a):
                    p_off[a] = (win[k, a, 0] + 1) * _SLICES * wp + VEC + win[k, a, 1]
                for o in range(n_ch):
                    for j in range(WINDOW):
                        yy = min(max(y + j - 1, 0), height - 1)
                        _control_planes(work, o_base[o] + row_at[src, yy], planes,
                                        j * _SLICES * wp, wp, wp // VEC)
                    _depthwise_avx2(planes, p_off, wp, by_output, tab_at + o * HIGH_LEVELS,
                                    tab_step, work, res1[o], mg, ep, out, out_base[o], wr // VEC)
            else:
                rows_at = layer * a_max * VEC2 * HIGH_LEVELS
                for x in range(0, wr, VEC2):
                    if layer == 1:  # block 0's depthwise layer also adds the low bits' output
                        _shared_inputs_avx2(work, by_input, rows_at, n_a, a_off, o_base[0], res1,
                                            res2, mg, ep, out, out_base, None, x, block)
                    elif last:  # the up layer adds into the accumulator after rotation 0
                        _shared_inputs_avx2(work, by_input, rows_at, n_a, a_off, o_base[0], res1,
                                            None, mg, ep, out, out_base, accumulate, x, block)
                    else:
                        _shared_inputs_avx2(work, by_input, rows_at, n_a, a_off, o_base[0], res1,
                                            None, mg, ep, out, out_base, None, x, block)
    else:  # AVX-512
        if layer == 1:  # block 0's depthwise layer also adds the low-bit layer's output
            for o in range(n_ch):
                _depthwise_lanes(work, by_output, tab_at + o * HIGH_LEVELS, tab_step, a_off,
                                 o_base[o], res2[o], mg, ep, out, out_base[o], wr // VEC)
        elif is_dw[layer]:
            for o in range(n_ch):
                _depthwise_lanes(work, by_output, tab_at + o * HIGH_LEVELS, tab_step, a_off,
                                 o_base[o], None, mg, ep, out, out_base[o], wr // VEC)
        elif n_ch % len(outs) == 0:
            _pointwise_row(work, by_output, tab_at, tab_step, n_a, a_off, out_base, n_ch, mg, ep,
                           out, accumulate, wr, outs, chains)
        else:
            _pointwise_row(work, by_output, tab_at, tab_step, n_a, a_off, out_base, n_ch, mg, ep,
                           out, accumulate, wr, (0,), chains)
    if not last and layer > 0:
        rows = ring_rows[layer + 1]
        _fill_margins(work, row_at[layer + 1, y], n_ch, rows * wp, width, margin)


@numba.njit(nogil=True, cache=True)
def _layered_band(src, s_y, s_x, src_at, height, width, y0, y1, tables, n_in, is_dw, magic, epi,
                  win, shifts, dest, reach, ring_rows, row_at, margin, wp, wr, work, acc, offs,
                  sums, dst, d_y, d_x, dst_at, side, block, outs, chains, planes, neon):
    """One channel of a layered stage for input rows ``y0:y1``: output rows ``r*y0:r*y1``.

    Parameters
    ----------
    src : 1-D uint8
        The stage input, read at ``src_at + y * s_y + x * s_x``.
    tables : pair of 1-D int16
        ``(n, a_max, C, 64)`` flattened: layer ``l``'s expanded table ``(a, o)``
        (:func:`~lutsr.layered.expanded_tables`); and, for the portable
        kernels, the same laid out ``(n, a_max, 64, C)`` (see
        :func:`_shared_inputs_portable`). For the AVX2 kernels, the pair of
        :func:`~.layered_plan._avx2_layouts` (the NEON kernels too).
    n_in, is_dw : (n,) int64, bool
        Inputs ``A`` of each layer, and whether it is depthwise.
    magic, epi : (n, 6), (n, 3) int64
        Each layer's rounding, ``(mul, shift - 16, D, D // 2 + 128 * D)`` for the
        lanes (:class:`_Lanes`) then ``(mul, shift)`` for the portable kernels
        (:func:`~.layered_plan.division_magic` with 16- and 32-bit multipliers),
        and its ``(lo, hi, bias)``.
    win : (4, 9, 2) int64
        The depthwise window's ``(dy, dx)`` in each rotation, unrotated.
    shifts : (4, n, C, 2) int64
        Each pointwise layer's per-input shifts in each rotation, unrotated.
    dest : (4, C) int64
        Block position, in the output, of the up layer's channel ``o`` in rotation ``k``.
    reach : (4, n, 2) int64
        Rows above and below that step ``s`` reads of step ``s - 1``'s output.
    ring_rows : (n,) int64
        Rows of each ring (ring 0: the input's ``h + 32`` and low bits; 1: the low-bit
        layer's row; ``l + 1``: layer ``l``'s output).
    row_at : (n, height) int64
        Where in ``work`` ring ``j`` keeps image row ``y`` (the offset of its channel 0;
        channel ``c`` is ``c * ring_rows[j] * wp`` further): no division per row.
    margin, wp, wr : int
        Replicated columns each side, ring row length, accumulator row length.
    work, acc : 1-D int16
        Scratch: the rings, and ``(y1 - y0, C, wr)`` sums of the up layer over rotations.
    offs, sums : int64 scratch of :func:`_layer_row`, :func:`_shared_inputs_portable`.
    dst : 1-D uint8
        The stage output, written at ``dst_at + Y * d_y + X * d_x``.
    side : tuple of ``r`` zeros
        The stage's scale ``r`` (``r * r = C``), a compile-time constant for
        :func:`_finish_lanes`.
    block : tuple of ``C`` zeros
        The channels, a compile-time constant for :func:`_shared_inputs_portable`.
    outs, chains : tuples of zeros, and None for the portable and AVX2 kernels
        Output channels and vectors per call of :func:`_pointwise_lanes`.
    planes : 1-D uint8, or None
        For the AVX2 kernels (None: the others), scratch for the ``vpshufb``
        controls of 3 rows (:func:`_control_planes`), ``3 * 4 * wp`` bytes.
    neon : tuple, or None
        Not None (an empty tuple) for the NEON kernels (aarch64): :func:`_depthwise_neon`,
        :func:`_shared_inputs_neon`.
    """
    n_ch = dest.shape[1]
    n = n_in.shape[0]
    r = len(side)
    sched_d, sched_lo, sched_hi = offs[5], offs[6], offs[7]
    for k in range(4):
        # Step s (0: input, 1: layers 0 and 1, s >= 2: layer s) computes row t + D[s]
        # at time t, so that step s + 1 finds every row it reaches already done.
        sched_d[n - 1], sched_lo[n - 1], sched_hi[n - 1] = 0, y0, y1
        for s in range(n - 1, 0, -1):
            up, down = reach[k, s, 0], reach[k, s, 1]
            sched_d[s - 1] = sched_d[s] + down
            sched_lo[s - 1] = max(0, sched_lo[s] - up)
            sched_hi[s - 1] = min(height, sched_hi[s] + down)
        t0 = y0
        for s in range(n):
            t0 = min(t0, sched_lo[s] - sched_d[s])
        for t in range(t0, y1):
            for s in range(n):
                y = t + sched_d[s]
                if y < sched_lo[s] or y >= sched_hi[s]:
                    continue
                if s == 0:
                    rows = ring_rows[0]
                    at = row_at[0, y]
                    h = work[at + VEC:at + VEC + width]
                    low = work[at + rows * wp + VEC:at + rows * wp + VEC + width]
                    line = src_at + y * s_y
                    for i in range(width):
                        p = src[line + i * s_x]
                        h[i] = p >> 2  # (p - 128) >> 2, plus 32
                        low[i] = p & 3
                    _fill_margins(work, at, 2, rows * wp, width, margin)
                    continue
                if s == 1:
                    _layer_row(0, k, y, y0, height, width, tables, n_in, is_dw, magic, epi, win,
                               shifts, dest, ring_rows, row_at, margin, wp, wr, work, acc,
                               offs, sums, block, outs, chains, planes, neon)
                _layer_row(s, k, y, y0, height, width, tables, n_in, is_dw, magic, epi, win,
                           shifts, dest, ring_rows, row_at, margin, wp, wr, work, acc, offs,
                           sums, block, outs, chains, planes, neon)
                if s < n - 1 or k < 3:
                    continue
                at = (y - y0) * n_ch * wr
                for u in range(r):
                    line = dst_at + (y * r + u) * d_y
                    if chains is None:  # numba compiles this branch alone: no lanes
                        if (planes is not None or neon is not None) and d_x == 1:  # AVX2, NEON
                            x = 0
                            while x + VEC2 <= width:
                                _finish_avx2(acc, at + u * r * wr + x, wr, dst, line + x * r,
                                             side)
                                x += VEC2
                            for v in range(r):
                                row = acc[at + (u * r + v) * wr:at + (u * r + v + 1) * wr]
                                for i in range(x, width):
                                    dst[line + i * r + v] = min(max(row[i] + 128, 0), 255)
                            continue
                    elif d_x == 1:
                        for x in range(0, width, VEC):
                            _finish_lanes(acc, at + u * r * wr + x, wr, dst, line + x * r,
                                          min(VEC, width - x), side)
                        continue
                    for v in range(r):
                        row = acc[at + (u * r + v) * wr:at + (u * r + v + 1) * wr]
                        for i in range(width):
                            dst[line + (i * r + v) * d_x] = min(max(row[i] + 128, 0), 255)
