"""WGSL kernels for layered stages (:class:`lutsr.layered.LayeredStage`), and their tables.

The arithmetic is :func:`lutsr.reference.run_layered_stage`'s, in integers:
every table is looked up in its :func:`~lutsr.layered.expanded_tables` form
(``16 * Q`` per input level, exact), so a layer of ``A`` inputs is one integer
sum ``T`` and one ``round_half_even(T / (16 * A))``.

Data path (as :mod:`lutsr._cuda.layered`'s): the ``N * Ci`` input planes go
in chunks whose features fit the adapter's storage-buffer limit. A chunk's
features live in two buffers of ``(planes, 4, ceil(C / 4), H * W)`` ``u32``
words, the levels ``h + 32`` (0..63) of channels ``4j..4j+3`` in the bytes of
word ``j``, so each invocation writes the whole words of its pixel. The
layers ping-pong between them:

1. ``first``: block 0's depthwise and low-bit layers from the input samples,
   read through the rotation (no rotated copy);
2. ``depthwise`` / ``pointwise``: the later layers, on the rotated features
   (a rotated ``H x W`` plane has ``H * W`` pixels in every rotation, so one
   flat pixel index serves all four);
3. ``up``: per input pixel, the up layer at its place in all 4 rotations,
   each ``r x r`` block rotated back, summed, +128, clipped: the stage's
   ``u32`` output samples.
"""

from __future__ import annotations

import numpy as np

from ..indexmaps import block_permutations
from ..layered import HIGH_LEVELS, LOW_LEVELS, LayeredStage, device_layers, expanded_tables
from .shaders import WORKGROUP, _load_fn

_PARAMS = """
struct Params {
  total: u32,      // invocations wanted
  height: u32,     // the unrotated plane's
  width: u32,
  in_channels: u32,  // Ci, channels of the image
  plane0: u32,     // first image plane (frame * Ci + channel) of this chunk
  pad0: u32,
  pad1: u32,
  pad2: u32,
}
"""

# round_half_even(t / d) for d = 16 * A > 0: add half and floor, and a landing on
# an exact multiple, the half case, steps an odd quotient back to even. Only
# non-negative numbers are divided: |t| <= 2048 * A = 128 * d, so t + 256 * d
# is positive, and 256 is even (parity kept). (Division of negative integers
# is left undefined by GLSL, which wgpu's OpenGL backend compiles WGSL to: a
# floor division written with a negative remainder gave wrong levels there.)
_COMMON = """
fn rhe(t0: i32, d: i32) -> i32 {
  let t = t0 + d / 2 + 256 * d;
  var q = t / d;
  if (t == q * d && (q & 1) != 0) {
    q -= 1;
  }
  return q - 256;
}

fn level(feat_word: u32, c: u32) -> i32 {
  return i32((feat_word >> (8u * (c & 3u))) & 255u);
}
"""

_INDEX = f"""
  let id = gid.x + gid.y * nwg.x * {WORKGROUP}u;
  if (id >= p.total) {{
    return;
  }}
  let h = p.height;
  let w = p.width;
  let hw = h * w;
  let s = id % hw;
  let k = (id / hw) % 4u;
  let u = id / hw / 4u;
  // The rotated plane's width and height, and the pixel's place in it.
  var wk = w;
  if ((k & 1u) == 1u) {{
    wk = h;
  }}
  let hk = hw / wk;
  let y = i32(s / wk);
  let x = i32(s % wk);
"""

_MAIN = f"""@compute @workgroup_size({WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {{"""


def _words(channels: int) -> int:
    return (channels + 3) // 4


def _store(channels: int, value: str) -> str:
    """Code packing ``{value}`` (an expression in ``o``, a level 0..63) of every output
    channel into the words of pixel ``s``."""
    cw = _words(channels)
    return f"""
  for (var j = 0u; j < {cw}u; j++) {{
    var word = 0u;
    for (var b = 0u; b < 4u; b++) {{
      let o = j * 4u + b;
      if (o < {channels}u) {{
        word |= u32({value}) << (8u * b);
      }}
    }}
    dst[((u * 4u + k) * {cw}u + j) * hw + s] = word;
  }}"""


