"""A fast PNG encoder for 8-bit images: lutsr's default PNG writer.

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
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

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
    """Rows of ``pixels``, each a filter-type byte (1, ``Sub``) then its filtered bytes, flat."""
    h = pixels.shape[0]
    c = 1 if pixels.ndim == 2 else pixels.shape[2]
    flat = np.ascontiguousarray(pixels).reshape(h, -1)
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
    """Encode an 8-bit image as PNG bytes, fast.

    Parameters
    ----------
    pixels : ndarray of uint8
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
        The PNG file: ``Sub`` filter on every row, Huffman-coded deflate;
        decoders see an ordinary PNG.
    """
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        raise TypeError("pixels must be a uint8 numpy array")
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
           _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, _COLOUR_TYPES[channels], 0, 0, 0))]
    if icc_profile:
        out.append(_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc_profile)))
    if exif:
        out.append(_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif))
    out += [_chunk(b"IDAT", stream[i:i + _MAX_CHUNK]) for i in range(0, len(stream), _MAX_CHUNK)]
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)
