"""PyAV and FFmpeg basics every step of a video run uses.

The PyAV import (an optional extra), the facts of a pixel format (depth,
alpha, the layouts the two upscaling modes take as they are), swscale's flag
bits, a numpy view of a frame's plane, a frame's timestamp, and FFmpeg's log
level for a quiet run.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np


def import_av():
    """Import PyAV, with an error that names the extra to install."""
    try:
        import av
    except ImportError:  # pragma: no cover - PyAV is installed in the test environment
        raise ImportError("video needs PyAV: pip install 'lutsr[video]'") from None
    return av


#: 8-bit planar YUV layouts the luma-only mode works on directly; other
#: decoded formats (10-bit, NV12...) are first converted to yuv420p.
LUMA_FORMATS = frozenset({
    "yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p",
    "yuv440p", "yuvj440p", "yuv411p", "yuv410p", "gray",
})


#: Planar YUV layouts deeper than 8 bits that both modes work on directly
#: (little-endian samples in uint16, the value in the low bits).
DEEP_FORMAT = re.compile(r"(yuv4[24][024]p|gray)(9|10|12|14|16)le")


#: Planar YUV + alpha layouts the luma-only mode works on directly, at 8 bits
#: and deeper; other formats with alpha are first converted to ``yuva420p``
#: (``yuva420p10le`` when deep).
LUMA_ALPHA_FORMAT = re.compile(r"yuva4[24][024]p")
DEEP_ALPHA_FORMAT = re.compile(r"yuva4[24][024]p(9|10|12|14|16)le")


# libswscale's flag bits (swscale.h, unchanged since FFmpeg 1.0). PyAV takes the
# integer; its ``Interpolation`` enum names ACCURATE_RND and FULL_CHR_* only from 18.
_SWS_FLAGS = {"AREA": 0x20, "BICUBIC": 0x4, "LANCZOS": 0x200, "FULL_CHR_H_INT": 0x2000,
              "FULL_CHR_H_INP": 0x4000, "ACCURATE_RND": 0x40000}


def sws_flags(names: tuple[str, ...]) -> int:
    """The swscale flags ``names`` as the integer PyAV's ``reformat`` takes."""
    value = 0
    for name in names:
        value |= _SWS_FLAGS[name]
    return value


def plane_array(plane, channels: int = 1, dtype=np.uint8) -> np.ndarray:
    """A view (no copy) of one plane of a PyAV video frame.

    Parameters
    ----------
    plane : av.video.plane.VideoPlane
    channels : int
        Interleaved channels per pixel (3 for ``rgb24`` and ``rgb48le``, 1 for
        a YUV plane).
    dtype : numpy dtype
        ``np.uint8`` for 8-bit formats, ``np.uint16`` for deeper ones
        (``yuv420p10le``, ``rgb48le``...; native byte order, i.e. little-endian
        on every platform FFmpeg's ``le`` formats are used on here).

    Returns
    -------
    ndarray of ``dtype``, shape (H, W) or (H, W, channels)
        Rows are ``plane.line_size`` bytes apart (FFmpeg pads them), so the
        view is usually not C-contiguous. Writable when the frame is.
    """
    buf = np.frombuffer(plane, np.uint8)
    item = np.dtype(dtype).itemsize
    h, w = plane.height, plane.width
    if channels == 1:
        return np.ndarray((h, w), dtype, buf, 0, (plane.line_size, item))
    return np.ndarray((h, w, channels), dtype, buf, 0,
                      (plane.line_size, channels * item, item))


def format_depth(name: str) -> int:
    """Bits per sample of an FFmpeg pixel format (8 for ``yuv420p``, 10 for ``yuv420p10le``)."""
    return max(c.bits for c in import_av().VideoFormat(name).components)


def has_alpha(pix_fmt: str) -> bool:
    """Whether an FFmpeg pixel format has an alpha channel (``rgba``, ``yuva420p``, ``ya8``...).

    A palette format (``pal8``) counts as without: its alpha, if any, is in
    the palette, which swscale does not turn into an alpha plane here.
    """
    fmt = import_av().VideoFormat(pix_fmt)
    return not fmt.has_palette and len(fmt.components) in (2, 4)


def copy_time(src, dst) -> None:
    dst.pts = src.pts
    if src.time_base is not None:  # frames made from arrays have none
        dst.time_base = src.time_base


@contextlib.contextmanager
def ffmpeg_log_level(av, quiet: bool):
    """While the block runs, FFmpeg logs errors only when ``quiet`` (restored after).

    PyAV forwards FFmpeg's log to Python only when a level is set (none by
    default, and then nothing is printed); a level more verbose than errors
    is lowered for the run.
    """
    logging = av.logging
    before = logging.get_level()
    if quiet and before is not None and before > logging.ERROR:
        logging.set_level(logging.ERROR)
    try:
        yield
    finally:
        if logging.get_level() != before:
            logging.set_level(before)
