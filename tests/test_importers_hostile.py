"""The importers and layered models against hostile and unusual files.

Every encoding the published tables may use (int8, float32 with -0.0, float64,
other integer widths; offsets of any integer or float dtype) imports exactly;
every value that is not a whole number in range, every file that is not a
regular file, and every zip or ``.npy`` oddity is refused in one line naming
the file; a layered model no backend can run is never built; ``lutsr convert``
never writes over a file it read.
"""

from __future__ import annotations

import io
import json
import os
import struct
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFORMANCE, HANG_GUARD_S, need, random_layered_stage

import lutsr
from lutsr.fileformat import LUTFormatError, from_bytes, to_bytes
from lutsr.importers import import_mulut, import_shiftlut, import_srlut, whole_numbers
from lutsr.layered import HIGH_LEVELS, LOW_LEVELS, LayeredStage, TableLayer, table_entries

# --- helpers ---------------------------------------------------------------------------------

def write_folder(stage: LayeredStage, folder: Path, encode=None, offsets=None) -> Path:
    """``stage`` in the ShiftLUT authors' layout, each table stored as ``encode(table)``
    (int8 when None) and the shifts as ``offsets`` (int32 ``(B, 2, C)`` when None)."""
    folder.mkdir(parents=True, exist_ok=True)
    layers = [(f"DW{i}_MSB", dw, HIGH_LEVELS) for i, (dw, _) in enumerate(stage.blocks)]
    layers += [(f"PW{i}_MSB", pw, HIGH_LEVELS) for i, (_, pw) in enumerate(stage.blocks)]
    layers += [("DW0_LSB", stage.low, LOW_LEVELS), ("UP_MSB", stage.up, HIGH_LEVELS)]
    for stem, layer, levels in layers:
        arrays, luts = {}, []
        for a in range(layer.inputs):
            for o in range(layer.outputs):
                step = int(layer.steps[a, o])
                table = layer.tables[a, o, :table_entries(step, levels)]
                arrays[f"i{a}o{o}"] = table if encode is None else encode(table)
                luts.append({"in": a, "out": o, "step": step})
        np.savez(folder / f"{stem}.npz", **arrays)
        (folder / f"{stem}.json").write_text(json.dumps(
            {"IN": layer.inputs, "OUT": layer.outputs, "LUTs": luts}))
    if offsets is None:
        offsets = np.stack([np.zeros((2, stage.channels), np.int32) if pw.shifts is None
                            else pw.shifts.astype(np.int32) for _, pw in stage.blocks])
    np.save(folder / "offset.npy", offsets)
    return folder


def assert_same_stage(actual: LayeredStage, expected: LayeredStage) -> None:
    for n, (a, e) in enumerate(zip(actual.layers, expected.layers, strict=True)):
        np.testing.assert_array_equal(a.tables, e.tables, err_msg=f"layer {n} tables")
        np.testing.assert_array_equal(a.steps, e.steps, err_msg=f"layer {n} steps")
        zero = np.zeros((2, e.inputs), np.int8)
        np.testing.assert_array_equal(zero if a.shifts is None else a.shifts,
                                      zero if e.shifts is None else e.shifts,
                                      err_msg=f"layer {n} shifts")


@pytest.fixture(scope="module")
def stage():
    """A 2-block r = 2 model (4 channels) with shifts of +-2 and some full-range tables."""
    return random_layered_stage(np.random.default_rng(39), blocks=2, r=2, max_shift=2,
                                extreme=0.3)


@pytest.fixture
def folder(stage, tmp_path):
    return write_folder(stage, tmp_path / "lut")


def rewrite_member(path: Path, key: str, data: bytes) -> None:
    """Replace member ``key``.npy of an ``.npz`` with raw bytes (stored, uncompressed)."""
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    members[f"{key}.npy"] = data
    with zipfile.ZipFile(path, "w") as z:
        for name, value in members.items():
            z.writestr(name, value)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def refused(call, *parts: str) -> str:
    """Run ``call``; it must raise a one-line ValueError containing every one of ``parts``."""
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


def without_hanging(call):
    """``call()`` in a thread; fails (instead of stalling the run) if it does not return."""
    box = {}

    def target():
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG_GUARD_S)
    assert not thread.is_alive(), "the import hangs"
    if "error" in box:
        raise box["error"]
    return box.get("value")


