"""The numba backend's kernels: jitted passes and the LLVM intrinsics they are built from.

See :mod:`lutsr._cpu` for how a stage runs. Every intrinsic lives in this file
with the kernels that inline it, and so do the constants and the permutations
they compile in: numba's on-disk cache is invalidated only by changes to the
jitted function's own source file, and it keeps the values of globals as they
were at compile time.
"""

from __future__ import annotations

import functools
import os

import numba
import numpy as np
from llvmlite import binding as _llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .. import model as _model
from ..indexmaps import block_permutations

# The model's constants these kernels read, as literals of this file: numba's on-disk
# cache keys on a kernel's own file, so a kernel compiled with an older value would be
# reused. Changing one in model.py fails this import until it is changed here too.
BASE_RADIUS, BASE_SIDE, TAP_BITS = 2, 5, 10
if (BASE_RADIUS, BASE_SIDE, TAP_BITS) != (_model.BASE_RADIUS, _model.BASE_SIDE, _model.TAP_BITS):
    raise ImportError("lutsr/_cpu/kernels.py: copy model.py's BASE_RADIUS, BASE_SIDE, TAP_BITS")

_LLVM_MAJOR = _llvm.llvm_version_info[0]

#: Pixels per chunk of a row: pass 1 writes ``10 * CHUNK`` uint32 per (pattern,
#: rotation), which stays in L1 for pass 2.
CHUNK = 64

#: Padding on every side of a band's window: the largest pattern extent, and the
#: reach of a linear base.
MARGIN = max(2, BASE_RADIUS)

#: Pixel pairs of one row of a linear base's window (the last pair's second pixel weighted 0).
BASE_PAIRS = BASE_RADIUS + 1


@intrinsic
def _stack_buffer(typingctx, block, dtype):
    """A pointer to ``len(block)`` elements of ``dtype`` (a type or a value of it) on the stack.

    ``block`` is a homogeneous tuple (of tuples: then the product of the
    lengths counts): its length is part of its numba type, so
    the buffer size is a compile-time constant (``numba.literally`` would do the
    same but re-types on every call from Python, ~16 ms). The accumulator lives
    here rather than in a heap array: LLVM then knows it aliases no table,
    drops the runtime overlap checks and keeps it in vector registers.
    """
    if not isinstance(block, types.UniTuple):
        return None
    count, inner = 1, block
    while isinstance(inner, types.UniTuple):  # nested tuples: the product of their lengths
        count, inner = count * inner.count, inner.dtype
    element = dtype.instance_type if isinstance(dtype, types.NumberClass) else dtype

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(element), size=count)

    return types.CPointer(element)(block, dtype), codegen


@numba.njit(nogil=True, cache=True)
def _pad_window(src, s_y, s_x, s_c, win, prow, pcol, y0, margin):
    """Copy padded rows ``y0 .. y0 + Hw`` of ``src`` into ``win`` (C, Hw, Wp), channel-planar.

    ``src`` is a flat uint8 span read at ``row * s_y + col * s_x + c * s_c``;
    ``prow`` / ``pcol`` map padded positions to source rows / columns, padded
    by ``margin`` on both sides.
    Interleaved RGB (``s_x`` 3, ``s_c`` 1) gets a loop with constant strides
    for the unpadded columns, which LLVM vectorises into byte shuffles.
    """
    n_ch, hw, wp = win.shape
    width = wp - 2 * margin
    for i in range(hw):
        y_base = prow[y0 + i] * s_y
        if n_ch == 3 and s_x == 3 and s_c == 1:
            seg = src[y_base:y_base + 3 * width]
            r0, r1, r2 = win[0, i, margin:], win[1, i, margin:], win[2, i, margin:]
            for j in range(np.uint64(width)):
                r0[j] = seg[np.uint64(3) * j]
                r1[j] = seg[np.uint64(3) * j + np.uint64(1)]
                r2[j] = seg[np.uint64(3) * j + np.uint64(2)]
            for c in range(3):
                for j in range(margin):
                    win[c, i, j] = src[y_base + pcol[j] * 3 + c]
                    win[c, i, wp - 1 - j] = src[y_base + pcol[wp - 1 - j] * 3 + c]
            continue
        for c in range(n_ch):
            row_at = y_base + c * s_c
            row = win[c, i]
            for j in range(wp):
                row[j] = src[row_at + pcol[j] * s_x]


def _int32_op(name: str):
    """An int32 binary operator (wrapping, ``ashr`` for >>) that numba will not widen.

    numba types every operator on int32 values as int64 (its integer typing
    rule), which halves the vector width of a loop and turns its stores into
    slow truncating ones; these keep the arithmetic 32-bit.
    """

    @intrinsic
    def op(typingctx, a, b):
        if not (isinstance(a, types.Integer) and isinstance(b, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            x, y = (context.cast(builder, v, t, types.int32)
                    for v, t in zip(args, signature.args, strict=True))
            return getattr(builder, name)(x, y)

        return types.int32(a, b), codegen

    return op


_add, _sub, _mul, _shr, _shl, _and, _or = (
    _int32_op(n) for n in ("add", "sub", "mul", "ashr", "shl", "and_", "or_"))


@intrinsic
def _sum_rotations(typingctx, acc, total, side):
    """``total[pos] = sum(acc[k * r*r + block_permutations(r)[k, pos]] for k in 0..3)``.

    ``acc`` and ``total`` are stack pointers (see :func:`_stack_buffer`) to
    ``4 * r*r`` and ``r*r`` integers; ``side`` is a tuple of ``r`` zeros. Each
    rotation's block is one vector, permuted by a constant shuffle: LLVM does
    not find these shuffles in the equivalent scalar loop.
    """
    if not (isinstance(acc, types.CPointer) and isinstance(side, types.UniTuple)):
        return None
    r = side.count
    perm = block_permutations(r).tolist()

    def codegen(context, builder, signature, args):
        acc_ptr, total_ptr, _ = args
        vec = ir.VectorType(context.get_value_type(acc.dtype), r * r)
        # Blocks sit at multiples of r*r elements: element-aligned only.
        align = context.get_abi_sizeof(vec.element)
        out = None
        for k in range(4):
            at = builder.gep(acc_ptr, [ir.Constant(ir.IntType(64), k * r * r)])
            v = builder.load(builder.bitcast(at, vec.as_pointer()), align=align)
            if k:
                mask = ir.Constant(ir.VectorType(ir.IntType(32), r * r), perm[k])
                v = builder.shuffle_vector(v, ir.Constant(vec, ir.Undefined), mask)
            out = v if out is None else builder.add(out, v)
        builder.store(out, builder.bitcast(total_ptr, vec.as_pointer()), align=align)
        return context.get_dummy_value()

    return types.void(acc, total, side), codegen


def _splat(builder, vec, value):
    """``value`` (of ``vec``'s element type) in every lane of an LLVM vector of type ``vec``."""
    lanes = builder.insert_element(ir.Constant(vec, ir.Undefined), value,
                                   ir.Constant(ir.IntType(32), 0))
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), vec.count), [0] * vec.count)
    return builder.shuffle_vector(lanes, ir.Constant(vec, ir.Undefined), zeros)