def first_shader(channels: int, packed: bool) -> str:
    """Block 0's depthwise layer and the low-bit layer, from the stage's input samples.

    Bindings: 0 params, 1 src (the input samples), 2 dst (features), 3 high
    (int16 ``(9, C, 64)`` as i32), 4 low (``(9, C, 4)``).
    """
    return f"""{_PARAMS}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
@group(0) @binding(3) var<storage, read> high: array<i32>;
@group(0) @binding(4) var<storage, read> low: array<i32>;
{_COMMON}
{_load_fn(packed)}
{_MAIN}
{_INDEX}
  let plane = p.plane0 + u;
  let n = plane / p.in_channels;
  let c = plane % p.in_channels;
  var hi: array<i32, 9>;
  var lo: array<i32, 9>;
  for (var a = 0; a < 9; a++) {{
    // Replicate padding in the rotated plane, then back to the source.
    let ry = clamp(y + a / 3 - 1, 0, i32(hk) - 1);
    let rx = clamp(x + a % 3 - 1, 0, i32(wk) - 1);
    var sy = ry;
    var sx = rx;
    if (k == 1u) {{  // np.rot90(a, 1)[y, x] == a[x, W - 1 - y]
      sy = rx;
      sx = i32(w) - 1 - ry;
    }} else if (k == 2u) {{
      sy = i32(h) - 1 - ry;
      sx = i32(w) - 1 - rx;
    }} else if (k == 3u) {{  // np.rot90(a, 3)[y, x] == a[H - 1 - x, y]
      sy = i32(h) - 1 - rx;
      sx = ry;
    }}
    let v = load(((n * h + u32(sy)) * w + u32(sx)) * p.in_channels + c) - 128;
    hi[a] = (v >> 2u) + 32;  // floor(v / 4) + 32: 0..63
    lo[a] = v & 3;
  }}
  var res: array<i32, {channels}>;
  for (var o = 0u; o < {channels}u; o++) {{
    var t = 0;
    var tl = 0;
    for (var a = 0u; a < 9u; a++) {{
      t += high[(a * {channels}u + o) * {HIGH_LEVELS}u + u32(hi[a])];
      tl += low[(a * {channels}u + o) * {LOW_LEVELS}u + u32(lo[a])];
    }}
    let ql = clamp(rhe(tl, 144) + lo[4], 0, 3);
    // Level of h' = clamp(q + h + l', -32, 31), h = hi - 32.
    res[o] = clamp(rhe(t, 144) + hi[4] + ql, 0, 63);
  }}{_store(channels, "res[o]")}
}}
"""


def depthwise_shader(channels: int) -> str:
    """A depthwise layer after block 0. Bindings: 0 params, 1 src, 2 dst (features),
    3 tables (``(9, C, 64)``)."""
    cw = _words(channels)
    return f"""{_PARAMS}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
@group(0) @binding(3) var<storage, read> tables: array<i32>;
{_COMMON}
{_MAIN}
{_INDEX}
  var at: array<u32, 9>;
  for (var a = 0; a < 9; a++) {{
    let ry = clamp(y + a / 3 - 1, 0, i32(hk) - 1);
    let rx = clamp(x + a % 3 - 1, 0, i32(wk) - 1);
    at[a] = u32(ry) * wk + u32(rx);
  }}
  var res: array<i32, {channels}>;
  for (var o = 0u; o < {channels}u; o++) {{
    let base = ((u * 4u + k) * {cw}u + o / 4u) * hw;
    var t = 0;
    for (var a = 0u; a < 9u; a++) {{
      t += tables[(a * {channels}u + o) * {HIGH_LEVELS}u + u32(level(src[base + at[a]], o))];
    }}
    res[o] = clamp(rhe(t, 144) + level(src[base + s], o), 0, 63);
  }}{_store(channels, "res[o]")}
}}
"""


