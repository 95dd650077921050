"""Upscaling one decoded frame: in RGB, deeper than 8 bits, with alpha, or luma only; resizing it.

* RGB (:func:`upscale_frame_rgb`): the frame is converted to RGB with its own
  colour matrix and range, and every channel goes through the LUT.
* Deeper than 8 bits (:func:`lutsr.deep.upscale_deep`): the LUT sees the top 8 bits of
  each sample; the bits below are upscaled by linear interpolation and added,
  so flat areas and smooth gradients keep every bit.
* Alpha (:func:`upscale_frame_alpha`): RGBA, premultiplied around the LUT and
  the resize, as :func:`lutsr.imageio.upscale_premultiplied` does for images.
* Luma only (:func:`upscale_frame_luma`): swscale resizes all planes
  bicubically, then the LUT's output replaces the luma plane.
* Any output size (:func:`resize_frame`): swscale resamples the LUT's upscale
  to the exact size, in the frame's own pixel format and depth.
* A target box (:func:`place_frame`): the resampled frame padded or cropped to
  it (``--pad``, ``--crop``), in its own format.
"""

from __future__ import annotations

import re

import numpy as np

from ..api import Upscaler
from ..deep import upscale_deep
from ..imageio import premultiply, unpremultiply
from ..outsize import BoxGeometry, place
from .avutil import (
    DEEP_ALPHA_FORMAT,
    DEEP_FORMAT,
    LUMA_ALPHA_FORMAT,
    LUMA_FORMATS,
    copy_time,
    format_depth,
    import_av,
    plane_array,
    sws_flags,
)
from .colour import TO_RGB_FLAGS, is_full_range, rgb_to_codes


def upscale_frame_rgb(frame, upscaler: Upscaler, colorspace: int | None = None,
                      deep: bool = False):
    """Upscale every RGB channel of a decoded frame.

    Parameters
    ----------
    frame : av.VideoFrame
        Any pixel format; converted to RGB with its own range and with
        ``colorspace`` as the colour matrix (flags :data:`~lutsr.video.colour.TO_RGB_FLAGS`).
    upscaler : Upscaler
    colorspace : int, optional
        FFmpeg ``AVColorSpace`` of the frame (default: the frame's tag;
        untagged means BT.601). See :func:`~lutsr.video.colour.implied_colorspace`.
    deep : bool
        Convert to 16-bit RGB (``rgb48le``) instead of ``rgb24`` and upscale
        with :func:`upscale_deep`, for inputs deeper than 8 bits.

    Returns
    -------
    av.VideoFrame
        ``rgb24`` (``rgb48le`` when ``deep``), ``scale`` times larger, with
        the input's timestamp. The caller converts it back to YUV (see
        :func:`~lutsr.video.colour.to_output_format`).
    """
    av = import_av()
    fmt = "rgb48le" if deep else "rgb24"
    rgb = frame.reformat(format=fmt, src_colorspace=colorspace,
                         src_color_range=2 if is_full_range(frame) else 1,
                         interpolation=sws_flags(TO_RGB_FLAGS))
    s = upscaler.scale
    out = av.VideoFrame(frame.width * s, frame.height * s, fmt)
    if deep:
        upscale_deep(plane_array(rgb.planes[0], 3, np.uint16), upscaler, 16,
                     out=plane_array(out.planes[0], 3, np.uint16))
    else:
        upscaler.up(plane_array(rgb.planes[0], 3), out=plane_array(out.planes[0], 3))
    copy_time(frame, out)
    return out


