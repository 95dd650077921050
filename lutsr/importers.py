"""Importers for the table layouts published with SR-LUT, MuLUT and ShiftLUT.

Files come from the internet, so nothing here unpickles, and every ``.npy``
(alone or inside an ``.npz``) has its header read and its declared size
checked against what the model can need, and against the bytes actually
present, before any data is read (:mod:`lutsr.npyio`). Only regular files are
opened (a FIFO or ``/dev/zero`` is refused, not read), each read is bounded,
and every failure is a ValueError naming the file.

Tables are int8 in the model; a file may store them as any integer or float
dtype (the ShiftLUT authors' smaller models store float32) as long as every
value is a whole number in range: NaN, infinities, fractions and values out of
range are refused, never rounded or wrapped.
"""

from __future__ import annotations

import json
import lzma
import os
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .layered import (
    HIGH_LEVELS,
    LOW_LEVELS,
    MAX_BLOCKS,
    MAX_CHANNELS,
    MAX_SHIFT,
    STEPS,
    WINDOW,
    LayeredStage,
    TableLayer,
    table_entries,
)
from .model import INTERVALS, LUT, Stage, grid_size
from .npyio import load_npy, open_regular, read_npy

#: Most elements an SR-LUT or MuLUT table can hold: interval 1 (``L = 129``)
#: with ``r = 8`` (64 outputs). Bigger declared shapes are refused unread.
MAX_TABLE_ELEMENTS = grid_size(min(INTERVALS)) ** 4 * 64

#: Largest ShiftLUT ``.json`` accepted (the biggest legal one is about 70 KB).
MAX_JSON_BYTES = 1 << 22

#: Largest ShiftLUT ``.npz`` accepted (the biggest legal one, 1024 tables of at
#: most 64 entries, is under 1 MB even stored as float64): bounds what opening its
#: listing costs.
MAX_NPZ_BYTES = 1 << 24

#: The dtype kinds a table or offset file may store its whole numbers in (signed,
#: unsigned, float); bool and complex are refused.
_WHOLE_KINDS = "iuf"


def whole_numbers(array: np.ndarray, lo: int, hi: int, what: str,
                  dtype=np.int64) -> np.ndarray:
    """``array`` as ``dtype`` if every value is a whole number in ``lo..hi``, else a ValueError.

    Parameters
    ----------
    array : numpy.ndarray
        Of any integer or float dtype (float ``-0.0`` is 0).
    lo, hi : int
        The range every value must lie in.
    what : str
        Names the array in the error message.
    dtype : numpy dtype, optional
        Of the result; an integer type that holds ``lo..hi``.

    Returns
    -------
    numpy.ndarray
        Of ``dtype``, the same shape and values.

    Raises
    ------
    ValueError
        One line naming ``what``: a dtype that is not integer or float, a NaN,
        an infinity, a fraction, or a value outside ``lo..hi``. The range is
        checked in Python integers before any cast, so a uint64 ``2**64-1``
        or an int64 ``-2**63`` cannot wrap into range.
    """
    array = np.asarray(array)
    if array.dtype.kind not in _WHOLE_KINDS:
        raise ValueError(f"{what}: dtype {array.dtype}, want integers (int8, or whole numbers "
                         "stored as another integer or a float dtype)")
    if array.size == 0:
        return array.astype(dtype)
    if array.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(array) | (array != np.trunc(array))
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            where = f" at index {index[0] if len(index) == 1 else index}"
            raise ValueError(f"{what}: {array[index]}{where} is not a whole number")
    low, high = int(array.min()), int(array.max())
    if low < lo or high > hi:
        raise ValueError(f"{what}: values outside {lo}..{hi} (from {low} to {high})")
    return array.astype(dtype)

def _interval_for_rows(rows: int, what: str) -> int:
    for k in INTERVALS:
        if grid_size(k) ** 4 == rows:
            return k
    raise ValueError(f"{what}: {rows} rows is not L**4 for any L = 2**(8-k) + 1")


def _as_int8_table(array, what: str, r: int) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind not in _WHOLE_KINDS:  # before the shape: says what is wrong first
        whole_numbers(array, -128, 127, what)
    if array.ndim == 4 and array.shape[1:] == (1, r, r):
        array = array.reshape(array.shape[0], r * r)
    if array.ndim != 2 or array.shape[1] != r * r:
        raise ValueError(f"{what}: expected shape (L**4, {r * r}) or (L**4, 1, {r}, {r}), "
                         f"got {array.shape}")
    if array.dtype == np.int8:
        return np.ascontiguousarray(array)
    return np.ascontiguousarray(whole_numbers(array, -128, 127, what, np.int8))


