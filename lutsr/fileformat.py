"""The ``.lutsr`` file format: one file per LUT model, no pickle.

Layout (all integers little-endian)::

    magic      8 bytes   b"\\x89LUTSR\\r\\n"
    hlen       4 bytes   uint32, length of the JSON header
    header     hlen      UTF-8 JSON: format_version, name, interval, scale,
                         stages (r, patterns, divisor, bias, padding, and per
                         table its shape, byte offset and SHA-256; a stage's
                         linear base, if any, as a list of r*r*25 integers;
                         its learned taps, if any, as ``tap_window`` w and a
                         list of P*4*w*w integers),
                         metadata
    tables     ...       the int8 tables, C order, back to back
    checksum   32 bytes  SHA-256 of everything before it

Reading validates every field before any array is built, so a corrupt or
hostile file raises :class:`LUTFormatError` (a ``ValueError``) and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

from .model import BASE_SIDE, LUT, MAX_TAP_WINDOW, Stage

MAGIC = b"\x89LUTSR\r\n"
#: Readable format versions. Version 2 adds a stage's ``base``, version 3 its
#: ``taps``; a file is written with the lowest version that holds it, so older
#: readers keep reading what they can, and refuse (not misread) the rest.
FORMAT_VERSIONS = (1, 2, 3)
SUFFIX = ".lutsr"
_MAX_HEADER = 1 << 20
_HASH = 32


class LUTFormatError(ValueError):
    """A file is not a valid ``.lutsr`` LUT model."""


def to_bytes(lut: LUT) -> bytes:
    """Serialise ``lut`` to the ``.lutsr`` byte layout."""
    blobs, stages, offset = [], [], 0
    for stage in lut.stages:
        tables = []
        for pattern, table in zip(stage.patterns, stage.tables):
            blob = np.ascontiguousarray(table, np.int8).tobytes()
            tables.append({"pattern": pattern, "shape": list(table.shape), "offset": offset,
                           "sha256": hashlib.sha256(blob).hexdigest()})
            blobs.append(blob)
            offset += len(blob)
        stages.append({"r": stage.r, "divisor": stage.divisor, "bias": stage.bias,
                       "padding": stage.padding, "tables": tables})
        if stage.base is not None:
            stages[-1]["base"] = stage.base.ravel().tolist()
        if stage.taps is not None:
            stages[-1]["tap_window"] = stage.taps.shape[2]
            stages[-1]["taps"] = stage.taps.ravel().tolist()
    version = (3 if any(s.taps is not None for s in lut.stages)
               else 2 if any(s.base is not None for s in lut.stages) else 1)
    header = {"format_version": version, "name": lut.name, "interval": lut.interval,
              "scale": lut.scale, "stages": stages, "metadata": lut.metadata}
    try:
        text = json.dumps(header, allow_nan=False, sort_keys=True).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"LUT metadata is not JSON-serialisable: {exc}") from None
    body = MAGIC + struct.pack("<I", len(text)) + text + b"".join(blobs)
    return body + hashlib.sha256(body).digest()


def save(lut: LUT, path: str | os.PathLike) -> Path:
    """Write ``lut`` to ``path`` atomically (a temporary file renamed into place).

    Returns the path written. A missing ``.lutsr`` suffix is not added: the
    caller's name is kept.
    """
    path = Path(path)
    data = to_bytes(lut)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike) -> LUT:
    """Read a ``.lutsr`` file; raises :class:`LUTFormatError` if it is invalid."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise LUTFormatError(f"{path} is a directory, not a LUT file") from None
    return from_bytes(data, source=str(path))


def _need(cond: bool, source: str, what: str) -> None:
    if not cond:
        raise LUTFormatError(f"{source}: {what}")


def _int16_list(value, n: int) -> bool:
    return (isinstance(value, list) and len(value) == n
            and all(isinstance(w, int) and not isinstance(w, bool) and -2**15 <= w < 2**15
                    for w in value))


def _number(value, source: str, what: str) -> float:
    _need(isinstance(value, (int, float)) and not isinstance(value, bool), source,
          f"{what} must be a number, got {value!r}")
    return value


