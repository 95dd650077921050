"""A fast PNG encoder (8 and 16 bits): lutsr's default PNG writer; a 16-bit PNG decoder.

Pillow deflates a PNG in one stream on one core with adaptive filtering, which
for a 4096x2720 upscale costs about 35 times the upscale itself (``x4``, two
threads). Here every row gets PNG's ``Sub`` filter (one numpy subtraction),
and the filtered rows are Huffman-coded (zlib level 1, Huffman-only strategy:
on filtered photos it loses a few percent of size to full deflate and runs
several times faster) in horizontal bands on several threads, the GIL released.
Each band but the last ends with a sync flush, so the bands' raw deflate
streams concatenate into one valid zlib stream (as pigz does); the Adler-32 is
computed over the whole. Measured with ``python bench/test_bench_image_write.py``
(``docs/design-record.md``): 7 times faster than Pillow at level 1, files 4 %
larger.

zlib-ng (the ``zlib-ng`` package, in the ``image`` extra) codes about twice as
fast as the standard library's zlib, which is used when it is absent.

:func:`decode_png16` reads the pixels of 16-bit PNGs, which Pillow reduces to
8 bits per sample for every colour type but gray (``I;16``): the inflated rows
are unfiltered by a small numba kernel (Average and Paeth depend on the
previous byte, so the row is a loop), Adam7 interlacing included.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

try:
    from zlib_ng import zlib_ng as _deflate
except ImportError:  # pragma: no cover - zlib-ng is in the image and test extras
    _deflate = zlib

#: PNG colour type by channel count: gray, gray+alpha, RGB, RGBA.
_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}

#: Below this many filtered bytes per band, one band (threads cost more than they save).
_MIN_BAND_BYTES = 1 << 20

#: IDAT chunks of at most this many bytes (the format allows 2**31 - 1).
_MAX_CHUNK = 1 << 24

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # long-lived, like the kernels' pool ("lutsr_N"); "lutsr-" names pipeline threads
            _pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="lutsr_png")
    return _pool


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(data, zlib.crc32(kind)))


def _sub_filtered(pixels: np.ndarray) -> np.ndarray:
    """Rows of ``pixels``, each a filter-type byte (1, ``Sub``) then its filtered bytes, flat.

    16-bit samples are stored big-endian, as PNG orders them; ``Sub`` subtracts
    the byte one pixel (``c`` or ``2c`` bytes) to the left.
    """
    h = pixels.shape[0]
    c = (1 if pixels.ndim == 2 else pixels.shape[2]) * pixels.dtype.itemsize
    flat = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder(">")).view(np.uint8)
    flat = flat.reshape(h, -1)
    rows = np.empty((h, 1 + flat.shape[1]), np.uint8)
    rows[:, 0] = 1
    rows[:, 1:1 + c] = flat[:, :c]
    np.subtract(flat[:, c:], flat[:, :-c], out=rows[:, 1 + c:])  # wraps modulo 256, as PNG's
    return rows.reshape(-1)


def _deflate_band(data: memoryview, last: bool) -> bytes:
    co = _deflate.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_HUFFMAN_ONLY)
    return co.compress(data) + co.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def encode_png(pixels: np.ndarray, *, icc_profile: bytes | None = None,
               exif: bytes | None = None, threads: int | None = None) -> bytes:
    """Encode an 8- or 16-bit image as PNG bytes, fast.

    Parameters
    ----------
    pixels : ndarray of uint8 or uint16
        ``(H, W)`` gray, or ``(H, W, C)`` with C = 1 (gray), 2 (gray and
        alpha), 3 (RGB) or 4 (RGBA); H and W at least 1.
    icc_profile : bytes, optional
        Written as an ``iCCP`` chunk.
    exif : bytes, optional
        Written as an ``eXIf`` chunk (a leading ``Exif\\0\\0`` is dropped).
    threads : int, optional
        Bands deflated at once (default: the machine's cores).

    Returns
    -------
    bytes
        The PNG file, of bit depth 8 (uint8) or 16 (uint16): ``Sub`` filter on
        every row, Huffman-coded deflate; decoders see an ordinary PNG.
    """
    if not isinstance(pixels, np.ndarray) or pixels.dtype not in (np.uint8, np.uint16):
        raise TypeError("pixels must be a uint8 or uint16 numpy array")
    channels = 1 if pixels.ndim == 2 else pixels.shape[-1] if pixels.ndim == 3 else 0
    if channels not in _COLOUR_TYPES or 0 in pixels.shape[:2]:
        raise ValueError(f"cannot encode an image of shape {pixels.shape} as PNG")
    h, w = pixels.shape[:2]
    if max(h, w) >= 1 << 31:
        raise ValueError(f"PNG sides are below 2**31, got {w}x{h}")
    raw = _sub_filtered(pixels)
    row_bytes = raw.size // h
    bands = max(1, min(threads or os.cpu_count() or 1, raw.size // _MIN_BAND_BYTES, h))
    edges = [row_bytes * (h * i // bands) for i in range(bands + 1)]
    view = memoryview(raw)
    pieces = [view[a:b] for a, b in zip(edges[:-1], edges[1:])]
    last = [i == bands - 1 for i in range(bands)]
    if bands == 1:
        deflated = [_deflate_band(pieces[0], True)]
    else:
        deflated = list(_threads_pool().map(_deflate_band, pieces, last))
    # zlib header 0x78 0x01: deflate, 32 KiB window, "fastest" level, no dictionary
    stream = b"".join([b"\x78\x01", *deflated, struct.pack(">I", _deflate.adler32(raw))])

    out = [b"\x89PNG\r\n\x1a\n",
           _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8 * pixels.dtype.itemsize,
                                       _COLOUR_TYPES[channels], 0, 0, 0))]
    if icc_profile:
        out.append(_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc_profile)))
    if exif:
        out.append(_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif))
    out += [_chunk(b"IDAT", stream[i:i + _MAX_CHUNK]) for i in range(0, len(stream), _MAX_CHUNK)]
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


# ---------------------------------------------------------------------------
# 16-bit decoding

#: Channels by PNG colour type (palette images are never 16-bit).
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}

#: Adam7 passes: first row, first column, row step, column step.
_ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2),
          (1, 0, 2, 1))


class PNGError(ValueError):
    """A PNG that :func:`decode_png16` cannot read: damaged, or not 16 bits per sample."""


@numba.njit(nogil=True, cache=True)
def _unfilter(data, start, rows, row_bytes, bpp, out):  # pragma: no cover - compiled
    """Undo the five PNG filters of ``rows`` rows at ``data[start:]`` into ``out``.

    ``out`` is ``(rows, row_bytes)`` uint8; ``bpp`` the bytes of a pixel.

    Returns the offset after the rows, or -1 for an unknown filter type.
    """
    pos = start
    for y in range(rows):
        kind = data[pos]
        pos += 1
        for x in range(row_bytes):
            a = np.int32(out[y, x - bpp]) if x >= bpp else np.int32(0)
            b = np.int32(out[y - 1, x]) if y > 0 else np.int32(0)
            c = np.int32(out[y - 1, x - bpp]) if x >= bpp and y > 0 else np.int32(0)
            v = np.int32(data[pos + x])
            if kind == 1:
                v += a
            elif kind == 2:
                v += b
            elif kind == 3:
                v += (a + b) >> 1
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                v += a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            elif kind != 0:
                return -1
            out[y, x] = v & 255
        pos += row_bytes
    return pos


def _chunks(data: bytes):
    """``(type, body)`` of every chunk of a PNG file, its CRC checked."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise PNGError("not a PNG file")
    pos = 8
    while pos + 12 <= len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise PNGError(f"the {kind!r} chunk is cut short")
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(body, zlib.crc32(kind)) != crc:
            raise PNGError(f"the {kind!r} chunk is damaged (CRC mismatch)")
        yield kind, body
        if kind == b"IEND":
            return
        pos += 12 + length
    raise PNGError("the file ends before its IEND chunk")


def decode_png16(data: bytes) -> np.ndarray:
    """The pixels of a 16-bit PNG file.

    Parameters
    ----------
    data : bytes
        The whole file: bit depth 16, colour type gray, gray + alpha, RGB or
        RGBA, interlaced or not.

    Returns
    -------
    ndarray of uint16
        ``(H, W)`` gray, ``(H, W, 2)`` gray + alpha, ``(H, W, 3)`` RGB or
        ``(H, W, 4)`` RGBA, as stored. A ``tRNS`` colour (gray or RGB) becomes
        an alpha channel: 0 where a pixel has exactly that colour, 65535
        elsewhere. Other chunks (colour profile, EXIF) are left to the caller.

    Raises
    ------
    PNGError
        Not a PNG, not 16 bits per sample, or damaged (bad CRC, cut short,
        inflated size wrong, unknown filter).
    """
    header, idat, trns = None, [], None
    for kind, body in _chunks(data):
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body[:13]) if len(body) == 13 else None
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"tRNS":
            trns = body
    if header is None:
        raise PNGError("no valid IHDR chunk")
    w, h, depth, colour, _, _, interlace = header
    if depth != 16 or colour not in _CHANNELS or interlace not in (0, 1) or not w or not h:
        raise PNGError(f"not a 16-bit gray/RGB PNG (bit depth {depth}, colour type {colour})")
    c = _CHANNELS[colour]
    bpp = 2 * c
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    except zlib.error as exc:
        raise PNGError(f"damaged image data: {exc}") from None
    passes = [(0, 0, 1, 1)] if interlace == 0 else _ADAM7
    out = np.empty((h, w * bpp), np.uint8)
    pos = 0
    for y0, x0, dy, dx in passes:
        rows, cols = len(range(y0, h, dy)), len(range(x0, w, dx))
        if not rows or not cols:
            continue  # an empty Adam7 pass has no rows, not even filter bytes
        if pos + rows * (1 + cols * bpp) > raw.size:
            raise PNGError("image data cut short")
        sub = np.empty((rows, cols * bpp), np.uint8)
        pos = _unfilter(raw, pos, rows, cols * bpp, bpp, sub)
        if pos < 0:
            raise PNGError("image data with an unknown row filter")
        out.reshape(h, w, bpp)[y0::dy, x0::dx] = sub.reshape(rows, cols, bpp)
    if pos != raw.size:
        raise PNGError(f"image data of {raw.size} bytes where {pos} were expected")
    pixels = out.view(">u2").reshape(h, w, c).astype(np.uint16)
    if trns is not None and colour in (0, 2) and len(trns) == bpp:
        key = np.frombuffer(trns, ">u2").astype(np.uint16)
        alpha = np.where((pixels == key).all(axis=2), 0, 65535).astype(np.uint16)
        pixels = np.concatenate([pixels, alpha[..., None]], axis=2)
    return pixels[..., 0] if pixels.shape[2] == 1 else pixels