def _load_array(path_or_array, what: str) -> tuple[np.ndarray, str]:
    """The array, and ``what`` naming its file when it was read from one."""
    if isinstance(path_or_array, (str, os.PathLike)):
        return (load_npy(path_or_array, MAX_TABLE_ELEMENTS, what),
                f"{what} ({path_or_array})")
    return path_or_array, what


def import_srlut(path_or_array, scale: int, *, name: str = "") -> LUT:
    """Build an SR-LUT-S model from an SR-LUT table.

    Parameters
    ----------
    path_or_array : str, path or array_like
        A ``.npy`` file or an array of shape ``(L**4, 1, r, r)`` or
        ``(L**4, r*r)`` of whole numbers in int8 range (any integer or float
        dtype), for any ``L = 2**(8-k) + 1``.
    scale : int
        The upscale factor ``r`` the table was trained for.
    name : str, optional
        Name recorded in the model.

    Returns
    -------
    LUT
        One stage: pattern ``S``, ``r = scale``, divisor 1, bias 0, reflect padding.
    """
    array, what = _load_array(path_or_array, "SR-LUT table")
    table = _as_int8_table(array, what, scale)
    interval = _interval_for_rows(table.shape[0], "SR-LUT table")
    stage = Stage(r=scale, patterns=("S",), tables=(table,), divisor=1, bias=0, padding="reflect")
    return LUT(stages=(stage,), interval=interval, name=name or f"srlut-s-x{scale}",
               metadata={"source": "import_srlut"})


_MULUT_KEY = re.compile(r"s([12])_([sdy])$", re.IGNORECASE)


def _mulut_files(folder: Path) -> dict[str, Path]:
    """A MuLUT folder's ``*_s{stage}_{pattern}.npy`` files by key (``s1_s`` ... ``s2_y``)."""
    found = {}
    for path in sorted(folder.glob("*.npy")):
        m = re.search(r"s([12])_([sdy])\.npy$", path.name, re.IGNORECASE)
        if m:
            key = f"s{m.group(1)}_{m.group(2).lower()}"
            if key in found:
                raise ValueError(f"MuLUT tables: two files for {key} in {folder}")
            found[key] = path
    return found


def import_mulut(tables, scale: int, *, name: str = "") -> LUT:
    """Build a two-stage MuLUT-SDY model from MuLUT tables.

    Parameters
    ----------
    tables : str, path or dict
        A directory holding ``*_s{stage}_{pattern}.npy`` files (stage 1 or 2,
        pattern s, d or y), or a dict ``{"s1_s": array, ..., "s2_y": array}``.
        Stage-1 tables have shape ``(L**4, 1)``, stage-2 tables
        ``(L**4, scale*scale)`` (or ``(L**4, 1, r, r)``), whole numbers in
        int8 range (any integer or float dtype).
    scale : int
        The upscale factor of stage 2.
    name : str, optional

    Returns
    -------
    LUT
        Stage 1: S, D, Y with ``r = 1``, divisor 12, bias 127; stage 2: S, D, Y
        with ``r = scale``, divisor 3, bias 0; edge padding.
    """
    if isinstance(tables, (str, os.PathLike)):
        folder = Path(tables)
        if not folder.is_dir():
            raise ValueError(f"MuLUT tables: {folder} is not a directory")
        tables = _mulut_files(folder)
    if not isinstance(tables, dict):
        raise TypeError("tables must be a directory or a dict of arrays")
    norm = {}
    for key, value in tables.items():
        m = _MULUT_KEY.search(str(key))
        if not m:
            raise ValueError(f"MuLUT tables: unexpected key {key!r} (want s1_s ... s2_y)")
        norm[f"s{m.group(1)}_{m.group(2).lower()}"] = value
    missing = [f"s{s}_{p}" for s in (1, 2) for p in "sdy" if f"s{s}_{p}" not in norm]
    if missing:
        raise ValueError(f"MuLUT tables: missing {missing}")
    stage_tables = {
        s: tuple(_as_int8_table(*_load_array(norm[f"s{s}_{p}"], f"MuLUT table s{s}_{p}"),
                                1 if s == 1 else scale)
                 for p in "sdy")
        for s in (1, 2)
    }
    interval = _interval_for_rows(stage_tables[1][0].shape[0], "MuLUT table s1_s")
    stages = (
        Stage(r=1, patterns=("S", "D", "Y"), tables=stage_tables[1], divisor=12, bias=127,
              padding="edge"),
        Stage(r=scale, patterns=("S", "D", "Y"), tables=stage_tables[2], divisor=3, bias=0,
              padding="edge"),
    )
    return LUT(stages=stages, interval=interval, name=name or f"mulut-sdy-x{scale}",
               metadata={"source": "import_mulut"})


