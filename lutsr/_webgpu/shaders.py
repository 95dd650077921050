"""WGSL source of the WebGPU kernels, generated per stage shape.

Every kernel is integer arithmetic only (``i32`` / ``u32``), the reference's
(:mod:`lutsr.reference`) step for step, so it is exact on any adapter.

Data layout. WGSL has no 8-bit storage type, so:

* the model's input frames are uploaded as packed bytes (``array<u32>``, byte
  ``i`` in bits ``8 (i % 4)`` of word ``i // 4``) in their ``(N, H, W, C)``
  order;
* a stage's output is one ``u32`` per sample, same ``(N, H, W, C)`` order, so
  each invocation writes its own words (no atomics); :func:`pack_shader`
  packs the last stage's output back into bytes for the read-back;
* simplex tables are :func:`lutsr.indexmaps.table_words`: int8 columns four to
  a ``u32``, sign-extended in the kernel.

The per-``r`` unrolling (a block of ``r*r`` accumulators indexed only by
constants, so they stay in registers) is done here in Python, once per
shape of stage: ``r``, patterns, learned taps, base, packed input.
"""

from __future__ import annotations

from ..indexmaps import block_permutations
from ..model import BASE_BITS, BASE_SIDE, TAP_BITS

#: Invocations per workgroup (1-D); dispatches spread over x and y (see ``dispatch_size``).
WORKGROUP = 64

_PARAMS = """
struct Params {
  total: u32,      // invocations wanted: N * H * W * C
  height: u32,
  width: u32,
  channels: u32,
  interval: u32,
  grid: u32,       // L
  rows: u32,       // L**4, rows of each table
  s_min: i32,      // smallest accumulator (rounding lookup's origin)
  sum_shift: u32,  // BASE_BITS - m, with a base
  bias: i32,       // integer bias, with a base
  cols_at: u32,    // where in ``maps`` the column map starts (the row map at 0)
  base_rows_at: u32,  // and the base's row and column maps
  base_cols_at: u32,
  pad0: u32,
  pad1: u32,
  pad2: u32,
}
"""


def _load_fn(packed: bool) -> str:
    if packed:
        return """
fn load(i: u32) -> i32 {
  return i32((src[i >> 2u] >> ((i & 3u) * 8u)) & 255u);
}
"""
    return """
fn load(i: u32) -> i32 {
  return i32(src[i]);
}
"""


