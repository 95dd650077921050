"""Video upscaling with PyAV: decode, upscale every frame, encode, copy the other streams.

The three steps overlap in a pipeline of threads joined by bounded queues::

    reader thread           calling thread          writer thread
    demux + decode   -->    upscale (LUT)    -->    colour convert + encode + mux
    (audio/subtitle packets pass through the queues untouched, in demux order)

FFmpeg's decoders, encoders and swscale, and lutsr's numba kernels, all run
with the GIL released, so on two cores the stages really run side by side.

Two ways to upscale a frame:

* RGB (default): the decoded frame is converted to RGB with its own colour
  matrix (BT.601, BT.709, BT.2020...) and range (limited or full), every
  channel goes through the LUT, and the result is converted back to YUV with
  the same matrix and range. Both conversions ask swscale for accurate
  rounding and full-resolution chroma (:data:`TO_RGB_FLAGS`,
  :data:`FROM_RGB_FLAGS`): its default fast path from subsampled YUV to RGB
  darkens a photo by about one code value of mean luma.
* Luma-only (:func:`upscale_frame_luma`): the decoded 8-bit YUV planes are
  used as they are. swscale resizes all planes bicubically, then the LUT's
  output replaces the luma plane. The LUT does a third of the RGB work (less
  still than that in time, as no RGB conversion is needed); the chroma, which
  the eye resolves far less sharply, is bicubic.

Deeper than 8 bits (10-bit HEVC, say): the output keeps the input's depth
when the encoder can write it, and the run is refused rather than written
with fewer bits unless ``allow_8bit`` is given. The LUT sees the top 8 bits
of each sample; the bits below are upscaled by linear interpolation and added
(:func:`upscale_deep`), so flat areas and smooth gradients keep every bit and
the LUT's detail is added on top.

Any output size (``outscale``, ``size``): the LUT's upscale is resampled by
swscale to the exact size (:func:`resize_frame`: area averaging on an axis
that shrinks, Lanczos on one that grows), in the frame's own pixel format
and depth. Without an explicit LUT the bundled one is picked by
:func:`lutsr.outsize.pick_lut`. A ``size`` is the displayed size, as for
images (whose EXIF rotation is applied first): a clip whose display matrix
turns it a quarter turn has its stored frames sized height by width.

Alpha (``rgba`` PNG or QuickTime Animation, ``yuva420p`` FFV1, ``C444alpha``
y4m...) is kept when the output's pixel format holds it (by default one that
does is picked, :func:`alpha_pix_fmt`), and the run is refused otherwise
unless ``alpha=False`` drops it. RGB mode upscales it as images are
(:func:`lutsr.imageio.upscale_premultiplied`): the frame is converted to RGBA,
premultiplied, upscaled on all four channels and resized, then
unpremultiplied (:func:`upscale_frame_alpha`); ``straight_alpha`` upscales
the channels as stored. Luma-only mode works on YUV planes, which cannot be
premultiplied: it runs the alpha plane through the LUT as stored, and only
when ``straight_alpha`` says so.

Pipes: ``"-"`` as the input reads a stream from stdin (the format is probed:
YUV4MPEG2, Matroska, NUT, MPEG-TS...), ``"-"`` as the output writes to stdout
in the format named by ``format`` (:data:`PIPE_FORMATS`; ``"y4m"`` is
uncompressed YUV4MPEG2, what ``ffmpeg -f yuv4mpegpipe -i -`` reads). A y4m
output has the input stream's frame rate (its average, which FFmpeg snaps to
the nominal rate of a constant-rate stream), one frame per input frame: a
variable rate is written as that average, with a note saying so. It keeps the
input's depth (``C420p10``, ``C422p12``...), colour range and chroma siting
(:data:`Y4M_SITING`, :data:`CODEC_SITING`).

An output size that the encoded pixel format cannot hold (an odd side for
4:2:0) is rounded down to even with a note when it comes from ``outscale`` or
an odd-factor LUT, and refused when ``size`` asks for it exactly.

Kept from the input: frame timestamps (and so the frame rate, constant or
variable), the rotation (display matrix), the pixel aspect ratio, colour
tags, container metadata, and every audio and subtitle stream (packets copied,
not re-encoded; except in WebM, which holds only Opus and Vorbis audio: other
audio is re-encoded with libopus, and the video defaults to libvpx-vp9).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import math
import os
import queue
import re
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .api import Upscaler
from .imageio import premultiply, unpremultiply
from .progress import finish, progress_bar
from .safefiles import atomic_output, check_output, lut_inputs

#: Output suffixes and the FFmpeg muxer each one uses.
CONTAINERS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".avi": "avi",
    ".ts": "mpegts",
    ".y4m": "yuv4mpegpipe",
}

#: ``format`` names (``--format``) and their muxers; the ones that can be
#: written to a pipe (no seeking back to patch a header).
PIPE_FORMATS = {"y4m": "yuv4mpegpipe", "mkv": "matroska", "nut": "nut", "ts": "mpegts"}

#: The encoder used when none is given, by muxer (YUV4MPEG2 holds raw frames,
#: which FFmpeg passes to it as ``wrapped_avframe``; WebM holds only VP8, VP9
#: and AV1); libx264 otherwise.
DEFAULT_CODECS = {"yuv4mpegpipe": "wrapped_avframe", "webm": "libvpx-vp9"}

#: The audio encoder for muxers whose audio is re-encoded when the input's
#: codec cannot go in them (WebM holds only Vorbis and Opus).
AUDIO_TRANSCODE = {"webm": "libopus"}

#: Codecs (FFmpeg codec names) the MPEG-TS muxer carries. It answers FFmpeg's
#: "can you hold this codec" query only for its defaults (MPEG-2 video, MP2),
#: so PyAV's ``supported_codecs`` would refuse H.264, HEVC, AAC...; this list
#: is the muxer's own table of stream types.
MPEGTS_CODECS = frozenset({
    "mpeg1video", "mpeg2video", "mpeg4", "h264", "hevc", "vvc", "cavs", "dirac", "vc1",
    "mp2", "mp3", "aac", "aac_latm", "ac3", "eac3", "dts", "truehd", "opus",
    "s302m", "dvb_subtitle", "dvb_teletext",
})

#: Muxers that count frames instead of storing timestamps: their time base
#: must be one frame, or the header's frame rate is the time base's (AVI
#: would claim 600 fps, YUV4MPEG2 written from an MP4 ``F12800:1``).
FRAME_COUNTED = frozenset({"avi", "yuv4mpegpipe"})

#: Chroma siting (FFmpeg's ``chroma_sample_location`` names) of the
#: YUV4MPEG2 4:2:0 colour tags; a bare ``C420`` is ``C420jpeg``.
Y4M_SITING = {"420jpeg": "center", "420": "center", "420mpeg2": "left", "420paldv": "topleft"}

#: Chroma siting of codecs whose standard fixes a default (H.264, HEVC, VVC
#: and MPEG-2: co-sited with the left luma sample; JPEG: centred). PyAV does
#: not show the decoder's siting, so inputs other than YUV4MPEG2 (whose
#: header is read, :func:`parse_y4m_header`) are taken to use their codec's
#: default; it is kept on the output stream (a y4m header's ``C420mpeg2``).
CODEC_SITING = {"h264": "left", "hevc": "left", "vvc": "left", "mpeg2video": "left",
                "mjpeg": "center"}

#: FFmpeg's largest frame (``av_image_check_size``): ``(w + 128) * (h + 128)
#: * 8`` below 2**31, about 268 million pixels (16000x16000 fits, 16384x16384
#: does not).
MAX_FRAME_BYTES = 2**31 - 1

#: The largest bitrate taken, in bits per second: 1 Tbit/s (x264 and libvpx
#: hold a rate in kbit/s in a 32-bit integer).
MAX_BITRATE = 10**12

#: Encoder options that quieten encoders printing their own log (not FFmpeg's).
QUIET_OPTIONS = {"libx265": {"x265-params": "log-level=error"}}

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

#: The formats with alpha that muxers of raw frames hold (their encoder,
#: ``wrapped_avframe``, lists none): y4m's only one is ``C444alpha``.
RAW_ALPHA_FORMATS = {"yuv4mpegpipe": ("yuva444p",)}

#: Encoders that list more formats with alpha than they open, and the ones
#: they do (libvpx codes alpha as a second 4:2:0 stream: yuva444p, gbrap...
#: fail to open with EINVAL).
ENCODER_ALPHA_FORMATS = {"libvpx-vp9": ("yuva420p",), "libvpx": ("yuva420p",)}

#: swscale flags from YUV to RGB: chroma upsampled bicubically to full
#: resolution (``FULL_CHR_H_INT``) and accurate rounding (``ACCURATE_RND``).
#: Without them the fast table path is used, which for 4:2:0 input shifts
#: mean luma by -0.5 to -1.2 code values on a photo.
TO_RGB_FLAGS = ("BICUBIC", "ACCURATE_RND", "FULL_CHR_H_INT")

#: swscale flags from RGB to YUV: chroma computed from every RGB pixel
#: (``FULL_CHR_H_INP``), then downsampled bicubically, with accurate rounding.
FROM_RGB_FLAGS = ("BICUBIC", "ACCURATE_RND", "FULL_CHR_H_INP")

#: Encoder presets used when none is given, for the encoders that have one.
DEFAULT_PRESETS = {"libx264": "fast", "libx265": "fast"}

#: The presets x264 and x265 accept (their options do not enumerate them, so a
#: typo would otherwise fail only when the encoder opens, in its own words).
_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                 "slower", "veryslow", "placebo")
KNOWN_PRESETS = {"libx264": _X26X_PRESETS, "libx265": _X26X_PRESETS}

#: Constant-quality factor used when neither a CRF nor a bitrate is given.
DEFAULT_CRF = 18

# Container metadata that describes the old file, not the new one.
_STALE_TAGS = {"encoder", "major_brand", "minor_version", "compatible_brands", "duration"}

_QUEUE_SIZE = 6  # frames in flight per queue: enough to ride out jitter, little memory


def _av():
    """Import PyAV, with an error that names the extra to install."""
    try:
        import av
    except ImportError:  # pragma: no cover - PyAV is installed in the test environment
        raise ImportError("video needs PyAV: pip install 'lutsr[video]'") from None
    return av


# ---------------------------------------------------------------------------
# One frame


# libswscale's flag bits (swscale.h, unchanged since FFmpeg 1.0). PyAV takes the
# integer; its ``Interpolation`` enum names ACCURATE_RND and FULL_CHR_* only from 18.
_SWS_FLAGS = {"AREA": 0x20, "BICUBIC": 0x4, "LANCZOS": 0x200, "FULL_CHR_H_INT": 0x2000,
              "FULL_CHR_H_INP": 0x4000, "ACCURATE_RND": 0x40000}


def _flags(names: tuple[str, ...]) -> int:
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
    return max(c.bits for c in _av().VideoFormat(name).components)


def _upsample_linear(img: np.ndarray, s: int) -> np.ndarray:
    """Linear interpolation by an integer factor, pixel centres aligned, edges replicated.

    Parameters
    ----------
    img : ndarray of float32, shape (H, W) or (H, W, C)
    s : int

    Returns
    -------
    ndarray of float32, shape (s*H, s*W) or (s*H, s*W, C)
        Output pixel ``o`` samples the input at ``(o + 0.5) / s - 0.5``; the
        weights of each output pixel sum to one, so a constant stays constant.
    """
    for axis in (0, 1):
        n = img.shape[axis]
        pad = [(0, 0)] * img.ndim
        pad[axis] = (1, 1)
        padded = np.pad(img, pad, mode="edge")
        centre = np.take(padded, range(1, n + 1), axis=axis)
        phases = []
        for p in range(s):
            d = (2 * p + 1 - s) / (2 * s)  # offset of the sample from the input pixel
            side = range(0, n) if d < 0 else range(2, n + 2)
            phases.append(centre * np.float32(1 - abs(d))
                          + np.take(padded, side, axis=axis) * np.float32(abs(d)))
        img = np.stack(phases, axis=axis + 1)
        shape = list(centre.shape)
        shape[axis] = n * s
        img = img.reshape(shape)
    return img


def upscale_deep(img: np.ndarray, upscaler: Upscaler, bits: int,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Upscale samples deeper than 8 bits: the LUT on the top 8, linear interpolation below.

    Parameters
    ----------
    img : ndarray of uint16, shape (H, W) or (H, W, C)
        Samples in ``0 .. 2**bits - 1``.
    upscaler : Upscaler
    bits : int
        Sample depth, 9 to 16.
    out : ndarray of uint16, shape (s*H, s*W) or (s*H, s*W, C), optional
        Written in place (may be a strided view of a frame's plane).

    Returns
    -------
    ndarray of uint16, ``scale`` times larger
        ``LUT(hi) * 2**k + round(linear(lo))`` with ``k = bits - 8``,
        ``hi = img >> k`` and ``lo = img - (hi << k)``. As linear
        interpolation is linear, this equals ``linear(img) + 2**k *
        (LUT(hi) - linear(hi))``: the smooth upscale of every bit plus the
        detail the LUT adds over a smooth upscale of the top 8 bits. Where the
        low bits are constant they come out exactly as they went in; the sum
        never exceeds ``2**bits - 1``.
    """
    k = bits - 8
    hi = (img >> k).astype(np.uint8)
    lo = (img - (hi.astype(np.uint16) << k)).astype(np.float32)
    result = upscaler.up(hi).astype(np.uint16) << k
    # lo_up is in 0 .. 2**k - 1 (a convex combination), so the sum cannot overflow
    result += np.rint(_upsample_linear(lo, upscaler.scale)).astype(np.uint16)
    if out is None:
        return result
    out[...] = result
    return out