def _madd_pairs(builder, a, b):
    """``a[2i] * b[2i] + a[2i + 1] * b[2i + 1]`` in int32 lanes, for int16 vectors ``a``, ``b``.

    Widened products summed pairwise through two constant shuffles: the pattern
    LLVM turns into one ``vpmaddwd`` (``vpdpwssd`` with AVX-512 VNNI, the
    accumulating add folded in).
    """
    n = a.type.count
    wide = ir.VectorType(ir.IntType(32), n)
    products = builder.mul(builder.sext(a, wide), builder.sext(b, wide))

    def every_other(first):
        mask = ir.Constant(ir.VectorType(ir.IntType(32), n // 2), list(range(first, n, 2)))
        return builder.shuffle_vector(products, products, mask)

    return builder.add(every_other(0), every_other(1))


@intrinsic
def _add_rows(typingctx, acc, k, tables, offsets, weights, block):
    """``acc[k * r*r + m] += sum(weights[n] * tables[offsets[n] + m] for n)`` for ``m < r*r``.

    ``acc`` is the stack pointer of :func:`_accumulate`, ``tables`` a 1-D int8
    array, ``block`` the tuple of ``r*r`` zeros whose type gives ``r*r`` and the
    accumulator's dtype. Each table row is loaded as one ``<r*r x i8>`` vector
    and widened. Written as a scalar loop over ``m``, LLVM vectorises
    across the four (fully unrolled) rotations instead when ``r*r`` is 4 or 9,
    gathering the table bytes one by one: 2-3x slower than ``r = 4``. Arithmetic
    wraps in the accumulator's dtype, which is exact because the final sum fits
    (see :class:`_PreparedStage`).
    """
    if not (isinstance(acc, types.CPointer) and isinstance(tables, types.Array)
            and isinstance(offsets, types.UniTuple) and isinstance(weights, types.UniTuple)
            and isinstance(block, types.UniTuple)):
        return None
    rr = block.count

    def codegen(context, builder, signature, args):
        acc_ptr, k_val, tables_val, offsets_val, weights_val, _ = args
        elem = context.get_value_type(acc.dtype)
        vec, bytes_ = ir.VectorType(elem, rr), ir.VectorType(ir.IntType(8), rr)
        start = builder.mul(context.cast(builder, k_val, signature.args[1], types.uint64),
                            ir.Constant(ir.IntType(64), rr))
        at = builder.bitcast(builder.gep(acc_ptr, [start]), vec.as_pointer())
        data = context.make_array(tables)(context, builder, tables_val).data
        align = context.get_abi_sizeof(elem)  # the k-th block is element-aligned only
        total = builder.load(at, align=align)
        for n in range(offsets.count):
            offset = context.cast(builder, builder.extract_value(offsets_val, n),
                                  offsets.dtype, types.uint64)
            row_ptr = builder.bitcast(builder.gep(data, [offset]), bytes_.as_pointer())
            row = builder.sext(builder.load(row_ptr, align=1), vec)
            weight = context.cast(builder, builder.extract_value(weights_val, n),
                                  weights.dtype, acc.dtype)
            total = builder.add(total, builder.mul(row, _splat(builder, vec, weight)))
        builder.store(total, at, align=align)
        return context.get_dummy_value()

    return types.void(acc, k, tables, offsets, weights, block), codegen


@intrinsic
def _add_base(typingctx, total, shift, base, plane, at, rows, block):
    """``total[m] = (total[m] << shift) + sum(W[i, j, m] * plane[at + rows[i] + j])``, ``m < r*r``.

    The linear base of :func:`_accumulate` over the 5x5 input pixels around a
    pixel: ``rows[i]`` is the offset of row ``i``'s first pixel from ``at`` in
    the uint8 ``plane``, ``base`` the int16 weights of
    :attr:`_PreparedStage.base`, laid out (5 rows, 3 pixel pairs, r*r, 2) with
    a zero weight for the sixth pixel of a row. Per row one 8-byte load,
    widened to int16; per pixel pair, that pair in every lane of a vector
    times the interleaved weights, summed pairwise into int32 lanes: LLVM
    turns the pattern into one ``vpmaddwd`` (``vpdpwssd`` with AVX-512 VNNI).
    Measured 2.6x faster than one int32 multiply per tap; the sums stay in
    registers. A row's load reaches 3 bytes past a window row's end: into the
    next row, or, for the last, into the slack :class:`~.runner.SimplexPlan` allocates.
    """
    if not (isinstance(total, types.CPointer) and isinstance(block, types.UniTuple)):
        return None
    rr = block.count

    def codegen(context, builder, signature, args):
        total_ptr, shift_val, base_val, plane_val, at_val, rows_val, _ = args
        i16, i32, i64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)
        vec, pairs = ir.VectorType(i32, rr), ir.VectorType(i32, 2 * rr)
        weight_t = ir.VectorType(i16, 2 * rr).as_pointer()
        at_total = builder.bitcast(total_ptr, vec.as_pointer())
        shift = builder.trunc(context.cast(builder, shift_val, signature.args[1], types.int64), i32)
        # One accumulator per pair column: three short dependency chains, not one long one.
        accs = [cgutils.alloca_once(builder, vec) for _ in range(BASE_PAIRS)]
        builder.store(builder.shl(builder.load(at_total, align=4), _splat(builder, vec, shift)),
                      accs[0])
        for acc in accs[1:]:
            builder.store(ir.Constant(vec, [0] * rr), acc)
        weights = context.make_array(base)(context, builder, base_val).data
        pixels = context.make_array(plane)(context, builder, plane_val).data
        rows_ary = context.make_array(rows)(context, builder, rows_val)
        pixel_at = context.cast(builder, at_val, signature.args[4], types.uint64)
        with cgutils.for_range(builder, builder.extract_value(rows_ary.shape, 0)) as loop:
            row_at = builder.add(pixel_at, builder.load(builder.gep(rows_ary.data, [loop.index])))
            row_ptr = builder.bitcast(builder.gep(pixels, [row_at]),
                                      ir.VectorType(ir.IntType(8), 8).as_pointer())
            row = builder.zext(builder.load(row_ptr, align=1), ir.VectorType(i16, 8))
            for j in range(BASE_PAIRS):
                pair = builder.shuffle_vector(row, ir.Constant(row.type, ir.Undefined),
                                              ir.Constant(pairs, [2 * j, 2 * j + 1] * rr))
                pair_index = builder.add(builder.mul(loop.index, ir.Constant(i64, BASE_PAIRS)),
                                         ir.Constant(i64, j))
                at_w = builder.mul(pair_index, ir.Constant(i64, 2 * rr))
                w = builder.load(builder.bitcast(builder.gep(weights, [at_w]), weight_t), align=2)
                builder.store(builder.add(builder.load(accs[j]), _madd_pairs(builder, w, pair)),
                              accs[j])
        total = builder.load(accs[0])
        for acc in accs[1:]:
            total = builder.add(total, builder.load(acc))
        builder.store(total, at_total, align=4)
        return context.get_dummy_value()

    return types.void(total, shift, base, plane, at, rows, block), codegen


@intrinsic
def _round_shift(typingctx, total, m, bias, block):
    """In place on ``r*r`` sums at ``total``: ``clip(round_half_even(s / 2**m + bias), 0, 255)``.

    One vector expression over the block (see :func:`power_of_two_rounding`):
    written as scalar code, LLVM keeps it scalar because the stores that follow
    are strided.
    """
    if not (isinstance(total, types.CPointer) and isinstance(block, types.UniTuple)):
        return None
    rr = block.count

    def codegen(context, builder, signature, args):
        ptr, m_val, bias_val, _ = args
        elem = context.get_value_type(total.dtype)
        vec = ir.VectorType(elem, rr)

        def splat(value, ty):
            return _splat(builder, vec, context.cast(builder, value, ty, total.dtype))

        def const(c):
            return ir.Constant(vec, [ir.Constant(elem, c)] * rr)

        at = builder.bitcast(ptr, vec.as_pointer())
        align = context.get_abi_sizeof(elem)
        s = builder.load(at, align=align)
        m = splat(m_val, signature.args[1])
        half = builder.sub(builder.shl(const(1), builder.sub(m, const(1))), const(1))
        bias = splat(bias_val, signature.args[2])
        odd = builder.and_(builder.add(builder.ashr(s, m), bias), const(1))
        y = builder.add(builder.ashr(builder.add(builder.add(s, half), odd), m), bias)
        y = builder.select(builder.icmp_signed("<", y, const(0)), const(0), y)
        y = builder.select(builder.icmp_signed(">", y, const(255)), const(255), y)
        builder.store(y, at, align=align)
        return context.get_dummy_value()

    return types.void(total, m, bias, block), codegen


@intrinsic
def _store_rows(typingctx, total, dst, d, d_y, side):
    """``dst[d + u * d_y + v] = total[u * r + v]`` for an ``r x r`` block of values in 0..255.

    Each row is one ``<r x i8>`` store of the truncated block: as scalar
    code, LLVM extracts and stores every byte separately (one shuffle-port
    instruction each).
    """
    if not (isinstance(total, types.CPointer) and isinstance(side, types.UniTuple)):
        return None
    r = side.count

    def codegen(context, builder, signature, args):
        ptr, dst_val, d_val, d_y_val, _ = args
        i64 = ir.IntType(64)
        elem = context.get_value_type(total.dtype)
        block = builder.load(builder.bitcast(ptr, ir.VectorType(elem, r * r).as_pointer()),
                             align=context.get_abi_sizeof(elem))
        data = builder.trunc(block, ir.VectorType(ir.IntType(8), r * r))
        out_ptr = context.make_array(dst)(context, builder, dst_val).data
        d = context.cast(builder, d_val, signature.args[2], types.uint64)
        d_y = context.cast(builder, d_y_val, signature.args[3], types.uint64)
        row_t = ir.VectorType(ir.IntType(8), r)
        for u in range(r):
            row = builder.shuffle_vector(data, ir.Constant(data.type, ir.Undefined), ir.Constant(
                ir.VectorType(ir.IntType(32), r), list(range(u * r, u * r + r))))
            at = builder.add(d, builder.mul(d_y, ir.Constant(i64, u)))
            builder.store(row, builder.bitcast(builder.gep(out_ptr, [at]), row_t.as_pointer()),
                          align=1)
        return context.get_dummy_value()

    return types.void(total, dst, d, d_y, side), codegen


#: Pixels per vector in :func:`_vertices` and :func:`_accumulate_lanes`.
LANES = 16
# Pass 1 writes whole 16-lane vectors into CHUNK-wide rows of its buffer.
assert CHUNK % LANES == 0


def _lane_mask(builder, n, lanes):
    """``<lanes x i1>``: lane ``i`` is on when ``i < n`` (an i32)."""
    i32 = ir.IntType(32)
    vec = ir.VectorType(i32, lanes)
    return builder.icmp_signed("<", ir.Constant(vec, list(range(lanes))), _splat(builder, vec, n))


def _pointer_name(element: ir.Type) -> str:
    """How an intrinsic's name spells a pointer to ``element`` (typed pointers before LLVM 17)."""
    if _LLVM_MAJOR >= 17:
        return "p0"
    if isinstance(element, ir.VectorType):
        return f"p0v{element.count}{element.element}"
    return f"p0{element}"


@intrinsic
def _gather_rows(typingctx, acc, tables, buf, at, n, side):
    """``acc[pos * 16 + i] += sum(w * tables[offset + perm[k, pos]])`` over one pattern, 16 pixels.

    Pass 2 for ``r`` = 1 or 2 (``side``: a tuple of ``r`` zeros) and one
    pattern's 20 (rotation ``k``, vertex ``g``) rows: ``buf[at + (k * 10 + g)
    * CHUNK + i]`` is pixel ``i``'s row offset, ``buf[at + (k * 10 + 5 + g) *
    CHUNK + i]`` its weight (pass 1's layout). One gather per (rotation,
    vertex) loads 4 bytes at each of the 16 offsets, a whole row when ``r`` is
    2 (the tables carry 3 bytes of padding for ``r`` = 1); each block position
    takes its byte by shifts. Vectorising across pixels beats the per-pixel row
    vectors of :func:`_accumulate` when rows are this short. Pixels ``i >= n``
    load nothing.
    """
    if not (isinstance(acc, types.CPointer) and isinstance(tables, types.Array)
            and isinstance(side, types.UniTuple)):
        return None
    r = side.count
    perm = block_permutations(r).tolist()

    def codegen(context, builder, signature, args):
        acc_ptr, tables_val, buf_val, at_val, n_val, _ = args
        i32, i64 = ir.IntType(32), ir.IntType(64)
        vec, wide = ir.VectorType(i32, LANES), ir.VectorType(i64, LANES)
        ptrs_t = ir.VectorType(i32.as_pointer(), LANES)
        gather = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [ptrs_t, i32, ir.VectorType(ir.IntType(1), LANES),
                                                  vec]),
            f"llvm.masked.gather.v{LANES}i32.v{LANES}{_pointer_name(i32)}")
        tables_at = _splat(builder, wide, builder.ptrtoint(
            context.make_array(tables)(context, builder, tables_val).data, i64))
        bdata = context.make_array(buf)(context, builder, buf_val).data
        at = context.cast(builder, at_val, signature.args[3], types.uint64)
        mask = _lane_mask(builder, context.cast(builder, n_val, signature.args[4], types.int32),
                          LANES)

        def const(c):
            return ir.Constant(vec, [c] * LANES)

        def row(index):
            ptr = builder.gep(bdata, [builder.add(at, ir.Constant(i64, index * CHUNK))])
            return builder.load(builder.bitcast(ptr, vec.as_pointer()), align=4)

        slots = [builder.bitcast(builder.gep(acc_ptr, [ir.Constant(i64, pos * LANES)]),
                                 vec.as_pointer()) for pos in range(r * r)]
        totals = [builder.load(slot, align=4) for slot in slots]
        for k in range(4):
            for g in range(5):
                address = builder.add(tables_at, builder.zext(row(k * 10 + g), wide))
                words = builder.call(gather, [builder.inttoptr(address, ptrs_t),
                                              ir.Constant(i32, 1), mask, const(0)])
                weight = row(k * 10 + 5 + g)
                for pos in range(r * r):
                    column = perm[k][pos]  # byte ``column`` of the row, signed
                    value = builder.ashr(builder.shl(words, const(24 - 8 * column)), const(24))
                    totals[pos] = builder.add(totals[pos], builder.mul(value, weight))
        for slot, total in zip(slots, totals, strict=True):
            builder.store(total, slot, align=4)
        return context.get_dummy_value()

    return types.void(acc, tables, buf, at, n, side), codegen


