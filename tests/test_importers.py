"""Importers build the published layouts' models from synthetic tables of their shapes."""

import numpy as np
import pytest
from conftest import assert_images_equal, conformance_lut

import lutsr
from lutsr.reference import upscale_reference


@pytest.mark.parametrize("name, scale", [("srlut_s_x4_q16", 4), ("srlut_s_x2_q32", 2)])
def test_import_srlut_both_shapes_and_npy(tmp_path, name, scale):
    ref, z = conformance_lut(name)
    table = z["table"]
    as_4d = table.reshape(-1, 1, scale, scale)  # SR-LUT's own (L**4, 1, r, r) layout
    np.save(tmp_path / "lut.npy", as_4d)
    for source in (table, as_4d, tmp_path / "lut.npy", str(tmp_path / "lut.npy")):
        lut = lutsr.import_srlut(source, scale)
        assert (lut.scale, lut.interval) == (scale, int(z["interval"]))
        assert_images_equal(upscale_reference(z["input"], lut), z["expected"], name)


@pytest.mark.parametrize("name, scale", [("mulut_sdy_x4_q16", 4), ("mulut_sdy_x2_q32", 2)])
def test_import_mulut_dict_and_directory(tmp_path, name, scale):
    _, z = conformance_lut(name)
    tables = {f"s{s}_{p}": z[f"table_s{s}_{p}"] for s in (1, 2) for p in "sdy"}
    for key, array in tables.items():
        if key.startswith("s2"):  # MuLUT saves the last stage as (L**4, 1, r, r)
            array = array.reshape(-1, 1, scale, scale)
        np.save(tmp_path / f"LUT_x{scale}_4bit_int8_{key}.npy", array)
    for source in (tables, tmp_path, str(tmp_path)):
        lut = lutsr.import_mulut(source, scale)
        assert lut.scale == scale and [s.patterns for s in lut.stages] == [("S", "D", "Y")] * 2
        assert_images_equal(upscale_reference(z["input"], lut), z["expected"], name)


def test_import_errors(tmp_path):
    with pytest.raises(ValueError, match="L\\*\\*4"):
        lutsr.import_srlut(np.zeros((1000, 16), np.int8), 4)
    with pytest.raises(ValueError, match="shape"):
        lutsr.import_srlut(np.zeros((17**4, 4), np.int8), 4)
    with pytest.raises(ValueError, match="values outside -128..127"):
        lutsr.import_srlut(np.full((17**4, 16), 300, np.int16), 4)
    with pytest.raises(ValueError, match="not a whole number"):
        lutsr.import_srlut(np.full((17**4, 16), 0.5, np.float32), 4)
    with pytest.raises(ValueError, match="want integers"):
        lutsr.import_srlut(np.zeros((17**4, 16), np.complex64), 4)
    with pytest.raises(ValueError, match="missing"):
        lutsr.import_mulut({"s1_s": np.zeros((17**4, 1), np.int8)}, 4)
    with pytest.raises(ValueError, match="not a directory"):
        lutsr.import_mulut(tmp_path / "nope", 4)
    (tmp_path / "evil.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': "
                                        b"False, 'shape': (3,), }" + b" " * 40 + b"\n")
    with pytest.raises(ValueError, match="cannot read"):
        lutsr.import_srlut(tmp_path / "evil.npy", 4)
