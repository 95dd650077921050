"""Layered stages (ShiftLUT): the reference against the authors' golden vectors, the model's
invariants, and the ShiftLUT importer on good and hostile folders."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile

import numpy as np
import pytest
from conftest import (
    CONFORMANCE,
    assert_images_equal,
    need,
    random_layered_lut,
    random_layered_stage,
)
from numpy.lib import format as npy_format

import lutsr
from lutsr import LUT, Stage
from lutsr.importers import SHIFTED_LAYERS, import_shiftlut
from lutsr.layered import (
    HIGH_LEVELS,
    LOW_LEVELS,
    STEPS,
    LayeredStage,
    TableLayer,
    expanded_tables,
    table_entries,
)
from lutsr.reference import (
    round_half_even_div,
    run_layered_stage,
    run_lut,
    run_stage,
    run_table_layer,
    table_query16,
    upscale_reference,
)

SHIFTLUT = CONFORMANCE / "shiftlut"
FOLDERS = ["s0_x4", "s1_x4", "s1_x4_float32", "s2_x4_shift2"]
INPUTS = ["photo", "noise", "gray", "row", "col", "pixel"]


# --- helpers ---------------------------------------------------------------------------------

def layer_levels(stage: LayeredStage, layer: TableLayer) -> int:
    return LOW_LEVELS if layer is stage.low else HIGH_LEVELS


def write_layer(folder, stem: str, layer: TableLayer, levels: int) -> None:
    """One layer as the authors' ``net2LUT.py`` writes it: an ``.npz`` of 1-D int8 tables
    ``i{in}o{out}`` cut to the length their step needs, and a ``.json`` of their steps."""
    arrays, luts = {}, []
    for a in range(layer.inputs):
        for o in range(layer.outputs):
            step = int(layer.steps[a, o])
            arrays[f"i{a}o{o}"] = layer.tables[a, o, :table_entries(step, levels)]
            luts.append({"in": a, "out": o, "step": step})
    np.savez(folder / f"{stem}.npz", **arrays)
    (folder / f"{stem}.json").write_text(json.dumps(
        {"IN": layer.inputs, "OUT": layer.outputs, "LUTs": luts}, indent=2))


def write_shiftlut(stage: LayeredStage, folder, offsets: np.ndarray | None = None):
    """Write ``stage`` to ``folder`` in the ShiftLUT authors' layout; returns the folder.

    ``offset.npy`` (int32, ``(B, 2, C)`` as the authors save it) holds each pointwise
    layer's shifts (zeros for none) unless ``offsets`` is given.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for i, (dw, pw) in enumerate(stage.blocks):
        write_layer(folder, f"DW{i}_MSB", dw, HIGH_LEVELS)
        write_layer(folder, f"PW{i}_MSB", pw, HIGH_LEVELS)
    write_layer(folder, "DW0_LSB", stage.low, LOW_LEVELS)
    write_layer(folder, "UP_MSB", stage.up, HIGH_LEVELS)
    if offsets is None:
        offsets = np.stack([np.zeros((2, stage.channels), np.int32) if pw.shifts is None
                            else pw.shifts for _, pw in stage.blocks]).astype(np.int32)
    np.save(folder / "offset.npy", offsets)
    return folder


def assert_stages_equal(actual: LayeredStage, expected: LayeredStage) -> None:
    """Same r, layers, steps, used table entries and shifts (None and all-zero shifts are
    the same model). Guards against importers that transpose (in, out) or drop a layer."""
    assert actual.r == expected.r and len(actual.blocks) == len(expected.blocks)
    for n, (a, e) in enumerate(zip(actual.layers, expected.layers, strict=True)):
        levels = layer_levels(expected, e)
        assert a.kind == e.kind, f"layer {n}: kind {a.kind} != {e.kind}"
        np.testing.assert_array_equal(a.steps, e.steps, err_msg=f"layer {n} steps")
        np.testing.assert_array_equal(expanded_tables(a, levels), expanded_tables(e, levels),
                                      err_msg=f"layer {n} tables")
        zero = np.zeros((2, e.inputs), np.int8)
        np.testing.assert_array_equal(zero if a.shifts is None else a.shifts,
                                      zero if e.shifts is None else e.shifts,
                                      err_msg=f"layer {n} shifts")


