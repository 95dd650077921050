"""Video upscaling with PyAV: decode, upscale every frame, encode, copy the other streams.

Decoding, upscaling and encoding overlap in three threads
(:mod:`lutsr.video.pipeline`). The modules, in the order a run uses them:

* :mod:`~lutsr.video.options`: :class:`VideoOptions` (what is asked) and
  :class:`VideoReport` (what was done);
* :mod:`~lutsr.video.upscale`: :func:`upscale_video`, the entry point;
* :mod:`~lutsr.video.inputs`: reading the input (probing, the y4m header,
  errors that say what is wrong, demuxing);
* :mod:`~lutsr.video.encoding`: the output's container, encoder, pixel
  format, bitrate, alpha and depth;
* :mod:`~lutsr.video.streams`: the output's streams (format, size, colours,
  encoder options; audio and subtitles copied or re-encoded);
* :mod:`~lutsr.video.pipeline`: the three threads that read, upscale and write;
* :mod:`~lutsr.video.frames`: upscaling one frame (RGB, deep, alpha, luma only,
  resize);
* :mod:`~lutsr.video.colour`: colour matrices and ranges, conversion to the
  encoder's pixel format;
* :mod:`~lutsr.video.avutil`: PyAV and FFmpeg basics every module uses;
* :mod:`~lutsr.video.segments`: a long video cut at keyframes, its segments
  upscaled in parallel (local processes or Dask workers), resumable from a manifest;
* :mod:`~lutsr.video.join`: the segments' packets joined without re-encoding,
  with the input's audio, subtitles, chapters and metadata.

Two ways to upscale a frame:

* RGB (default): the decoded frame is converted to RGB with its own colour
  matrix (BT.601, BT.709, BT.2020...) and range (limited or full), every
  channel goes through the LUT, and the result is converted back to YUV with
  the same matrix and range. Both conversions ask swscale for accurate
  rounding and full-resolution chroma (:data:`~lutsr.video.colour.TO_RGB_FLAGS`,
  :data:`~lutsr.video.colour.FROM_RGB_FLAGS`): its default fast path from subsampled YUV to RGB
  darkens a photo by about one code value of mean luma.
* Luma-only (:func:`~lutsr.video.frames.upscale_frame_luma`): the decoded 8-bit YUV planes are
  used as they are. swscale resizes all planes bicubically, then the LUT's
  output replaces the luma plane. The LUT does a third of the RGB work (less
  still than that in time, as no RGB conversion is needed); the chroma, which
  the eye resolves far less sharply, is bicubic.

Deeper than 8 bits (10-bit HEVC, say): the output keeps the input's depth
when the encoder can write it, and the run is refused rather than written
with fewer bits unless ``allow_8bit`` is given. The LUT sees the top 8 bits
of each sample; the bits below are upscaled by linear interpolation and added
(:func:`~lutsr.deep.upscale_deep`), so flat areas and smooth gradients keep every bit and
the LUT's detail is added on top.

Any output size (``outscale``, ``size``): the LUT's upscale is resampled by
swscale to the exact size (:func:`~lutsr.video.frames.resize_frame`: area averaging on an axis
that shrinks, Lanczos on one that grows), in the frame's own pixel format
and depth. Without an explicit LUT the bundled one is picked by
:func:`lutsr.outsize.pick_lut`. A ``size`` is the displayed size, as for
images (whose EXIF rotation is applied first): a clip whose display matrix
turns it a quarter turn has its stored frames sized height by width.

Alpha (``rgba`` PNG or QuickTime Animation, ``yuva420p`` FFV1, ``C444alpha``
y4m...) is kept when the output's pixel format holds it (by default one that
does is picked, :func:`~lutsr.video.encoding.alpha_pix_fmt`), and the run is refused otherwise
unless ``alpha=False`` drops it. RGB mode upscales it as images are
(:func:`lutsr.imageio.upscale_premultiplied`): the frame is converted to RGBA,
premultiplied, upscaled on all four channels and resized, then
unpremultiplied (:func:`~lutsr.video.frames.upscale_frame_alpha`); ``straight_alpha`` upscales
the channels as stored. Luma-only mode works on YUV planes, which cannot be
premultiplied: it runs the alpha plane through the LUT as stored, and only
when ``straight_alpha`` says so.

Pipes: ``"-"`` as the input reads a stream from stdin (the format is probed:
YUV4MPEG2, Matroska, NUT, MPEG-TS...), ``"-"`` as the output writes to stdout
in the format named by ``format`` (:data:`~lutsr.video.encoding.PIPE_FORMATS`; ``"y4m"`` is
uncompressed YUV4MPEG2, what ``ffmpeg -f yuv4mpegpipe -i -`` reads). A y4m
output has the input stream's frame rate (its average, which FFmpeg snaps to
the nominal rate of a constant-rate stream), one frame per input frame: a
variable rate is written as that average, with a note saying so. It keeps the
input's depth (``C420p10``, ``C422p12``...), colour range and chroma siting
(:data:`~lutsr.video.inputs.Y4M_SITING`, :data:`~lutsr.video.inputs.CODEC_SITING`).

An output size that the encoded pixel format cannot hold (an odd side for
4:2:0) is rounded down to even with a note when it comes from ``outscale`` or
an odd-factor LUT, and refused when ``size`` asks for it exactly.

Kept from the input: frame timestamps (and so the frame rate, constant or
variable), the rotation (display matrix), the pixel aspect ratio, colour
tags, container metadata, and every audio and subtitle stream (packets copied,
not re-encoded; except in WebM, which holds only Opus and Vorbis audio: other
audio is re-encoded with libopus, and the video defaults to libvpx-vp9).
"""


from .options import VideoOptions, VideoReport
from .upscale import upscale_video

__all__ = ["VideoOptions", "VideoReport", "upscale_video"]
