"""Colour matrices and ranges, and the conversion of an upscaled frame to the encoder's format.

Both conversions ask swscale for accurate rounding and full-resolution chroma
(:data:`TO_RGB_FLAGS`, :data:`FROM_RGB_FLAGS`): its default fast path from
subsampled YUV to RGB darkens a photo by about one code value of mean luma.
RGB to full-range YUV and RGBA to YUV with alpha are computed here instead
(:func:`rgb_to_full_range_yuv`, :func:`_rgba_to_yuva`), as swscale's are biased.

``--colorspace`` (:func:`output_colorspace`) writes a BT.601 input that
becomes HD (:func:`is_hd`) in BT.709: the upscaled RGB is converted to YUV with
the BT.709 matrix, and YUV frames (``--luma-only``, no LUT) are converted
exactly by :func:`convert_matrix`, from the standards' coefficients
(:func:`ycbcr_matrix`, :func:`code_scale`).
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


def is_hd(size: tuple[int, int]) -> bool:
    """Whether players take a video of stored ``(width, height)`` for HD (BT.709 when untagged).

    The rule of :func:`implied_colorspace`: width >= 1280 or height > 576.
    It is the guess a player makes when the tags are lost (y4m keeps none),
    so converting exactly the outputs it calls HD makes that guess right.
    """
    return implied_colorspace(size[0], size[1], 2) == 1


#: Matrices (FFmpeg ``AVColorSpace``) converted to BT.709 by ``--colorspace``:
#: BT.601 (5 BT.470BG, 6 SMPTE 170M), FCC (4) and SMPTE 240M (7).
SD_MATRICES = frozenset({4, 5, 6, 7})

#: Colour matrix modes of ``--colorspace`` (:func:`output_colorspace`).
COLORSPACE_MODES = ("auto", "bt709", "keep")


def output_colorspace(mode: str, colorspace: int, size: tuple[int, int]) -> int:
    """The output's colour matrix (FFmpeg ``AVColorSpace``) for ``--colorspace mode``.

    Parameters
    ----------
    mode : str
        ``"auto"``: BT.709 (1) for an input in :data:`SD_MATRICES` written HD
        (:func:`is_hd`), else the input's; ``"bt709"``: BT.709 for those
        inputs at any size; ``"keep"``: the input's.
    colorspace : int
        The input's matrix (as :func:`implied_colorspace` gives it).
    size : (int, int)
        The output's stored ``(width, height)``.

    Raises
    ------
    ValueError
        ``"bt709"`` for an input in another matrix than BT.601 or BT.709
        (BT.2020 needs a gamut mapping, not a matrix).
    """
    if mode not in COLORSPACE_MODES:
        raise ValueError(f"colorspace must be one of {', '.join(COLORSPACE_MODES)}, "
                         f"got {mode!r}")
    if mode == "keep" or colorspace not in SD_MATRICES:
        if mode == "bt709" and colorspace != 1:
            raise ValueError(f"--colorspace bt709 converts BT.601 inputs; this one's matrix is "
                             f"{_MATRIX_NAMES.get(colorspace, colorspace)}, which needs more "
                             "than a matrix: use --colorspace keep")
        return colorspace
    return 1 if mode == "bt709" or is_hd(size) else colorspace


_MATRIX_NAMES = {0: "RGB", 8: "YCgCo", 9: "BT.2020", 10: "BT.2020 (constant luminance)",
                 11: "SMPTE 2085", 14: "ICtCp"}


def ycbcr_matrix(colorspace: int) -> np.ndarray:
    """The matrix from R'G'B' to Y'CbCr of a colour matrix, as the standards define it.

    Parameters
    ----------
    colorspace : int
        FFmpeg ``AVColorSpace`` with luma weights in :data:`_MATRIX_WEIGHTS`.

    Returns
    -------
    ndarray of float64, shape (3, 3)
        Rows Y', Cb, Cr for R', G', B' in 0..1: ``Y' = Kr R' + (1 - Kr - Kb)
        G' + Kb B'``, ``Cb = (B' - Y') / (2 (1 - Kb))``, ``Cr = (R' - Y') / (2
        (1 - Kr))``, so Y' is in 0..1 and Cb, Cr in -0.5..0.5.
    """
    kr, kb = _MATRIX_WEIGHTS[colorspace]
    y = np.array([kr, 1 - kr - kb, kb])
    return np.stack([y, (np.array([0, 0, 1]) - y) / (2 * (1 - kb)),
                     (np.array([1, 0, 0]) - y) / (2 * (1 - kr))])


def code_scale(bits: int, full_range: bool) -> tuple[np.ndarray, np.ndarray]:
    """Code values from normalised Y'CbCr: ``code = scale * value + offset`` per component.

    Limited range (BT.601/BT.709 "video" levels) puts Y' 0..1 on
    ``16..235`` and Cb, Cr -0.5..0.5 on ``16..240`` (times ``2**(bits - 8)``);
    full range on ``0..2**bits - 1`` around ``2**(bits - 1)``.

    Returns
    -------
    scale, offset : ndarray of float64, shape (3,)
    """
    if full_range:
        top = 2 ** bits - 1
        return np.array([top, top, top], float), np.array([0, 2 ** (bits - 1), 2 ** (bits - 1)],
                                                          float)
    k = 2 ** (bits - 8)
    return np.array([219, 224, 224]) * float(k), np.array([16, 128, 128]) * float(k)


def rgb_to_codes(rgb, colorspace: int, bits: int = 8, full_range: bool = False) -> np.ndarray:
    """Y'CbCr code values (rounded) of R'G'B' colours in 0..1.

    Parameters
    ----------
    rgb : array_like, shape (..., 3)
    colorspace : int
    bits : int
    full_range : bool

    Returns
    -------
    ndarray of int64, shape (..., 3)
        E.g. BT.709 red ``(1, 0, 0)``, 8-bit limited: ``(63, 102, 240)``.
    """
    scale, offset = code_scale(bits, full_range)
    values = np.asarray(rgb, float) @ ycbcr_matrix(colorspace).T
    return np.clip(np.rint(values * scale + offset), 0, 2 ** bits - 1).astype(np.int64)


def matrix_conversion(src: int, dst: int) -> np.ndarray:
    """The 3x3 matrix from normalised Y'CbCr in matrix ``src`` to the same colours in ``dst``.

    Its chroma rows have no Y' term (a gray stays gray), so Cb and Cr convert
    at their own resolution; Y' gains a weighted Cb and Cr.
    """
    return ycbcr_matrix(dst) @ np.linalg.inv(ycbcr_matrix(src))


_PLANAR = re.compile(r"yuvj?a?(420|422|444)p(?:(9|10|12|14|16)le)?")


def convert_matrix(frame, src: int, dst: int):
    """A planar Y'CbCr frame's colours from matrix ``src`` to matrix ``dst``, in its own format.

    Parameters
    ----------
    frame : av.VideoFrame
        Planar YUV, 8 to 16 bits, with or without alpha (``yuv420p``,
        ``yuva444p10le``...); its range (:func:`is_full_range`) is kept.
    src, dst : int
        FFmpeg ``AVColorSpace`` of :data:`_MATRIX_WEIGHTS`.

    Returns
    -------
    av.VideoFrame or None
        Tagged ``dst``, with the input's timestamp; None for another format
        (the caller goes through RGB).

    Notes
    -----
    Exact arithmetic in float64, rounded once: Cb and Cr of each chroma
    sample through :func:`matrix_conversion`'s chroma rows; Y' plus its Cb
    and Cr terms, with the chroma upsampled to full resolution by swscale
    (bicubic) for a subsampled frame.
    """
    name = frame.format.name
    m = _PLANAR.fullmatch(name)
    if m is None or src not in _MATRIX_WEIGHTS or dst not in _MATRIX_WEIGHTS:
        return None
    av = import_av()
    bits = int(m.group(2) or 8)
    dtype = np.uint8 if bits == 8 else np.uint16
    full = is_full_range(frame)
    scale, offset = code_scale(bits, full)
    t = matrix_conversion(src, dst)
    top = 2 ** bits - 1

    def norm(plane, i):
        return (plane_array(plane, 1, dtype).astype(np.float64) - offset[i]) / scale[i]

    def codes(values, i):
        return np.clip(np.rint(values * scale[i] + offset[i]), 0, top)

    out = av.VideoFrame(frame.width, frame.height, name)
    cb, cr = norm(frame.planes[1], 1), norm(frame.planes[2], 2)
    plane_array(out.planes[1], 1, dtype)[...] = codes(t[1, 1] * cb + t[1, 2] * cr, 1)
    plane_array(out.planes[2], 1, dtype)[...] = codes(t[2, 1] * cb + t[2, 2] * cr, 2)
    if m.group(1) != "444":
        full_chroma = name.replace(m.group(1), "444", 1)
        up = frame.reformat(format=full_chroma, interpolation=sws_flags(("BICUBIC",
                                                                         "ACCURATE_RND")))
        cb, cr = norm(up.planes[1], 1), norm(up.planes[2], 2)
    y = norm(frame.planes[0], 0)
    plane_array(out.planes[0], 1, dtype)[...] = codes(y + t[0, 1] * cb + t[0, 2] * cr, 0)
    if len(frame.planes) == 4:
        plane_array(out.planes[3], 1, dtype)[...] = plane_array(frame.planes[3], 1, dtype)
    out.colorspace, out.color_range = dst, 2 if full else 1
    copy_time(frame, out)
    return out


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


def to_output_format(frame, pix_fmt: str, colorspace: int, full_range: bool,
                     src_colorspace: int | None = None):
    """Convert an upscaled frame to the encoder's pixel format, keeping the input's colours.

    Parameters
    ----------
    frame : av.VideoFrame
    pix_fmt : str
        The encoder's pixel format.
    colorspace : int
        The output's colour matrix (FFmpeg ``AVColorSpace``, see
        :func:`implied_colorspace` and :func:`output_colorspace`).
    full_range : bool
        Whether the input's YUV values are full range.
    src_colorspace : int, optional
        The matrix of a YUV ``frame`` when it is not ``colorspace`` (a
        luma-only upscale of a BT.601 input written BT.709): converted by
        :func:`convert_matrix`, or through RGB for a format it does not
        take. RGB frames need none.

    Notes
    -----
    Converted with :data:`FROM_RGB_FLAGS` (accurate rounding; chroma from
    every RGB pixel), except RGB to full-range planar YUV, which goes through
    :func:`rgb_to_full_range_yuv`; RGBA to planar YUV with alpha goes through
    :func:`_rgba_to_yuva`.
    """
    if (src_colorspace is not None and src_colorspace != colorspace
            and not import_av().VideoFormat(frame.format.name).is_rgb):
        converted = convert_matrix(frame, src_colorspace, colorspace)
        if converted is None:  # a packed or semi-planar format: through RGB
            deep = format_depth(frame.format.name) > 8
            converted = frame.reformat(format="rgb48le" if deep else "rgb24",
                                       src_colorspace=src_colorspace,
                                       src_color_range=2 if is_full_range(frame) else 1,
                                       interpolation=sws_flags(TO_RGB_FLAGS))
            copy_time(frame, converted)
        frame = converted
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