@pytest.fixture(scope="module")
def golden():
    """Each conformance folder imported once, with its vectors."""
    cache = {}

    def get(folder):
        if folder not in cache:
            path = need(SHIFTLUT / folder)
            cache[folder] = import_shiftlut(path), dict(np.load(path / "vectors.npz"))
        return cache[folder]

    return get


@pytest.fixture
def good_folder(tmp_path):
    """A valid 2-block folder and the stage it holds."""
    stage = random_layered_stage(np.random.default_rng(5), blocks=2)
    return write_shiftlut(stage, tmp_path / "lut"), stage


# --- (a) golden vectors ----------------------------------------------------------------------

@pytest.mark.parametrize("folder", FOLDERS)
@pytest.mark.parametrize("which", INPUTS)
def test_golden_vectors(golden, folder, which):
    lut, z = golden(folder)
    assert lut.scale == int(z["scale"]) and len(lut.stages[0].blocks) == int(z["stack"]) + 1
    out = lutsr.upscale(z[f"input_{which}"], lut, backend="reference")
    assert_images_equal(out, z[f"expected_{which}"], f"{folder} {which}")


def test_golden_folders_describe_their_shifts(golden):
    lut, _ = golden("s2_x4_shift2")
    stage = lut.stages[0]
    assert all(pw.shifts is not None for _, pw in stage.blocks)
    assert np.abs(np.concatenate([pw.shifts for _, pw in stage.blocks])).max() == 2
    assert "3 block(s)" in lut.describe() and lut.name == "shiftlut-s2-x4"


# --- the reference's arithmetic --------------------------------------------------------------

def test_round_half_even_div_matches_numpy():
    num = np.arange(-3000, 3001)
    for den in (144, 256, 2, 1):
        np.testing.assert_array_equal(round_half_even_div(num, den), np.round(num / den))


@pytest.mark.parametrize("levels", [HIGH_LEVELS, LOW_LEVELS])
@pytest.mark.parametrize("step", STEPS)
def test_expanded_tables_agree_with_the_reference_query(levels, step):
    rng = np.random.default_rng(step * 100 + levels)
    steps = np.full((9, 16), step, np.uint8)
    steps[::2] = rng.choice(STEPS, size=steps[::2].shape)   # mixed steps in one layer too
    size = max(table_entries(int(s), levels) for s in steps.ravel())
    tables = rng.integers(-128, 128, (9, 16, size), dtype=np.int8)
    for (a, o), s in np.ndenumerate(steps):
        tables[a, o, table_entries(int(s), levels):] = 0
    layer = TableLayer("depthwise", tables, steps)
    expanded = expanded_tables(layer, levels)
    assert expanded.dtype == np.int16 and expanded.shape == (9, 16, levels)
    v = np.arange(levels)
    for (a, o), s in np.ndenumerate(steps):
        want = table_query16(tables[a, o, :table_entries(int(s), levels)], int(s), v)
        np.testing.assert_array_equal(expanded[a, o], want, err_msg=f"i{a}o{o} step {s}")


def test_query_interpolates_between_samples():
    t = np.array([0, 16, -16], np.int8)                     # step 16 over 17+ levels
    np.testing.assert_array_equal(table_query16(t, 16, np.array([0, 1, 8, 15, 16, 24])),
                                  [0, 16, 128, 240, 256, 0])


@pytest.mark.parametrize("kind", ["depthwise", "pointwise"])
def test_layer_through_expanded_tables(kind):
    """The fast backends' form (gather the expanded tables, sum, round) gives the reference's
    layer, broadcast depthwise input included."""
    rng = np.random.default_rng(1)
    stage = random_layered_stage(rng, extreme=0.5)
    layer = stage.blocks[0][0] if kind == "depthwise" else stage.blocks[0][1]
    channels = 1 if kind == "depthwise" else 16
    x = rng.integers(0, HIGH_LEVELS, (channels, 5, 7))
    e = expanded_tables(layer, HIGH_LEVELS).astype(np.int64)
    if kind == "depthwise":
        padded = np.pad(x[0], 1, mode="edge")
        taps = [padded[dy:dy + 5, dx:dx + 7] for dy in range(3) for dx in range(3)]
        total = sum(e[a][:, taps[a]] for a in range(9))
    else:
        total = sum(e[c][:, x[c]] for c in range(16))
    want = round_half_even_div(total, layer.inputs * 16)
    np.testing.assert_array_equal(run_table_layer(layer, x, HIGH_LEVELS), want)


