"""Save/load round trips, and corrupt or hostile files failing cleanly."""

import hashlib
import struct

import numpy as np
import pytest
from conftest import random_lut, reseal_lut_bytes, split_lut_bytes

import lutsr
from lutsr.fileformat import MAGIC, LUTFormatError, from_bytes, to_bytes


@pytest.mark.parametrize("layout", ["srlut", "mulut"])
def test_round_trip(tmp_path, layout):
    lut = random_lut(np.random.default_rng(1), interval=5, layout=layout, scale=3)
    lut = lutsr.LUT(lut.stages, lut.interval, "named", {"iterations": 10, "data": ["T91"]})
    path = lutsr.save(lut, tmp_path / "m.lutsr")
    back = lutsr.load(path)
    assert (back.name, back.interval, back.scale, back.metadata) == (
        "named", 5, 3, {"iterations": 10, "data": ["T91"]})
    for s1, s2 in zip(lut.stages, back.stages):
        assert (s1.r, s1.patterns, s1.divisor, s1.bias, s1.padding) == (
            s2.r, s2.patterns, s2.divisor, s2.bias, s2.padding)
        for t1, t2 in zip(s1.tables, s2.tables):
            assert t2.dtype == np.int8 and np.array_equal(t1, t2)


@pytest.fixture(scope="module")
def good_bytes():
    return to_bytes(random_lut(np.random.default_rng(2), interval=6, layout="mulut", scale=2))


def test_every_single_byte_flip_is_caught(good_bytes):
    rng = np.random.default_rng(3)
    for pos in rng.choice(len(good_bytes), 200, replace=False):
        bad = bytearray(good_bytes)
        bad[pos] ^= 0x41
        with pytest.raises(LUTFormatError):
            from_bytes(bytes(bad))


@pytest.mark.parametrize("cut", [0, 5, 12, 100, -1, -33])
def test_truncated_files_fail_cleanly(good_bytes, cut):
    with pytest.raises(LUTFormatError):
        from_bytes(good_bytes[:cut])


@pytest.mark.parametrize("mutate, message", [
    (lambda h: h.update(format_version=99), "format_version"),
    (lambda h: h["stages"][0].update(padding="wrap"), "padding"),
    (lambda h: h["stages"][0].update(r=True), "bad r"),
    (lambda h: h["stages"][0].update(divisor="12"), "number"),
    (lambda h: h["stages"][0].update(divisor=0), "divisor"),
    (lambda h: h["stages"][0]["tables"][0].update(shape=[10**9, 1]), "shape"),
    (lambda h: h["stages"][0]["tables"][0].update(offset=-5), "out of bounds"),
    (lambda h: h["stages"][0]["tables"][0].update(pattern="Q"), "unknown pattern"),
    (lambda h: h["stages"][0]["tables"][0].update(pattern={"__class__": 1}), "pattern"),
    (lambda h: h.update(scale=8), "scale"),
    (lambda h: h.update(interval=4), "rows"),
    (lambda h: h.update(stages=[]), "stages"),
    (lambda h: h.update(metadata=[1]), "metadata"),
])
def test_hostile_headers_fail_with_a_reason(good_bytes, mutate, message):
    # The checksum is recomputed, so only the header validation stands between
    # these files and a wrong model (or an exception that is not ours).
    header, tables = split_lut_bytes(good_bytes)
    mutate(header)
    with pytest.raises(LUTFormatError, match=message):
        from_bytes(reseal_lut_bytes(header, tables))


def test_not_json_and_not_a_lut(tmp_path):
    body = MAGIC + struct.pack("<I", 3) + b"\xff\xfe{"
    with pytest.raises(LUTFormatError, match="JSON"):
        from_bytes(body + hashlib.sha256(body).digest())
    png = tmp_path / "x.lutsr"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(LUTFormatError, match="magic"):
        lutsr.load(png)
    with pytest.raises(LUTFormatError, match="directory"):
        lutsr.load(tmp_path)


def test_failed_save_leaves_no_file(tmp_path):
    lut = random_lut(np.random.default_rng(4), interval=7, layout="srlut", scale=2)
    bad = lutsr.LUT(lut.stages, lut.interval, "x", {"not json": object()})
    with pytest.raises(ValueError, match="JSON"):
        lutsr.save(bad, tmp_path / "m.lutsr")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- layered stages (v4)


def _layered_with_simplex():
    """A LUT of a simplex x1 refinement then a layered x4 stage: both kinds in one file."""
    from conftest import random_layered_stage

    rng = np.random.default_rng(8)
    simplex = random_lut(rng, interval=7, layout="mulut", scale=2).stages[0]
    return lutsr.LUT((simplex, random_layered_stage(rng, blocks=2, max_shift=3)), 7, "mixed")


def test_layered_round_trip(tmp_path):
    lut = _layered_with_simplex()
    back = lutsr.load(lutsr.save(lut, tmp_path / "m.lutsr"))
    assert split_lut_bytes(to_bytes(back))[0]["format_version"] == 4
    assert back.scale == 4 and back.describe() == lut.describe()
    a, b = lut.stages[1], back.stages[1]
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert la.kind == lb.kind
        assert np.array_equal(la.tables, lb.tables) and np.array_equal(la.steps, lb.steps)
        assert (la.shifts is None) == (lb.shifts is None)
        if la.shifts is not None:
            assert np.array_equal(la.shifts, lb.shifts)


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.update(kind="layers"), "unknown kind"),
    (lambda s: s.update(blocks=[]), "blocks"),
    (lambda s: s.update(blocks=s["blocks"] * 40), "blocks"),
    (lambda s: s.update(blocks=[s["blocks"][0][:1]]), "blocks"),
    (lambda s: s["up"].update(kind="diagonal"), "kind"),
    (lambda s: s["up"].update(steps=[3] * 256), "steps"),
    (lambda s: s["up"].update(steps=[1] * 255), "steps"),
    (lambda s: s["up"].update(shifts=[0] * 32), "no shifts"),
    (lambda s: s["blocks"][0][1].update(shifts=[99] * 32), "within"),
    (lambda s: s["blocks"][0][1].update(shifts=[0] * 31), "shifts"),
    (lambda s: s["low"]["tables"].update(shape=[9, 16]), "bad shape"),
    (lambda s: s["low"].update(tables=None), "must be an object"),
    (lambda s: s.update(r=2), "r\\*r"),
    (lambda s: s.update(r=True), "bad r"),
])
def test_hostile_layered_headers_fail_with_a_reason(mutate, message):
    header, tables = split_lut_bytes(to_bytes(_layered_with_simplex()))
    mutate(header["stages"][1])
    with pytest.raises(LUTFormatError, match=message):
        from_bytes(reseal_lut_bytes(header, tables))


def test_layered_tables_must_be_zero_past_their_samples():
    lut = _layered_with_simplex()
    header, tables = split_lut_bytes(to_bytes(lut))
    up = header["stages"][1]["up"]
    steps = np.array(up["steps"])
    i = int(np.argmax(steps == 16))  # a table of 5 samples in a layer that stores 64
    assert steps[i] == 16 and up["tables"]["shape"][2] > 5
    raw = bytearray(tables)
    raw[up["tables"]["offset"] + i * up["tables"]["shape"][2] + 5] = 1
    entry = up["tables"]
    entry["sha256"] = hashlib.sha256(bytes(raw[entry["offset"]:entry["offset"] + int(
        np.prod(entry["shape"]))])).hexdigest()
    with pytest.raises(LUTFormatError, match="past a table's last sample"):
        from_bytes(reseal_lut_bytes(header, bytes(raw)))