@intrinsic
def _store_lanes(typingctx, values, dst, start, d_y, n, side):
    """The ``r x r`` blocks of pixels ``i < n`` of 16 (``values[pos * 16 + i]``, 0..255) to ``dst``.

    Row ``u`` of the 16 blocks is ``16 * r`` contiguous bytes at ``dst[start +
    u * d_y]``: one shuffle and one masked store per row.
    """
    if not (isinstance(values, types.CPointer) and isinstance(side, types.UniTuple)):
        return None
    r = side.count

    def codegen(context, builder, signature, args):
        ptr, dst_val, start_val, d_y_val, n_val, _ = args
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        width = LANES * r
        row_t = ir.VectorType(i8, width)
        store = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [
                row_t, row_t.as_pointer(), i32, ir.VectorType(ir.IntType(1), width)]),
            f"llvm.masked.store.v{width}i8.{_pointer_name(row_t)}")
        values_t = ir.VectorType(i32, width * r)
        data = builder.trunc(builder.load(builder.bitcast(ptr, values_t.as_pointer()), align=4),
                             ir.VectorType(i8, width * r))
        out_ptr = context.make_array(dst)(context, builder, dst_val).data
        start = context.cast(builder, start_val, signature.args[2], types.uint64)
        d_y = context.cast(builder, d_y_val, signature.args[3], types.uint64)
        n_bytes = builder.mul(context.cast(builder, n_val, signature.args[4], types.int32),
                              ir.Constant(i32, r))
        mask = _lane_mask(builder, n_bytes, width)
        for u in range(r):
            order = [(u * r + v) * LANES + i for i in range(LANES) for v in range(r)]
            row = builder.shuffle_vector(data, ir.Constant(data.type, ir.Undefined),
                                         ir.Constant(ir.VectorType(i32, width), order))
            at = builder.add(start, builder.mul(d_y, ir.Constant(i64, u)))
            target = builder.bitcast(builder.gep(out_ptr, [at]), row_t.as_pointer())
            builder.call(store, [row, target, ir.Constant(i32, 1), mask])
        return context.get_dummy_value()

    return types.void(values, dst, start, d_y, n, side), codegen


def vnni_available() -> bool:
    """Whether numba compiles for a CPU with AVX-512 VBMI and VNNI (and :func:`avx512bw_available`).

    Those give one-instruction byte permutes (``vpermb``) and 4-way u8 x s8 dot
    products (``vpdpbusd``), which :func:`_dot_rotations` is built on.
    """
    return avx512bw_available() and {"+avx512vbmi", "+avx512vnni"} <= _target_features()


def avx512bw_available() -> bool:
    """Whether numba compiles for a CPU with AVX-512BW (byte-masked loads and stores).

    The 16-lane kernels (:func:`_vertex_lanes`, :func:`_accumulate_lanes`) need
    it: on AVX2 their masked byte loads and stores become scalar code, and
    they measured up to 1.9x slower than the portable kernels they replace.
    Reads the features numba itself targets, so ``NUMBA_CPU_NAME`` /
    ``NUMBA_CPU_FEATURES`` overrides apply. ``LUTSR_PORTABLE_KERNEL=1`` turns
    every AVX-512 path off (to test and compare the portable kernels).
    """
    if os.environ.get("LUTSR_PORTABLE_KERNEL", "0") not in ("", "0"):
        return False
    return {"+avx512f", "+avx512bw"} <= _target_features()


