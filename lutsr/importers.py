"""Importers for the table layouts published with SR-LUT and MuLUT."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .model import INTERVALS, LUT, Stage, grid_size


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
        # allow_pickle=False: a .npy from the internet must not run code.
        try:
            return np.load(path_or_array, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{what}: cannot read {path_or_array}: {exc}") from None
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