def pointwise_shader(channels: int) -> str:
    """A pointwise layer. Bindings: 0 params, 1 src, 2 dst (features), 3 tables
    (``(C, C, 64)``), 4 shifts (``(2, C)``: input channel ``c`` read at
    ``(y + shifts[c], x + shifts[C + c])`` of the rotated plane, clamped; the
    shifted input is also the residual)."""
    cw = _words(channels)
    return f"""{_PARAMS}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
@group(0) @binding(3) var<storage, read> tables: array<i32>;
@group(0) @binding(4) var<storage, read> shifts: array<i32>;
{_COMMON}
{_MAIN}
{_INDEX}
  var lv: array<i32, {channels}>;
  for (var c = 0u; c < {channels}u; c++) {{
    let ry = clamp(y + shifts[c], 0, i32(hk) - 1);
    let rx = clamp(x + shifts[{channels}u + c], 0, i32(wk) - 1);
    lv[c] = level(src[((u * 4u + k) * {cw}u + c / 4u) * hw + u32(ry) * wk + u32(rx)], c);
  }}
  var res: array<i32, {channels}>;
  for (var o = 0u; o < {channels}u; o++) {{
    var t = 0;
    for (var c = 0u; c < {channels}u; c++) {{
      t += tables[(c * {channels}u + o) * {HIGH_LEVELS}u + u32(lv[c])];
    }}
    res[o] = clamp(rhe(t, {16 * channels}) + lv[o], 0, 63);
  }}{_store(channels, "res[o]")}
}}
"""


def up_shader(channels: int, r: int) -> str:
    """The up layer, the 4 rotations summed, +128, clipped, into the stage's output samples.

    Bindings: 0 params, 1 src (features), 2 dst (u32 samples, ``(N, H*r, W*r, Ci)``),
    3 tables (``(C, r*r, 64)``). One invocation per input pixel of each plane.
    """
    cw = _words(channels)
    perm = block_permutations(r)  # perm[k, m]: rotation k's column that lands on position m
    sources = ", ".join(str(int(v)) for v in perm.ravel())
    return f"""{_PARAMS}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
@group(0) @binding(3) var<storage, read> tables: array<i32>;
{_COMMON}
{_MAIN}
  let id = gid.x + gid.y * nwg.x * {WORKGROUP}u;
  if (id >= p.total) {{
    return;
  }}
  let h = p.height;
  let w = p.width;
  let hw = h * w;
  let s = id % hw;
  let u = id / hw;
  let i = s / w;
  let j = s % w;
  let plane = p.plane0 + u;
  let n = plane / p.in_channels;
  let c = plane % p.in_channels;
  // Where pixel (i, j) sits in np.rot90(plane, k), k = 0..3.
  let at = array<u32, 4>(i * w + j, (w - 1u - j) * h + i, (h - 1u - i) * w + (w - 1u - j),
                         j * h + (h - 1u - i));
  var sources = array<u32, {4 * r * r}>({sources});
  var words: array<u32, {4 * cw}>;
  for (var k = 0u; k < 4u; k++) {{
    for (var q = 0u; q < {cw}u; q++) {{
      words[k * {cw}u + q] = src[((u * 4u + k) * {cw}u + q) * hw + at[k]];
    }}
  }}
  for (var m = 0u; m < {r * r}u; m++) {{
    var acc = 0;
    for (var k = 0u; k < 4u; k++) {{
      let col = sources[k * {r * r}u + m];
      var t = 0;
      for (var ch = 0u; ch < {channels}u; ch++) {{
        t += tables[(ch * {r * r}u + col) * {HIGH_LEVELS}u
                    + u32(level(words[k * {cw}u + ch / 4u], ch))];
      }}
      let own = level(words[k * {cw}u + col / 4u], col) - 32;
      acc += clamp(rhe(t, {16 * channels}) + own, -128, 127);
    }}
    dst[((n * h + i) * {r}u + m / {r}u) * w * {r}u * p.in_channels
        + (j * {r}u + m % {r}u) * p.in_channels + c] = u32(clamp(acc + 128, 0, 255));
  }}
}}
"""


def stage_tables(stage: LayeredStage) -> dict:
    """The stage's expanded tables as int32 arrays, by the kernels' binding names.

    ``first``, ``low``, ``up``: block 0's depthwise, the low-bit and the up layer;
    ``layers``: :func:`lutsr.layered.device_layers`, its tables as int32.
    """
    def tables(layer, levels=HIGH_LEVELS):
        return np.ascontiguousarray(expanded_tables(layer, levels), np.int32)

    layers = [(t.astype(np.int32), s) for t, s in device_layers(stage)]
    return {"first": tables(stage.blocks[0][0]), "low": tables(stage.low, LOW_LEVELS),
            "layers": layers, "up": tables(stage.up)}


def feature_words(channels: int, height: int, width: int) -> int:
    """``u32`` words of one plane's features, all 4 rotations."""
    return 4 * _words(channels) * height * width
