"""Importers for the table layouts published with SR-LUT, MuLUT and ShiftLUT.

Files come from the internet, so nothing here unpickles, and every ``.npy``
(alone or inside an ``.npz``) has its header read and its declared size
checked against what the model can need, and against the bytes actually
present, before any data is read (:mod:`lutsr.npyio`).
"""

from __future__ import annotations

import json
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
from .npyio import load_npy, read_npy

#: Most elements an SR-LUT or MuLUT table can hold: interval 1 (``L = 129``)
#: with ``r = 8`` (64 outputs). Bigger declared shapes are refused unread.
MAX_TABLE_ELEMENTS = grid_size(min(INTERVALS)) ** 4 * 64

#: Largest ShiftLUT ``.json`` accepted (the biggest legal one is about 70 KB).
MAX_JSON_BYTES = 1 << 22

#: Largest ShiftLUT ``.npz`` accepted (the biggest legal one, 1024 tables of at
#: most 64 entries, is under 1 MB): bounds what opening its listing costs.
MAX_NPZ_BYTES = 1 << 24

def _interval_for_rows(rows: int, what: str) -> int:
    for k in INTERVALS:
        if grid_size(k) ** 4 == rows:
            return k
    raise ValueError(f"{what}: {rows} rows is not L**4 for any L = 2**(8-k) + 1")


