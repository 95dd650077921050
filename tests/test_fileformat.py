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