def avx2_available() -> bool:
    """Whether numba compiles for a CPU with AVX2 (and so the AVX2 kernels of layered stages).

    Like :func:`avx512bw_available`, it reads the features numba targets
    (``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` apply), and
    ``LUTSR_PORTABLE_KERNEL=1`` turns it off.
    """
    if os.environ.get("LUTSR_PORTABLE_KERNEL", "0") not in ("", "0"):
        return False
    return "+avx2" in _target_features()


def neon_available() -> bool:
    """Whether numba compiles for aarch64 (and so the NEON kernels of layered stages).

    Advanced SIMD (NEON) is part of every aarch64 CPU, so the target triple is all there is
    to ask; ``LUTSR_PORTABLE_KERNEL=1`` turns it off.
    """
    if os.environ.get("LUTSR_PORTABLE_KERNEL", "0") not in ("", "0"):
        return False
    return _llvm.get_process_triple().split("-")[0] in ("aarch64", "arm64")


@functools.cache
def _target_features() -> frozenset[str]:
    """The ``+feature`` / ``-feature`` flags numba compiles for (about 1 ms to ask LLVM).

    Empty unless numba targets x86: the x86 feature names are all these flags are
    asked about, and on another CPU (aarch64) an x86 ``NUMBA_CPU_FEATURES`` left in
    the environment would otherwise select x86 intrinsics, which LLVM cannot compile
    there (it aborts the process).
    """
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features

    if _llvm.get_process_triple().split("-")[0] not in ("x86_64", "i386", "i686"):
        return frozenset()
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None \
        else get_host_cpu_features()
    return frozenset(features.split(","))


#: For :func:`_dot_rotations`: byte ``4 * pos + k`` of a vertex's four rows,
#: one per rotation, concatenated, is rotation ``k``'s table column that lands
#: at block position ``pos``.
_ROTATION_GATHER = [16 * k + int(block_permutations(4)[k, pos])
                    for pos in range(16) for k in range(4)]


@intrinsic
def _dot_rotations(typingctx, acc, tables, buf, at, packed, packed_at):
    """``acc[pos] += sum(w * tables[offset + perm[k, pos]])`` over one pattern's 20 vertex rows.

    For ``r = 4`` (16 block positions, the int32 ``acc`` a stack pointer).
    Vertex ``g``'s rows in the four rotations are loaded as one 64-byte vector
    and rearranged by one constant byte shuffle (``vpermb``) so that each
    32-bit lane holds the four bytes that land on one block position; one
    ``vpdpbusd`` multiplies them by the four weights (``packed[packed_at + g
    * CHUNK]``, u8 each) and adds the lane sums. That sums the rotations
    through their block permutations on the way, and takes 5 dot products
    per pattern instead of 20 widen-multiply-adds. ``buf[at + (k * 10 + g) *
    CHUNK]`` is the row offset of vertex ``g`` in rotation ``k`` (pass 1's
    layout). Integer arithmetic, no saturation: exact.
    """
    if not (isinstance(acc, types.CPointer) and isinstance(tables, types.Array)):
        return None

    def codegen(context, builder, signature, args):
        acc_ptr, tables_val, buf_val, at_val, packed_val, packed_at_val = args
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        lanes, bytes64, row_t = ir.VectorType(i32, 16), ir.VectorType(i8, 64), ir.VectorType(i8, 16)
        # LLVM 21 retyped the byte operands of the VNNI intrinsics from <16 x i32>.
        operand = bytes64 if _LLVM_MAJOR >= 21 else lanes
        dot = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(lanes, [lanes, operand, operand]),
            "llvm.x86.avx512.vpdpbusd.512")
        tdata = context.make_array(tables)(context, builder, tables_val).data
        bdata = context.make_array(buf)(context, builder, buf_val).data
        pdata = context.make_array(packed)(context, builder, packed_val).data
        at = context.cast(builder, at_val, signature.args[3], types.uint64)
        packed_at = context.cast(builder, packed_at_val, signature.args[5], types.uint64)
        gather = ir.Constant(ir.VectorType(i32, 64), _ROTATION_GATHER)
        total_ptr = builder.bitcast(acc_ptr, lanes.as_pointer())
        total = builder.load(total_ptr, align=4)
        for g in range(5):
            rows = []
            for k in range(4):
                index = builder.add(at, ir.Constant(i64, (k * 10 + g) * CHUNK))
                offset = builder.zext(builder.load(builder.gep(bdata, [index])), i64)
                row_ptr = builder.bitcast(builder.gep(tdata, [offset]), row_t.as_pointer())
                rows.append(builder.load(row_ptr, align=1))
            pair01 = builder.shuffle_vector(rows[0], rows[1], ir.Constant(
                ir.VectorType(i32, 32), list(range(32))))
            pair23 = builder.shuffle_vector(rows[2], rows[3], ir.Constant(
                ir.VectorType(i32, 32), list(range(32))))
            four = builder.shuffle_vector(pair01, pair23, ir.Constant(
                ir.VectorType(i32, 64), list(range(64))))
            data = builder.shuffle_vector(four, ir.Constant(bytes64, ir.Undefined), gather)
            w_index = builder.add(packed_at, ir.Constant(i64, g * CHUNK))
            weights = _splat(builder, lanes, builder.load(builder.gep(pdata, [w_index])))
            total = builder.call(dot, [total, builder.bitcast(weights, operand),
                                       builder.bitcast(data, operand)])
        builder.store(total, total_ptr, align=4)
        return context.get_dummy_value()

    return types.void(acc, tables, buf, at, packed, packed_at), codegen


def _rounding_index(value, low, like):
    """Index of an accumulated sum in the stage's rounding lookup (jitted only).

    ``like`` is a value of the accumulator's dtype. For int16 the lookup has
    2**16 entries indexed by the sum's bit pattern (the sum modulo 2**16:
    exactly what int16 accumulation gives), one zero-extending move; for int32
    it is indexed by ``sum + low``.
    """
    raise NotImplementedError


@overload(_rounding_index)
def _rounding_index_impl(value, low, like):
    if like == types.int16:
        return lambda value, low, like: np.uint64(np.uint16(value))
    return lambda value, low, like: np.uint64(np.int64(value) + low)


@numba.njit(nogil=True, cache=True)
def _accumulate(tables, buf, packed, n_pat, nx, rnd, low, shift_round, shift_bias, dst, start,
                d_y, block, side, plane, p_start, base, base_offsets, sum_shift):
    """Pass 2: sum the weighted vertex rows of ``nx`` pixels and write their rounded blocks.

    ``block`` is a tuple of ``r*r`` zeros of the accumulator's dtype and
    ``side`` one of ``r`` zeros: their types make ``r`` a compile-time
    constant, so the block loops unroll into a few vector instructions.

    Without ``packed`` (None), each rotation accumulates in table column order
    into its own ``r*r`` accumulator (registers: a stack buffer, see
    :func:`_stack_buffer`); the four are summed through the rotations' block
    permutations (constant shuffles) only once per pixel. Reading every
    rotation from the same table rather than from four column-permuted copies
    keeps the tables' cache footprint four times smaller: a natural image's
    neighbourhoods recur in all rotations. With ``packed`` (the weights of
    :func:`_pack_weights`; ``r`` = 4 on a :func:`vnni_available` CPU),
    :func:`_dot_rotations` does all of that in int32 instead.

    With ``base`` (see :func:`_add_base`; else None), each sum becomes ``sum <<
    sum_shift`` plus the pixel's base sum before the rounding shift: ``base_offsets``
    are the offsets of its five pixel rows from pixel 0's ``p_start`` in
    ``plane``.

    Pixel ``x``'s block element ``(u, v)`` goes to ``dst[start + x * r + u *
    d_y + v]``, rounded by ``rnd[_rounding_index(sum, low, block[0])]`` one
    byte at a time, or, when ``shift_round`` (``m`` of
    :func:`power_of_two_rounding`) is not 0, by :func:`_round_shift` on the
    whole block, each row then one store (:func:`_store_rows`). All indices
    are unsigned, so numba emits no negative-index wraparound.
    """
    chunk = np.uint64(CHUNK)
    RR = len(block)
    R = len(side)
    acc_ptr = _stack_buffer((block, block, block, block), block[0])
    total_ptr = _stack_buffer(block, block[0])
    total = numba.carray(total_ptr, (RR,))
    for x in range(np.uint64(nx)):
        # Decided by the argument's type: with None numba compiles this branch
        # only, so the VNNI instructions never reach a CPU without them.
        if packed is None:
            acc = numba.carray(acc_ptr, (4, RR))
            for k in range(4):
                for m in range(RR):
                    acc[k, m] = 0
            for p in range(np.uint64(n_pat)):
                for k in range(4):
                    at = (p * np.uint64(4) + np.uint64(k)) * np.uint64(10) * chunk + x
                    o0 = np.uint64(buf[at])
                    o1 = np.uint64(buf[at + chunk])
                    o2 = np.uint64(buf[at + np.uint64(2) * chunk])
                    o3 = np.uint64(buf[at + np.uint64(3) * chunk])
                    o4 = np.uint64(buf[at + np.uint64(4) * chunk])
                    w0 = np.int32(buf[at + np.uint64(5) * chunk])
                    w1 = np.int32(buf[at + np.uint64(6) * chunk])
                    w2 = np.int32(buf[at + np.uint64(7) * chunk])
                    w3 = np.int32(buf[at + np.uint64(8) * chunk])
                    w4 = np.int32(buf[at + np.uint64(9) * chunk])
                    _add_rows(acc_ptr, k, tables, (o0, o1, o2, o3, o4), (w0, w1, w2, w3, w4),
                              block)
            _sum_rotations(acc_ptr, total_ptr, side)
        else:
            for m in range(RR):
                total[m] = 0
            for p in range(np.uint64(n_pat)):
                _dot_rotations(total_ptr, tables, buf, p * np.uint64(40) * chunk + x, packed,
                               p * np.uint64(5) * chunk + x)
        d = np.uint64(start) + x * np.uint64(R)
        if base is not None:  # a compile-time branch, as for packed
            _add_base(total_ptr, sum_shift, base, plane, np.uint64(p_start) + x, base_offsets,
                      block)
        if shift_round > 0:
            _round_shift(total_ptr, shift_round, shift_bias, block)
            _store_rows(total_ptr, dst, d, np.uint64(d_y), side)
            continue
        for u in range(R):
            row = d + np.uint64(u) * np.uint64(d_y)
            for v in range(R):
                dst[row + np.uint64(v)] = rnd[_rounding_index(total[u * R + v], low, block[0])]