def _as_int8_table(array, r: int, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{what}: tables must be integer (int8), got {array.dtype}")
    if array.ndim == 4 and array.shape[1:] == (1, r, r):
        array = array.reshape(array.shape[0], r * r)
    if array.ndim != 2 or array.shape[1] != r * r:
        raise ValueError(f"{what}: expected shape (L**4, {r * r}) or (L**4, 1, {r}, {r}), "
                         f"got {array.shape}")
    if array.size and (array.min() < -128 or array.max() > 127):
        raise ValueError(f"{what}: values outside int8 range [-128, 127]")
    return np.ascontiguousarray(array, np.int8)


def _load_array(path_or_array, what: str) -> np.ndarray:
    if isinstance(path_or_array, (str, os.PathLike)):
        return load_npy(path_or_array, MAX_TABLE_ELEMENTS, what)
    return path_or_array


def import_srlut(path_or_array, scale: int, *, name: str = "") -> LUT:
    """Build an SR-LUT-S model from an SR-LUT table.

    Parameters
    ----------
    path_or_array : str, path or array_like
        A ``.npy`` file or an array of shape ``(L**4, 1, r, r)`` or
        ``(L**4, r*r)`` with int8 values, for any ``L = 2**(8-k) + 1``.
    scale : int
        The upscale factor ``r`` the table was trained for.
    name : str, optional
        Name recorded in the model.

    Returns
    -------
    LUT
        One stage: pattern ``S``, ``r = scale``, divisor 1, bias 0, reflect padding.
    """
    table = _as_int8_table(_load_array(path_or_array, "SR-LUT table"), scale, "SR-LUT table")
    interval = _interval_for_rows(table.shape[0], "SR-LUT table")
    stage = Stage(r=scale, patterns=("S",), tables=(table,), divisor=1, bias=0, padding="reflect")
    return LUT(stages=(stage,), interval=interval, name=name or f"srlut-s-x{scale}",
               metadata={"source": "import_srlut"})


_MULUT_KEY = re.compile(r"s([12])_([sdy])$", re.IGNORECASE)


def import_mulut(tables, scale: int, *, name: str = "") -> LUT:
    """Build a two-stage MuLUT-SDY model from MuLUT tables.

    Parameters
    ----------
    tables : str, path or dict
        A directory holding ``*_s{stage}_{pattern}.npy`` files (stage 1 or 2,
        pattern s, d or y), or a dict ``{"s1_s": array, ..., "s2_y": array}``.
        Stage-1 tables have shape ``(L**4, 1)``, stage-2 tables
        ``(L**4, scale*scale)`` (or ``(L**4, 1, r, r)``), int8.
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
        found = {}
        for path in sorted(folder.glob("*.npy")):
            m = re.search(r"s([12])_([sdy])\.npy$", path.name, re.IGNORECASE)
            if m:
                key = f"s{m.group(1)}_{m.group(2).lower()}"
                if key in found:
                    raise ValueError(f"MuLUT tables: two files for {key} in {folder}")
                found[key] = path
        tables = found
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
        s: tuple(_as_int8_table(_load_array(norm[f"s{s}_{p}"], f"s{s}_{p}"),
                                1 if s == 1 else scale, f"MuLUT table s{s}_{p}")
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
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ValueError(f"{size} bytes, more than the {MAX_JSON_BYTES} a layer needs")
        meta = json.loads(path.read_bytes())
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
    try:
        size = path.stat().st_size
        if size > MAX_NPZ_BYTES:
            raise ValueError(f"{size} bytes, more than the {MAX_NPZ_BYTES} a layer needs")
        with zipfile.ZipFile(path) as archive:
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
                with archive.open(member) as fp:
                    table = read_npy(fp, member.file_size, int(need[a, o]), f"table {key}")
                if table.dtype.kind not in "iu":
                    raise ValueError(f"table {key} must be integer (int8), got {table.dtype}")
                if table.shape != (need[a, o],):
                    raise ValueError(f"table {key} has shape {table.shape}, step {steps[a, o]} "
                                     f"over {levels} levels needs ({need[a, o]},)")
                if table.size and (table.min() < -128 or table.max() > 127):
                    raise ValueError(f"table {key} has values outside int8 range [-128, 127]")
                tables[a, o, :need[a, o]] = table
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    except (ValueError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ValueError(f"{path}: {exc}") from None
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
    """``offset.npy``: integer ``(n, 2, C)`` per pointwise layer, ``n >= min(B, 8)``."""
    if not path.is_file():
        raise ValueError(f"{path}: missing file")
    offsets = load_npy(path, MAX_BLOCKS * 2 * MAX_CHANNELS, "ShiftLUT offsets")
    needed = min(blocks, SHIFTED_LAYERS)
    if offsets.dtype.kind not in "iu":
        raise ValueError(f"{path}: offsets must be integers, got {offsets.dtype}")
    if offsets.ndim != 3 or offsets.shape[1:] != (2, channels) or offsets.shape[0] < needed:
        raise ValueError(f"{path}: shape {offsets.shape}, want (n, 2, {channels}) with "
                         f"n >= {needed} (the script shifts the first min(B, "
                         f"{SHIFTED_LAYERS}) pointwise layers)")
    if offsets.size and np.abs(offsets.astype(np.int64)).max() > MAX_SHIFT:
        raise ValueError(f"{path}: offsets must lie within +-{MAX_SHIFT}, got "
                         f"{offsets.min()}..{offsets.max()}")
    return offsets.astype(np.int8)


def import_shiftlut(folder, scale: int = 4, *, name: str = "") -> LUT:
    """Build a layered model from a ShiftLUT LUT folder (the authors' layout).

    Parameters
    ----------
    folder : str or path
        A folder holding, for blocks ``i = 0..B-1``, ``DW{i}_MSB.npz`` /
        ``.json`` (depthwise, IN 9, OUT ``C``) and ``PW{i}_MSB.npz`` / ``.json``
        (pointwise, IN and OUT ``C``); ``DW0_LSB.npz`` / ``.json`` (the low-bit
        layer, IN 9, OUT ``C``); ``UP_MSB.npz`` / ``.json`` (IN ``C``, OUT
        ``scale**2``); and ``offset.npy``, integers of shape ``(n, 2, C)``.
        Each ``.npz`` holds 1-D integer tables ``i{in}o{out}`` (values in
        int8 range) of exactly the length their step needs; each ``.json`` is
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
        On any missing file, malformed ``.json``, table key, dtype, length or
        value out of range, step outside 1, 2, 4, 8, 16, IN/OUT mismatch,
        offsets of the wrong shape, dtype or range, or a gap in the DW/PW
        numbering; the message names the file.
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
            if not (folder / f"{stem}.{ext}").is_file():
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