# --- item 7: every encoding of whole numbers imports exactly ----------------------------------

def _negative_zero(table):
    t = table.astype(np.float32)
    t[t == 0] = -0.0  # as the authors' float32 files store their zeros
    return t


ENCODINGS = {
    "int8": None,
    "float32 with -0.0": _negative_zero,
    "float64": lambda t: t.astype(np.float64),
    "float16": lambda t: t.astype(np.float16),
    "big-endian float32": lambda t: t.astype(">f4"),
    "int16": lambda t: t.astype(np.int16),
    "int32": lambda t: t.astype(np.int32),
    "big-endian int64": lambda t: t.astype(">i8"),
    "uint8 where non-negative": lambda t: t.astype(np.uint8) if t.min() >= 0 else t,
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_tables_of_any_whole_number_dtype_import_exactly(stage, tmp_path, encoding):
    path = write_folder(stage, tmp_path / "lut", ENCODINGS[encoding])
    if encoding != "int8":  # the folder really holds the encoding under test
        dtypes = set()
        for npz in path.glob("*.npz"):
            with np.load(npz) as z:
                dtypes |= {z[k].dtype for k in z.files}
        assert dtypes != {np.dtype(np.int8)}
    assert_same_stage(import_shiftlut(path, 2).stages[0], stage)


OFFSET_DTYPES = [np.int64, np.int32, np.int16, np.int8, ">i4", np.float32, np.float64,
                 np.float16]


@pytest.mark.parametrize("dtype", OFFSET_DTYPES, ids=str)
def test_offsets_of_any_whole_number_dtype_import_exactly(stage, tmp_path, dtype):
    offsets = np.stack([pw.shifts for _, pw in stage.blocks]).astype(dtype)
    if np.dtype(dtype).kind == "f":
        offsets[offsets == 0] = -0.0
    path = write_folder(stage, tmp_path / "lut", offsets=offsets)
    assert_same_stage(import_shiftlut(path, 2).stages[0], stage)


def test_unsigned_offsets_import_exactly(tmp_path):
    stage = random_layered_stage(np.random.default_rng(3), blocks=1, r=2, max_shift=0)
    shifted = TableLayer("pointwise", stage.blocks[0][1].tables, stage.blocks[0][1].steps,
                         np.array([[0, 3, 15, 1], [2, 0, 0, 7]], np.int8))
    stage = LayeredStage(stage.r, ((stage.blocks[0][0], shifted),), stage.low, stage.up)
    for dtype in (np.uint8, np.uint64):
        path = write_folder(stage, tmp_path / np.dtype(dtype).name,
                            offsets=shifted.shifts[None].astype(dtype))
        assert_same_stage(import_shiftlut(path, 2).stages[0], stage)


def test_float32_golden_folder_is_the_int8_model():
    """The authors' S/M layout (float32 depthwise tables, zeros as -0.0) is s1_x4 exactly; its
    golden vectors run on every backend with the other folders' (test_layered*.py,
    test_cuda_layered.py)."""
    path = need(CONFORMANCE / "shiftlut" / "s1_x4_float32")
    with np.load(path / "DW0_MSB.npz") as z:
        assert z["i0o0"].dtype == np.float32
        assert any(np.signbit(z[k][z[k] == 0]).any() for k in z.files)
    lut = import_shiftlut(path)
    assert_same_stage(lut.stages[0], import_shiftlut(need(CONFORMANCE / "shiftlut" / "s1_x4"))
                      .stages[0])


# --- item 7: values that are not whole numbers in range are refused --------------------------

BAD_TABLES = {
    "NaN": (np.float32, np.nan, "nan"),
    "+inf": (np.float32, np.inf, "inf"),
    "-inf": (np.float64, -np.inf, "-inf"),
    "fraction": (np.float32, 0.5, "0.5 at index"),
    "tiny fraction": (np.float64, 3.0000000001, "at index"),
    "128.0": (np.float32, 128.0, "outside -128..127"),
    "-129.0": (np.float64, -129.0, "outside -128..127"),
    "1e300": (np.float64, 1e300, "outside -128..127"),
    "int16 200": (np.int16, 200, "outside -128..127"),
    "uint8 255": (np.uint8, 255, "outside -128..127"),
    "uint64 2**64-1": (np.uint64, 2**64 - 1, "outside -128..127"),
    "int64 -2**63": (np.int64, -2**63, "outside -128..127"),
    "complex": (np.complex64, 1, "dtype complex64"),
    "bool": (np.bool_, True, "dtype bool"),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_tables_that_are_not_whole_int8_numbers_are_refused(folder, case):
    dtype, value, says = BAD_TABLES[case]
    with np.load(folder / "DW1_MSB.npz") as z:
        table = z["i4o2"].astype(dtype)
    table[1] = value
    rewrite_member(folder / "DW1_MSB.npz", "i4o2", npy_bytes(table))
    refused(lambda: import_shiftlut(folder, 2), "DW1_MSB.npz", "table i4o2", says)


BAD_OFFSETS = {
    "uint64 2**64-1": (np.uint64, 2**64 - 1, "outside -15..15"),
    "int64 -2**63": (np.int64, -2**63, "outside -15..15"),
    "int64 2**63-1": (np.int64, 2**63 - 1, "outside -15..15"),
    "int32 16": (np.int32, 16, "outside -15..15"),
    "float -16.0": (np.float32, -16.0, "outside -15..15"),
    "float 0.5": (np.float64, 0.5, "not a whole number"),
    "float NaN": (np.float32, np.nan, "nan"),
    "float inf": (np.float64, np.inf, "inf"),
    "complex": (np.complex128, 0, "dtype complex128"),
}


@pytest.mark.parametrize("case", list(BAD_OFFSETS))
def test_offsets_that_are_not_small_whole_numbers_are_refused(stage, tmp_path, case):
    """Before: uint64 2**64-1 imported as shift -1 and int64 -2**63 as shift 0."""
    dtype, value, says = BAD_OFFSETS[case]
    offsets = np.zeros((2, 2, 4), dtype)
    offsets[1, 0, 3] = value
    path = write_folder(stage, tmp_path / "lut", offsets=offsets)
    refused(lambda: import_shiftlut(path, 2), "offset.npy", says)


def test_whole_numbers_keeps_values_and_names_what_is_wrong():
    np.testing.assert_array_equal(whole_numbers(np.array([-0.0, -128.0, 127.0], np.float16),
                                                -128, 127, "t"), [0, -128, 127])
    assert whole_numbers(np.array([2**63 - 1], np.uint64), 0, 2**63, "t")[0] == 2**63 - 1
    refused(lambda: whole_numbers(np.array([[1.0, 2.5]]), -9, 9, "t"), "t: 2.5 at index (0, 1)")
    refused(lambda: whole_numbers(np.array([2**64 - 1], np.uint64), -9, 9, "t"),
            "t: values outside -9..9 (from 18446744073709551615 to 18446744073709551615)")


def test_srlut_and_mulut_accept_whole_floats_and_refuse_fractions(tmp_path):
    rng = np.random.default_rng(7)
    table = rng.integers(-128, 128, (9**4, 1, 2, 2), dtype=np.int8)
    np.save(tmp_path / "float.npy", _negative_zero(table))
    got = import_srlut(tmp_path / "float.npy", 2).stages[0].tables[0]
    np.testing.assert_array_equal(got, table.reshape(-1, 4))
    bad = table.astype(np.float64)
    bad[5, 0, 1, 1] = 0.25
    np.save(tmp_path / "bad.npy", bad)
    refused(lambda: import_srlut(tmp_path / "bad.npy", 2), "bad.npy", "0.25")
    tables = {f"s{s}_{p}": rng.integers(-128, 128, (9**4, 1 if s == 1 else 4)).astype(np.int32)
              for s in (1, 2) for p in "sdy"}
    lut = import_mulut(tables, 2)
    np.testing.assert_array_equal(lut.stages[1].tables[2], tables["s2_y"])
    tables["s1_d"] = tables["s1_d"].astype(np.float32)
    tables["s1_d"][0, 0] = np.nan
    refused(lambda: import_mulut(tables, 2), "MuLUT table s1_d", "nan")


# --- item 4: models no backend can run are never built ----------------------------------------

@pytest.mark.parametrize("value", [2**64 - 1, -2**63, 2**63 - 1], ids=str)
def test_table_layer_refuses_shifts_that_wrap(value):
    """Before: uint64 2**64-1 became shift -1 and int64 -2**63 shift 0."""
    tables, steps = np.zeros((4, 4, 64), np.int8), np.ones((4, 4), np.uint8)
    shifts = np.zeros((2, 4), np.uint64 if value >= 2**63 else np.int64)
    shifts[0, 1] = value
    refused(lambda: TableLayer("pointwise", tables, steps, shifts), "within +-15")
    ok = TableLayer("pointwise", tables, steps, np.full((2, 4), 15, np.uint64))
    assert ok.shifts.dtype == np.int8 and (ok.shifts == 15).all()


def _up_layer(outputs: int) -> TableLayer:
    return TableLayer("pointwise", np.zeros((16, outputs, 64), np.int8),
                      np.ones((16, outputs), np.uint8))


@pytest.mark.parametrize("outputs", [1, 2, 3, 8, 32])
def test_up_layer_must_have_r_squared_outputs(outputs):
    """Before: 1 output was broadcast to all 16 subpixels, others failed at run time (or read
    out of bounds on CUDA)."""
    good = random_layered_stage(np.random.default_rng(1), blocks=1, r=4)
    refused(lambda: LayeredStage(good.r, good.blocks, good.low, _up_layer(outputs)),
            f"the up layer has {outputs} outputs", "r*r = 16")


@pytest.mark.parametrize("outputs", [1, 2, 8, 32])
def test_lutsr_file_with_a_wrong_up_layer_is_refused(outputs):
    lut = lutsr.LUT(stages=(random_layered_stage(np.random.default_rng(2), blocks=1, r=4),))
    object.__setattr__(lut.stages[0], "up", _up_layer(outputs))  # as a hostile writer would
    with pytest.raises(LUTFormatError, match=f"up layer has {outputs} outputs"):
        from_bytes(to_bytes(lut), "evil.lutsr")


# --- item 11: only regular files are read, and never without bound ---------------------------

MEMBERS = ["DW0_MSB.json", "PW1_MSB.npz", "UP_MSB.json", "DW0_LSB.npz", "offset.npy"]


@pytest.mark.parametrize("member", MEMBERS)
def test_member_linked_to_dev_zero_is_refused(folder, member):
    """Before: a .json or .npz linked to /dev/zero was read until memory ran out."""
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    (folder / member).unlink()
    (folder / member).symlink_to("/dev/zero")
    refused(lambda: without_hanging(lambda: import_shiftlut(folder, 2)), member,
            "is a character device, not a regular file")


@pytest.mark.parametrize("member", MEMBERS)
def test_fifo_member_is_refused_without_hanging(folder, member):
    """Before: opening a FIFO for reading waited for a writer forever."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    (folder / member).unlink()
    os.mkfifo(folder / member)
    try:
        refused(lambda: without_hanging(lambda: import_shiftlut(folder, 2)), member,
                "is a named pipe (FIFO), not a regular file")
    finally:  # release an importer still blocked in open() (the unfixed code)
        try:
            os.close(os.open(folder / member, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


def test_directory_member_is_refused(folder):
    (folder / "UP_MSB.json").unlink()
    (folder / "UP_MSB.json").mkdir()
    refused(lambda: import_shiftlut(folder, 2), "UP_MSB.json", "is a directory")


def test_srlut_and_mulut_refuse_fifos(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    os.mkfifo(tmp_path / "LUT_x2_s1_s.npy")
    refused(lambda: without_hanging(lambda: import_srlut(tmp_path / "LUT_x2_s1_s.npy", 2)),
            "LUT_x2_s1_s.npy", "named pipe")
    for key in ("s1_d", "s1_y", "s2_s", "s2_d", "s2_y"):
        np.save(tmp_path / f"LUT_x2_{key}.npy", np.zeros((9**4, 1 if key < "s2" else 4), np.int8))
    refused(lambda: without_hanging(lambda: import_mulut(tmp_path, 2)), "s1_s", "named pipe")


def test_oversized_json_is_refused_unread(folder):
    from lutsr.importers import MAX_JSON_BYTES

    with open(folder / "PW0_MSB.json", "r+b") as fh:
        fh.truncate(MAX_JSON_BYTES + 1)  # sparse: costs no disk
    refused(lambda: import_shiftlut(folder, 2), "PW0_MSB.json", "more than the")


# --- item 15: zip and .npy oddities are the documented ValueError -----------------------------

def _patch_central(path: Path, key: str, flag_or: int = 0, method: int | None = None,
                   version: int | None = None) -> None:
    """Set bits of member ``key``'s flags, its compression method or the zip version it needs,
    in both its local and its central-directory header (what an encrypting, AES-compressing
    or newer zip tool writes)."""
    data = bytearray(path.read_bytes())
    name = f"{key}.npy".encode()
    # local header: version at +4, flags at +6, method at +8; central directory: +6, +8, +10
    for signature, flags_at, method_at, name_at in ((b"PK\3\4", 6, 8, 30),
                                                    (b"PK\1\2", 8, 10, 46)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            start = at + 4
            if data[at + name_at:at + name_at + len(name)] != name:
                continue
            flags = struct.unpack_from("<H", data, at + flags_at)[0] | flag_or
            struct.pack_into("<H", data, at + flags_at, flags)
            if method is not None:
                struct.pack_into("<H", data, at + method_at, method)
            if version is not None:
                struct.pack_into("<H", data, at + flags_at - 2, version)
    path.write_bytes(bytes(data))


ZIP_ODDITIES = {
    "encrypted member": (dict(flag_or=1), "encrypted"),
    "AES (method 99)": (dict(method=99), "compression method"),
    "bzip2 garbage": (dict(method=12), "PW0_MSB.npz"),
    "lzma garbage": (dict(method=14), "PW0_MSB.npz"),
    "unknown method 77": (dict(method=77), "compression method"),
    "needs zip version 25.5": (dict(version=255), "zip file version 25.5"),
}


@pytest.mark.parametrize("case", list(ZIP_ODDITIES))
def test_zip_oddities_are_value_errors_naming_the_file(folder, case):
    """Before: RuntimeError (encrypted) and NotImplementedError (method 99) escaped."""
    patch, says = ZIP_ODDITIES[case]
    _patch_central(folder / "PW0_MSB.npz", "i2o3", **patch)
    refused(lambda: import_shiftlut(folder, 2), "PW0_MSB.npz", says)


def _nested_npy() -> bytes:
    """A .npy whose header nests 9,000 unary minus signs: Python's parser gives up with a
    MemoryError (or RecursionError) rather than a SyntaxError."""
    header = b"{'descr': '|i1', 'fortran_order': False, 'shape': (" + b"-" * 9000 + b"1,), }"
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def test_npy_header_nested_too_deeply_is_a_value_error(folder, tmp_path):
    """Before: MemoryError."""
    (folder / "offset.npy").write_bytes(_nested_npy())
    refused(lambda: import_shiftlut(folder, 2), "offset.npy", "not a readable .npy")
    (folder / "offset.npy").unlink()
    np.save(folder / "offset.npy", np.zeros((2, 2, 4), np.int32))
    rewrite_member(folder / "DW1_MSB.npz", "i0o0", _nested_npy())
    refused(lambda: import_shiftlut(folder, 2), "DW1_MSB.npz", "table i0o0")
    (tmp_path / "srlut.npy").write_bytes(_nested_npy())
    refused(lambda: import_srlut(tmp_path / "srlut.npy", 2), "srlut.npy", "nested too deeply")


def test_random_corruptions_are_value_errors(stage, tmp_path):
    """Byte flips, truncations and insertions in each kind of file: a ValueError naming the
    file, or an import that still gives a valid model; never another exception."""
    rng = np.random.default_rng(15)
    small = random_layered_stage(np.random.default_rng(4), blocks=1, r=1, max_shift=1)
    pristine = write_folder(small, tmp_path / "pristine")
    names = ["DW0_MSB.npz", "DW0_MSB.json", "UP_MSB.npz", "offset.npy"]
    for n in range(160):
        name = names[n % len(names)]
        data = bytearray((pristine / name).read_bytes())
        at = int(rng.integers(len(data)))
        match n // len(names) % 4:
            case 0:
                data[at] = int(rng.integers(256))
            case 1:
                del data[at:]
            case 2:
                data[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 9)), np.uint8))
            case 3:
                data[at:at + 4] = b"\xff\xff\xff\x7f"
        case_dir = tmp_path / f"c{n}"
        case_dir.mkdir()
        for other in pristine.iterdir():
            (case_dir / other.name).write_bytes(other.read_bytes())
        (case_dir / name).write_bytes(bytes(data))
        try:
            lut = import_shiftlut(case_dir, 1)
        except ValueError as exc:
            assert "\n" not in str(exc) and name in str(exc), (n, str(exc))
        else:
            assert isinstance(lut.stages[0], LayeredStage)


# --- item 5: lutsr convert never writes over what it read -------------------------------------

def _convert(*args: str) -> int:
    from lutsr.cli import main

    return main(["convert", *map(str, args)])


@pytest.mark.parametrize("member", ["DW0_MSB.json", "PW1_MSB.npz", "UP_MSB.json", "offset.npy",
                                    "DW0_LSB.npz"])
def test_convert_shiftlut_never_replaces_a_member(folder, member, capsys):
    """Before: ``convert shiftlut s7 -o s7/DW0_MSB.json --overwrite`` replaced its input."""
    before = (folder / member).read_bytes()
    assert _convert("shiftlut", folder, "-o", folder / member, "--scale", "2",
                    "--overwrite") == 1
    err = capsys.readouterr().err
    assert "is the input file" in err and member in err and err.count("\n") == 1
    assert (folder / member).read_bytes() == before
    assert import_shiftlut(folder, 2)  # the folder still imports


def test_convert_shiftlut_refuses_links_to_members(folder, tmp_path, capsys):
    before = (folder / "DW0_MSB.npz").read_bytes()
    (tmp_path / "sym.lutsr").symlink_to(folder / "DW0_MSB.npz")
    os.link(folder / "DW0_MSB.npz", tmp_path / "hard.lutsr")
    for out in ("sym.lutsr", "hard.lutsr"):
        assert _convert("shiftlut", folder, "-o", tmp_path / out, "--scale", "2",
                        "--overwrite") == 1
        assert "is the input file" in capsys.readouterr().err
    assert (folder / "DW0_MSB.npz").read_bytes() == before


def test_convert_may_write_beside_its_inputs(folder, capsys):
    """A file the importer does not read may be written, and replaced, in its folder."""
    (folder / "notes.json").write_text("{}")
    assert _convert("shiftlut", folder, "-o", folder / "model.lutsr", "--scale", "2") == 0
    for out in ("model.lutsr", "notes.json"):
        assert _convert("shiftlut", folder, "-o", folder / out, "--scale", "2",
                        "--overwrite") == 0
        assert lutsr.load(folder / out).scale == 2
    capsys.readouterr()


def test_convert_mulut_and_srlut_never_replace_an_input(tmp_path, capsys):
    """Before: ``convert mulut DIR -o DIR/LUT_s1_s.npy --overwrite`` replaced that table."""
    rng = np.random.default_rng(5)
    mulut = tmp_path / "mulut"
    mulut.mkdir()
    for s in (1, 2):
        for p in "sdy":
            np.save(mulut / f"LUT_x2_s{s}_{p}.npy",
                    rng.integers(-128, 128, (9**4, 1 if s == 1 else 4), dtype=np.int8))
    for member in ("LUT_x2_s1_s.npy", "LUT_x2_s2_y.npy"):
        before = (mulut / member).read_bytes()
        assert _convert("mulut", mulut, "-o", mulut / member, "--scale", "2",
                        "--overwrite") == 1
        assert "is the input file" in capsys.readouterr().err
        assert (mulut / member).read_bytes() == before
    srlut = mulut / "LUT_x2_s2_s.npy"
    before = srlut.read_bytes()
    assert _convert("srlut", srlut, "-o", srlut, "--scale", "2", "--overwrite") == 1
    assert "is the input file" in capsys.readouterr().err
    assert srlut.read_bytes() == before