def upscale_frame_rgb(frame, upscaler: Upscaler, colorspace: int | None = None,
                      deep: bool = False):
    """Upscale every RGB channel of a decoded frame.

    Parameters
    ----------
    frame : av.VideoFrame
        Any pixel format; converted to RGB with its own range and with
        ``colorspace`` as the colour matrix (flags :data:`TO_RGB_FLAGS`).
    upscaler : Upscaler
    colorspace : int, optional
        FFmpeg ``AVColorSpace`` of the frame (default: the frame's tag;
        untagged means BT.601). See :func:`implied_colorspace`.
    deep : bool
        Convert to 16-bit RGB (``rgb48le``) instead of ``rgb24`` and upscale
        with :func:`upscale_deep`, for inputs deeper than 8 bits.

    Returns
    -------
    av.VideoFrame
        ``rgb24`` (``rgb48le`` when ``deep``), ``scale`` times larger, with
        the input's timestamp. The caller converts it back to YUV (see
        :func:`to_output_format`).
    """
    av = _av()
    fmt = "rgb48le" if deep else "rgb24"
    rgb = frame.reformat(format=fmt, src_colorspace=colorspace,
                         src_color_range=2 if _full_range(frame) else 1,
                         interpolation=_flags(TO_RGB_FLAGS))
    s = upscaler.scale
    out = av.VideoFrame(frame.width * s, frame.height * s, fmt)
    if deep:
        upscale_deep(plane_array(rgb.planes[0], 3, np.uint16), upscaler, 16,
                     out=plane_array(out.planes[0], 3, np.uint16))
    else:
        upscaler.up(plane_array(rgb.planes[0], 3), out=plane_array(out.planes[0], 3))
    _copy_time(frame, out)
    return out


def has_alpha(pix_fmt: str) -> bool:
    """Whether an FFmpeg pixel format has an alpha channel (``rgba``, ``yuva420p``, ``ya8``...).

    A palette format (``pal8``) counts as without: its alpha, if any, is in
    the palette, which swscale does not turn into an alpha plane here.
    """
    fmt = _av().VideoFormat(pix_fmt)
    return not fmt.has_palette and len(fmt.components) in (2, 4)


def alpha_pix_fmt(decoded: str, supported: list[str], muxer: str) -> str | None:
    """The encoded pixel format that keeps the alpha of an input decoded as ``decoded``.

    Parameters
    ----------
    decoded : str
        The input's pixel format (with alpha, e.g. ``rgba`` or ``yuva420p``).
    supported : list of str
        The encoder's pixel formats; empty for an encoder that takes any
        (``wrapped_avframe``), which the muxer then limits
        (:data:`RAW_ALPHA_FORMATS`).
    muxer : str

    Returns
    -------
    str or None
        ``decoded`` itself when allowed; else the format with alpha closest
        to it: as many channels (no gray + alpha for colour), at least as
        deep, RGB for RGB and YUV for YUV, the same chroma subsampling, the
        nearest depth, in that order of precedence, ties to the encoder's
        order. None when no allowed format has alpha.
    """
    if not supported:
        supported = list(RAW_ALPHA_FORMATS.get(muxer, (decoded,)))
    av = _av()
    src, bits = av.VideoFormat(decoded), format_depth(decoded)

    def layout(name):
        m = re.search(r"4[24][024]", name)
        return m.group() if m else None

    def rank(name):
        fmt, depth = av.VideoFormat(name), format_depth(name)
        return (name != decoded, len(fmt.components) != len(src.components), depth < bits,
                fmt.is_rgb != src.is_rgb, layout(name) != layout(decoded), abs(depth - bits))

    return min((n for n in supported if has_alpha(n)), key=rank, default=None)


def _premultiply(pixels: np.ndarray) -> np.ndarray:
    """:func:`lutsr.imageio.premultiply`, also for 16-bit samples (the same rounding)."""
    if pixels.dtype == np.uint8:
        return premultiply(pixels)
    wide = pixels.astype(np.uint64)
    # c * a / 65535 is never halfway between integers (65535 is odd): exact rounding
    wide[..., :-1] = (wide[..., :-1] * wide[..., -1:] + 32767) // 65535
    return wide.astype(np.uint16)


def _unpremultiply(pixels: np.ndarray) -> np.ndarray:
    """:func:`lutsr.imageio.unpremultiply`, also for 16-bit samples (the same rounding)."""
    if pixels.dtype == np.uint8:
        return unpremultiply(pixels)
    wide = pixels.astype(np.uint64)
    a = wide[..., -1:]
    colour = (2 * 65535 * wide[..., :-1] + a) // np.maximum(2 * a, 1)
    wide[..., :-1] = np.where(a == 0, 0, np.minimum(colour, 65535))
    return wide.astype(np.uint16)


