"""What the output is written as: container, encoder, pixel format, bitrate, alpha and depth.

The muxer comes from the output's suffix or ``--format`` (:data:`CONTAINERS`,
:data:`PIPE_FORMATS`); the encoder, when none is given, from the muxer
(:data:`DEFAULT_CODECS`). The encoded pixel format keeps the input's layout,
depth and alpha where the encoder can (:func:`choose_pix_fmt`,
:func:`alpha_target`), and a run that would lose bits or alpha is refused
unless asked for (:func:`check_depth`).
"""

from __future__ import annotations

import math
import os
import re
from fractions import Fraction
from pathlib import Path

from .avutil import DEEP_FORMAT, LUMA_FORMATS, ffmpeg_log_level, format_depth, has_alpha, import_av

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


#: The largest bitrate taken, in bits per second: 1 Tbit/s (x264 and libvpx
#: hold a rate in kbit/s in a 32-bit integer).
MAX_BITRATE = 10**12


#: Encoder options that quieten encoders printing their own log (not FFmpeg's).
QUIET_OPTIONS = {"libx265": {"x265-params": "log-level=error"}}


#: The formats with alpha that muxers of raw frames hold (their encoder,
#: ``wrapped_avframe``, lists none): y4m's only one is ``C444alpha``.
RAW_ALPHA_FORMATS = {"yuv4mpegpipe": ("yuva444p",)}


#: Encoders that list more formats with alpha than they open, and the ones
#: they do (libvpx codes alpha as a second 4:2:0 stream: yuva444p, gbrap...
#: fail to open with EINVAL).
ENCODER_ALPHA_FORMATS = {"libvpx-vp9": ("yuva420p",), "libvpx": ("yuva420p",)}


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
STALE_TAGS = {"encoder", "major_brand", "minor_version", "compatible_brands", "duration"}


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
WEBM_AUDIO = frozenset({"opus", "vorbis"})


def holds(out, muxer: str, codec_name: str) -> bool:
    """Whether the output container can hold a stream of ``codec_name``."""
    if muxer == "mpegts":
        return codec_name in MPEGTS_CODECS
    return codec_name in out.supported_codecs


#: Common names of video codecs (``--codec h265``) and the FFmpeg encoders that
#: write them, best first: the first one this FFmpeg build has is used
#: (:func:`resolve_codec`). Names that are encoders themselves (``ffv1``,
#: ``mpeg4``, ``libx264``...) need no entry.
CODEC_ALIASES = {
    "h264": ("libx264", "libopenh264"), "avc": ("libx264", "libopenh264"),
    "h265": ("libx265",), "hevc": ("libx265",), "x264": ("libx264",), "x265": ("libx265",),
    "av1": ("libsvtav1", "libaom-av1", "librav1e"), "vp9": ("libvpx-vp9",), "vp8": ("libvpx",),
    "prores": ("prores_ks", "prores"),
}


def resolve_codec(av, name: str) -> str:
    """The FFmpeg encoder ``--codec name`` means: an alias (:data:`CODEC_ALIASES`) or itself.

    Raises
    ------
    ValueError
        ``name`` is a common name whose encoders this FFmpeg build lacks, or
        is no encoder at all; one line listing the encoders for the common
        names that are here.
    """
    wanted = CODEC_ALIASES.get(name.lower())
    if wanted is None:
        if name in av.codecs_available:
            return name
        try:
            av.Codec(name, "w")  # FFmpeg's own fallbacks (a codec's name: its default encoder)
            return name
        except Exception:  # av.codec.codec.UnknownCodecError
            raise ValueError(f"unknown encoder {name!r}; {_available(av)}") from None
    for encoder in wanted:
        if encoder in av.codecs_available:
            return encoder
    raise ValueError(f"this FFmpeg build has no {name} encoder (looked for "
                     f"{', '.join(wanted)}); {_available(av)}")


def _available(av) -> str:
    """The common names usable here, e.g. ``"available: h264 (libx264), ..., ffv1"``."""
    shown = {}
    for alias, encoders in CODEC_ALIASES.items():
        found = next((e for e in encoders if e in av.codecs_available), None)
        if found is not None and found not in shown.values() and not alias.startswith("x26"):
            shown[alias] = found
    names = [f"{alias} ({encoder})" for alias, encoder in shown.items()]
    names += [n for n in ("ffv1", "mpeg4") if n in av.codecs_available]
    return f"available: {', '.join(names)}" if names else "try libx264"


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
            why = getattr(exc, "strerror", None) or type(exc).__name__
            raise ValueError(f"encoder {name} is in this FFmpeg build but cannot open here "
                             f"({why}: it needs a hardware device and driver this machine "
                             "does not offer); use a software encoder such as --codec "
                             "libx264") from exc
    return encoder


# Hardware encoders, which need a device to open.
_HARDWARE_SUFFIXES = ("_nvenc", "_qsv", "_vaapi", "_amf", "_v4l2m2m", "_videotoolbox",
                      "_mf", "_vulkan", "_omx", "_rkmpp", "_mediacodec", "_d3d12va")