def from_bytes(data: bytes, source: str = "<bytes>") -> LUT:
    """Parse the ``.lutsr`` byte layout; see :func:`load`."""
    _need(len(data) >= len(MAGIC) + 4 + _HASH, source, "too short to be a LUT file")
    _need(data[:len(MAGIC)] == MAGIC, source, "not a lutsr LUT file (bad magic bytes)")
    body, digest = data[:-_HASH], data[-_HASH:]
    _need(hashlib.sha256(body).digest() == digest, source,
          "checksum mismatch: the file is corrupt or truncated")
    (hlen,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    _need(hlen <= _MAX_HEADER and start + hlen <= len(body), source, "bad header length")
    try:
        header = json.loads(body[start:start + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LUTFormatError(f"{source}: header is not valid JSON ({exc})") from None
    _need(isinstance(header, dict), source, "header must be a JSON object")
    version = header.get("format_version")
    _need(version in FORMAT_VERSIONS and not isinstance(version, bool), source,
          f"unsupported format_version {version!r} (this lutsr reads {list(FORMAT_VERSIONS)})")
    blob = memoryview(body)[start + hlen:]
    stages_in = header.get("stages")
    _need(isinstance(stages_in, list) and stages_in, source, "'stages' must be a non-empty list")
    stages, used = [], 0
    for i, st in enumerate(stages_in):
        _need(isinstance(st, dict), source, f"stage {i} must be an object")
        tables_in = st.get("tables")
        _need(isinstance(tables_in, list) and tables_in, source,
              f"stage {i}: 'tables' must be a non-empty list")
        patterns, tables = [], []
        for t in tables_in:
            _need(isinstance(t, dict), source, f"stage {i}: table entry must be an object")
            shape, offset = t.get("shape"), t.get("offset")
            _need(isinstance(shape, list) and len(shape) == 2
                  and all(isinstance(n, int) and 0 < n <= 1 << 26 for n in shape),
                  source, f"stage {i}: bad table shape {shape!r}")
            n = shape[0] * shape[1]
            _need(isinstance(offset, int) and 0 <= offset and offset + n <= len(blob), source,
                  f"stage {i}: table data out of bounds")
            raw = bytes(blob[offset:offset + n])
            _need(hashlib.sha256(raw).hexdigest() == t.get("sha256"), source,
                  f"stage {i}: table {t.get('pattern')!r} fails its SHA-256 check")
            used += n
            patterns.append(t.get("pattern"))
            tables.append(np.frombuffer(raw, np.int8).reshape(shape))
        _need(all(isinstance(p, str) for p in patterns), source, f"stage {i}: bad pattern name")
        r, padding = st.get("r"), st.get("padding")
        _need(isinstance(r, int) and not isinstance(r, bool), source, f"stage {i}: bad r {r!r}")
        _need(isinstance(padding, str), source, f"stage {i}: bad padding {padding!r}")
        base = st.get("base")
        if base is not None:
            n = r * r * BASE_SIDE**2
            _need(version >= 2 and _int16_list(base, n),
                  source, f"stage {i}: 'base' must be {n} int16 values")
            base = np.array(base, np.int16).reshape(r, r, BASE_SIDE, BASE_SIDE)
        taps, window = st.get("taps"), st.get("tap_window")
        _need((taps is None) == (window is None), source,
              f"stage {i}: 'taps' and 'tap_window' go together")
        if taps is not None:
            _need(version >= 3 and isinstance(window, int) and not isinstance(window, bool)
                  and 1 <= window <= MAX_TAP_WINDOW, source,
                  f"stage {i}: bad tap_window {window!r}")
            n = len(patterns) * 4 * window**2
            _need(_int16_list(taps, n), source, f"stage {i}: 'taps' must be {n} int16 values")
            taps = np.array(taps, np.int16).reshape(len(patterns), 4, window, window)
        try:
            stages.append(Stage(r=r, patterns=tuple(patterns), tables=tuple(tables),
                                divisor=_number(st.get("divisor"), source, "divisor"),
                                bias=_number(st.get("bias"), source, "bias"),
                                padding=padding, base=base, taps=taps))
        except ValueError as exc:
            raise LUTFormatError(f"{source}: stage {i}: {exc}") from None
    _need(used == len(blob), source, "table data does not match the header")
    interval = header.get("interval")
    name, meta = header.get("name", ""), header.get("metadata", {})
    _need(isinstance(interval, int) and not isinstance(interval, bool), source,
          f"bad interval {interval!r}")
    _need(isinstance(name, str), source, "name must be a string")
    _need(isinstance(meta, dict), source, "metadata must be an object")
    try:
        lut = LUT(stages=tuple(stages), interval=interval, name=name, metadata=meta)
    except (TypeError, ValueError) as exc:
        raise LUTFormatError(f"{source}: {exc}") from None
    _need(header.get("scale") == lut.scale, source,
          f"header scale {header.get('scale')!r} disagrees with stages (x{lut.scale})")
    return lut