def test_layered_stage_is_rotation_equivariant():
    """Summing the 4 rotations makes the stage commute with rot90 exactly (shifts included):
    a rotation done one way and undone another breaks this."""
    rng = np.random.default_rng(2)
    stage = random_layered_stage(rng, blocks=1, max_shift=2)
    plane = rng.integers(0, 256, (6, 9), dtype=np.uint8)
    out = run_layered_stage(plane, stage)
    assert out.shape == (24, 36) and out.dtype == np.uint8
    assert_images_equal(run_layered_stage(np.rot90(plane), stage), np.rot90(out), "rot90")


def test_mixed_lut_runs_stage_after_stage():
    rng = np.random.default_rng(3)
    simplex = Stage(1, ("S",), (rng.integers(-128, 128, (3**4, 1), dtype=np.int8),), 1, 128)
    layered = random_layered_stage(rng, r=2)
    lut = LUT(stages=(simplex, layered), interval=7)
    img = rng.integers(0, 256, (5, 6, 2), dtype=np.uint8)
    out = lutsr.upscale(img, lut, backend="reference")
    assert out.shape == (10, 12, 2)
    for c in range(2):
        want = run_layered_stage(run_stage(img[..., c], simplex, 7), layered)
        assert_images_equal(out[..., c], want, f"channel {c}")
        assert_images_equal(run_lut(img[..., c], lut), want, f"run_lut channel {c}")


def test_random_layered_lut_reference_shapes():
    lut = random_layered_lut(np.random.default_rng(4), blocks=2)
    img = np.random.default_rng(4).integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
    out = upscale_reference(img, lut)
    assert out.shape == (2, 12, 16, 3) and out.dtype == np.uint8


# --- (c) model validation --------------------------------------------------------------------

def _dw(rng=None, outputs=16, size=64):
    rng = rng or np.random.default_rng(0)
    return TableLayer("depthwise", rng.integers(-5, 5, (9, outputs, size), dtype=np.int8),
                      np.ones((9, outputs), np.uint8))


def _pw(inputs=16, outputs=16, shifts=None):
    return TableLayer("pointwise", np.zeros((inputs, outputs, 64), np.int8),
                      np.ones((inputs, outputs), np.uint8), shifts)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="conv"), "kind"),
    (dict(tables=np.zeros((9, 16, 64), np.int16)), "int8"),
    (dict(tables=np.zeros((9, 16), np.int8)), "int8"),
    (dict(tables=np.zeros((8, 16, 64), np.int8)), "depthwise layer has 9"),
    (dict(tables=np.zeros((9, 33, 64), np.int8), steps=np.ones((9, 33), np.uint8)), "at most"),
    (dict(tables=np.zeros((9, 16, 65), np.int8)), "at most 64 entries"),
    (dict(steps=np.ones((9, 15), np.uint8)), "steps"),
    (dict(steps=np.full((9, 16), 3, np.uint8)), "steps"),
    (dict(shifts=np.zeros((2, 9), np.int8)), "only pointwise"),
])
def test_table_layer_rejects(kwargs, match):
    args = dict(kind="depthwise", tables=np.zeros((9, 16, 64), np.int8),
                steps=np.ones((9, 16), np.uint8))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        TableLayer(**args)


@pytest.mark.parametrize("shifts", [np.zeros((2, 15), np.int8), np.full((2, 16), 16, np.int16),
                                    np.zeros((2, 16), np.float32), np.zeros((16,), np.int8)])
def test_pointwise_shifts_rejected(shifts):
    with pytest.raises(ValueError, match="shifts"):
        _pw(shifts=shifts)