# The options this module sets, of the encoders that have them (as PyAV 18 lists
# them for FFmpeg 7), for PyAV 17, which cannot list an encoder's options.
_KNOWN_OPTIONS = {"libx264": {"crf", "preset"}, "libx265": {"crf", "preset"},
                  "libsvtav1": {"crf", "preset"}, "libvpx": {"crf"}, "libvpx-vp9": {"crf"},
                  "libaom-av1": {"crf"}}


def private_options(codec) -> set[str]:
    """The encoder's own option names (on PyAV 17, those of :data:`_KNOWN_OPTIONS`)."""
    options = getattr(codec.create(), "supported_options", None)
    if options is None:
        return _KNOWN_OPTIONS.get(codec.name, set())
    return {o.name for o in options.private}


#: Encoder options that choose the rate control: one given with ``--encoder-opt``
#: replaces lutsr's default CRF (x264 would let a CRF win over a ``qp``).
RATE_OPTIONS = frozenset({"crf", "qp", "b", "cq", "q", "global_quality", "lossless", "qp_i"})


#: ``--encoder-opt`` keys that a dedicated option sets, and that option.
_DEDICATED = {"crf": "crf", "preset": "preset", "b": "bitrate"}


def parse_encoder_option(text: str) -> tuple[str, str]:
    """``"crf=20"`` as ``("crf", "20")``: ``--encoder-opt``'s argument."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or key != key.strip():
        raise ValueError(f"--encoder-opt must look like key=value (e.g. tune=film or "
                         f"x264-params=keyint=50), got {text!r}")
    return key, value


def check_encoder_options(av, encoder, given: dict[str, str], dedicated: dict[str, object]):
    """Refuse ``--encoder-opt`` keys the encoder does not have, or values it does not open with.

    Parameters
    ----------
    av : module
        PyAV.
    encoder : av.Codec
    given : dict of str to str
        The options asked (``VideoOptions.encoder_options``).
    dedicated : dict of str to object
        The values of ``crf``, ``preset`` and ``bitrate`` given by their own
        options: the same setting twice is refused.

    Raises
    ------
    ValueError
        One line: an unknown key (FFmpeg would ignore it silently, PyAV
        only lists it after the encoder has opened), a key given twice, or
        the encoder refusing to open with the options (a bad value) on a
        256x256 trial.

    Notes
    -----
    The names known are the encoder's own options and the generic ones of
    every encoder (``g``, ``bf``, ``b``...), as PyAV lists them; on PyAV 17,
    which lists none, only the trial open's unused options are refused.
    """
    if not given:
        return
    for key in given:
        if _DEDICATED.get(key) and dedicated.get(_DEDICATED[key]) is not None:
            raise ValueError(f"--encoder-opt {key}=... and --{_DEDICATED[key]} set the same "
                             "thing; give one")
    listed = getattr(encoder.create(), "supported_options", None)
    if listed is not None:
        names = {o.name for o in listed.private} | {o.name for o in listed.generic}
        unknown = sorted(set(given) - names)
        if unknown:
            raise ValueError(f"encoder {encoder.name} has no option {', '.join(unknown)} "
                             f"(--encoder-opt); `ffmpeg -h encoder={encoder.name}` lists "
                             "its options")
    ctx = encoder.create()
    ctx.width, ctx.height, ctx.time_base = 256, 256, Fraction(1, 25)
    formats = [f.name for f in (encoder.video_formats or [])]
    ctx.pix_fmt = "yuv420p" if "yuv420p" in formats or not formats else formats[0]
    ctx.options = {**QUIET_OPTIONS.get(encoder.name, {}), **given}
    try:
        with ffmpeg_log_level(av, True):
            ctx.open()
    except Exception as exc:  # av.error.FFmpegError
        why = getattr(exc, "strerror", None) or str(exc)
        shown = " ".join(f"{k}={v}" for k, v in given.items())
        raise ValueError(f"encoder {encoder.name} does not open with --encoder-opt {shown} "
                         f"({why})") from None
    unused = sorted(set(ctx.options) & set(given))
    if unused:
        raise ValueError(f"encoder {encoder.name} ignored --encoder-opt "
                         f"{', '.join(unused)} (not one of its options)")


def pick_encoder(av, muxer: str, codec: str | None, *, crf: float | None,
                 preset: str | None) -> tuple[object, set[str]]:
    """The video encoder of a run, checked against the options asked of it.

    Parameters
    ----------
    av : module
        PyAV.
    muxer : str
    codec : str or None
        The encoder asked for, or a common name (:func:`resolve_codec`);
        None: :data:`DEFAULT_CODECS` for the muxer, else ``libx264``.
    crf, preset
        Refused when the encoder has no such setting (or no such preset).

    Returns
    -------
    encoder : av.Codec
        Usable here (:func:`open_encoder`).
    options : set of str
        Its own option names (:func:`private_options`).
    """
    if codec is None:
        codec = DEFAULT_CODECS.get(muxer, "libx264")
        if codec not in av.codecs_available:
            raise ValueError(f"{muxer} output needs the {codec} encoder, which this FFmpeg "
                             "build lacks; choose another container (e.g. .mkv) or --codec")
    else:
        codec = resolve_codec(av, codec)
    encoder = open_encoder(av, codec)
    with ffmpeg_log_level(av, True):  # listing the options warns of deprecated ones
        options = private_options(encoder)
    if crf is not None and "crf" not in options:
        raise ValueError(f"encoder {codec} has no CRF setting; use bitrate instead")
    if preset is not None and "preset" not in options:
        raise ValueError(f"encoder {codec} has no preset setting")
    if preset is not None and preset not in KNOWN_PRESETS.get(encoder.name, (preset,)):
        raise ValueError(f"encoder {codec} has no preset {preset!r}; choose one of "
                         f"{', '.join(KNOWN_PRESETS[encoder.name])}")
    return encoder, options


def check_streams(av, out, muxer: str, encoder, copies, kind: str) -> dict[int, str]:
    """Refuse streams the output cannot hold; return the audio to re-encode, and its encoder.

    Parameters
    ----------
    av : module
        PyAV.
    out : av.container.OutputContainer
    muxer : str
    encoder : av.Codec
        The video encoder.
    copies : list of av streams
        The audio and subtitle streams to copy.
    kind : str
        How messages name the output (``"a .mp4 file"``, ``"y4m output"``).

    Returns
    -------
    dict of int to str
        Input audio stream index: the encoder that re-encodes it
        (:data:`AUDIO_TRANSCODE`); the other ``copies`` are copied as they are.
    """
    if not holds(out, muxer, encoder.canonical_name):
        raise ValueError(f"{kind} cannot hold {encoder.canonical_name} "
                         "video; choose another --codec or container")
    audio_codec = AUDIO_TRANSCODE.get(muxer)
    transcode = {st.index for st in copies if st.type == "audio"
                 and audio_codec is not None
                 and not holds(out, muxer, st.codec_context.name)}
    if transcode and audio_codec not in av.codecs_available:
        raise ValueError(f"{kind} needs the input's audio re-encoded with "
                         f"{audio_codec}, which this FFmpeg build lacks; use "
                         "--no-audio or another container (e.g. .mkv)")
    unsupported = [f"{st.type} stream #{st.index} ({st.codec_context.name})"
                   for st in copies if st.index not in transcode
                   and not holds(out, muxer, st.codec_context.name)]
    if unsupported:
        raise ValueError(
            f"{kind} cannot hold the input's "
            f"{', '.join(unsupported)}; choose another container (e.g. .mkv) or "
            "drop those streams (--no-audio / --no-subtitles)")
    return {i: audio_codec for i in transcode}


def copied_names(copies, muxer: str) -> list[str]:
    """The streams copied as a report names them: ``"audio:aac"``, ``"audio:aac -> libopus"``..."""
    names = [f"{st.type}:{st.codec_context.name}" for st in copies]
    if muxer in AUDIO_TRANSCODE:  # named as written: see check_streams
        names = [n if n.split(":")[1] in WEBM_AUDIO or not n.startswith("audio")
                 else f"{n} -> {AUDIO_TRANSCODE[muxer]}" for n in names]
    return names


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
    av = import_av()
    src, bits = av.VideoFormat(decoded), format_depth(decoded)

    def layout(name):
        m = re.search(r"4[24][024]", name)
        return m.group() if m else None

    def rank(name):
        fmt, depth = av.VideoFormat(name), format_depth(name)
        return (name != decoded, len(fmt.components) != len(src.components), depth < bits,
                fmt.is_rgb != src.is_rgb, layout(name) != layout(decoded), abs(depth - bits))

    return min((n for n in supported if has_alpha(n)), key=rank, default=None)


def alpha_target(vin, encoder, pix_fmt: str | None, muxer: str, *, alpha: bool,
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
    target = (choose_pix_fmt(encoder, vin, pix_fmt) if pix_fmt is not None
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


def choose_pix_fmt(encoder, vin, pix_fmt: str | None) -> str:
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


def check_depth(vin, encoder, target_fmt: str, pix_fmt: str | None, allow_8bit: bool) -> bool:
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


def subsampled_size(size: tuple[int, int], pix_fmt: str) -> tuple[int, int]:
    """``size`` with each side made a multiple of ``pix_fmt``'s chroma subsampling on it.

    Returns
    -------
    (int, int)
        A side that is not a multiple (an odd width or height of 4:2:0,
        which encoders refuse) is rounded down to one, or up from below it.
    """
    fmt = import_av().VideoFormat(pix_fmt)
    steps = (64 // fmt.chroma_width(64), 64 // fmt.chroma_height(64))
    return tuple(max(step, n - n % step) for n, step in zip(size, steps, strict=True))
