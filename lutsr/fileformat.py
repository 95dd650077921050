"""The ``.lutsr`` file format: one file per LUT model, no pickle.

Layout (all integers little-endian)::

    magic      8 bytes   b"\\x89LUTSR\\r\\n"
    hlen       4 bytes   uint32, length of the JSON header
    header     hlen      UTF-8 JSON: format_version, name, interval, scale,
                         stages, metadata (below)
    tables     ...       the int8 arrays, C order, back to back
    checksum   32 bytes  SHA-256 of everything before it

Every int8 array in the tables section is described in the header by its
``shape``, byte ``offset`` and ``sha256``. A simplex stage holds r, patterns,
divisor, bias, padding and its tables (one array per pattern); a linear base,
if any, as a list of r*r*25 integers; learned taps, if any, as ``tap_window``
w and a list of P*4*w*w integers. A layered stage (``"kind": "layered"``)
holds r and its layers (``blocks`` of depthwise and pointwise layers, ``low``,
``up``); each layer its kind, its tables (one 3-D array), its ``steps`` and
``shifts`` as lists of integers.

Reading is bounded: the fixed prefix and the header come first, and no more
table bytes are read than the header declares (nor than the file holds).
Every field is validated before any array is built, so a corrupt or hostile
file raises :class:`LUTFormatError` (a ``ValueError``) and nothing else.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import struct
import tempfile
from pathlib import Path

import numpy as np

from .layered import HIGH_LEVELS, KINDS, MAX_BLOCKS, LayeredStage, TableLayer
from .model import BASE_SIDE, LUT, MAX_STAGES, MAX_TAP_WINDOW, Stage

MAGIC = b"\x89LUTSR\r\n"
#: Readable format versions. Version 2 adds a stage's ``base``, version 3 its
#: ``taps``, version 4 layered stages; a file is written with the lowest
#: version that holds it, so older readers keep reading what they can, and
#: refuse (not misread) the rest.
FORMAT_VERSIONS = (1, 2, 3, 4)
SUFFIX = ".lutsr"
_MAX_HEADER = 1 << 20
_HASH = 32
_PREFIX = len(MAGIC) + 4
#: Largest table section a file may declare: the numba backend's offsets are 32-bit.
MAX_TABLE_BYTES = 2**32 - 1
#: Largest extent of one array axis (a simplex table has at most 129**4 rows).
_MAX_AXIS = 129**4


class LUTFormatError(ValueError):
    """A file is not a valid ``.lutsr`` LUT model."""


# --------------------------------------------------------------------------- writing


class _Blobs:
    """The tables section being written: arrays appended, their header entries returned."""

    def __init__(self):
        self.parts, self.offset = [], 0

    def add(self, array: np.ndarray, **extra) -> dict:
        blob = np.ascontiguousarray(array, np.int8).tobytes()
        entry = {**extra, "shape": list(array.shape), "offset": self.offset,
                 "sha256": hashlib.sha256(blob).hexdigest()}
        self.parts.append(blob)
        self.offset += len(blob)
        return entry


def _layer_header(layer: TableLayer, blobs: _Blobs) -> dict:
    entry = {"kind": layer.kind, "tables": blobs.add(layer.tables),
             "steps": layer.steps.ravel().tolist()}
    if layer.shifts is not None:
        entry["shifts"] = layer.shifts.ravel().tolist()
    return entry


def _stage_header(stage, blobs: _Blobs) -> dict:
    if isinstance(stage, LayeredStage):
        return {"kind": "layered", "r": stage.r,
                "blocks": [[_layer_header(dw, blobs), _layer_header(pw, blobs)]
                           for dw, pw in stage.blocks],
                "low": _layer_header(stage.low, blobs), "up": _layer_header(stage.up, blobs)}
    entry = {"r": stage.r, "divisor": stage.divisor, "bias": stage.bias,
             "padding": stage.padding,
             "tables": [blobs.add(t, pattern=p) for p, t in zip(stage.patterns, stage.tables)]}
    if stage.base is not None:
        entry["base"] = stage.base.ravel().tolist()
    if stage.taps is not None:
        entry["tap_window"] = stage.taps.shape[2]
        entry["taps"] = stage.taps.ravel().tolist()
    return entry


def _version(lut: LUT) -> int:
    if any(isinstance(s, LayeredStage) for s in lut.stages):
        return 4
    if any(s.taps is not None for s in lut.stages):
        return 3
    return 2 if any(s.base is not None for s in lut.stages) else 1


def to_bytes(lut: LUT) -> bytes:
    """Serialise ``lut`` to the ``.lutsr`` byte layout."""
    blobs = _Blobs()
    stages = [_stage_header(stage, blobs) for stage in lut.stages]
    header = {"format_version": _version(lut), "name": lut.name, "interval": lut.interval,
              "scale": lut.scale, "stages": stages, "metadata": lut.metadata}
    try:
        text = json.dumps(header, allow_nan=False, sort_keys=True).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"LUT metadata is not JSON-serialisable: {exc}") from None
    if len(text) > _MAX_HEADER:
        raise ValueError(f"the header is {len(text)} bytes, over the format's {_MAX_HEADER}: "
                         "keep the metadata small")
    body = MAGIC + struct.pack("<I", len(text)) + text + b"".join(blobs.parts)
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


# --------------------------------------------------------------------------- reading


def load(path: str | os.PathLike) -> LUT:
    """Read a ``.lutsr`` file; raises :class:`LUTFormatError` if it is invalid.

    Reads the fixed prefix and the header first, then exactly the table bytes
    the header declares: a file that is not a LUT (``/dev/zero``, a huge file,
    a pipe) is refused after a few bytes, not read whole.
    """
    path = Path(path)
    source = str(path)
    try:
        with open(path, "rb") as fh:
            info = os.fstat(fh.fileno())
            size = info.st_size if stat.S_ISREG(info.st_mode) else None
            return _read(fh, size, source)
    except IsADirectoryError:
        raise LUTFormatError(f"{path} is a directory, not a LUT file") from None


def from_bytes(data: bytes, source: str = "<bytes>") -> LUT:
    """Parse the ``.lutsr`` byte layout; see :func:`load`."""
    return _read(io.BytesIO(data), len(data), source)


def _read(fh, size: int | None, source: str) -> LUT:
    """Read one LUT from ``fh`` (``size`` bytes long, or None for a stream of unknown length)."""
    prefix = fh.read(_PREFIX)
    _need(len(prefix) == _PREFIX and (size is None or size >= _PREFIX + _HASH), source,
          "too short to be a LUT file")
    _need(prefix[:len(MAGIC)] == MAGIC, source, "not a lutsr LUT file (bad magic bytes)")
    (hlen,) = struct.unpack_from("<I", prefix, len(MAGIC))
    _need(hlen <= _MAX_HEADER and (size is None or _PREFIX + hlen + _HASH <= size), source,
          "bad header length")
    text = fh.read(hlen)
    _need(len(text) == hlen, source, "checksum mismatch: the file is corrupt or truncated")
    header = _parse_header(text, source)
    declared = _declared_bytes(header, source)
    _need(size is None or size == _PREFIX + hlen + declared + _HASH, source,
          "checksum mismatch: the file is corrupt or truncated (its size disagrees with "
          "the header)")
    rest = fh.read(declared + _HASH)
    _need(len(rest) == declared + _HASH and (size is not None or not fh.read(1)), source,
          "checksum mismatch: the file is corrupt or truncated")
    tables = memoryview(rest)[:-_HASH]
    digest = hashlib.sha256(prefix)
    digest.update(text)
    digest.update(tables)  # no copy of the tables section
    _need(digest.digest() == rest[-_HASH:], source,
          "checksum mismatch: the file is corrupt or truncated")
    return _build(header, tables, source)


def _need(cond: bool, source: str, what: str) -> None:
    if not cond:
        raise LUTFormatError(f"{source}: {what}")


def _parse_header(text: bytes, source: str) -> dict:
    try:
        header = json.loads(text.decode("utf-8"))
    except RecursionError:
        raise LUTFormatError(f"{source}: header is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, or an over-long integer
        raise LUTFormatError(f"{source}: header is not valid JSON ({exc})") from None
    _need(isinstance(header, dict), source, "header must be a JSON object")
    version = header.get("format_version")
    _need(_is_int(version) and version in FORMAT_VERSIONS, source,
          f"unsupported format_version {version!r} (this lutsr reads {list(FORMAT_VERSIONS)})")
    stages = header.get("stages")
    _need(isinstance(stages, list) and 1 <= len(stages) <= MAX_STAGES, source,
          f"'stages' must be a list of 1..{MAX_STAGES} stages")
    return header


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _arrays(header: dict, source: str) -> list[dict]:
    """Every array entry of the header, type-checked (shape, offset)."""
    entries = []

    def array(entry, what, ndim):
        _need(isinstance(entry, dict), source, f"{what} must be an object")
        shape, offset = entry.get("shape"), entry.get("offset")
        _need(isinstance(shape, list) and len(shape) == ndim
              and all(_is_int(n) and 0 < n <= _MAX_AXIS for n in shape), source,
              f"{what}: bad shape {shape!r}")
        _need(_is_int(offset) and offset >= 0, source, f"{what}: table data out of bounds")
        entries.append(entry)

    def layer(entry, what):
        _need(isinstance(entry, dict), source, f"{what} must be an object")
        array(entry.get("tables"), f"{what} tables", 3)

    for i, st in enumerate(header["stages"]):
        _need(isinstance(st, dict), source, f"stage {i} must be an object")
        if st.get("kind", "simplex") == "layered":
            _need(header["format_version"] >= 4, source,
                  f"stage {i}: layered stages need format_version 4")
            blocks = st.get("blocks")
            _need(isinstance(blocks, list) and 1 <= len(blocks) <= MAX_BLOCKS
                  and all(isinstance(b, list) and len(b) == 2 for b in blocks), source,
                  f"stage {i}: 'blocks' must be a list of 1..{MAX_BLOCKS} layer pairs")
            for j, (dw, pw) in enumerate(blocks):
                layer(dw, f"stage {i} block {j} depthwise layer")
                layer(pw, f"stage {i} block {j} pointwise layer")
            layer(st.get("low"), f"stage {i} low-bit layer")
            layer(st.get("up"), f"stage {i} up layer")
            continue
        _need(st.get("kind", "simplex") == "simplex", source,
              f"stage {i}: unknown kind {st.get('kind')!r}")
        tables = st.get("tables")
        _need(isinstance(tables, list) and tables, source,
              f"stage {i}: 'tables' must be a non-empty list")
        for t in tables:
            array(t, f"stage {i}: table entry", 2)
    return entries


def _declared_bytes(header: dict, source: str) -> int:
    """Bytes of the tables section the header declares, bounded by :data:`MAX_TABLE_BYTES`."""
    total = sum(int(np.prod(e["shape"], dtype=object)) for e in _arrays(header, source))
    _need(total <= MAX_TABLE_BYTES, source,
          f"the header declares {total} bytes of tables, over the {MAX_TABLE_BYTES} a LUT may hold")
    return total


def _int_list(value, n: int, lo: int, hi: int) -> bool:
    return (isinstance(value, list) and len(value) == n
            and all(_is_int(w) and lo <= w <= hi for w in value))


def _number(value, source: str, what: str) -> float:
    _need(isinstance(value, (int, float)) and not isinstance(value, bool), source,
          f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise LUTFormatError(f"{source}: {what} {value} is out of range") from None


class _Tables:
    """Slices of the tables section, each checked against its SHA-256; counts what was used."""

    def __init__(self, blob: memoryview, source: str):
        self.blob, self.source, self.used = blob, source, 0

    def take(self, entry: dict, what: str) -> np.ndarray:
        shape, offset = entry["shape"], entry["offset"]
        n = int(np.prod(shape))
        _need(offset + n <= len(self.blob), self.source, f"{what}: table data out of bounds")
        raw = bytes(self.blob[offset:offset + n])
        _need(hashlib.sha256(raw).hexdigest() == entry.get("sha256"), self.source,
              f"{what} fails its SHA-256 check")
        self.used += n
        return np.frombuffer(raw, np.int8).reshape(shape)


def _build_layer(entry: dict, tables: _Tables, what: str) -> TableLayer:
    source = tables.source
    kind = entry.get("kind")
    _need(kind in KINDS, source, f"{what}: kind must be one of {KINDS}, got {kind!r}")
    array = tables.take(entry["tables"], what)
    inputs, outputs = array.shape[:2]
    steps = entry.get("steps")
    _need(_int_list(steps, inputs * outputs, 1, HIGH_LEVELS), source,
          f"{what}: 'steps' must be {inputs * outputs} integers")
    shifts = entry.get("shifts")
    if shifts is not None:
        _need(_int_list(shifts, 2 * inputs, -128, 127), source,
              f"{what}: 'shifts' must be {2 * inputs} integers")
        shifts = np.array(shifts, np.int8).reshape(2, inputs)
    return TableLayer(kind, array, np.array(steps, np.uint8).reshape(inputs, outputs), shifts)


def _build_layered(st: dict, tables: _Tables, i: int) -> LayeredStage:
    what = f"stage {i}"
    blocks = tuple((_build_layer(dw, tables, f"{what} block {j} depthwise layer"),
                    _build_layer(pw, tables, f"{what} block {j} pointwise layer"))
                   for j, (dw, pw) in enumerate(st["blocks"]))
    r = st.get("r")
    _need(_is_int(r), tables.source, f"{what}: bad r {r!r}")
    return LayeredStage(r=r, blocks=blocks, low=_build_layer(st["low"], tables, f"{what} low"),
                        up=_build_layer(st["up"], tables, f"{what} up"))


def _build_simplex(st: dict, version: int, tables: _Tables, i: int) -> Stage:
    source = tables.source
    patterns = [t.get("pattern") for t in st["tables"]]
    _need(all(isinstance(p, str) for p in patterns), source, f"stage {i}: bad pattern name")
    arrays = [tables.take(t, f"stage {i}: table {t.get('pattern')!r}") for t in st["tables"]]
    r, padding = st.get("r"), st.get("padding")
    _need(_is_int(r) and 1 <= r <= 8, source, f"stage {i}: bad r {r!r}")
    _need(isinstance(padding, str), source, f"stage {i}: bad padding {padding!r}")
    base = st.get("base")
    if base is not None:
        n = r * r * BASE_SIDE**2
        _need(version >= 2 and _int_list(base, n, -2**15, 2**15 - 1),
              source, f"stage {i}: 'base' must be {n} int16 values")
        base = np.array(base, np.int16).reshape(r, r, BASE_SIDE, BASE_SIDE)
    taps, window = st.get("taps"), st.get("tap_window")
    _need((taps is None) == (window is None), source,
          f"stage {i}: 'taps' and 'tap_window' go together")
    if taps is not None:
        _need(version >= 3 and _is_int(window) and 1 <= window <= MAX_TAP_WINDOW, source,
              f"stage {i}: bad tap_window {window!r}")
        n = len(patterns) * 4 * window**2
        _need(_int_list(taps, n, -2**15, 2**15 - 1), source,
              f"stage {i}: 'taps' must be {n} int16 values")
        taps = np.array(taps, np.int16).reshape(len(patterns), 4, window, window)
    return Stage(r=r, patterns=tuple(patterns), tables=tuple(arrays),
                 divisor=_number(st.get("divisor"), source, "divisor"),
                 bias=_number(st.get("bias"), source, "bias"),
                 padding=padding, base=base, taps=taps)


def _build(header: dict, blob: memoryview, source: str) -> LUT:
    """The LUT of a header whose arrays :func:`_arrays` has checked, from its tables section."""
    tables = _Tables(blob, source)
    stages = []
    for i, st in enumerate(header["stages"]):
        try:
            if st.get("kind") == "layered":
                stages.append(_build_layered(st, tables, i))
            else:
                stages.append(_build_simplex(st, header["format_version"], tables, i))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, LUTFormatError):
                raise
            raise LUTFormatError(f"{source}: stage {i}: {exc}") from None
    _need(tables.used == len(blob), source, "table data does not match the header")
    interval = header.get("interval")
    name, meta = header.get("name", ""), header.get("metadata", {})
    _need(_is_int(interval), source, f"bad interval {interval!r}")
    _need(isinstance(name, str), source, "name must be a string")
    _need(isinstance(meta, dict), source, "metadata must be an object")
    try:
        lut = LUT(stages=tuple(stages), interval=interval, name=name, metadata=meta)
    except (TypeError, ValueError) as exc:
        raise LUTFormatError(f"{source}: {exc}") from None
    scale = header.get("scale")
    _need(_is_int(scale) and scale == lut.scale, source,
          f"header scale {scale!r} disagrees with stages (x{lut.scale})")
    return lut