def test_layered_stage_rejects():
    dw, pw, low, up = _dw(), _pw(), _dw(size=4), _pw()
    ok = dict(r=4, blocks=((dw, pw),), low=low, up=up)
    LayeredStage(**ok)
    for change, error, match in [
        (dict(r=3), ValueError, "r\\*r"),
        (dict(r=0), ValueError, "1..8"),
        (dict(r=True), ValueError, "1..8"),
        (dict(r=4.0), ValueError, "1..8"),
        (dict(blocks=()), ValueError, "blocks"),
        (dict(blocks=((dw, pw),) * 33), ValueError, "blocks"),
        (dict(blocks=((pw, dw),)), ValueError, "depthwise then a pointwise"),
        (dict(blocks=((dw, pw, pw),)), TypeError, "pairs"),
        (dict(blocks=((dw, "pw"),)), TypeError, "TableLayer"),
        (dict(blocks=((dw, _pw(outputs=8)),)), ValueError, "channels in and out"),
        (dict(low=_dw(outputs=8, size=4)), ValueError, "low-bit layer"),
        (dict(low=_pw()), ValueError, "low-bit layer"),
        (dict(up=_pw(shifts=np.ones((2, 16), np.int8))), ValueError, "up layer"),
        (dict(up=_dw()), ValueError, "up layer"),
    ]:
        with pytest.raises(error, match=match):
            LayeredStage(**{**ok, **change})


def test_layered_stage_checks_table_lengths_and_padding():
    dw, pw, low, up = _dw(), _pw(), _dw(size=4), _pw()
    short = TableLayer("depthwise", np.zeros((9, 16, 5), np.int8),
                       np.full((9, 16), 8, np.uint8))        # step 8 needs 9 entries
    with pytest.raises(ValueError, match="needs 9 entries"):
        LayeredStage(4, ((short, pw),), low, up)
    padded = np.zeros((9, 16, 64), np.int8)
    padded[3, 5, 40] = 1                                     # past a step-2 table's 33 entries
    dirty = TableLayer("depthwise", padded, np.full((9, 16), 2, np.uint8))
    with pytest.raises(ValueError, match="past a table's last sample"):
        LayeredStage(4, ((dirty, pw),), low, up)
    with pytest.raises(ValueError, match="low-bit layer"):  # 64 entries cover 0..63, not 0..3
        LayeredStage(4, ((dw, pw),), _dw(), up)


# --- (d) the importer ------------------------------------------------------------------------

@pytest.mark.parametrize("blocks, max_shift", [(1, 1), (3, 3)])
def test_import_round_trip(tmp_path, blocks, max_shift):
    stage = random_layered_stage(np.random.default_rng(blocks), blocks=blocks,
                                 max_shift=max_shift)
    lut = import_shiftlut(write_shiftlut(stage, tmp_path / "lut"), name="mine")
    assert lut.name == "mine" and lut.metadata["blocks"] == blocks
    assert_stages_equal(lut.stages[0], stage)
    img = np.random.default_rng(0).integers(0, 256, (4, 5), dtype=np.uint8)
    assert_images_equal(upscale_reference(img, lut), run_layered_stage(img, stage))


def test_import_scale_2(tmp_path):
    stage = random_layered_stage(np.random.default_rng(7), r=2)
    assert_stages_equal(import_shiftlut(write_shiftlut(stage, tmp_path), 2).stages[0], stage)


def test_only_the_first_8_pointwise_layers_shift(tmp_path):
    """The authors' script shifts a pointwise layer only while ``cnt < 8``: block 8's
    offsets row is in the file but unused."""
    rng = np.random.default_rng(9)
    stage = random_layered_stage(rng, blocks=SHIFTED_LAYERS + 1, extreme=0)
    offsets = rng.integers(-2, 3, (SHIFTED_LAYERS + 1, 2, 16)).astype(np.int32)
    offsets[:, 0, 0] = 1                                     # no row is all zero
    lut = import_shiftlut(write_shiftlut(stage, tmp_path, offsets))
    got = [pw.shifts for _, pw in lut.stages[0].blocks]
    for i in range(SHIFTED_LAYERS):
        np.testing.assert_array_equal(got[i], offsets[i])
    assert got[SHIFTED_LAYERS] is None
    # With block 8's row shifted the output differs: the rule is observable.
    blocks = list(lut.stages[0].blocks)
    blocks[-1] = (blocks[-1][0], dataclasses.replace(blocks[-1][1], shifts=offsets[-1]))
    shifted = dataclasses.replace(lut.stages[0], blocks=tuple(blocks))
    img = rng.integers(0, 256, (6, 6), dtype=np.uint8)
    assert (run_layered_stage(img, shifted) != upscale_reference(img, lut)).any()