# ShiftLUT ------------------------------------------------------------------------------------

#: The authors' script shifts only the first this many pointwise layers
#: (``if cnt < 8`` in LUT_test/sr/model_LUT.py); later ones read their input unshifted.
SHIFTED_LAYERS = 8

_LAYER_FILE = re.compile(r"(DW|PW)(0|[1-9][0-9]*)_MSB\.(npz|json)")


def _read_json(path: Path) -> dict:
    fp, _ = open_regular(path, MAX_JSON_BYTES)
    try:
        with fp:
            # Bounded even if the file grows after its size was checked.
            text = fp.read(MAX_JSON_BYTES + 1)
        if len(text) > MAX_JSON_BYTES:
            raise ValueError(f"more than the {MAX_JSON_BYTES} bytes a layer needs")
        meta = json.loads(text)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeError are ValueErrors
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: must hold a JSON object, got {type(meta).__name__}")
    return meta


def _json_int(value, path: Path, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{path}: {field} must be an integer, got {value!r}")
    return value


def _read_steps(path: Path, inputs: int, outputs: int) -> np.ndarray:
    """The ``(IN, OUT)`` steps of a layer's ``.json``, checked against the expected shape."""
    meta = _read_json(path)
    for field, want in (("IN", inputs), ("OUT", outputs)):
        if field not in meta:
            raise ValueError(f"{path}: missing {field!r}")
        got = _json_int(meta[field], path, field)
        if got != want:
            raise ValueError(f"{path}: {field} is {got}, this layer needs {want}")
    entries = meta.get("LUTs")
    if not isinstance(entries, list):
        raise ValueError(f"{path}: 'LUTs' must be a list of {{in, out, step}} objects")
    steps = np.zeros((inputs, outputs), np.uint8)
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"in", "out", "step"} <= entry.keys():
            raise ValueError(f"{path}: LUTs[{n}] must be an object with in, out and step")
        a, o, step = (_json_int(entry[k], path, f"LUTs[{n}].{k}") for k in ("in", "out", "step"))
        if not (0 <= a < inputs and 0 <= o < outputs):
            raise ValueError(f"{path}: LUTs[{n}] names table i{a}o{o}, outside IN={inputs} "
                             f"OUT={outputs}")
        if step not in STEPS:
            raise ValueError(f"{path}: table i{a}o{o} has step {step}, not one of {STEPS}")
        if steps[a, o]:
            raise ValueError(f"{path}: table i{a}o{o} is listed twice")
        steps[a, o] = step
    if not steps.all():
        a, o = np.argwhere(steps == 0)[0]
        raise ValueError(f"{path}: no step given for table i{a}o{o}")
    return steps


