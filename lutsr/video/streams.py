"""The output's streams: the video's format, size, time base, colours and encoder options.

The audio and subtitle streams are added too, copied or re-encoded. All are
set up once, before the first frame is written (:func:`add_video_stream`,
:func:`add_copied_streams`), from what the run decided (:class:`Plan`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from fractions import Fraction

from ..api import Upscaler
from ..outsize import BoxGeometry
from .avutil import format_depth
from .colour import implied_colorspace, is_full_range, output_colorspace
from .encoding import (
    DEFAULT_CRF,
    DEFAULT_PRESETS,
    QUIET_OPTIONS,
    RATE_OPTIONS,
    RAW_ALPHA_FORMATS,
    STALE_TAGS,
    alpha_target,
    check_depth,
    choose_pix_fmt,
    subsampled_size,
)
from .inputs import Source
from .options import VideoOptions


@dataclass
class Plan:
    """What the run decided before the output was opened.

    Attributes
    ----------
    upscaler : Upscaler or None
        None: no LUT, swscale alone (a downscale).
    encoder : av.Codec
        The video encoder (:func:`lutsr.video.encoding.open_encoder`).
    encoder_options : set of str
        Its own option names (:func:`lutsr.video.encoding.private_options`).
    bit_rate : int or None
        Bits per second, or None for constant quality.
    out_size : (int, int)
        ``(width, height)`` of the encoded frames; an odd size that the pixel
        format cannot hold is made even, with a note (refused when
        ``size_given``).
    size_given : bool
        The size was asked for exactly (``--size`` without a -1 or -2 side,
        ``--pad``, ``--crop``).
    desc : str
        The progress bar's label.
    siting : str or None
        The chroma siting to tag (``"left"``...: :data:`lutsr.video.inputs.CODEC_SITING`).
    frame_counted : bool
        The muxer counts frames: the video's time base is one frame.
    transcode : dict of int to str
        Audio stream indices re-encoded, and their encoder (the other streams
        of the source's ``copies`` are copied packet for packet).
    box : BoxGeometry or None
        ``--fit``/``--pad``/``--crop``, in stored sizes: the frames are
        upscaled to ``box.scaled``, then padded or cropped to ``out_size``.
    """

    upscaler: Upscaler | None
    encoder: object
    encoder_options: set[str]
    bit_rate: int | None
    out_size: tuple[int, int]
    size_given: bool
    desc: str
    siting: str | None
    frame_counted: bool
    transcode: dict[int, str] = field(default_factory=dict)
    box: BoxGeometry | None = None


@dataclass
class OutputVideo:
    """The output video stream and what it was set up with.

    ``colorspace`` is the matrix written; ``source_colorspace`` the input's
    (the frames' until :func:`lutsr.video.colour.to_output_format`).
    """

    stream: object
    rate: Fraction
    pix_fmt: str
    alpha_fmt: str | None
    deep: bool
    size: tuple[int, int]
    colorspace: int
    full_range: bool
    time_base: Fraction
    notes: list[str]
    source_colorspace: int = 2


def note(text: str, quiet: bool) -> None:
    """Say ``text`` on stderr (one line), unless ``quiet``."""
    if not quiet:
        print(f"lutsr: note: {text}", file=sys.stderr, flush=True)


def add_video_stream(av, out, source: Source, opts: VideoOptions, plan: Plan) -> OutputVideo:
    """The output's video stream: pixel format, size, time base, colour tags, encoder options."""
    vin, encoder = source.video, plan.encoder
    rate = vin.average_rate or vin.guessed_rate or Fraction(25)
    vout = out.add_stream(encoder.name, rate=rate)
    vout.width, vout.height = plan.out_size
    alpha_fmt = alpha_target(vin, encoder, opts.pix_fmt, out.format.name, alpha=opts.alpha,
                             luma_only=opts.luma_only, straight_alpha=opts.straight_alpha)
    target_fmt = alpha_fmt or choose_pix_fmt(encoder, vin, opts.pix_fmt)
    if alpha_fmt in RAW_ALPHA_FORMATS.get(out.format.name, ()):
        out.options["strict"] = "-1"  # y4m's C444alpha is not in its official set
    deep = check_depth(vin, encoder, target_fmt, opts.pix_fmt, opts.allow_8bit)
    notes: list[str] = []
    out_size = _even_size(plan.out_size, target_fmt, plan.size_given, opts.quiet, notes)
    if out_size != tuple(plan.out_size):
        vout.width, vout.height = out_size
    if out.format.name == "yuv4mpegpipe" and format_depth(target_fmt) > 8:
        # FFmpeg writes C420p10 and the like only when told to go beyond mjpegtools' set
        out.options["strict"] = "-1"
    vout.pix_fmt = target_fmt
    ctx_out = vout.codec_context
    time_base = vin.time_base or Fraction(1, 90000)
    if plan.frame_counted:
        time_base = 1 / Fraction(rate)
    ctx_out.time_base = time_base
    vout.time_base = time_base
    if vin.sample_aspect_ratio:
        ctx_out.sample_aspect_ratio = vin.sample_aspect_ratio
    source_colorspace, full_range = _tag_colour(av, vin.codec_context, ctx_out, target_fmt)
    colorspace = output_colorspace(opts.colorspace, source_colorspace, out_size)
    if colorspace != source_colorspace:
        _retag_bt709(ctx_out)
    vout.options = _encoder_options(plan, opts, ctx_out)
    for key in ("language", "title"):
        if key in vin.metadata:
            vout.metadata[key] = vin.metadata[key]
    out.metadata.update({k: v for k, v in source.container.metadata.items()
                         if k.lower() not in STALE_TAGS})
    return OutputVideo(vout, rate, target_fmt, alpha_fmt, deep, out_size, colorspace, full_range,
                       time_base, notes, source_colorspace)


def _even_size(size: tuple[int, int], pix_fmt: str, size_given: bool, quiet: bool,
               notes: list[str]) -> tuple[int, int]:
    """``size``, or the even size ``pix_fmt`` holds (with a note); refused when ``size_given``."""
    w, h = size
    even = subsampled_size(size, pix_fmt)
    if even == tuple(size):
        return tuple(size)
    # Subsampled chroma needs even sizes (an x3 or x2.5 of an odd size is odd)
    if size_given:
        raise ValueError(f"the output size {w}x{h} is odd, which {pix_fmt} cannot hold; "
                         f"give an even --size, --pad or --crop (e.g. {even[0]}x{even[1]}) or "
                         "use --pix-fmt yuv444p")
    # yuv444p would keep the size, but many players cannot play it: round instead
    text = f"the output size {w}x{h} is odd, which {pix_fmt} cannot hold: writing " \
           f"{even[0]}x{even[1]}"
    note(text, quiet)
    notes.append(text)
    return even


def _tag_colour(av, ctx_in, ctx_out, pix_fmt: str) -> tuple[int, bool]:
    """Tag the output with the input's colours; return its matrix and whether full range."""
    full_range = is_full_range(ctx_in)
    colorspace = implied_colorspace(ctx_in.width, ctx_in.height, int(ctx_in.colorspace))
    if colorspace == 0 and not av.VideoFormat(pix_fmt).is_rgb:
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
    return colorspace, full_range


def _retag_bt709(ctx_out) -> None:
    """Tag an output converted to the BT.709 matrix (:func:`lutsr.video.colour.convert_matrix`).

    SD primaries (BT.470BG, SMPTE 170M) and transfer (SMPTE 170M, the same
    curve as BT.709's) are retagged BT.709 too: the primaries are not
    gamut-mapped (each primary is within 0.01 of BT.709's in xy).
    """
    ctx_out.colorspace = 1
    if int(ctx_out.color_primaries) in (2, 5, 6):
        ctx_out.color_primaries = 1
    if int(ctx_out.color_trc) in (2, 6):
        ctx_out.color_trc = 1


def _encoder_options(plan: Plan, opts: VideoOptions, ctx_out) -> dict[str, str]:
    """The encoder's options (preset, CRF, quiet, siting, then ``--encoder-opt``).

    A bitrate is set on ``ctx_out``; a rate control given as an encoder option
    (:data:`lutsr.video.encoding.RATE_OPTIONS`) replaces the default CRF.
    """
    name, options = plan.encoder.name, plan.encoder_options
    chosen = {}
    if "preset" in options and (opts.preset or DEFAULT_PRESETS.get(name)):
        chosen["preset"] = opts.preset or DEFAULT_PRESETS[name]
    if plan.bit_rate is not None:
        ctx_out.bit_rate = plan.bit_rate
    elif RATE_OPTIONS & set(opts.encoder_options):
        pass
    elif "crf" in options:
        chosen["crf"] = f"{opts.crf if opts.crf is not None else DEFAULT_CRF:g}"
        if name.startswith("libvpx"):
            ctx_out.bit_rate = 0  # libvpx's constant-quality mode
    if opts.quiet:
        chosen.update(QUIET_OPTIONS.get(name, {}))
    if plan.siting is not None:
        chosen["chroma_sample_location"] = plan.siting  # a generic option of every encoder
    chosen.update(opts.encoder_options)
    return chosen


def add_copied_streams(av, out, copies, transcode: dict[int, str]):
    """Output streams for ``copies``: templates of the copied, encoders of the re-encoded.

    Returns
    -------
    copied : dict
        Input stream index: output stream, for streams copied packet for packet.
    recoders : dict
        Input stream index: (decoder context, output stream), for re-encoded audio.
    """
    copied = {st.index: out.add_stream_from_template(st) for st in copies
              if st.index not in transcode}
    recoders = {}
    for st in copies:
        if st.index in transcode:
            ctx = st.codec_context
            ast = out.add_stream(transcode[st.index], rate=48000)
            ast.layout = ctx.layout.name if ctx.layout.nb_channels <= 2 else "stereo"
            recoders[st.index] = (av.CodecContext.create(st.codec_context.name, "r"), ast)
            recoders[st.index][0].extradata = ctx.extradata
    return copied, recoders