def test_zero_offsets_mean_no_shift_and_extra_rows_are_ignored(tmp_path):
    stage = random_layered_stage(np.random.default_rng(10), blocks=2)
    offsets = np.zeros((5, 2, 16), np.int64)
    offsets[1] = 1
    lut = import_shiftlut(write_shiftlut(stage, tmp_path, offsets))
    a, b = (pw.shifts for _, pw in lut.stages[0].blocks)
    assert a is None and (b == 1).all() and b.dtype == np.int8


def _rewrite_npz(path, edit):
    arrays = dict(np.load(path))
    edit(arrays)
    path.unlink()
    np.savez(path, **arrays)


def _rewrite_json(path, edit):
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def _npy_bytes(header: dict, payload: bytes = b"") -> bytes:
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, header)
    return buf.getvalue() + payload


HUGE = {"descr": "|i1", "fortran_order": False, "shape": (10**12,)}


def _set(d, key, value):
    d[key] = value


CORRUPTIONS = {
    "missing UP json": (lambda f: (f / "UP_MSB.json").unlink(), "missing file UP_MSB.json"),
    "missing LSB npz": (lambda f: (f / "DW0_LSB.npz").unlink(), "missing file DW0_LSB.npz"),
    "missing PW npz": (lambda f: (f / "PW1_MSB.npz").unlink(), "missing file PW1_MSB.npz"),
    "missing offsets": (lambda f: (f / "offset.npy").unlink(), "offset.npy: missing"),
    "DW gap": (lambda f: [(f / f"DW1_MSB.{e}").rename(f / f"DW2_MSB.{e}") for e in ("npz", "json")],
               "missing \\['DW1'\\]"),
    "extra PW": (lambda f: [(f / f"PW2_MSB.{e}").write_bytes((f / f"PW1_MSB.{e}").read_bytes())
                            for e in ("npz", "json")], "PW layers must be numbered 0..1"),
    "no DW at all": (lambda f: [p.unlink() for p in f.glob("DW*_MSB.*")], "no DW0_MSB"),
    "missing key": (lambda f: _rewrite_npz(f / "DW0_MSB.npz", lambda a: a.pop("i3o4")),
                    "DW0_MSB.npz: .*missing \\['i3o4'\\]"),
    "extra key": (lambda f: _rewrite_npz(f / "PW0_MSB.npz",
                                         lambda a: _set(a, "i16o0", np.zeros(64, np.int8))),
                  "PW0_MSB.npz: .*extra \\['i16o0'\\]"),
    "table too short": (lambda f: _rewrite_npz(
        f / "UP_MSB.npz", lambda a: _set(a, "i0o0", a["i0o0"][:-1])),
        "UP_MSB.npz: table i0o0 has shape"),
    "table too long": (lambda f: _rewrite_npz(
        f / "UP_MSB.npz", lambda a: _set(a, "i0o1", np.append(a["i0o1"], np.int8(0)))),
        "UP_MSB.npz: table i0o1: declares shape"),
    "table 2-D": (lambda f: _rewrite_npz(
        f / "UP_MSB.npz", lambda a: _set(a, "i0o1", a["i0o1"][None])),
        r"UP_MSB.npz: table i0o1 has shape \(1, "),
    "outside int8": (lambda f: _rewrite_npz(
        f / "DW1_MSB.npz", lambda a: _set(a, "i1o1", np.full(a["i1o1"].shape, 200, np.int16))),
        "DW1_MSB.npz: table i1o1: values outside -128..127"),
    "fractional table": (lambda f: _rewrite_npz(
        f / "DW0_LSB.npz", lambda a: _set(a, "i0o0", a["i0o0"].astype(np.float32) + 0.5)),
        "DW0_LSB.npz: table i0o0: .* is not a whole number"),
    "object table": (lambda f: _rewrite_npz(
        f / "DW0_MSB.npz", lambda a: _set(a, "i0o0", np.array([None] * 3, object))),
        "DW0_MSB.npz: table i0o0: dtype object is refused"),
    "huge member": (lambda f: _add_member(f / "DW0_MSB.npz", "i0o0.npy", _npy_bytes(HUGE)),
                    "DW0_MSB.npz: .*declares shape"),
    "not a zip": (lambda f: (f / "PW0_MSB.npz").write_bytes(b"PK not really"),
                  "PW0_MSB.npz: File is not a zip"),
    "step 3": (lambda f: _rewrite_json(f / "PW1_MSB.json",
                                       lambda m: m["LUTs"][7].update(step=3)),
               "PW1_MSB.json: table i0o7 has step 3"),
    "json list": (lambda f: (f / "DW0_MSB.json").write_text("[1, 2]"),
                  "DW0_MSB.json: must hold a JSON object"),
    "bad json": (lambda f: (f / "DW0_MSB.json").write_text("{"), "DW0_MSB.json: not valid JSON"),
    "IN mismatch": (lambda f: _rewrite_json(f / "DW1_MSB.json", lambda m: m.update(IN=16)),
                    "DW1_MSB.json: IN is 16, this layer needs 9"),
    "OUT as string": (lambda f: _rewrite_json(f / "UP_MSB.json", lambda m: m.update(OUT="16")),
                      "UP_MSB.json: OUT must be an integer"),
    "no LUTs": (lambda f: _rewrite_json(f / "UP_MSB.json", lambda m: m.pop("LUTs")),
                "UP_MSB.json: 'LUTs' must be a list"),
    "step missing": (lambda f: _rewrite_json(f / "PW0_MSB.json", lambda m: m["LUTs"].pop()),
                     "PW0_MSB.json: no step given for table i15o15"),
    "step twice": (lambda f: _rewrite_json(f / "PW0_MSB.json",
                                           lambda m: m["LUTs"].append(m["LUTs"][0])),
                   "PW0_MSB.json: table i0o0 is listed twice"),
    "table out of range": (lambda f: _rewrite_json(f / "PW0_MSB.json",
                                                   lambda m: m["LUTs"][0].update({"in": 16})),
                           "PW0_MSB.json: LUTs\\[0\\] names table i16o0"),
    "offset shape": (lambda f: np.save(f / "offset.npy", np.zeros((2, 2, 9), np.int32)),
                     "offset.npy: shape \\(2, 2, 9\\)"),
    "offset rows": (lambda f: np.save(f / "offset.npy", np.zeros((1, 2, 16), np.int32)),
                    "offset.npy: shape .*n >= 2"),
    "offset fraction": (lambda f: np.save(f / "offset.npy", np.full((2, 2, 16), 0.5)),
                        "offset.npy: offsets: 0.5 .* is not a whole number"),
    "offset range": (lambda f: np.save(f / "offset.npy", np.full((2, 2, 16), -16, np.int32)),
                     "offset.npy: offsets: values outside -15..15"),
    "offset huge": (lambda f: (f / "offset.npy").write_bytes(_npy_bytes(HUGE)),
                    "offset.npy: declares shape"),
    "offset empty": (lambda f: (f / "offset.npy").write_bytes(b""), "offset.npy: not a readable"),
}