def stage_shader(r: int, patterns: int, window: int, base: bool, packed: bool) -> tuple[str, list]:
    """WGSL of one simplex stage kernel, and the names of its bindings in order.

    Parameters
    ----------
    r : int
        The stage's upscale factor.
    patterns : int
        ``P``, tables per stage.
    window : int
        Learned taps' window side ``w``, or 0 for the fixed patterns.
    base : bool
        Whether the stage has a linear base (integer rounding) or rounds by the
        lookup table.
    packed : bool
        Whether the source is packed bytes (the model's input) or a stage's
        ``u32`` samples.

    Returns
    -------
    code : str
    bindings : list of str
        Binding ``i`` is buffer ``bindings[i]`` of the runner's stage (``params``
        the uniform buffer).
    """
    rr, words = r * r, (r * r + 3) // 4
    ww = window * window
    # Index maps share one buffer, so a stage binds at most 6 storage buffers (WebGPU's
    # guaranteed minimum is 8 per stage).
    bindings = ["params", "src", "dst", "words", "maps", "base" if base else "rounding"]
    if window:
        bindings.append("taps")
    decl = {"params": "var<uniform> p: Params;",
            "src": "var<storage, read> src: array<u32>;",
            "dst": "var<storage, read_write> dst: array<u32>;",
            **{name: f"var<storage, read> {name}: array<{kind}>;" for name, kind in (
                ("words", "u32"), ("rounding", "u32"), ("maps", "i32"), ("base", "i32"),
                ("taps", "i32"))}}
    head = "".join(f"@group(0) @binding({i}) {decl[name]}\n" for i, name in enumerate(bindings))

    # Tap values of every pattern in this rotation.
    if window:
        taps = f"""
    // Explicitly zeroed: a declaration in a loop body is not reset by every naga backend.
    var tsum = array<i32, {4 * patterns}>();
    for (var e = 0u; e < {ww}u; e++) {{
      let sy = u32(maps[(k * {ww}u + e) * h + y]);
      let sx = u32(maps[p.cols_at + (k * {ww}u + e) * w + x]);
      let pix = load(((n * h + sy) * w + sx) * ch + c);
      for (var j = 0u; j < {4 * patterns}u; j++) {{
        tsum[j] += taps[j * {ww}u + e] * pix;
      }}
    }}"""
        tap_of = ("clamp((tsum[pt * 4u + {t}u] + {half}) >> {bits}u, 0, 255)"
                  .replace("{half}", str(2 ** (TAP_BITS - 1))).replace("{bits}", str(TAP_BITS)))
    else:
        taps = ""
        tap_of = ("load(((n * h + u32(maps[((pt * 4u + k) * 4u + {t}u) * h + y])) * w"
                  " + u32(maps[p.cols_at + ((pt * 4u + k) * 4u + {t}u) * w + x])) * ch + c)")

    # The weighted sum of 5 table rows per column, sign-extending each byte.
    interp = []
    for j in range(words):
        interp.append(f"      let a{j} = array<u32, 5>(words[i0 * {words}u + {j}u], "
                      f"words[i1 * {words}u + {j}u], words[i2 * {words}u + {j}u], "
                      f"words[i3 * {words}u + {j}u], words[i4 * {words}u + {j}u]);")
        for b in range(4):
            m = 4 * j + b
            if m >= rr:
                break
            terms = " + ".join(f"wt[{v}] * (bitcast<i32>(a{j}[{v}] << {24 - 8 * b}u) >> 24u)"
                               for v in range(5))
            interp.append(f"      val[{m}] = {terms};")
    # Rotating the block back: table column perm[k, pos] lands at position pos.
    perm = block_permutations(r)
    cases = []
    for k in range(4):
        adds = " ".join(f"acc[{pos}] += val[{perm[k, pos]}];" for pos in range(rr))
        cases.append(f"        case {k}u: {{ {adds} }}")
    cases[-1] = cases[-1].replace("case 3u:", "default:")

    if base:
        finish = f"""
  for (var pos = 0u; pos < {rr}u; pos++) {{
    acc[pos] = acc[pos] << p.sum_shift;
  }}
  let mh = h;
  let mw = w;
  for (var a = 0u; a < {BASE_SIDE}u; a++) {{
    let sy = u32(maps[p.base_rows_at + a * mh + y]);
    for (var b = 0u; b < {BASE_SIDE}u; b++) {{
      let pix = load(((n * h + sy) * w + u32(maps[p.base_cols_at + b * mw + x])) * ch + c);
      for (var pos = 0u; pos < {rr}u; pos++) {{
        acc[pos] += base[pos * {BASE_SIDE * BASE_SIDE}u + a * {BASE_SIDE}u + b] * pix;
      }}
    }}
  }}
  for (var pos = 0u; pos < {rr}u; pos++) {{
    let total = acc[pos];
    // Round half to even after the integer bias (as lutsr._cpu and lutsr._cuda).
    let half = (1 << {BASE_BITS - 1}u) - 1 + (((total >> {BASE_BITS}u) + p.bias) & 1);
    let value = clamp(((total + half) >> {BASE_BITS}u) + p.bias, 0, 255);
    dst[(((n * h + y) * {r}u + pos / {r}u) * w * {r}u + x * {r}u + pos % {r}u) * ch + c] =
        u32(value);
  }}"""
    else:
        finish = f"""
  for (var pos = 0u; pos < {rr}u; pos++) {{
    dst[(((n * h + y) * {r}u + pos / {r}u) * w * {r}u + x * {r}u + pos % {r}u) * ch + c] =
        rounding[u32(acc[pos] - p.s_min)];
  }}"""

    code = f"""{_PARAMS}
{head}
{_load_fn(packed)}
fn step_of(d: i32, g: u32) -> u32 {{
  return select(select(select(1u, g, d == 2), g * g, d == 1), g * g * g, d == 0);
}}

@compute @workgroup_size({WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {{
  let id = gid.x + gid.y * nwg.x * {WORKGROUP}u;
  if (id >= p.total) {{
    return;
  }}
  let h = p.height;
  let w = p.width;
  let ch = p.channels;
  let c = id % ch;
  let x = (id / ch) % w;
  let y = (id / ch / w) % h;
  let n = id / ch / w / h;
  let interval = p.interval;
  let q = 1 << interval;
  let mask = q - 1;
  let g1 = p.grid;
  var acc: array<i32, {rr}>;
  var val: array<i32, {rr}>;
  for (var k = 0u; k < 4u; k++) {{{taps}
    for (var pt = 0u; pt < {patterns}u; pt++) {{
      let v0 = {tap_of.replace('{t}', '0')};
      let v1 = {tap_of.replace('{t}', '1')};
      let v2 = {tap_of.replace('{t}', '2')};
      let v3 = {tap_of.replace('{t}', '3')};
      let i0 = pt * p.rows + (((u32(v0 >> interval) * g1 + u32(v1 >> interval)) * g1
          + u32(v2 >> interval)) * g1 + u32(v3 >> interval));
      // Fraction in the high bits, dimension in the low two: sorting the keys
      // descending sorts the dimensions by fraction (ties only reorder
      // vertices of weight zero).
      var k0 = ((v0 & mask) << 2u) | 0;
      var k1 = ((v1 & mask) << 2u) | 1;
      var k2 = ((v2 & mask) << 2u) | 2;
      var k3 = ((v3 & mask) << 2u) | 3;
      var t: i32;
      if (k0 < k1) {{ t = k0; k0 = k1; k1 = t; }}
      if (k2 < k3) {{ t = k2; k2 = k3; k3 = t; }}
      if (k0 < k2) {{ t = k0; k0 = k2; k2 = t; }}
      if (k1 < k3) {{ t = k1; k1 = k3; k3 = t; }}
      if (k1 < k2) {{ t = k1; k1 = k2; k2 = t; }}
      // One grid step along dimension d (a..d) is grid**(3 - d) rows (selects, not an
      // array indexed at run time, which a GPU would keep in local memory).
      let i1 = i0 + step_of(k0 & 3, g1);
      let i2 = i1 + step_of(k1 & 3, g1);
      let i3 = i2 + step_of(k2 & 3, g1);
      let i4 = i3 + step_of(k3 & 3, g1);
      let f1 = k0 >> 2u;
      let f2 = k1 >> 2u;
      let f3 = k2 >> 2u;
      let f4 = k3 >> 2u;
      let wt = array<i32, 5>(q - f1, f1 - f2, f2 - f3, f3 - f4, f4);
{chr(10).join(interp)}
      switch k {{
{chr(10).join(cases)}
      }}
    }}
  }}{finish}
}}
"""
    return code, bindings


def pack_shader() -> str:
    """WGSL packing ``u32`` samples (each 0..255) into bytes, four to a word.

    Binding 0: ``Params`` (``total`` is the number of samples), 1: the samples,
    2: the packed words (``ceil(total / 4)`` of them).
    """
    return f"""{_PARAMS}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size({WORKGROUP})
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {{
  let id = gid.x + gid.y * nwg.x * {WORKGROUP}u;
  if (id * 4u >= p.total) {{
    return;
  }}
  var word = 0u;
  for (var b = 0u; b < 4u; b++) {{
    let i = id * 4u + b;
    if (i < p.total) {{
      word |= (src[i] & 255u) << (8u * b);
    }}
  }}
  dst[id] = word;
}}
"""


def dispatch_size(invocations: int, max_groups: int) -> tuple[int, int]:
    """Workgroups along x and y covering ``invocations`` (x at most ``max_groups``);
    the kernels number invocations ``gid.x + gid.y * nwg.x * WORKGROUP``."""
    groups = max(1, -(-invocations // WORKGROUP))
    x = min(groups, max_groups)
    return x, -(-groups // x)