def upscale_frame_alpha(frame, upscaler: Upscaler | None, size: tuple[int, int],
                        colorspace: int | None = None, deep: bool = False,
                        straight: bool = False):
    """Upscale a frame with alpha in RGBA, premultiplied through the LUT and the resize.

    Parameters
    ----------
    frame : av.VideoFrame
        Any format with alpha (see :func:`has_alpha`); converted to ``rgba``
        (``rgba64le`` when ``deep``) as :func:`upscale_frame_rgb` converts to
        RGB (the alpha is copied as it is).
    upscaler : Upscaler or None
        None: no LUT, only the resize (a downscale).
    size : (int, int)
        Output ``(width, height)``; the LUT's upscale is resized to it by
        :func:`resize_frame` when it differs.
    colorspace : int, optional
        FFmpeg ``AVColorSpace`` of the frame (default: its tag).
    deep : bool
        16 bits per channel, upscaled by :func:`upscale_deep`.
    straight : bool
        Upscale and resize the four channels as stored, not premultiplied.

    Returns
    -------
    av.VideoFrame
        ``rgba`` (``rgba64le`` when ``deep``) of ``size``, straight alpha,
        with the input's timestamp: :func:`lutsr.imageio.upscale_premultiplied`
        of the RGBA frame, with the resize inside the premultiplied part, so
        the colour that transparent pixels hide bleeds into no visible one.
    """
    av = _av()
    fmt, dtype = ("rgba64le", np.uint16) if deep else ("rgba", np.uint8)
    rgba = frame.reformat(format=fmt, src_colorspace=colorspace,
                          src_color_range=2 if _full_range(frame) else 1,
                          interpolation=_flags(TO_RGB_FLAGS))
    pixels = plane_array(rgba.planes[0], 4, dtype)
    if not straight:
        pixels = _premultiply(pixels)
    s = 1 if upscaler is None else upscaler.scale
    big = av.VideoFrame(rgba.width * s, rgba.height * s, fmt)
    target = plane_array(big.planes[0], 4, dtype)
    if upscaler is None:
        target[...] = pixels
    elif deep:
        upscale_deep(pixels, upscaler, 16, out=target)
    else:
        upscaler.up(pixels, out=target)
    if (big.width, big.height) != tuple(size):
        big = resize_frame(big, size)
    if not straight:
        view = plane_array(big.planes[0], 4, dtype)
        view[...] = _unpremultiply(view)
    _copy_time(frame, big)
    return big


def upscale_frame_luma(frame, upscaler: Upscaler, deep: bool = False, alpha: bool = False):
    """Upscale the luma plane with the LUT and the chroma planes bicubically.

    Parameters
    ----------
    frame : av.VideoFrame
        8-bit planar YUV (see :data:`LUMA_FORMATS`) is used as it is; any
        other format is converted to ``yuv420p`` first. With ``deep``, planar
        YUV deeper than 8 bits (see :data:`DEEP_FORMAT`) is used as it is,
        other formats are converted to ``yuv420p10le``, and the luma goes
        through :func:`upscale_deep`.
    upscaler : Upscaler
    deep : bool
    alpha : bool
        Keep the alpha plane and upscale it with the LUT too, as stored (straight):
        planar YUV with alpha (:data:`LUMA_ALPHA_FORMAT`, :data:`DEEP_ALPHA_FORMAT`)
        is used as it is, other formats are converted to ``yuva420p``
        (``yuva420p10le`` when ``deep``).

    Returns
    -------
    av.VideoFrame
        Same pixel format as the (converted) input, ``scale`` times larger,
        with the input's timestamp and colour tags.
    """
    name = frame.format.name
    if alpha:
        if not (DEEP_ALPHA_FORMAT if deep else LUMA_ALPHA_FORMAT).fullmatch(name):
            frame = frame.reformat(format="yuva420p10le" if deep else "yuva420p")
    elif deep and not DEEP_FORMAT.fullmatch(name):
        frame = frame.reformat(format="yuv420p10le")
    elif not deep and name not in LUMA_FORMATS:
        frame = frame.reformat(format="yuv420p")
    s = upscaler.scale
    # swscale resizes every plane (with correct chroma siting); the luma it
    # computes is then overwritten by the LUT's (alpha's too: plane 3).
    out = frame.reformat(frame.width * s, frame.height * s, interpolation="BICUBIC")
    for p in (0, 3) if alpha else (0,):
        if deep:
            upscale_deep(plane_array(frame.planes[p], 1, np.uint16), upscaler,
                         format_depth(frame.format.name),
                         out=plane_array(out.planes[p], 1, np.uint16))
        else:
            upscaler.up(plane_array(frame.planes[p]), out=plane_array(out.planes[p]))
    _copy_time(frame, out)
    return out


def resize_frame(frame, size: tuple[int, int]):
    """Resize a frame to exactly ``size`` with swscale, keeping its pixel format.

    Parameters
    ----------
    frame : av.VideoFrame
        Any format (``rgb24``, ``rgb48le``, planar YUV...).
    size : (int, int)
        Output ``(width, height)``.

    Returns
    -------
    av.VideoFrame
        Each axis resized by its own pass: ``AREA`` (averaging) when it
        shrinks, ``LANCZOS`` when it grows, with accurate rounding; the
        input's timestamp is kept.
    """
    out = frame
    for w, h in ((size[0], frame.height), size):
        if (w, h) == (out.width, out.height):
            continue
        kind = "LANCZOS" if w > out.width or h > out.height else "AREA"
        out = out.reformat(w, h, interpolation=_flags((kind, "ACCURATE_RND")))
    if out is not frame:
        _copy_time(frame, out)
    return out


def implied_colorspace(width: int, height: int, tagged: int) -> int:
    """The colour matrix (FFmpeg ``AVColorSpace``) a player assumes for a video.

    An untagged video (2, unspecified) is shown as BT.709 (1) when HD
    (width >= 1280 or height > 576) and as BT.601 (6) otherwise, as players
    do. The upscaled output is HD even when the input was not, so its matrix
    is tagged explicitly rather than left to that guess.
    """
    if tagged != 2:
        return tagged
    return 1 if width >= 1280 or height > 576 else 6


def _full_range(frame_or_ctx) -> bool:
    """Whether YUV values span 0..255 (JPEG range) rather than 16..235."""
    fmt = frame_or_ctx.format.name if frame_or_ctx.format is not None else ""
    return int(frame_or_ctx.color_range) == 2 or fmt.startswith("yuvj")


#: Luma weights ``(Kr, Kb)`` of the colour matrices, by FFmpeg ``AVColorSpace``.
_MATRIX_WEIGHTS = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114),
                   7: (0.212, 0.087), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}

_PLANAR_YUV = re.compile(r"yuv(420|422|444)p(?:(9|10|12|14|16)le)?")


def rgb_to_full_range_yuv(frame, pix_fmt: str, colorspace: int):
    """Convert an RGB frame to full-range planar YUV with exact, rounded arithmetic.

    swscale's RGB to full-range YUV (FFmpeg 8.1) leaves mean chroma about 0.5
    code values low whatever the flags, so full-range outputs are converted
    here instead (limited range through swscale is unbiased).

    Parameters
    ----------
    frame : av.VideoFrame
        ``rgb24`` or ``rgb48le``.
    pix_fmt : str
        ``yuv420p``, ``yuv422p`` or ``yuv444p``, optionally with a depth
        suffix (``yuv420p10le``).
    colorspace : int
        FFmpeg ``AVColorSpace``, one of :data:`_MATRIX_WEIGHTS`.

    Returns
    -------
    av.VideoFrame or None
        ``pix_fmt``, tagged full range; None when this conversion does not
        cover the formats or matrix (the caller then uses swscale).

    Notes
    -----
    With ``n`` bits, ``Y = round(y * (2**n - 1))`` and ``C = round(c *
    (2**n - 1) + 2**(n - 1))`` for ``y`` in 0..1 and ``c`` in -0.5..0.5.
    Chroma is computed per pixel, then subsampled at MPEG-2/H.264's default
    siting: horizontally co-sited with even luma columns (taps 1/4, 1/2, 1/4),
    vertically between two rows (their mean). Both filters keep the mean.
    """
    m = _PLANAR_YUV.fullmatch(pix_fmt)
    fmt = frame.format.name
    if m is None or colorspace not in _MATRIX_WEIGHTS or fmt not in ("rgb24", "rgb48le"):
        return None
    bits = int(m.group(2) or 8)
    deep = fmt == "rgb48le"
    rgb = plane_array(frame.planes[0], 3, np.uint16 if deep else np.uint8).astype(np.float32)
    rgb *= np.float32(1 / (65535 if deep else 255))
    kr, kb = _MATRIX_WEIGHTS[colorspace]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb = (b - y) * np.float32(0.5 / (1 - kb))
    cr = (r - y) * np.float32(0.5 / (1 - kr))
    top = 2 ** bits - 1
    chroma = []
    for c in (cb, cr):
        if m.group(1) in ("420", "422"):
            padded = np.pad(c, ((0, 0), (1, 1)), mode="edge")
            c = 0.25 * padded[:, 0:-2:2] + 0.5 * padded[:, 1:-1:2] + 0.25 * padded[:, 2::2]
        if m.group(1) == "420":
            c = 0.5 * (c[0::2] + c[1::2])
        chroma.append(c * np.float32(top) + np.float32(2 ** (bits - 1)))
    out = _av().VideoFrame(frame.width, frame.height, pix_fmt)
    dtype = np.uint8 if bits == 8 else np.uint16
    for plane, values in zip(out.planes, (y * np.float32(top), *chroma), strict=True):
        plane_array(plane, 1, dtype)[...] = np.clip(np.rint(values), 0, top)
    out.colorspace, out.color_range = colorspace, 2
    _copy_time(frame, out)
    return out