def _add_member(path, name, data):
    """Replace one member of a zip with raw bytes."""
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    members[name] = data
    with zipfile.ZipFile(path, "w") as z:
        for key, value in members.items():
            z.writestr(key, value)


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_import_rejects(good_folder, case):
    folder, _ = good_folder
    corrupt, match = CORRUPTIONS[case]
    corrupt(folder)
    with pytest.raises(ValueError, match=match):
        import_shiftlut(folder)


def test_import_rejects_bad_arguments(good_folder, tmp_path):
    folder, _ = good_folder
    with pytest.raises(ValueError, match="not a directory"):
        import_shiftlut(tmp_path / "nope")
    with pytest.raises(ValueError, match="scale"):
        import_shiftlut(folder, scale=6)
    with pytest.raises(ValueError, match="DW0_MSB.json: OUT is 16, this layer needs 4"):
        import_shiftlut(folder, scale=2)


def test_import_ignores_other_files(good_folder):
    folder, stage = good_folder
    (folder / "lsb_alpha.npy").write_bytes(b"whatever")
    (folder / "DW0_MSB.npy").write_bytes(b"an old format")
    assert_stages_equal(import_shiftlut(folder).stages[0], stage)


# --- bounded .npy reading for the SR-LUT and MuLUT importers ---------------------------------