@intrinsic
def _vertex_lanes(typingctx, plane, taps, n, table_at, interval, strides, shift, buf, at):
    """Pass 1 for 16 pixels of one (pattern, rotation): see :func:`_vertices`.

    ``taps`` are the plane offsets of the first pixel's four taps, ``table_at``
    the table's offset, ``strides`` (a 4-tuple) the table offsets of one grid
    step along a..d; writes ``buf[at + row * CHUNK + i]`` for rows 0..9.
    Lanes ``i >= n`` load nothing (masked loads) and store garbage (unread).
    Written as explicit 16 x int32 vectors: LLVM's loop vectoriser stops at
    8 lanes on AVX-512 CPUs, this is twice as wide there.
    """
    if not (isinstance(plane, types.Array) and isinstance(taps, types.UniTuple)):
        return None

    def codegen(context, builder, signature, args):
        (plane_val, taps_val, n_val, table_at_val, k_val, strides_val, shift_val, buf_val,
         at_val) = args
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        vec, bytes_ = ir.VectorType(i32, LANES), ir.VectorType(i8, LANES)
        mask_t = ir.VectorType(ir.IntType(1), LANES)
        load = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(bytes_, [bytes_.as_pointer(), i32, mask_t, bytes_]),
            f"llvm.masked.load.v{LANES}i8.{_pointer_name(bytes_)}")

        def scalar(value, ty):
            return _splat(builder, vec, context.cast(builder, value, ty, types.int32))

        def const(c):
            return ir.Constant(vec, [c] * LANES)

        def smax(x, y):
            return builder.select(builder.icmp_signed(">", x, y), x, y)

        def smin(x, y):
            return builder.select(builder.icmp_signed("<", x, y), x, y)

        data = context.make_array(plane)(context, builder, plane_val).data
        mask = _lane_mask(builder, context.cast(builder, n_val, signature.args[2], types.int32),
                          LANES)
        k = scalar(k_val, signature.args[4])
        sh = scalar(shift_val, signature.args[6])
        q = builder.shl(const(1), k)
        frac = builder.sub(q, const(1))
        low = builder.sub(builder.shl(const(1), sh), const(1))
        offset = scalar(table_at_val, signature.args[3])
        keys = []
        for t in range(4):
            tap = context.cast(builder, builder.extract_value(taps_val, t), taps.dtype, types.int64)
            ptr = builder.bitcast(builder.gep(data, [tap]), bytes_.as_pointer())
            v = builder.zext(builder.call(load, [ptr, ir.Constant(i32, 1), mask,
                                                 ir.Constant(bytes_, [0] * LANES)]), vec)
            stride = scalar(builder.extract_value(strides_val, t), strides.dtype)
            offset = builder.add(offset, builder.mul(builder.ashr(v, k), stride))
            # Fraction in the high bits, the dimension's table stride in the low
            # ones: sorting the keys sorts the dimensions by fraction. Ties order
            # by stride instead of by dimension as the reference's stable argsort
            # does; the vertex between tied steps then gets weight 0, so the sum
            # is the same.
            keys.append(builder.or_(builder.shl(builder.and_(v, frac), sh), stride))
        k0, k1, k2, k3 = keys  # a 5-comparator sorting network, descending
        k0, k1 = smax(k0, k1), smin(k0, k1)
        k2, k3 = smax(k2, k3), smin(k2, k3)
        k0, k2 = smax(k0, k2), smin(k0, k2)
        k1, k3 = smax(k1, k3), smin(k1, k3)
        k1, k2 = smax(k1, k2), smin(k1, k2)
        rows = [offset]
        for key in (k0, k1, k2, k3):
            rows.append(builder.add(rows[-1], builder.and_(key, low)))
        f = [builder.ashr(key, sh) for key in (k0, k1, k2, k3)]
        rows += [builder.sub(q, f[0]), builder.sub(f[0], f[1]), builder.sub(f[1], f[2]),
                 builder.sub(f[2], f[3]), f[3]]
        bdata = context.make_array(buf)(context, builder, buf_val).data
        at = context.cast(builder, at_val, signature.args[8], types.uint64)
        for i, row in enumerate(rows):
            ptr = builder.gep(bdata, [builder.add(at, ir.Constant(i64, i * CHUNK))])
            builder.store(row, builder.bitcast(ptr, vec.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.void(plane, taps, n, table_at, interval, strides, shift, buf, at), codegen


@numba.njit(nogil=True, cache=True)
def _vertices(plane, start, tapoff, table_offsets, nx, interval, strides, shift, buf):
    """Pass 1: simplex vertices and weights of ``nx`` pixels for every (pattern, rotation).

    ``plane[start + x + tapoff[j, t]]`` is tap ``t`` of pixel ``x`` in
    combination ``j``. Writes ``buf[(j * 10 + n) * CHUNK + x]``: rows ``n`` 0..4
    are the offsets in the flat tables of the five vertices' rows (``table_offsets[j]``
    plus row index times ``r*r``), rows 5..9 their weights.

    Everything is int32 arithmetic: offsets wrap modulo 2**32 exactly as the
    uint32 ``buf`` stores them (tables are < 2**32 elements), and the sorting
    keys ``fraction << shift | stride`` stay below 2**31 (``shift + interval``
    is at most 29 for every L and r <= 8).
    """
    steps = (strides[0], strides[1], strides[2], strides[3])
    for j in range(tapoff.shape[0]):
        table_at = np.int32(np.uint32(table_offsets[j]))
        for x0 in range(0, nx, LANES):
            at = start + x0
            taps = (at + tapoff[j, 0], at + tapoff[j, 1], at + tapoff[j, 2], at + tapoff[j, 3])
            _vertex_lanes(plane, taps, nx - x0, table_at, interval, steps, shift, buf,
                          j * 10 * CHUNK + x0)


@numba.njit(nogil=True, cache=True)
def _vertices_portable(plane, start, tapoff, table_offsets, nx, interval, strides, shift, buf):
    """:func:`_vertices` as a plain loop that LLVM vectorises for the CPU at hand.

    For CPUs without AVX-512BW, where the 16-lane masked byte loads of
    :func:`_vertex_lanes` would be split into scalar loads. Same arguments and
    output as :func:`_vertices`.

    Everything is int32 arithmetic: offsets wrap modulo 2**32 exactly as the
    uint32 ``buf`` stores them (tables are < 2**32 elements), and the sorting
    keys ``fraction << shift | stride`` stay below 2**31 (``shift + interval``
    is at most 29 for every L and r <= 8).
    """
    k = np.int32(interval)
    q = _shl(1, k)
    mask = _sub(q, 1)
    sh = np.int32(shift)
    low = _sub(_shl(1, sh), 1)
    s0, s1 = np.int32(strides[0]), np.int32(strides[1])
    s2, s3 = np.int32(strides[2]), np.int32(strides[3])
    for j in range(tapoff.shape[0]):
        # Slices, so that the loop indices are provably non-negative: numba then
        # emits no wraparound selects and LLVM vectorises the loop.
        r0 = plane[start + tapoff[j, 0]:start + tapoff[j, 0] + nx]
        r1 = plane[start + tapoff[j, 1]:start + tapoff[j, 1] + nx]
        r2 = plane[start + tapoff[j, 2]:start + tapoff[j, 2] + nx]
        r3 = plane[start + tapoff[j, 3]:start + tapoff[j, 3] + nx]
        out = buf[j * 10 * CHUNK:(j + 1) * 10 * CHUNK]
        tb = np.int32(np.uint32(table_offsets[j]))
        for x in range(nx):
            a, b, c, d = np.int32(r0[x]), np.int32(r1[x]), np.int32(r2[x]), np.int32(r3[x])
            origin = _add(_add(tb, _mul(_shr(a, k), s0)),
                        _add(_add(_mul(_shr(b, k), s1), _mul(_shr(c, k), s2)),
                             _mul(_shr(d, k), s3)))
            # Fraction in the high bits, the dimension's table stride in the
            # low ones: sorting the keys sorts the dimensions by fraction.
            # Ties order by stride instead of by dimension as the reference's
            # stable argsort does; the vertex between tied steps then gets
            # weight 0, so the sum is the same.
            k0 = _or(_shl(_and(a, mask), sh), s0)
            k1 = _or(_shl(_and(b, mask), sh), s1)
            k2 = _or(_shl(_and(c, mask), sh), s2)
            k3 = _or(_shl(_and(d, mask), sh), s3)
            t0, t1 = max(k0, k1), min(k0, k1)
            t2, t3 = max(k2, k3), min(k2, k3)
            k0, k2 = max(t0, t2), min(t0, t2)
            k1, k3 = max(t1, t3), min(t1, t3)
            k1, k2 = max(k1, k2), min(k1, k2)
            f1, f2, f3, f4 = _shr(k0, sh), _shr(k1, sh), _shr(k2, sh), _shr(k3, sh)
            o1 = _add(origin, _and(k0, low))
            o2 = _add(o1, _and(k1, low))
            o3 = _add(o2, _and(k2, low))
            out[x] = origin
            out[CHUNK + x] = o1
            out[2 * CHUNK + x] = o2
            out[3 * CHUNK + x] = o3
            out[4 * CHUNK + x] = _add(o3, _and(k3, low))
            out[5 * CHUNK + x] = _sub(q, f1)
            out[6 * CHUNK + x] = _sub(f1, f2)
            out[7 * CHUNK + x] = _sub(f2, f3)
            out[8 * CHUNK + x] = _sub(f3, f4)
            out[9 * CHUNK + x] = f4


@intrinsic
def _add_base_lanes(typingctx, acc, shift, base, plane, at, rows, n, lanes):
    """:func:`_add_base` for 16 pixels at once, in :func:`_accumulate_lanes`' layout.

    ``acc[m * 16 + i]`` (block position ``m`` of pixel ``i``) becomes ``acc
    << shift`` plus the base sum of the pixel at ``plane[at + i]``; ``rows``
    and ``base`` as for :func:`_add_base`, ``lanes`` the accumulator's tuple
    of 16 * r*r zeros. Tap by tap over the 5x5 window: 16 neighbouring pixels are 16
    contiguous bytes, so each (tap, position) is one vector multiply-add by a
    broadcast weight, the sums kept in registers. (:func:`_add_base`'s
    per-pixel form costs as much per pixel at r = 2 as at r = 4, for a
    quarter of the outputs.) Only when all 16 pixels are valid (``n`` = 16)
    are whole vectors loaded; otherwise lane by lane, so that no byte past
    the last valid pixel's window is read.
    """
    if not (isinstance(acc, types.CPointer) and isinstance(lanes, types.UniTuple)):
        return None
    rr = lanes.count // LANES

    def codegen(context, builder, signature, args):
        acc_ptr, shift_val, base_val, plane_val, at_val, rows_val, n_val, _ = args
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        vec = ir.VectorType(i32, LANES)
        slots = [builder.bitcast(builder.gep(acc_ptr, [ir.Constant(i64, m * LANES)]),
                                 vec.as_pointer()) for m in range(rr)]
        shift = _splat(builder, vec, builder.trunc(
            context.cast(builder, shift_val, signature.args[1], types.int64), i32))
        weights = context.make_array(base)(context, builder, base_val).data
        pixels = context.make_array(plane)(context, builder, plane_val).data
        rows_ary = context.make_array(rows)(context, builder, rows_val).data
        pixel_at = context.cast(builder, at_val, signature.args[4], types.uint64)
        n = context.cast(builder, n_val, signature.args[6], types.int32)
        whole = builder.icmp_signed("==", n, ir.Constant(i32, LANES))
        totals = [builder.shl(builder.load(slot, align=4), shift) for slot in slots]
        for a in range(BASE_SIDE):
            row_offset = builder.load(builder.gep(rows_ary, [ir.Constant(i64, a)]))
            row_at = builder.add(pixel_at, row_offset)
            for b in range(BASE_SIDE):
                ptr = builder.gep(pixels, [builder.add(row_at, ir.Constant(i64, b))])
                with builder.if_else(whole) as (then, otherwise):
                    with then:
                        loaded = builder.load(builder.bitcast(
                            ptr, ir.VectorType(i8, LANES).as_pointer()), align=1)
                        block_then = builder.block
                    with otherwise:
                        partial = ir.Constant(ir.VectorType(i8, LANES), [0] * LANES)
                        # n < 16: lane by lane (at the end of a row only).
                        for i in range(LANES):
                            keep = builder.icmp_signed("<", ir.Constant(i32, i), n)
                            lane_ptr = builder.gep(ptr, [ir.Constant(i64, i)])
                            # Never load past lane n - 1: select the address of lane 0.
                            safe = builder.select(keep, lane_ptr, ptr)
                            partial = builder.insert_element(
                                partial, builder.load(safe), ir.Constant(i32, i))
                        block_else = builder.block
                merged = builder.phi(ir.VectorType(i8, LANES))
                merged.add_incoming(loaded, block_then)
                merged.add_incoming(partial, block_else)
                px = builder.zext(merged, vec)
                pair, j = divmod(b, 2)
                for m in range(rr):
                    index = ((a * BASE_PAIRS + pair) * rr + m) * 2 + j
                    w = builder.sext(builder.load(builder.gep(weights, [ir.Constant(i64, index)])),
                                     i32)
                    totals[m] = builder.add(totals[m], builder.mul(px, _splat(builder, vec, w)))
        for slot, total in zip(slots, totals, strict=True):
            builder.store(total, slot, align=4)
        return context.get_dummy_value()

    return types.void(acc, shift, base, plane, at, rows, n, lanes), codegen


@numba.njit(nogil=True, cache=True)
def _accumulate_lanes(tables, buf, n_pat, nx, rnd, low, like, shift_round, shift_bias, dst, start,
                      d_y, lanes, side, plane, p_start, base, base_offsets, sum_shift):
    """Pass 2 for ``r`` = 1 or 2: :func:`_accumulate`, 16 pixels at a time (:func:`_gather_rows`).

    ``lanes`` is a tuple of ``16 * r * r`` int32 zeros (the accumulator's size
    at compile time). Pixel ``x``'s block goes to ``dst[start + x * r + u *
    d_y + v]``, rounded as :func:`_accumulate` says (``like``: its ``block[0]``),
    a base (or None) added as it says (:func:`_add_base_lanes`).
    """
    acc_ptr = _stack_buffer(lanes, np.int32)
    acc = numba.carray(acc_ptr, (len(lanes),))
    r = len(side)
    for x0 in range(0, nx, LANES):
        valid = min(LANES, nx - x0)
        for i in range(len(lanes)):
            acc[i] = 0
        for p in range(n_pat):
            _gather_rows(acc_ptr, tables, buf, p * 40 * CHUNK + x0, valid, side)
        if base is not None:  # a compile-time branch, as in _accumulate
            _add_base_lanes(acc_ptr, sum_shift, base, plane, np.uint64(p_start + x0),
                            base_offsets, valid, lanes)
        if shift_round > 0:
            _round_shift(acc_ptr, shift_round, shift_bias, lanes)
        else:
            for pos in range(r * r):
                for i in range(valid):
                    at = pos * LANES + i
                    acc[at] = rnd[_rounding_index(acc[at], low, like)]
        _store_lanes(acc_ptr, dst, start + x0 * r, d_y, valid, side)


@numba.njit(nogil=True, cache=True)
def _pack_weights(buf, n_pat, nx, packed):
    """Pass 1's weights repacked: one uint32 per (pattern, vertex, pixel), a byte per rotation.

    ``packed[(p * 5 + g) * CHUNK + x]`` holds the weights of vertex ``g`` in
    rotations 0..3 as bytes 0..3; weights are at most ``q`` <= 128.
    """
    for p in range(n_pat):
        for g in range(5):
            w0 = buf[((p * 4 + 0) * 10 + 5 + g) * CHUNK:((p * 4 + 0) * 10 + 5 + g) * CHUNK + nx]
            w1 = buf[((p * 4 + 1) * 10 + 5 + g) * CHUNK:((p * 4 + 1) * 10 + 5 + g) * CHUNK + nx]
            w2 = buf[((p * 4 + 2) * 10 + 5 + g) * CHUNK:((p * 4 + 2) * 10 + 5 + g) * CHUNK + nx]
            w3 = buf[((p * 4 + 3) * 10 + 5 + g) * CHUNK:((p * 4 + 3) * 10 + 5 + g) * CHUNK + nx]
            out = packed[(p * 5 + g) * CHUNK:(p * 5 + g) * CHUNK + nx]
            for x in range(nx):
                out[x] = _or(_or(w0[x], _shl(w1[x], 8)), _or(_shl(w2[x], 16), _shl(w3[x], 24)))


@numba.njit(nogil=True, cache=True)
def _write_rows(rows, dst, start, d_y, d_x, d_c):
    """Copy ``rows`` (C, r, W*r) to ``dst[start + u * d_y + X * d_x + c * d_c]``.

    Pass 2 writes each output row of each channel contiguously into ``rows``;
    this puts them where they belong. For interleaved RGB (``d_x`` 3,
    ``d_c`` 1) the loop has constant strides, which LLVM vectorises into
    byte shuffles: writing every byte at its final place from pass 2
    instead took one shuffle-port instruction per byte.
    """
    n_ch, r, wr = rows.shape
    n = np.uint64(wr)
    for u in range(r):
        at = np.uint64(start) + np.uint64(u) * np.uint64(d_y)
        if n_ch == 3 and d_c == 1 and d_x == 3:
            out = dst[at:at + np.uint64(3) * n]
            c0, c1, c2 = rows[0, u], rows[1, u], rows[2, u]
            for i in range(n):
                out[np.uint64(3) * i] = c0[i]
                out[np.uint64(3) * i + np.uint64(1)] = c1[i]
                out[np.uint64(3) * i + np.uint64(2)] = c2[i]
        elif n_ch == 4 and d_c == 1 and d_x == 4:
            out = dst[at:at + np.uint64(4) * n]
            c0, c1, c2, c3 = rows[0, u], rows[1, u], rows[2, u], rows[3, u]
            for i in range(n):
                out[np.uint64(4) * i] = c0[i]
                out[np.uint64(4) * i + np.uint64(1)] = c1[i]
                out[np.uint64(4) * i + np.uint64(2)] = c2[i]
                out[np.uint64(4) * i + np.uint64(3)] = c3[i]
        elif d_x == 1:
            for c in range(n_ch):
                row = at + np.uint64(c) * np.uint64(d_c)
                dst[row:row + n] = rows[c, u]
        else:
            for c in range(n_ch):
                row = at + np.uint64(c) * np.uint64(d_c)
                src = rows[c, u]
                for i in range(n):
                    dst[row + i * np.uint64(d_x)] = src[i]


@intrinsic
def _tap_lanes(typingctx, pairs, at, offsets, weights, out, out_at, blocks):
    """Learned taps of ``16 * len(blocks)`` neighbouring pixels: ``out[out_at + i]``.

    ``pairs`` (uint32) packs the window's pixels in twos, ``pairs[k] = p[k] |
    p[k + 1] << 16``; ``offsets[e]`` / ``weights[e]`` (int16 pairs) are pair
    ``e`` of the taps: two horizontally adjacent window pixels and their
    weights (see :func:`_pair_taps`). Per pair and 16 pixels one 64-byte load,
    multiplied by the broadcast weight pair and summed pairwise into int32
    lanes: LLVM turns the pattern into one ``vpmaddwd`` (``vpdpwssd`` with
    VNNI), two multiply-adds per lane. Each block of 16 pixels has its own
    accumulator in registers: independent chains hide the instruction's
    latency (in one A/B run the tap pass of ``x4-sdy-taps`` was about 1.2x
    faster with 4 blocks than with 1). Then ``clip((s +
    2**(TAP_BITS - 1)) >> TAP_BITS, 0, 255)``, stored 16 bytes per block.
    """
    if not (isinstance(out, types.Array) and isinstance(blocks, types.UniTuple)):
        return None
    n_blocks = blocks.count

    def codegen(context, builder, signature, args):
        pairs_val, at_val, offsets_val, weights_val, out_val, out_at_val, _ = args
        i8, i16, i32, i64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
        vec, halves = ir.VectorType(i32, LANES), ir.VectorType(i16, 2 * LANES)
        packed = context.make_array(pairs)(context, builder, pairs_val).data
        offsets_ary = context.make_array(offsets)(context, builder, offsets_val)
        weights_ptr = builder.bitcast(
            context.make_array(weights)(context, builder, weights_val).data, i32.as_pointer())
        pixel_at = context.cast(builder, at_val, signature.args[1], types.int64)
        accs = [cgutils.alloca_once(builder, vec) for _ in range(n_blocks)]
        for acc in accs:
            builder.store(_splat(builder, vec, ir.Constant(i32, 1 << (TAP_BITS - 1))), acc)
        with cgutils.for_range(builder, builder.extract_value(offsets_ary.shape, 0)) as loop:
            offset = builder.load(builder.gep(offsets_ary.data, [loop.index]))
            w = builder.bitcast(_splat(builder, vec, builder.load(builder.gep(
                weights_ptr, [loop.index]))), halves)
            first = builder.add(pixel_at, offset)
            for b, acc in enumerate(accs):
                ptr = builder.gep(packed, [builder.add(first, ir.Constant(i64, b * LANES))])
                pixels = builder.load(builder.bitcast(ptr, halves.as_pointer()), align=4)
                builder.store(builder.add(builder.load(acc), _madd_pairs(builder, pixels, w)), acc)
        dst = context.make_array(out)(context, builder, out_val).data
        dst = builder.gep(dst, [context.cast(builder, out_at_val, signature.args[5], types.int64)])
        low, high = ir.Constant(vec, [0] * LANES), ir.Constant(vec, [255] * LANES)
        shift = _splat(builder, vec, ir.Constant(i32, TAP_BITS))
        for b, acc in enumerate(accs):
            total = builder.ashr(builder.load(acc), shift)
            total = builder.select(builder.icmp_signed("<", total, low), low, total)
            total = builder.select(builder.icmp_signed(">", total, high), high, total)
            ptr = builder.gep(dst, [ir.Constant(i64, b * LANES)])
            builder.store(builder.trunc(total, ir.VectorType(i8, LANES)),
                          builder.bitcast(ptr, ir.VectorType(i8, LANES).as_pointer()), align=1)
        return context.get_dummy_value()

    return types.void(pairs, at, offsets, weights, out, out_at, blocks), codegen


def _pair_taps(steps: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Learned taps' nonzero weights as pairs of horizontally adjacent pixels.

    ``steps`` (J, E, 2) and ``weights`` (J, E) are each combination's window
    steps ``(dy, dx)`` and weights. Returns ``(pair_steps, pair_weights)``,
    (J, N, 2) int64 and (J, N, 2) int16: pair ``n`` of combination ``j`` is
    the pixels at ``pair_steps[j, n]`` and one to its right, weighted by
    ``pair_weights[j, n]``. A pixel whose right neighbour has no weight pairs
    with a zero; combinations with fewer pairs are padded with zero pairs at
    step (0, 0), so that every combination has the same ``N``.
    """
    pairs = []
    for s, w in zip(steps, weights, strict=True):
        left = {(int(dy), int(dx)): int(v) for (dy, dx), v in zip(s, w, strict=True) if v}
        row = []
        while left:
            dy, dx = min(left)
            row.append(((dy, dx), (left.pop((dy, dx)), left.pop((dy, dx + 1), 0))))
        pairs.append(row)
    n = max(map(len, pairs), default=0)
    pair_steps = np.zeros((len(pairs), n, 2), np.int64)
    pair_weights = np.zeros((len(pairs), n, 2), np.int16)
    for j, row in enumerate(pairs):
        for e, (step, w) in enumerate(row):
            pair_steps[j, e], pair_weights[j, e] = step, w
    return pair_steps, pair_weights


@numba.njit(nogil=True, cache=True)
def _learned_tap_band(src, s_y, s_x, s_c, win, pairs, prow, pcol, y0, y1, offsets, weights, out):
    """Learned taps (see :class:`~lutsr.model.Stage`) of source rows ``y0:y1``, all channels.

    ``win`` (C, y1 - y0 + 2m, W + 2m) is scratch for the band's window padded
    by ``m`` (``prow`` / ``pcol``: :func:`padded_index` with that margin), and
    ``pairs`` (uint32, one per window pixel) for its pixel pairs;
    ``offsets`` / ``weights`` (4P * 4, N(, 2)): every (pattern, rotation)'s
    taps as pairs (:func:`_pair_taps`), offsets in the flattened window.
    Writes ``out[j, c, y, x]`` (out: (4P * 4, C, H, W)): 64 pixels at a time,
    then 16 (:func:`_tap_lanes`; the last 16 of a row overlap the previous
    ones), one at a time in rows narrower than 16. Sums are int32 (|weight| <
    2**15, at most 49 pixels of 255: below 2**31).
    """
    n_ch, hw, wp = win.shape
    margin = (hw - (y1 - y0)) // 2
    width = wp - 2 * margin
    _pad_window(src, s_y, s_x, s_c, win, prow, pcol, y0, margin)
    plane = win.reshape(-1)
    n = plane.shape[0]
    for i in range(n - 1):
        pairs[i] = np.uint32(plane[i]) | (np.uint32(plane[i + 1]) << np.uint32(16))
    pairs[n - 1] = plane[n - 1]  # a right neighbour past the window only ever has weight 0
    half = np.int32(1 << (TAP_BITS - 1))
    for c in range(n_ch):
        for y in range(y0, y1):
            centre = (c * hw + y - y0 + margin) * wp + margin
            for j in range(offsets.shape[0]):
                dst = out[j, c, y]
                x = 0
                while x + 4 * LANES <= width:
                    _tap_lanes(pairs, centre + x, offsets[j], weights[j], dst, x, (0, 0, 0, 0))
                    x += 4 * LANES
                if width >= LANES:
                    while x < width:
                        x = min(x, width - LANES)
                        _tap_lanes(pairs, centre + x, offsets[j], weights[j], dst, x, (0,))
                        x += LANES
                    continue
                for x in range(width):
                    s = half
                    for e in range(offsets.shape[1]):
                        p = pairs[centre + x + offsets[j, e]]
                        s += (np.int32(p & 0xFFFF) * np.int32(weights[j, e, 0])
                              + np.int32(p >> 16) * np.int32(weights[j, e, 1]))
                    dst[x] = min(max(s >> TAP_BITS, 0), 255)


@numba.njit(nogil=True, cache=True)
def _stage_band(src, s_y, s_x, s_c, win, prow, pcol, y0, y1,
                tables, table_offsets, tapoff, strides, shift, interval, buf, packed, rnd, low,
                shift_round, shift_bias, rows, dst, d_y, d_x, d_c, block, side, lanes,
                base, base_offsets, sum_shift, tap_planes):
    """Run one stage on source rows ``y0:y1``, all channels.

    Parameters
    ----------
    src : 1-D uint8
        The stage input, a flat span read at ``y * s_y + x * s_x + c * s_c``.
    win : (C, y1 - y0 + 4, W + 4) uint8
        Scratch for the band's padded window.
    prow, pcol : int64
        :func:`padded_index` of the input height and width.
    tables : 1-D int8
        The flattened :func:`stack_tables`.
    table_offsets : (4 * P,) int64
        Offset in ``tables`` of the table of each (pattern, rotation).
    tapoff : (4 * P, 4) int64
        Offset of each tap in the flattened window, per (pattern, rotation); with
        ``tap_planes``, in ``tap_planes`` from the pixel's position in one plane.
    strides : (4,) int64
        Table offsets of one grid step along a, b, c, d (``L**3 * r*r`` .. ``r*r``).
    shift : int
        Bit position of the fraction in the sorting keys (above every stride).
    buf : (4 * P * 10 * CHUNK,) uint32
        Scratch for pass 1.
    packed : (P * 5 * CHUNK,) uint32 or None
        Scratch for :func:`_pack_weights`: given, pass 2 uses :func:`_dot_rotations`
        (``r`` must be 4 and the CPU must have :func:`vnni_available`).
    rnd, low : uint8 rounding lookup and its index offset (see :func:`_rounding_index`).
    shift_round, shift_bias : int
        ``(m, b)`` of :func:`power_of_two_rounding`, used instead of ``rnd`` when ``m`` > 0.
    rows : (C, r, W * r) uint8
        Scratch: the output rows of one source row (see :func:`_write_rows`).
    dst : 1-D uint8
        The stage output, written at ``Y * d_y + X * d_x + c * d_c``.
    block, side : tuples of ``r * r`` and ``r`` zeros
        ``block`` of int16 when the accumulator provably fits and the portable
        pass 2 runs, else int32; their types carry ``r`` and the dtype to
        compile time.
    lanes : tuple of ``16 * r * r`` int32 zeros (``r`` <= 2; one otherwise) or None
        The accumulator of :func:`_accumulate_lanes`; None on CPUs without
        AVX-512BW (see :func:`avx512bw_available`): the portable passes then.
    base, base_offsets : (5 * 3 * r*r * 2,) int16 and (5,) int64, or None
        The stage's linear base and its five rows' window offsets (see
        :func:`_add_base`, :func:`_add_base_lanes`); with a base, ``block`` is int32
        and the rounding a shift by ``BASE_BITS``.
    sum_shift : int
        ``BASE_BITS - m`` (see :func:`lutsr.model.sum_shift`); unused without a base.
    tap_planes : 1-D uint8 or None
        A stage with learned taps: the flattened output of :func:`_learned_tap_band`
        for these rows, which pass 1 reads instead of the window.
    """
    n_ch, hw, wp = win.shape
    width = wp - 2 * MARGIN
    r = len(side)
    n_pat = tapoff.shape[0] // 4
    _pad_window(src, s_y, s_x, s_c, win, prow, pcol, y0, MARGIN)
    plane = win.reshape(-1)
    flat_rows = rows.reshape(-1)
    for y in range(y0, y1):
        for c in range(n_ch):
            for x0 in range(0, width, CHUNK):
                nx = min(CHUNK, width - x0)
                start = (c * hw + y - y0 + MARGIN) * wp + MARGIN + x0
                if tap_planes is None:  # numba compiles one branch per type
                    taps, tstart = plane, start
                else:
                    taps, tstart = tap_planes, (c * (len(prow) - 2 * MARGIN) + y) * width + x0
                if lanes is None:  # no AVX-512BW: numba compiles this branch only
                    _vertices_portable(taps, tstart, tapoff, table_offsets, nx, interval, strides,
                                       shift, buf)
                else:
                    _vertices(taps, tstart, tapoff, table_offsets, nx, interval, strides, shift,
                              buf)
                at = (c * r * width + x0) * r
                if r <= 2 and lanes is not None:
                    _accumulate_lanes(tables, buf, n_pat, nx, rnd, low, block[0], shift_round,
                                      shift_bias, flat_rows, at, width * r, lanes, side, plane,
                                      start, base, base_offsets, sum_shift)
                    continue
                if packed is not None:
                    _pack_weights(buf, n_pat, nx, packed)
                _accumulate(tables, buf, packed, n_pat, nx, rnd, low, shift_round, shift_bias,
                            flat_rows, at, width * r, block, side, plane, start, base, base_offsets,
                            sum_shift)
        _write_rows(rows, dst, y * r * d_y, d_y, d_x, d_c)


