"""Upscale a VapourSynth clip with a LUT model, inside a ``.vpy`` script.

::

    import vapoursynth as vs
    from lutsr.vapoursynth import upscale

    clip = vs.core.bs.VideoSource("in.mkv")           # any 8-bit integer clip
    clip = upscale(clip, lut="x4")                     # 4x the width and height
    clip.set_output()

Every plane is upscaled on its own, by the LUT's scale, so RGB24, YUV444P8 and
GRAY8 work, and so do subsampled layouts such as YUV420P8 (the chroma planes
keep their subsampling). Frame properties are copied. Deeper or float clips
are refused: convert them first (``core.resize.Bicubic(clip, format=vs.RGB24)``).

The ``vapoursynth`` package is imported only by this module, never by
``import lutsr``. On PyPI it has Linux wheels from release 74 on, which need
Python 3.12 or newer.
"""

from __future__ import annotations

import numpy as np

from .api import Upscaler


def _vapoursynth():
    try:
        import vapoursynth
    except ImportError:
        raise ImportError("lutsr.vapoursynth needs VapourSynth: pip install 'vapoursynth>=74' "
                          "(Python 3.12 or newer)") from None
    return vapoursynth


def upscale(clip, lut=None, *, backend: str = "auto", threads: int | None = None):
    """Return ``clip`` upscaled by the LUT's scale, every plane with the LUT.

    Parameters
    ----------
    clip : vapoursynth.VideoNode
        A clip of constant size and format, 8-bit integer samples
        (``RGB24``, ``YUV444P8``, ``GRAY8``, ``YUV420P8``...).
    lut : LUT, str, path or None
        The model (see :class:`lutsr.Upscaler`); None for the bundled default.
    backend : {"auto", "numba", "reference", "cuda"}
    threads : int, optional
        Worker threads for the numba backend (default: all cores).

    Returns
    -------
    vapoursynth.VideoNode
        The same format, frame count and rate, width and height times the
        scale; frame ``n`` is the LUT applied to each plane of frame ``n``
        (plane ``p`` of shape ``(h_p, w_p)`` becomes ``(h_p*s, w_p*s)`` uint8).

    Raises
    ------
    TypeError
        ``clip`` is not a VapourSynth video clip.
    ValueError
        A clip of variable size or format, or samples that are not 8-bit
        integers.
    ImportError
        VapourSynth is not installed.
    """
    vs = _vapoursynth()
    if not isinstance(clip, vs.VideoNode):
        raise TypeError(f"clip must be a vapoursynth.VideoNode, got {type(clip).__name__}")
    fmt = clip.format
    if fmt is None or clip.width == 0 or clip.height == 0:
        raise ValueError("lutsr.vapoursynth.upscale needs a clip of constant size and format")
    if fmt.sample_type != vs.INTEGER or fmt.bits_per_sample != 8:
        raise ValueError(f"lutsr.vapoursynth.upscale takes 8-bit integer clips, got {fmt.name}; "
                         "convert first, e.g. core.resize.Bicubic(clip, format=vs.RGB24)")
    upscaler = Upscaler(lut, backend=backend, threads=threads)
    s = upscaler.scale
    # A blank clip of the output size gives frames to write into; keep=True
    # makes it one cached frame, copied per request.
    blank = vs.core.std.BlankClip(clip, width=clip.width * s, height=clip.height * s, keep=True)

    def upscale_frame(n, f):
        src, dst = f[0], f[1].copy()
        for p in range(src.format.num_planes):
            # Plane arrays are strided views (rows padded for alignment): the
            # LUT reads the view and the result is copied into the padded rows.
            np.copyto(np.asarray(dst[p]), upscaler.up(np.asarray(src[p])))
        for key, value in src.props.items():
            dst.props[key] = value
        return dst

    return vs.core.std.ModifyFrame(blank, clips=[clip, blank], selector=upscale_frame)