def test_srlut_npy_declaring_a_huge_shape_fails_fast(tmp_path):
    path = tmp_path / "huge.npy"
    path.write_bytes(_npy_bytes({"descr": "|i1", "fortran_order": False,
                                 "shape": (10**11, 16)}))   # 1.6e12 elements
    import tracemalloc

    tracemalloc.start()  # refused from the header: nothing the size of the shape is allocated
    try:
        with pytest.raises(ValueError, match="cannot read .*declares shape"):
            lutsr.import_srlut(path, 4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak


def test_srlut_npy_truncated_or_empty(tmp_path):
    path = tmp_path / "short.npy"
    path.write_bytes(_npy_bytes({"descr": "|i1", "fortran_order": False,
                                 "shape": (17**4, 16)}, b"\0" * 100))
    with pytest.raises(ValueError, match="truncated"):
        lutsr.import_srlut(path, 4)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="cannot read"):
        lutsr.import_srlut(path, 4)
    path.write_bytes(b"\x93NUMPY\x01\x00")
    with pytest.raises(ValueError, match="cannot read"):
        lutsr.import_srlut(path, 4)


def test_srlut_npy_pickled_object_array_refused(tmp_path):
    path = tmp_path / "evil.npy"
    np.save(path, np.array([{"a": 1}, None], object), allow_pickle=True)
    with pytest.raises(ValueError, match="cannot read .*object"):
        lutsr.import_srlut(path, 4)


def test_srlut_npy_versions_and_orders_read_alike(tmp_path):
    table = np.random.default_rng(0).integers(-128, 128, (9**4, 4), dtype=np.int8)
    for version, order in [((1, 0), "C"), ((2, 0), "F")]:
        path = tmp_path / f"v{version[0]}{order}.npy"
        with open(path, "wb") as fp:
            npy_format.write_array(fp, np.asarray(table, order=order), version=version)
        np.testing.assert_array_equal(lutsr.import_srlut(path, 2).stages[0].tables[0], table)


def test_mulut_npy_is_bounded_too(tmp_path):
    for s in (1, 2):
        for p in "sdy":
            np.save(tmp_path / f"LUT_s{s}_{p}.npy", np.zeros((17**4, 1 if s == 1 else 4), np.int8))
    (tmp_path / "LUT_s2_y.npy").write_bytes(_npy_bytes(HUGE))
    with pytest.raises(ValueError, match="s2_y: cannot read .*declares shape"):
        lutsr.import_mulut(tmp_path, 2)


# --- the command line: lutsr convert, info, list ---------------------------------------------

def test_cli_convert_info_and_refusals(good_folder, tmp_path, capsys):
    from lutsr.cli import main

    folder, stage = good_folder
    out = tmp_path / "shift.lutsr"
    assert main(["convert", "shiftlut", str(folder), "-o", str(out), "--name", "s"]) == 0
    assert "wrote" in capsys.readouterr().out
    lut = lutsr.load(out)
    assert lut.name == "s" and lut.metadata["source"] == "import_shiftlut"
    assert_stages_equal(lut.stages[0], stage)
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "layered: 2 block(s)" in info and "interval" not in info.splitlines()[0]
    # An existing output is kept without --overwrite; a bad folder is one line, no output.
    assert main(["convert", "shiftlut", str(folder), "-o", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    (folder / "UP_MSB.json").unlink()
    bad = tmp_path / "bad.lutsr"
    assert main(["convert", "shiftlut", str(folder), "-o", str(bad)]) == 1
    assert "UP_MSB.json" in capsys.readouterr().err and not bad.exists()


def test_cli_convert_srlut_and_mulut(tmp_path, capsys):
    from lutsr.cli import main

    rng = np.random.default_rng(9)
    table = rng.integers(-128, 128, (9**4, 1, 2, 2), dtype=np.int8)
    np.save(tmp_path / "x2.npy", table)
    assert main(["convert", "srlut", str(tmp_path / "x2.npy"), "-o", str(tmp_path / "s.lutsr"),
                 "--scale", "2"]) == 0
    assert np.array_equal(lutsr.load(tmp_path / "s.lutsr").stages[0].tables[0],
                          table.reshape(-1, 4))
    mulut = tmp_path / "mulut"
    mulut.mkdir()
    for s, r in ((1, 1), (2, 2)):
        for p in "sdy":
            np.save(mulut / f"LUT_x2_4bit_int8_s{s}_{p}.npy",
                    rng.integers(-128, 128, (9**4, r * r), dtype=np.int8))
    assert main(["convert", "mulut", str(mulut), "-o", str(tmp_path / "m.lutsr"),
                 "--scale", "2"]) == 0
    assert lutsr.load(tmp_path / "m.lutsr").scale == 2
    capsys.readouterr()