def to_output_format(frame, pix_fmt: str, colorspace: int, full_range: bool):
    """Convert an upscaled frame to the encoder's pixel format, keeping the input's colours.

    Parameters
    ----------
    frame : av.VideoFrame
    pix_fmt : str
        The encoder's pixel format.
    colorspace : int
        The input's colour matrix (FFmpeg ``AVColorSpace``, see
        :func:`implied_colorspace`).
    full_range : bool
        Whether the input's YUV values are full range.

    Notes
    -----
    Converted with :data:`FROM_RGB_FLAGS` (accurate rounding; chroma from
    every RGB pixel), except RGB to full-range planar YUV, which goes through
    :func:`rgb_to_full_range_yuv`; RGBA to planar YUV with alpha goes through
    :func:`_rgba_to_yuva`.
    """
    if frame.format.name == pix_fmt:
        return frame
    if frame.format.name in _RGBA_FORMATS and (LUMA_ALPHA_FORMAT.fullmatch(pix_fmt)
                                               or DEEP_ALPHA_FORMAT.fullmatch(pix_fmt)):
        return _rgba_to_yuva(frame, pix_fmt, colorspace, full_range)
    if full_range:
        exact = rgb_to_full_range_yuv(frame, pix_fmt, colorspace)
        if exact is not None:
            return exact
    # 1 = MPEG (limited), 2 = JPEG (full): the numbers FFmpeg uses
    rng = 2 if full_range else 1
    src_range = None
    if not frame.format.name.startswith("rgb"):
        src_range = 2 if _full_range(frame) else 1
    out = frame.reformat(format=pix_fmt, src_colorspace=colorspace, dst_colorspace=colorspace,
                         src_color_range=src_range, dst_color_range=rng,
                         interpolation=_flags(FROM_RGB_FLAGS))
    _copy_time(frame, out)
    return out


#: The packed RGBA formats of :func:`upscale_frame_alpha`, and the same without alpha.
_RGBA_FORMATS = {"rgba": "rgb24", "rgba64le": "rgb48le"}


def _rgba_to_yuva(frame, pix_fmt: str, colorspace: int, full_range: bool):
    """RGBA to planar YUV with alpha: the colour as from RGB, the alpha rescaled exactly.

    swscale's RGBA to YUVA moves some alpha values by one (FFmpeg 8.1); this
    keeps an 8-bit alpha as it is (and rounds it to the nearest value at
    other depths), and the colour exactly as :func:`to_output_format` makes
    it without alpha.
    """
    rgb = frame.reformat(format=_RGBA_FORMATS[frame.format.name])  # drops alpha, exact
    colour = to_output_format(rgb, pix_fmt.replace("yuva", "yuv", 1), colorspace, full_range)
    out = _av().VideoFrame(frame.width, frame.height, pix_fmt)
    bits = format_depth(pix_fmt)
    dtype = np.uint8 if bits == 8 else np.uint16
    for p in range(3):
        plane_array(out.planes[p], 1, dtype)[...] = plane_array(colour.planes[p], 1, dtype)
    src_deep = frame.format.name == "rgba64le"
    alpha = plane_array(frame.planes[0], 4, np.uint16 if src_deep else np.uint8)[..., 3]
    top, src_top = 2 ** bits - 1, 65535 if src_deep else 255
    plane_array(out.planes[3], 1, dtype)[...] = (
        alpha if top == src_top else np.rint(alpha * (top / src_top)))
    out.colorspace, out.color_range = colorspace, 2 if full_range else 1
    _copy_time(frame, out)
    return out


def _copy_time(src, dst) -> None:
    dst.pts = src.pts
    if src.time_base is not None:  # frames made from arrays have none
        dst.time_base = src.time_base


def _display_matrix(frame) -> list[int] | None:
    """The frame's display matrix side data (rotation/flip), as 9 int32, or None."""
    container = frame.side_data
    for entry in container:
        # PyAV before 19 iterates over the side data itself, 19 over its types (keys).
        side = entry if hasattr(entry, "type") else container[entry]
        if side.type.name == "DISPLAYMATRIX":
            raw = bytes(side)
            if len(raw) == 36:
                return list(struct.unpack("=9i", raw))
    return None


def quarter_turned(matrix: list[int] | None, metadata) -> bool:
    """Whether a video is displayed turned by 90 or 270 degrees (its width and height swap).

    Parameters
    ----------
    matrix : list of 9 int or None
        The display matrix of its frames (:func:`_display_matrix`).
    metadata : mapping
        The stream's tags; the legacy ``rotate`` tag (clockwise degrees) is
        used when there is no matrix.
    """
    if matrix is not None:
        # [a b u; c d v; x y w], 16.16 fixed point: a quarter turn has a = d = 0
        return abs(matrix[0]) < abs(matrix[1])
    try:
        return round(float(metadata.get("rotate", 0))) % 180 == 90
    except ValueError:
        return False


def demuxed(inp, vin, copies):
    """The decoded frames of ``vin`` and the packets of the ``copies`` streams, in demux order.

    Yields
    ------
    av.VideoFrame or av.Packet
    """
    for packet in inp.demux([vin, *copies]):
        if packet.stream.index == vin.index:
            yield from vin.decode(packet)  # the final empty packet flushes the decoder
        elif packet.dts is not None and packet.size:  # skip demuxer flush packets
            yield packet


def _peek_frame(av, items):
    """The first video frame of ``items`` (None if none) and an iterator of all of them."""
    head = []
    for item in items:
        head.append(item)
        if not isinstance(item, av.Packet):
            return item, itertools.chain(head, items)
    return None, iter(head)


# ---------------------------------------------------------------------------
# The pipeline


class _CancelledError(Exception):
    """Raised in a pipeline thread when another stage failed or was interrupted."""


class _Pipe:
    """A bounded queue whose blocking calls give up when the run is cancelled."""

    def __init__(self, cancel: threading.Event, size: int = _QUEUE_SIZE):
        self._q: queue.Queue = queue.Queue(size)
        self._cancel = cancel

    def put(self, item) -> None:
        while True:
            if self._cancel.is_set():
                raise _CancelledError
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                pass

    def get(self):
        while True:
            if self._cancel.is_set():
                raise _CancelledError
            try:
                return self._q.get(timeout=0.1)
            except queue.Empty:
                pass


class _Worker(threading.Thread):
    """A pipeline thread that records its exception and cancels the others."""

    def __init__(self, name: str, target, cancel: threading.Event):
        super().__init__(name=f"lutsr-{name}", daemon=True)
        self._work, self._cancel = target, cancel
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except _CancelledError:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            self.error = exc
            self._cancel.set()


_END = object()


@dataclass
class VideoReport:
    """What :func:`upscale_video` did.

    Attributes
    ----------
    frames : int
        Frames encoded.
    seconds : float
        Wall time from opening the input to closing the output.
    input_size, output_size : tuple of int
        ``(width, height)`` of the decoded and encoded frames.
    copied_streams : list of str
        The audio and subtitle streams copied, e.g. ``["audio:aac", "subtitle:mov_text"]``.
    luma_only : bool
    turned : bool
        The video is displayed turned a quarter turn: its displayed sizes are
        the sizes above, height by width.
    notes : list of str
        What the run did that was not asked and said on stderr (an odd size
        made even for 4:2:0, a variable frame rate written constant in y4m).
    """

    frames: int
    seconds: float
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    copied_streams: list[str] = field(default_factory=list)
    luma_only: bool = False
    turned: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Frames per second, end to end."""
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def output_muxer(dst: str | os.PathLike, format: str | None) -> str:
    """The FFmpeg muxer of an output: ``format`` (:data:`PIPE_FORMATS`) or ``dst``'s suffix."""
    if format is not None:
        if format not in PIPE_FORMATS:
            raise ValueError(f"unknown output format {format!r}; use one of "
                             f"{', '.join(sorted(PIPE_FORMATS))}")
        return PIPE_FORMATS[format]
    if str(dst) == "-":
        raise ValueError("writing video to stdout needs --format (e.g. --format y4m)")
    return container_format(dst)


def container_format(path: str | os.PathLike) -> str:
    """The FFmpeg muxer for an output path, from its suffix (see :data:`CONTAINERS`)."""
    suffix = Path(path).suffix.lower()
    if suffix not in CONTAINERS:
        raise ValueError(f"{path}: unknown video suffix {suffix!r}; use one of "
                         f"{', '.join(sorted(CONTAINERS))}")
    return CONTAINERS[suffix]


def parse_bitrate(text: str | int) -> int:
    """``"4M"``, ``"800k"`` or ``2500000`` as bits per second, at most :data:`MAX_BITRATE`."""
    if isinstance(text, int):
        value = text
    else:
        t = text.strip().lower()
        mult = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(t[-1:], 1)
        try:
            number = float(t[:-1] if mult > 1 else t) * mult
        except ValueError:
            number = math.nan
        if math.isnan(number):
            raise ValueError(f"bitrate must look like 4M, 800k or 2500000, got {text!r}")
        # bounded as a float: 1e30 would overflow the encoder's integer, inf int()
        value = int(number) if 0 < number <= MAX_BITRATE else -1 if number <= 0 else \
            MAX_BITRATE + 1
    if value <= 0:
        raise ValueError(f"bitrate must be positive, got {text!r}")
    if value > MAX_BITRATE:
        raise ValueError(f"bitrate {text} is too large: at most {MAX_BITRATE // 10**9}G "
                         "(bits per second)")
    return value


# Audio codecs WebM holds as they are.
_WEBM_AUDIO = frozenset({"opus", "vorbis"})


def _holds(out, muxer: str, codec_name: str) -> bool:
    """Whether the output container can hold a stream of ``codec_name``."""
    if muxer == "mpegts":
        return codec_name in MPEGTS_CODECS
    return codec_name in out.supported_codecs