def _read_tables(path: Path, steps: np.ndarray, levels: int) -> np.ndarray:
    """A layer's ``.npz`` of 1-D int8 tables as one zero-padded int8 ``(IN, OUT, N)`` array."""
    inputs, outputs = steps.shape
    need = np.vectorize(lambda s: table_entries(int(s), levels))(steps)
    tables = np.zeros((inputs, outputs, int(need.max())), np.int8)
    want = {f"i{a}o{o}" for a in range(inputs) for o in range(outputs)}
    fp, _ = open_regular(path, MAX_NPZ_BYTES)
    try:
        with fp, zipfile.ZipFile(fp) as archive:
            members = archive.infolist()
            names = [m.filename for m in members]
            # Checked before any member is read: a listing is bounded by the file's size,
            # a member's contents only by what it claims.
            keys = [name[:-4] for name in names if name.endswith(".npy")]
            if len(keys) != len(names) or len(set(keys)) != len(keys):
                raise ValueError("members must be distinct <key>.npy arrays")
            if set(keys) != want:
                missing, extra = sorted(want - set(keys)), sorted(set(keys) - want)
                raise ValueError(f"table keys do not match its .json (missing {missing[:4]}"
                                 f"{'...' if len(missing) > 4 else ''}, extra {extra[:4]}"
                                 f"{'...' if len(extra) > 4 else ''})")
            for member in members:
                key = member.filename[:-4]
                a, o = (int(v) for v in key[1:].split("o"))
                try:
                    with archive.open(member) as member_fp:
                        table = read_npy(member_fp, member.file_size, int(need[a, o]),
                                         f"table {key}")
                except (RuntimeError, NotImplementedError) as exc:
                    # zipfile's words for an encrypted member, or a compression
                    # method it lacks (AES is method 99)
                    raise ValueError(f"table {key} cannot be read: {exc}") from None
                if table.shape != (need[a, o],):
                    raise ValueError(f"table {key} has shape {table.shape}, step {steps[a, o]} "
                                     f"over {levels} levels needs ({need[a, o]},)")
                tables[a, o, :need[a, o]] = whole_numbers(table, -128, 127, f"table {key}",
                                                          np.int8)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    except (ValueError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    except (RuntimeError, NotImplementedError) as exc:  # e.g. "zip file version 25.5"
        raise ValueError(f"{path}: not a readable zip file ({exc})") from None
    return tables


def _read_layer(folder: Path, stem: str, kind: str, inputs: int, outputs: int,
                levels: int = HIGH_LEVELS, shifts: np.ndarray | None = None) -> TableLayer:
    steps = _read_steps(folder / f"{stem}.json", inputs, outputs)
    tables = _read_tables(folder / f"{stem}.npz", steps, levels)
    return TableLayer(kind, tables, steps, shifts)


def _count_blocks(folder: Path) -> int:
    """``B`` from the ``DW{i}_MSB`` / ``PW{i}_MSB`` files, which must number 0..B-1 each."""
    found = {}
    for path in folder.iterdir():
        m = _LAYER_FILE.fullmatch(path.name)
        if m:
            found.setdefault((m.group(1), int(m.group(2))), set()).add(m.group(3))
    dws = sorted(i for kind, i in found if kind == "DW")
    pws = sorted(i for kind, i in found if kind == "PW")
    if not dws:
        raise ValueError(f"ShiftLUT folder {folder}: no DW0_MSB.npz/.json (not a ShiftLUT "
                         "LUT folder?)")
    blocks = len(dws)
    if blocks > MAX_BLOCKS:
        raise ValueError(f"ShiftLUT folder {folder}: {blocks} blocks, at most {MAX_BLOCKS}")
    for kind, have in (("DW", dws), ("PW", pws)):
        if have != list(range(blocks)):
            missing = [f"{kind}{i}" for i in range(blocks) if i not in have]
            raise ValueError(f"ShiftLUT folder {folder}: with {blocks} DW{{i}}_MSB layers the "
                             f"{kind} layers must be numbered 0..{blocks - 1}; found "
                             f"{[f'{kind}{i}' for i in have]}, missing {missing}")
    for (kind, i), exts in sorted(found.items()):
        for ext in sorted({"npz", "json"} - exts):
            raise ValueError(f"ShiftLUT folder {folder}: missing file {kind}{i}_MSB.{ext}")
    return blocks


def _read_offsets(path: Path, blocks: int, channels: int) -> np.ndarray:
    """``offset.npy``: whole numbers ``(n, 2, C)`` per pointwise layer, ``n >= min(B, 8)``."""
    if not os.path.lexists(path):
        raise ValueError(f"{path}: missing file")
    offsets = load_npy(path, MAX_BLOCKS * 2 * MAX_CHANNELS, "ShiftLUT offsets")
    needed = min(blocks, SHIFTED_LAYERS)
    if offsets.ndim != 3 or offsets.shape[1:] != (2, channels) or offsets.shape[0] < needed:
        raise ValueError(f"{path}: shape {offsets.shape}, want (n, 2, {channels}) with "
                         f"n >= {needed} (the script shifts the first min(B, "
                         f"{SHIFTED_LAYERS}) pointwise layers)")
    return whole_numbers(offsets, -MAX_SHIFT, MAX_SHIFT, f"{path}: offsets", np.int8)


def import_shiftlut(folder, scale: int = 4, *, name: str = "") -> LUT:
    """Build a layered model from a ShiftLUT LUT folder (the authors' layout).

    Parameters
    ----------
    folder : str or path
        A folder holding, for blocks ``i = 0..B-1``, ``DW{i}_MSB.npz`` /
        ``.json`` (depthwise, IN 9, OUT ``C``) and ``PW{i}_MSB.npz`` / ``.json``
        (pointwise, IN and OUT ``C``); ``DW0_LSB.npz`` / ``.json`` (the low-bit
        layer, IN 9, OUT ``C``); ``UP_MSB.npz`` / ``.json`` (IN ``C``, OUT
        ``scale**2``); and ``offset.npy``, whole numbers in -15..15 of shape
        ``(n, 2, C)``. Each ``.npz`` holds 1-D tables ``i{in}o{out}`` of whole
        numbers in int8 range (int8, or any integer or float dtype: the
        authors' S and M models store float32) of exactly the length their
        step needs; each ``.json`` is
        ``{"IN": ..., "OUT": ..., "LUTs": [{"in", "out", "step"}, ...]}``. ``B``
        is the number of ``DW{i}_MSB`` files. Other files are ignored.
    scale : int
        The upscale factor; the model's channels are ``C = scale**2``
        (the authors' models: scale 4, 16 channels).
    name : str, optional

    Returns
    -------
    LUT
        One :class:`~lutsr.layered.LayeredStage`. Pointwise layer ``i`` reads
        its input shifted by ``offset[i]`` (row 0 the ``dy``, row 1 the
        ``dx`` of each channel) for ``i < 8``, as the authors' script does;
        later pointwise layers, and rows that are all zero, get no shift.

    Raises
    ------
    ValueError
        On any missing file, member that is not a regular file (a FIFO, a
        link to a device) or is larger than such a file can be, unreadable
        zip member (encrypted, unknown compression), malformed ``.json`` or
        ``.npy``, table key, dtype, length, value that is not a whole number
        (NaN, infinity, fraction) or out of range, step outside 1, 2, 4, 8, 16,
        IN/OUT mismatch, offsets of the wrong shape, dtype or range, or a gap
        in the DW/PW numbering; one line that names the file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"ShiftLUT folder {folder} is not a directory")
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) \
            or not 1 <= scale * scale <= MAX_CHANNELS:
        raise ValueError(f"scale must be an integer with scale**2 <= {MAX_CHANNELS}, got "
                         f"{scale!r}")
    scale = int(scale)
    channels = scale * scale
    blocks = _count_blocks(folder)
    for stem in ("DW0_LSB", "UP_MSB"):
        for ext in ("npz", "json"):
            if not os.path.lexists(folder / f"{stem}.{ext}"):
                raise ValueError(f"ShiftLUT folder {folder}: missing file {stem}.{ext}")
    taps = WINDOW * WINDOW
    # DW0 first: a scale that does not fit the folder shows as its OUT mismatch.
    first = _read_layer(folder, "DW0_MSB", "depthwise", taps, channels)
    offsets = _read_offsets(folder / "offset.npy", blocks, channels)
    stage_blocks = []
    for i in range(blocks):
        shifts = offsets[i] if i < SHIFTED_LAYERS and offsets[i].any() else None
        stage_blocks.append((
            first if i == 0 else _read_layer(folder, f"DW{i}_MSB", "depthwise", taps, channels),
            _read_layer(folder, f"PW{i}_MSB", "pointwise", channels, channels, shifts=shifts)))
    stage = LayeredStage(
        r=scale,
        blocks=tuple(stage_blocks),
        low=_read_layer(folder, "DW0_LSB", "depthwise", taps, channels, LOW_LEVELS),
        up=_read_layer(folder, "UP_MSB", "pointwise", channels, channels))
    return LUT(stages=(stage,), name=name or f"shiftlut-s{blocks - 1}-x{scale}",
               metadata={"source": "import_shiftlut", "blocks": blocks})


#: The fixed names of a ShiftLUT folder besides its ``DW{i}_MSB`` / ``PW{i}_MSB`` layers.
_SHIFTLUT_FIXED = ("DW0_LSB.npz", "DW0_LSB.json", "UP_MSB.npz", "UP_MSB.json", "offset.npy")


def files_read(importer: str, source) -> list[Path]:
    """The files an importer reads from ``source``: what a command must never write over.

    Parameters
    ----------
    importer : {"import_shiftlut", "import_srlut", "import_mulut"}
    source : str or path
        What the importer was given: a ShiftLUT or MuLUT folder, or an SR-LUT
        ``.npy`` file.

    Returns
    -------
    list of pathlib.Path
        The folder members the importer opens (those whose names it looks for,
        whatever else the folder holds), or the file itself.
    """
    source = Path(source)
    if not source.is_dir():
        return [source]
    if importer == "import_mulut":
        return list(_mulut_files(source).values())
    if importer == "import_shiftlut":
        return sorted(path for path in source.iterdir()
                      if _LAYER_FILE.fullmatch(path.name) or path.name in _SHIFTLUT_FIXED)
    return [source]