def upscale_frame_alpha(frame, upscaler: Upscaler | None, size: tuple[int, int],
                        colorspace: int | None = None, deep: bool = False,
                        straight: bool = False):
    """Upscale a frame with alpha in RGBA, premultiplied through the LUT and the resize.

    Parameters
    ----------
    frame : av.VideoFrame
        Any format with alpha (see :func:`~lutsr.video.avutil.has_alpha`); converted to ``rgba``
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
    av = import_av()
    fmt, dtype = ("rgba64le", np.uint16) if deep else ("rgba", np.uint8)
    rgba = frame.reformat(format=fmt, src_colorspace=colorspace,
                          src_color_range=2 if is_full_range(frame) else 1,
                          interpolation=sws_flags(TO_RGB_FLAGS))
    pixels = plane_array(rgba.planes[0], 4, dtype)
    if not straight:
        pixels = premultiply(pixels)
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
        view[...] = unpremultiply(view)
    copy_time(frame, big)
    return big


def upscale_frame_luma(frame, upscaler: Upscaler, deep: bool = False, alpha: bool = False):
    """Upscale the luma plane with the LUT and the chroma planes bicubically.

    Parameters
    ----------
    frame : av.VideoFrame
        8-bit planar YUV (see :data:`~lutsr.video.avutil.LUMA_FORMATS`) is used as it is; any
        other format is converted to ``yuv420p`` first. With ``deep``, planar
        YUV deeper than 8 bits (see :data:`~lutsr.video.avutil.DEEP_FORMAT`) is used as it is,
        other formats are converted to ``yuv420p10le``, and the luma goes
        through :func:`upscale_deep`.
    upscaler : Upscaler
    deep : bool
    alpha : bool
        Keep the alpha plane and upscale it with the LUT too, as stored (straight):
        planar YUV with alpha (:data:`~lutsr.video.avutil.LUMA_ALPHA_FORMAT`,
        :data:`~lutsr.video.avutil.DEEP_ALPHA_FORMAT`) is used as it is, other
        formats are converted to ``yuva420p`` (``yuva420p10le`` when ``deep``).

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
    copy_time(frame, out)
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
        out = out.reformat(w, h, interpolation=sws_flags((kind, "ACCURATE_RND")))
    if out is not frame:
        copy_time(frame, out)
    return out


#: Packed RGB formats of the upscaled frames, and their channels.
_PACKED = {"rgb24": 3, "rgb48le": 3, "rgba": 4, "rgba64le": 4}

#: Planar YUV (alpha, full range, any depth) and gray: padded and cropped plane by plane.
_PLANAR = re.compile(r"(yuvj?a?4[24][024]p|gray)(9|10|12|14|16)?(le)?")


def place_frame(frame, box: BoxGeometry, colour: tuple[int, int, int], colorspace: int):
    """Pad or crop a frame of ``box.scaled`` to ``box.out`` (``--pad``, ``--crop``).

    Parameters
    ----------
    frame : av.VideoFrame
        Packed RGB(A) (:data:`_PACKED`), or planar YUV or gray at any depth;
        other formats are converted to ``yuv444p`` (``yuv444p16le`` when
        deeper than 8 bits) first.
    box : BoxGeometry
        In stored sizes; its offsets are even (see
        :func:`lutsr.outsize.box_geometry`), so chroma planes are padded and
        cropped at half of them without moving the chroma against the luma.
    colour : (int, int, int)
        The bars' 8-bit RGB; in YUV, its code values in ``colorspace`` and the
        frame's range (:func:`lutsr.video.colour.rgb_to_codes`). Alpha is
        opaque there.
    colorspace : int
        The frame's matrix (FFmpeg ``AVColorSpace``).

    Returns
    -------
    av.VideoFrame
        ``box.out``, the same format, timestamp and colour tags.
    """
    if box.mode == "fit":
        return frame
    av = import_av()
    name = frame.format.name
    if name not in _PACKED and not _PLANAR.fullmatch(name):
        name = "yuv444p16le" if format_depth(name) > 8 else "yuv444p"
        frame = frame.reformat(format=name)
    out = av.VideoFrame(box.out[0], box.out[1], name)
    bits = format_depth(name)
    dtype = np.uint8 if bits == 8 else np.uint16
    if name in _PACKED:
        pixels = plane_array(frame.planes[0], _PACKED[name], dtype)
        plane_array(out.planes[0], _PACKED[name], dtype)[...] = place(pixels, box, colour)
    else:
        yuv = (rgb_to_codes(np.asarray(colour) / 255, colorspace, bits, is_full_range(frame))
               if not name.startswith("gray")
               else None)
        for p, (src, dst) in enumerate(zip(frame.planes, out.planes, strict=True)):
            sx, sy = round(frame.width / src.width), round(frame.height / src.height)
            plane_box = BoxGeometry(box.mode, (src.width, src.height), (dst.width, dst.height),
                                    (box.offset[0] // sx, box.offset[1] // sy))
            if p == 3 or yuv is None:  # alpha, gray: a gray colour's level
                value = 2 ** bits - 1 if p == 3 else round(
                    (0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]) / 255
                    * (2 ** bits - 1))
            else:
                value = int(yuv[p])
            plane = plane_array(src, 1, dtype)
            placed = place(plane, plane_box, (0, 0, 0))
            if box.mode == "pad":
                x, y = plane_box.offset
                placed[...] = value
                placed[y:y + plane.shape[0], x:x + plane.shape[1]] = plane
            plane_array(dst, 1, dtype)[...] = placed
    out.colorspace, out.color_range = frame.colorspace, frame.color_range
    copy_time(frame, out)
    return out