def open_encoder(av, name: str):
    """An FFmpeg encoder by name, checked to be usable here.

    A known encoder may still be unusable: a hardware one (``h264_nvenc``,
    ``h264_qsv``...) fails to open without its GPU and driver. It is opened
    on a small frame size now (256x256: above the hardware encoders' minimum
    sizes), so that failure is one clear line before any work rather than an
    errno at the first frame.

    Raises
    ------
    ValueError
        Unknown, not a video encoder, or not usable on this machine.
    """
    try:
        encoder = av.Codec(name, "w")
    except Exception as exc:  # av.codec.codec.UnknownCodecError
        raise ValueError(f"unknown encoder {name!r}; try libx264") from exc
    if encoder.type != "video":
        raise ValueError(f"{name!r} is not a video encoder")
    if name.endswith(_HARDWARE_SUFFIXES):
        ctx = encoder.create()
        ctx.width, ctx.height, ctx.time_base = 256, 256, Fraction(1, 25)
        formats = [f.name for f in (encoder.video_formats or [])]
        ctx.pix_fmt = "yuv420p" if "yuv420p" in formats or not formats else formats[0]
        try:
            ctx.open()
        except Exception as exc:  # av.error.FFmpegError with an errno that says little
            raise ValueError(f"encoder {name} is not usable here (it needs a hardware "
                             "device and driver this machine does not offer); use a software "
                             "encoder such as --codec libx264") from exc
    return encoder


# Hardware encoders, which need a device to open.
_HARDWARE_SUFFIXES = ("_nvenc", "_qsv", "_vaapi", "_amf", "_v4l2m2m", "_videotoolbox",
                      "_mf", "_vulkan", "_omx", "_rkmpp", "_mediacodec", "_d3d12va")


# The options this module sets, of the encoders that have them (as PyAV 18 lists
# them for FFmpeg 7), for PyAV 17, which cannot list an encoder's options.
_KNOWN_OPTIONS = {"libx264": {"crf", "preset"}, "libx265": {"crf", "preset"},
                  "libsvtav1": {"crf", "preset"}, "libvpx": {"crf"}, "libvpx-vp9": {"crf"},
                  "libaom-av1": {"crf"}}


def _private_options(codec) -> set[str]:
    """The encoder's own option names (on PyAV 17, those of :data:`_KNOWN_OPTIONS`)."""
    options = getattr(codec.create(), "supported_options", None)
    if options is None:
        return _KNOWN_OPTIONS.get(codec.name, set())
    return {o.name for o in options.private}


def _pick_video_stream(av, container):
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:  # skip cover art
            return stream
    raise ValueError(f"{container.name}: no video stream")


def _estimate_frames(container, stream) -> int | None:
    if stream.frames:
        return stream.frames
    rate = stream.average_rate or stream.guessed_rate
    if rate and stream.duration and stream.time_base:
        return round(stream.duration * stream.time_base * rate)
    if rate and container.duration:
        return round(container.duration / 1_000_000 * rate)
    return None


def read_head(src: str | os.PathLike, pipe: bool, size: int = 4096) -> bytes:
    """The first bytes of an input, without consuming them (stdin is peeked, not read).

    Parameters
    ----------
    src : path
        The input file (ignored when ``pipe``).
    pipe : bool
        Peek at ``sys.stdin``'s buffer instead: one read of the pipe at most,
        so possibly fewer than ``size`` bytes, and none when stdin cannot peek.
    size : int

    Returns
    -------
    bytes
        At most ``size`` bytes; used to name what is wrong with an input that
        FFmpeg refuses, and to read a YUV4MPEG2 header (:func:`parse_y4m_header`).
    """
    if not pipe:
        with open(src, "rb") as f:
            return f.read(size)
    peek = getattr(getattr(sys.stdin, "buffer", None), "peek", None)
    try:
        return peek(size)[:size] if peek is not None else b""
    except (OSError, ValueError):  # closed or unreadable: FFmpeg will say so
        return b""


def parse_y4m_header(head: bytes) -> dict[str, str] | None:
    """The tags of a YUV4MPEG2 stream header, or None when ``head`` is not a whole one.

    Returns
    -------
    dict or None
        ``{"W": "640", "H": "480", "F": "25:1", "C": "420mpeg2", "XCOLORRANGE":
        "FULL", ...}``: each tag by its letter, and the ``X`` tags by name;
        the values as written (not checked: see :func:`check_y4m_header`).
    """
    if not head.startswith(b"YUV4MPEG2 ") or b"\n" not in head:
        return None  # not y4m, or a pipe's first read ended inside the header: not judged
    tags = {}
    for token in head.split(b"\n", 1)[0].split()[1:]:
        text = token.decode("latin-1")
        if text.startswith("X"):
            key, _, value = text.partition("=")
            tags[key] = value
        else:
            tags.setdefault(text[0], text[1:])
    return tags


def check_frame_size(size: tuple[int, int], what: str, hint: str = "") -> None:
    """Refuse a frame size FFmpeg cannot allocate, in one line (it says only "Invalid argument").

    Parameters
    ----------
    size : (int, int)
        ``(width, height)``.
    what : str
        How the message names the size (``"the output size"``...).
    hint : str
        What to do, appended after a semicolon.

    Raises
    ------
    ValueError
        A side below 1, or more than :data:`MAX_FRAME_BYTES` (see there).
    """
    w, h = size
    if w < 1 or h < 1:
        raise ValueError(f"{what} {w}x{h} is not a frame size: both sides must be at least 1"
                         + (f"; {hint}" if hint else ""))
    if (w + 128) * (h + 128) * 8 >= MAX_FRAME_BYTES:
        raise ValueError(f"{what} {w}x{h} is too large for a video frame: FFmpeg's frames hold "
                         "at most about 268 million pixels (16000x16000 fits, 16384x16384 "
                         "does not)" + (f"; {hint}" if hint else ""))


def check_y4m_header(tags: dict[str, str], name: str) -> None:
    """Refuse a YUV4MPEG2 header whose frame size FFmpeg would refuse cryptically.

    FFmpeg answers a width of 0 or -5 with "Device or resource busy" and a
    huge one with "Invalid argument"; this says what is wrong, naming ``name``.

    Raises
    ------
    ValueError
    """
    w, h = tags.get("W", ""), tags.get("H", "")
    if not (w.isdigit() and h.isdigit()) or int(w) < 1 or int(h) < 1:
        raise ValueError(f"{name}: the YUV4MPEG2 header gives the frame size W{w} H{h}: both "
                         "must be whole numbers above 0 (the stream is damaged, or its "
                         "writer is broken)")
    check_frame_size((int(w), int(h)), f"{name}: the YUV4MPEG2 header's frame size",
                     "the stream is damaged, or its writer is broken")


def _mp4_index_last(head: bytes) -> bool:
    """Whether an MP4/MOV beginning with ``head`` has its media data (mdat) before its index."""
    pos = 0
    while pos + 8 <= len(head):
        size, kind = struct.unpack(">I4s", head[pos:pos + 8])
        if kind in (b"moov", b"mdat"):
            return kind == b"mdat"
        if size == 1 and pos + 16 <= len(head):  # a 64-bit size follows the type
            size = struct.unpack(">Q", head[pos + 8:pos + 16])[0]
        if size < 8:
            return False
        pos += size
    return False


def input_error(exc: Exception, name: str, head: bytes, *, pipe: bool, raw: str | None = None,
                opening: bool = False) -> ValueError:
    """One line on an input FFmpeg failed to open or decode: what is wrong and what to do.

    Parameters
    ----------
    exc : av.error.FFmpegError
    name : str
        The input as the user named it (``"stdin"`` for a pipe).
    head : bytes
        The input's first bytes (:func:`read_head`).
    pipe : bool
        The input is stdin.
    raw : str, optional
        ``"WxH pix_fmt"`` of raw (headerless) input.
    opening : bool
        The error came from opening the input, not from reading its frames.
    """
    reason = getattr(exc, "strerror", None) or str(exc)
    if raw is not None:
        return ValueError(f"{name}: the raw input does not divide into whole {raw} frames (it "
                          "ends in a partial one): check --input-size and --input-pix-fmt")
    if pipe and head[4:8] == b"ftyp" and _mp4_index_last(head):
        return ValueError(f"{name}: this MP4/MOV has its index (moov atom) after the video "
                          "data, which cannot be read from a pipe; give the file name instead "
                          "of -, or move the index to the front first (ffmpeg -i IN -c copy "
                          "-movflags +faststart OUT.mp4)")
    what = "stream" if pipe else "file"
    if opening:
        return ValueError(f"{name}: cannot open as a video ({reason}): the {what} is damaged, "
                          "incomplete, or not a video")
    return ValueError(f"{name}: the video cannot be decoded ({reason}): the {what} is "
                      "damaged or incomplete")


def _explained(av, items, explain):
    """``items`` (a generator that demuxes and decodes), its FFmpeg errors ``explain(exc)``."""
    try:
        yield from items
    except av.error.FFmpegError as exc:
        raise explain(exc) from exc


