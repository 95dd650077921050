"""Colour matrices and ranges, and the conversion of an upscaled frame to the encoder's format.

Both conversions ask swscale for accurate rounding and full-resolution chroma
(:data:`TO_RGB_FLAGS`, :data:`FROM_RGB_FLAGS`): its default fast path from
subsampled YUV to RGB darkens a photo by about one code value of mean luma.
RGB to full-range YUV and RGBA to YUV with alpha are computed here instead
(:func:`rgb_to_full_range_yuv`, :func:`_rgba_to_yuva`), as swscale's are biased.
"""

from __future__ import annotations

import re

import numpy as np

from .avutil import (
    DEEP_ALPHA_FORMAT,
    LUMA_ALPHA_FORMAT,
    copy_time,
    format_depth,
    import_av,
    plane_array,
    sws_flags,
)

#: swscale flags from YUV to RGB: chroma upsampled bicubically to full
#: resolution (``FULL_CHR_H_INT``) and accurate rounding (``ACCURATE_RND``).
#: Without them the fast table path is used, which for 4:2:0 input shifts
#: mean luma by -0.5 to -1.2 code values on a photo.
TO_RGB_FLAGS = ("BICUBIC", "ACCURATE_RND", "FULL_CHR_H_INT")


#: swscale flags from RGB to YUV: chroma computed from every RGB pixel
#: (``FULL_CHR_H_INP``), then downsampled bicubically, with accurate rounding.
FROM_RGB_FLAGS = ("BICUBIC", "ACCURATE_RND", "FULL_CHR_H_INP")


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


def is_full_range(frame_or_ctx) -> bool:
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
    out = import_av().VideoFrame(frame.width, frame.height, pix_fmt)
    dtype = np.uint8 if bits == 8 else np.uint16
    for plane, values in zip(out.planes, (y * np.float32(top), *chroma), strict=True):
        plane_array(plane, 1, dtype)[...] = np.clip(np.rint(values), 0, top)
    out.colorspace, out.color_range = colorspace, 2
    copy_time(frame, out)
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
        src_range = 2 if is_full_range(frame) else 1
    out = frame.reformat(format=pix_fmt, src_colorspace=colorspace, dst_colorspace=colorspace,
                         src_color_range=src_range, dst_color_range=rng,
                         interpolation=sws_flags(FROM_RGB_FLAGS))
    copy_time(frame, out)
    return out


#: The packed RGBA formats of :func:`~lutsr.video.frames.upscale_frame_alpha`, and the same
#: without alpha.
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
    out = import_av().VideoFrame(frame.width, frame.height, pix_fmt)
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
    copy_time(frame, out)
    return out