def subsampled_size(size: tuple[int, int], pix_fmt: str) -> tuple[int, int]:
    """``size`` with each side made a multiple of ``pix_fmt``'s chroma subsampling on it.

    Returns
    -------
    (int, int)
        A side that is not a multiple (an odd width or height of 4:2:0,
        which encoders refuse) is rounded down to one, or up from below it.
    """
    fmt = _av().VideoFormat(pix_fmt)
    steps = (64 // fmt.chroma_width(64), 64 // fmt.chroma_height(64))
    return tuple(max(step, n - n % step) for n, step in zip(size, steps, strict=True))


def _note(text: str, quiet: bool) -> None:
    """Say ``text`` on stderr (one line), unless ``quiet``."""
    if not quiet:
        print(f"lutsr: note: {text}", file=sys.stderr, flush=True)


def upscale_video(src: str | os.PathLike, dst: str | os.PathLike, lut=None, *,
                  backend: str = "auto", threads: int | None = None, luma_only: bool = False,
                  codec: str | None = None, crf: float | None = None,
                  bitrate: str | int | None = None, pix_fmt: str | None = None,
                  preset: str | None = None, audio: bool = True, subtitles: bool = True,
                  allow_8bit: bool = False, overwrite: bool = False, progress: bool = False,
                  upscaler: Upscaler | None = None, outscale: float | None = None,
                  size: tuple[int, int] | None = None,
                  format: str | None = None, input_size: tuple[int, int] | None = None,
                  input_pix_fmt: str = "yuv420p", input_rate: str | float = 25,
                  quiet: bool = False, alpha: bool = True,
                  straight_alpha: bool = False) -> VideoReport:
    """Upscale a video file with a LUT model.

    Parameters
    ----------
    src, dst : path or "-"
        Input video (anything FFmpeg reads; ``"-"``: stdin, format probed)
        and output file (``"-"``: stdout, ``format`` required); the output's
        suffix picks the container (see :data:`CONTAINERS`) unless ``format``
        is given.
    lut : LUT, str, path or None
        The model (see :class:`lutsr.Upscaler`); ignored if ``upscaler`` is
        given. None with ``outscale`` or ``size``: the bundled LUT picked by
        :func:`lutsr.outsize.pick_lut` (none for a downscale).
    backend, threads
        Passed to :class:`lutsr.Upscaler`.
    luma_only : bool
        LUT on the luma plane only, bicubic chroma (see the module docstring).
    codec : str, optional
        FFmpeg encoder name (``libx264``, ``libx265``, ``libvpx-vp9``, ``mpeg4``...);
        default :data:`DEFAULT_CODECS` for the muxer, else ``libx264``.
    crf : float, optional
        Constant-quality factor, for encoders that have one (default
        :data:`DEFAULT_CRF` unless ``bitrate`` is given).
    bitrate : str or int, optional
        Target bitrate such as ``"8M"``; exclusive with ``crf``.
    pix_fmt : str, optional
        Encoded pixel format. Default: the input's YUV layout when the
        encoder supports it (so ``yuv444p`` stays 4:4:4 and
        ``yuv420p10le`` stays 10-bit), else ``yuv420p`` (``yuv420p10le`` for
        an input deeper than 8 bits, when the encoder takes it).
    preset : str, optional
        Encoder speed preset (default :data:`DEFAULT_PRESETS`).
    audio, subtitles : bool
        Copy the audio / subtitle streams (all of them).
    allow_8bit : bool
        Accept writing fewer bits per sample than the input has (a 10-bit
        input with an 8-bit-only encoder or ``pix_fmt``); refused otherwise.
    overwrite : bool
        Replace an existing ``dst``.
    progress : bool
        Show a progress bar on stderr.
    upscaler : Upscaler, optional
        A ready :class:`lutsr.Upscaler` to use instead of building one.
    outscale : float, optional
        Output factor > 0 (e.g. 3 or 1.5): each side ``round(outscale *
        side)``, made even where the pixel format needs it (see
        :func:`subsampled_size`). The LUT's upscale is resized by
        :func:`resize_frame`.
    size : (int, int), optional
        Output ``(width, height)`` as displayed (a clip turned a quarter turn
        by its display matrix is stored ``height x width``); exclusive with
        ``outscale``.
    format : str, optional
        Output format name from :data:`PIPE_FORMATS` (``"y4m"``...); needed
        when ``dst`` is ``"-"``, else the suffix decides.
    input_size : (int, int), optional
        Read ``src`` as raw frames of this ``(width, height)`` (no header,
        e.g. ``ffmpeg -f rawvideo -``), in ``input_pix_fmt`` at ``input_rate``
        frames per second (a number or a ratio such as ``"30000/1001"``).
    quiet : bool
        Silence the encoders' own log lines (FFmpeg's log level is raised to
        errors for the run, then restored; x265 is told the same) and
        lutsr's notes (``lutsr: note: ...`` on stderr; they are in the
        report's ``notes`` either way).
    alpha : bool
        Keep the input's alpha channel, if it has one (see the module
        docstring): in ``pix_fmt`` when it has alpha, else in the closest
        format with alpha the encoder takes (:func:`alpha_pix_fmt`); refused
        when there is none. False drops it (the colour stored under
        transparent pixels then shows).
    straight_alpha : bool
        Upscale alpha videos channel by channel as stored instead of
        premultiplied; required with ``luma_only`` for an alpha kept.

    Returns
    -------
    VideoReport

    Raises
    ------
    FileExistsError
        ``dst`` exists and ``overwrite`` is false.
    ValueError
        Bad options, no video stream, a stream the output container cannot
        hold, ``dst`` is ``src``, an output shallower than the input without
        ``allow_8bit``, an output frame too large for FFmpeg
        (:func:`check_frame_size`), an input FFmpeg cannot open or decode
        (a damaged file, a bad y4m header, raw input that is not whole frames,
        an MP4 on a pipe with its index last: :func:`input_error`).
    av.error.FFmpegError
        The encoder or muxer fails.

    Notes
    -----
    The output appears at ``dst`` only when complete (see
    :func:`lutsr.safefiles.atomic_output`); on any error or interruption it is
    not created and ``src`` is never modified.
    """
    from .outsize import output_size, pick_lut

    av = _av()
    t0 = time.perf_counter()
    src_pipe, dst_pipe = str(src) == "-", str(dst) == "-"
    src, dst = Path(src), Path(dst)
    if not src_pipe and not src.is_file():
        raise FileNotFoundError(f"no such video file: {src}")
    muxer = output_muxer(dst, format)
    # the LUT file read is an input too (an upscaler given makes lut unused)
    reads = (() if src_pipe else (src,)) + (lut_inputs(lut) if upscaler is None else ())
    if not dst_pipe:
        check_output(dst, overwrite, reads)
    if crf is not None and bitrate is not None:
        raise ValueError("give either crf or bitrate, not both")
    if outscale is not None and size is not None:
        raise ValueError("give either outscale or size, not both")
    if codec is None:
        codec = DEFAULT_CODECS.get(muxer, "libx264")
    if codec not in av.codecs_available and codec in DEFAULT_CODECS.values():
        raise ValueError(f"{muxer} output needs the {codec} encoder, which this FFmpeg "
                         "build lacks; choose another container (e.g. .mkv) or --codec")
    encoder = open_encoder(av, codec)
    with ffmpeg_log_level(av, True):  # listing the options warns of deprecated ones
        options = _private_options(encoder)
    if crf is not None and "crf" not in options:
        raise ValueError(f"encoder {codec} has no CRF setting; use bitrate instead")
    if preset is not None and "preset" not in options:
        raise ValueError(f"encoder {codec} has no preset setting")
    if preset is not None and preset not in KNOWN_PRESETS.get(encoder.name, (preset,)):
        raise ValueError(f"encoder {codec} has no preset {preset!r}; choose one of "
                         f"{', '.join(KNOWN_PRESETS[encoder.name])}")
    bit_rate = parse_bitrate(bitrate) if bitrate is not None else None
    if outscale is not None:
        output_size((1, 1), outscale=outscale)  # a bad factor fails before any reading
    resized = outscale is not None or size is not None
    if upscaler is None and not resized:
        upscaler = Upscaler(lut, backend=backend, threads=threads)

    src_name = "stdin" if src_pipe else str(src)
    demuxer, demux_options = None, None
    if input_size is not None:
        output_size((1, 1), size=input_size)  # two positive integers
        try:
            av.VideoFormat(input_pix_fmt)
        except Exception as exc:  # av's ValueError names it badly
            raise ValueError(f"unknown input pixel format {input_pix_fmt!r}") from exc
        demuxer = "rawvideo"
        demux_options = {"video_size": f"{input_size[0]}x{input_size[1]}",
                         "pixel_format": input_pix_fmt, "framerate": str(input_rate)}
    head = read_head(src, src_pipe)
    y4m_tags = parse_y4m_header(head) if demuxer is None else None
    if y4m_tags is not None:
        check_y4m_header(y4m_tags, src_name)
    raw = None if input_size is None else f"{input_size[0]}x{input_size[1]} {input_pix_fmt}"

    def explain(exc, opening=False):
        return input_error(exc, src_name, head, pipe=src_pipe, raw=raw, opening=opening)

    try:
        inp = av.open(sys.stdin.buffer if src_pipe else str(src), format=demuxer,
                      options=demux_options)
    except av.error.FFmpegError as exc:
        raise explain(exc, opening=True) from exc
    try:
        vin = _pick_video_stream(av, inp)
        vin.thread_type = "AUTO"  # frame + slice threads in the decoder
        copies = [st for st in inp.streams
                  if (audio and st.type == "audio") or (subtitles and st.type == "subtitle")]
        # The display matrix (which sizes are displayed) comes with the first frame.
        with ffmpeg_log_level(av, quiet):
            first, items = _peek_frame(av, _explained(av, demuxed(inp, vin, copies), explain))
        turned = quarter_turned(None if first is None else _display_matrix(first), vin.metadata)
        in_size = (vin.codec_context.width, vin.codec_context.height)
        if resized:
            # --size is the displayed size (as for images, after EXIF rotation)
            shown = output_size(in_size[::-1] if turned else in_size, outscale=outscale,
                                size=size)
            out_size = shown[::-1] if turned else shown
            if upscaler is None:
                if lut is None:
                    lut = pick_lut(in_size, out_size)
                if lut is not None:
                    upscaler = Upscaler(lut, backend=backend, threads=threads)
        else:
            out_size = (in_size[0] * upscaler.scale, in_size[1] * upscaler.scale)
        check_frame_size(out_size, "the output size", "choose a smaller --size or --outscale")
        # The chroma siting, kept on the output (a y4m header's C420mpeg2...)
        siting = (CODEC_SITING.get(vin.codec_context.name) if y4m_tags is None
                  else Y4M_SITING.get(y4m_tags.get("C", "420")))
        outcome = {"size": out_size, "notes": []}  # what the run decides: see _run_pipeline
        copied_names = [f"{st.type}:{st.codec_context.name}" for st in copies]
        if muxer in AUDIO_TRANSCODE:  # named as written: see write_to
            copied_names = [n if n.split(":")[1] in _WEBM_AUDIO or not n.startswith("audio")
                            else f"{n} -> {AUDIO_TRANSCODE[muxer]}" for n in copied_names]

        kind = f"{format} output" if format is not None else f"a {dst.suffix} file"

        def write_to(target) -> int:
            out = av.open(target, "w", format=muxer)
            try:
                if not _holds(out, muxer, encoder.canonical_name):
                    raise ValueError(f"{kind} cannot hold {encoder.canonical_name} "
                                     "video; choose another --codec or container")
                audio_codec = AUDIO_TRANSCODE.get(muxer)
                transcode = {st.index for st in copies if st.type == "audio"
                             and audio_codec is not None
                             and not _holds(out, muxer, st.codec_context.name)}
                if transcode and audio_codec not in av.codecs_available:
                    raise ValueError(f"{kind} needs the input's audio re-encoded with "
                                     f"{audio_codec}, which this FFmpeg build lacks; use "
                                     "--no-audio or another container (e.g. .mkv)")
                unsupported = [f"{st.type} stream #{st.index} ({st.codec_context.name})"
                               for st in copies if st.index not in transcode
                               and not _holds(out, muxer, st.codec_context.name)]
                if unsupported:
                    raise ValueError(
                        f"{kind} cannot hold the input's "
                        f"{', '.join(unsupported)}; choose another container (e.g. .mkv) or "
                        "drop those streams (--no-audio / --no-subtitles)")
                with ffmpeg_log_level(av, quiet):
                    return _run_pipeline(
                        av, inp, vin, out, copies, upscaler, items=items, luma_only=luma_only,
                        alpha=alpha, straight_alpha=straight_alpha,
                        encoder=encoder, options=options, crf=crf, bit_rate=bit_rate,
                        pix_fmt=pix_fmt, preset=preset, out_size=out_size, progress=progress,
                        desc=src_name if src_pipe else src.name, allow_8bit=allow_8bit,
                        transcode={i: audio_codec for i in transcode}, quiet=quiet,
                        frame_counted=muxer in FRAME_COUNTED, siting=siting,
                        size_given=size is not None, outcome=outcome)
            finally:
                out.close()  # idempotent; the pending file is discarded on error

        if dst_pipe:
            try:
                frames = write_to(sys.stdout.buffer)
                sys.stdout.buffer.flush()
            except Exception as exc:
                # PyAV reports a failed write as its own callback error; say what it was
                if _caused_by(exc, BrokenPipeError):
                    raise BrokenPipeError(errno.EPIPE, "the output pipe was closed by its "
                                                       "reader") from None
                raise
        else:
            with atomic_output(dst, overwrite=overwrite,
                               inputs=reads) as pending:
                frames = write_to(pending.path)
    finally:
        inp.close()
    return VideoReport(frames=frames, seconds=time.perf_counter() - t0, input_size=in_size,
                       output_size=outcome["size"],
                       copied_streams=copied_names,
                       luma_only=luma_only, turned=turned, notes=outcome["notes"])


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


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether ``exc`` or an exception in its cause/context chain is a ``kind``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _alpha_target(vin, encoder, pix_fmt: str | None, muxer: str, *, alpha: bool,
                  luma_only: bool, straight_alpha: bool) -> str | None:
    """The encoded pixel format that keeps the input's alpha; None when there is none to keep.

    Raises
    ------
    ValueError
        The input has alpha and ``alpha`` is true, but the output cannot hold
        it (``pix_fmt``, the encoder or the muxer), or ``luma_only`` without
        ``straight_alpha`` (YUV planes cannot be premultiplied).
    """
    decoded = vin.codec_context.format.name if vin.codec_context.format else ""
    if not alpha or not decoded or not has_alpha(decoded):
        return None
    supported = [f.name for f in (encoder.video_formats or [])]
    only = ENCODER_ALPHA_FORMATS.get(encoder.name)
    if only is not None:
        supported = [n for n in supported if not has_alpha(n) or n in only]
        if pix_fmt is not None and has_alpha(pix_fmt) and pix_fmt not in only:
            raise ValueError(f"{encoder.name} keeps alpha only as {' or '.join(only)}; use "
                             "that --pix-fmt, or pass --no-alpha to drop the alpha")
    raw = RAW_ALPHA_FORMATS.get(muxer, ()) if not supported else ()
    if pix_fmt is not None and raw and pix_fmt not in raw:
        shown = {v: k for k, v in PIPE_FORMATS.items()}.get(muxer, muxer)
        raise ValueError(f"the input has alpha ({decoded}), which {shown} output holds only "
                         f"as {' or '.join(raw)}; use that --pix-fmt, or pass --no-alpha to "
                         "drop the alpha")
    if pix_fmt is not None and not has_alpha(pix_fmt):
        closest = alpha_pix_fmt(decoded, supported, muxer)
        hint = (f"choose one that has (e.g. --pix-fmt {closest})" if closest
                else "choose an encoder that keeps it (e.g. --codec ffv1)")
        raise ValueError(f"the input has alpha ({decoded}) but --pix-fmt {pix_fmt} has none; "
                         f"{hint}, or pass --no-alpha to drop the alpha")
    target = (_choose_pix_fmt(encoder, vin, pix_fmt) if pix_fmt is not None
              else alpha_pix_fmt(decoded, supported, muxer))
    if target is None:
        raise ValueError(f"the input has alpha ({decoded}), which {encoder.name} cannot store; "
                         "choose an encoder that keeps it (e.g. --codec ffv1 in .mkv, or "
                         "--codec png in .mkv or .mov), or pass --no-alpha to drop the alpha")
    if luma_only and not straight_alpha:
        raise ValueError("--luma-only cannot premultiply the input's alpha (it works on YUV "
                         "planes): add --straight-alpha to upscale the alpha plane with the "
                         "LUT as stored, leave out --luma-only, or pass --no-alpha")
    return target


def _choose_pix_fmt(encoder, vin, pix_fmt: str | None) -> str:
    supported = [f.name for f in (encoder.video_formats or [])]
    if pix_fmt is not None:
        if supported and pix_fmt not in supported:
            raise ValueError(f"encoder {encoder.name} does not take pixel format {pix_fmt!r}; "
                             f"it takes {', '.join(supported)}")
        return pix_fmt
    decoded = vin.codec_context.format.name if vin.codec_context.format else ""
    # yuvj* is yuv* with a full-range tag; the tag is set on the stream instead.
    # yuva* here is an alpha the caller drops: its layout is kept without it.
    plain = decoded.replace("yuvj", "yuv").replace("yuva", "yuv")
    deep = DEEP_FORMAT.fullmatch(plain)
    if ((plain in LUMA_FORMATS or deep) and not plain.startswith("gray")
            and (not supported or plain in supported)):
        return plain
    if decoded and format_depth(decoded) > 8:
        # Keep the depth if the encoder can (e.g. yuv444p10le into libsvtav1).
        for depth in range(format_depth(decoded), 17):
            if f"yuv420p{depth}le" in supported:
                return f"yuv420p{depth}le"
    return "yuv420p" if not supported or "yuv420p" in supported else supported[0]


def _check_depth(vin, encoder, target_fmt: str, pix_fmt: str | None, allow_8bit: bool) -> bool:
    """Refuse to lose bits silently; return whether to upscale deeper than 8 bits."""
    decoded = vin.codec_context.format.name if vin.codec_context.format else ""
    in_bits = format_depth(decoded) if decoded else 8
    out_bits = format_depth(target_fmt)
    if out_bits < in_bits and not allow_8bit:
        why = f"--pix-fmt {pix_fmt}" if pix_fmt else f"{encoder.name} as {target_fmt}"
        raise ValueError(f"the input is {in_bits}-bit ({decoded}) but would be written "
                         f"{out_bits}-bit ({why}); pass --allow-8bit to accept the loss, or "
                         "choose a deeper --pix-fmt or --codec (e.g. libx265)")
    return in_bits > 8 and out_bits > 8


def _run_pipeline(av, inp, vin, out, copies, upscaler, *, items, luma_only, encoder, options,
                  crf, bit_rate, pix_fmt, preset, out_size, progress, desc, allow_8bit,
                  transcode=None, quiet=False, frame_counted=False, alpha=True,
                  straight_alpha=False, siting=None, size_given=False, outcome=None) -> int:
    """Set up the output streams, run the three stages, return the frames encoded.

    ``items`` are the video frames and the packets of ``copies``, in demux
    order (:func:`demuxed`); ``transcode`` maps audio stream indices to the
    encoder that re-encodes them (the others in ``copies`` are copied packet
    for packet); ``frame_counted`` gives the video stream a time base of one
    frame; ``alpha`` keeps the input's alpha (see :func:`_alpha_target`);
    ``siting`` is the chroma siting to tag (``"left"``...: :data:`CODEC_SITING`).
    An odd ``out_size`` that ``pix_fmt`` cannot hold is made even, with a note,
    unless ``size_given`` (then refused); ``outcome`` (a dict) receives the
    ``"size"`` written and the ``"notes"`` said.
    """
    transcode = transcode or {}
    rate = vin.average_rate or vin.guessed_rate or Fraction(25)
    vout = out.add_stream(encoder.name, rate=rate)
    vout.width, vout.height = out_size
    alpha_fmt = _alpha_target(vin, encoder, pix_fmt, out.format.name, alpha=alpha,
                              luma_only=luma_only, straight_alpha=straight_alpha)
    target_fmt = alpha_fmt or _choose_pix_fmt(encoder, vin, pix_fmt)
    if alpha_fmt in RAW_ALPHA_FORMATS.get(out.format.name, ()):
        out.options["strict"] = "-1"  # y4m's C444alpha is not in its official set
    deep = _check_depth(vin, encoder, target_fmt, pix_fmt, allow_8bit)
    outcome = {"notes": []} if outcome is None else outcome
    w, h = out_size
    even = subsampled_size(out_size, target_fmt)
    if even != tuple(out_size):
        # Subsampled chroma needs even sizes (an x3 or x2.5 of an odd size is odd)
        if size_given:
            raise ValueError(f"the output size {w}x{h} is odd, which {target_fmt} cannot hold; "
                             f"give an even --size (e.g. {even[0]}x{even[1]}) or use --pix-fmt "
                             "yuv444p")
        # yuv444p would keep the size, but many players cannot play it: round instead
        note = f"the output size {w}x{h} is odd, which {target_fmt} cannot hold: writing " \
               f"{even[0]}x{even[1]}"
        _note(note, quiet)
        outcome["notes"].append(note)
        out_size = even
        vout.width, vout.height = out_size
    outcome["size"] = tuple(out_size)
    if out.format.name == "yuv4mpegpipe" and format_depth(target_fmt) > 8:
        # FFmpeg writes C420p10 and the like only when told to go beyond mjpegtools' set
        out.options["strict"] = "-1"
    vout.pix_fmt = target_fmt
    ctx_in, ctx_out = vin.codec_context, vout.codec_context
    time_base = vin.time_base or Fraction(1, 90000)
    if frame_counted:
        time_base = 1 / Fraction(rate)
    ctx_out.time_base = time_base
    vout.time_base = time_base
    if vin.sample_aspect_ratio:
        ctx_out.sample_aspect_ratio = vin.sample_aspect_ratio
    full_range = _full_range(ctx_in)
    colorspace = implied_colorspace(ctx_in.width, ctx_in.height, int(ctx_in.colorspace))
    if colorspace == 0 and not av.VideoFormat(target_fmt).is_rgb:
        # RGB input (PNG, QuickTime Animation: tagged 0, "RGB") written as YUV needs a
        # YUV matrix: tagged RGB, x264 would store the planes as G, B, R
        colorspace = implied_colorspace(ctx_in.width, ctx_in.height, 2)
    ctx_out.colorspace = colorspace
    # Untagged primaries and transfer follow the same guess as the matrix:
    # BT.709 (1) or SMPTE 170M (6), so an SD input does not turn HD-coloured.
    guess = 1 if colorspace == 1 else 6
    ctx_out.color_primaries = ctx_in.color_primaries if ctx_in.color_primaries != 2 else guess
    ctx_out.color_trc = ctx_in.color_trc if ctx_in.color_trc != 2 else guess
    ctx_out.color_range = 2 if full_range else 1
    opts = {}
    if "preset" in options and (preset or DEFAULT_PRESETS.get(encoder.name)):
        opts["preset"] = preset or DEFAULT_PRESETS[encoder.name]
    if bit_rate is not None:
        ctx_out.bit_rate = bit_rate
    elif "crf" in options:
        opts["crf"] = f"{crf if crf is not None else DEFAULT_CRF:g}"
        if encoder.name.startswith("libvpx"):
            ctx_out.bit_rate = 0  # libvpx's constant-quality mode
    if quiet:
        opts.update(QUIET_OPTIONS.get(encoder.name, {}))
    if siting is not None:
        opts["chroma_sample_location"] = siting  # a generic option of every encoder
    vout.options = opts
    for key in ("language", "title"):
        if key in vin.metadata:
            vout.metadata[key] = vin.metadata[key]
    out.metadata.update({k: v for k, v in inp.metadata.items() if k.lower() not in _STALE_TAGS})
    copied = {st.index: out.add_stream_from_template(st) for st in copies
              if st.index not in transcode}
    recoders = {}  # stream index: (decoder context, output stream)
    for st in copies:
        if st.index in transcode:
            ctx = st.codec_context
            ast = out.add_stream(transcode[st.index], rate=48000)
            ast.layout = ctx.layout.name if ctx.layout.nb_channels <= 2 else "stereo"
            recoders[st.index] = (av.CodecContext.create(st.codec_context.name, "r"), ast)
            recoders[st.index][0].extradata = ctx.extradata

    cancel = threading.Event()
    decoded, upscaled = _Pipe(cancel), _Pipe(cancel)
    state = {"matrix": None, "frames": 0, "tick": None, "uneven": False}
    one_rate = out.format.name == "yuv4mpegpipe"  # one frame rate, no timestamps
    fallback_tb = Fraction(1, 1) / rate

    def read() -> None:
        count = 0
        for frame in items:
            if isinstance(frame, av.Packet):
                decoded.put(frame)
                continue
            if count == 0:
                state["matrix"] = _display_matrix(frame)
            if frame.pts is None:  # e.g. raw .h264: number the frames
                frame.pts, frame.time_base = count, fallback_tb
            count += 1
            decoded.put(frame)
        decoded.put(_END)

    def write() -> None:
        held: list = []  # packets that arrive before the first frame fixes the header
        started = False
        last_pts = None
        while True:
            item = upscaled.get()
            if item is _END:
                break
            if isinstance(item, av.Packet):
                if item.stream_index in recoders:
                    dec, ast = recoders[item.stream_index]
                    packets = [p for f in dec.decode(item) for p in ast.encode(f)]
                else:
                    item.stream = copied[item.stream_index]
                    packets = [item]
                if started:
                    for packet in packets:
                        out.mux(packet)
                else:
                    held.extend(packets)
                continue
            if not started:
                # The display matrix goes in the header, which the first mux writes.
                if state["matrix"] is not None:
                    vout.set_display_matrix(state["matrix"])
                elif "rotate" in vin.metadata:  # legacy tag: clockwise degrees
                    vout.set_display_rotation(-float(vin.metadata["rotate"]))
                started = True
                for packet in held:
                    out.mux(packet)
                held.clear()
            frame = to_output_format(item, target_fmt, colorspace, full_range)
            if one_rate and frame.pts is not None and frame.time_base is not None:
                # the frame's place at the constant rate (y4m has no timestamps)
                tick = round(frame.pts * frame.time_base / time_base)
                if state["tick"] is not None and tick != state["tick"] + 1:
                    state["uneven"] = True
                state["tick"] = tick
            frame = _for_encoder(frame, time_base, last_pts)
            last_pts = frame.pts
            for packet in vout.encode(frame):
                out.mux(packet)
            state["frames"] += 1
        if not started:
            name = "stdin" if inp.name.startswith("<") else inp.name  # "<stdin>", "<none>"
            raise ValueError(f"{name}: no video frame could be decoded: the input is "
                             "empty, or ends before its first frame is complete")
        for packet in vout.encode(None):
            out.mux(packet)
        for dec, ast in recoders.values():
            for packet in [p for f in dec.decode(None) for p in ast.encode(f)]:
                out.mux(packet)
            for packet in ast.encode(None):
                out.mux(packet)
        out.close()

    def upscale(frame):
        if alpha_fmt is not None and not luma_only:  # premultiplied around LUT and resize
            return upscale_frame_alpha(frame, upscaler, out_size, colorspace, deep,
                                       straight=straight_alpha)
        if upscaler is None:  # a downscale: no LUT, swscale alone
            big = frame
        elif luma_only:
            big = upscale_frame_luma(frame, upscaler, deep, alpha=alpha_fmt is not None)
        else:
            big = upscale_frame_rgb(frame, upscaler, colorspace, deep)
        if (big.width, big.height) != tuple(out_size):
            big = resize_frame(big, out_size)
        return big

    reader = _Worker("read", read, cancel)
    writer = _Worker("write", write, cancel)
    bar = progress_bar(_estimate_frames(inp, vin), enabled=progress, unit="frame", desc=desc,
                       plain=True, leave=True, dynamic_ncols=True, smoothing=0.1)
    reader.start()
    writer.start()
    try:
        while True:
            item = decoded.get()
            if item is not _END and not isinstance(item, av.Packet):
                item = upscale(item)
                bar.update(1)
            upscaled.put(item)
            if item is _END:
                break
        while writer.is_alive():  # a timed join keeps Ctrl-C responsive
            writer.join(0.1)
        if writer.error is None and reader.error is None:
            finish(bar)
    except _CancelledError:
        pass  # a stage failed: its error is raised below
    except BaseException:
        cancel.set()
        raise
    finally:
        cancel.set()  # no-op on success: both stages have finished
        for stage in (reader, writer):
            stage.join(10)
        bar.close()
    for stage in (reader, writer):
        if stage.error is not None:
            raise stage.error
    if state["uneven"]:
        note = (f"the input's frame rate varies, but y4m holds one constant rate: its "
                f"{state['frames']} frames were written one each at the average rate, "
                f"{float(rate):.6g} fps (the length is kept, single frames may show early "
                "or late)")
        _note(note, quiet)
        outcome["notes"].append(note)
    return state["frames"]


def _for_encoder(frame, time_base: Fraction, last_pts: int | None):
    """Let the encoder choose the frame type; timestamp in its time base, strictly increasing."""
    # swscale copies the decoded frame's picture type (I/P/B), and libx264
    # would obey it: the input's GOP structure, not the encoder's, would win.
    frame.pict_type = 0  # AV_PICTURE_TYPE_NONE
    if frame.time_base is not None and frame.time_base != time_base and frame.pts is not None:
        frame.pts = round(frame.pts * frame.time_base / time_base)
    frame.time_base = time_base
    if last_pts is not None and frame.pts <= last_pts:
        # Encoders reject repeated timestamps (seen in damaged files); nudge by one tick.
        frame.pts = last_pts + 1
    return frame
