"""Reading the input: its first bytes, a YUV4MPEG2 header, frame-size checks, errors, demuxing.

FFmpeg's own errors on a bad input say little ("Invalid argument", "Device
or resource busy"); what is wrong is read here from the input's first bytes
(:func:`read_head`) and said in one line (:func:`input_error`,
:func:`check_y4m_header`, :func:`check_frame_size`). The chroma siting and
the display matrix (rotation) of the input are read here too, to be kept on
the output.
"""

from __future__ import annotations

import itertools
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..outsize import output_size
from .avutil import ffmpeg_log_level
from .options import VideoOptions

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


def explained(av, items, explain):
    """``items`` (a generator that demuxes and decodes), its FFmpeg errors ``explain(exc)``."""
    try:
        yield from items
    except av.error.FFmpegError as exc:
        raise explain(exc) from exc


def pick_video_stream(av, container):
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:  # skip cover art
            return stream
    raise ValueError(f"{container.name}: no video stream")


def estimate_frames(container, stream) -> int | None:
    if stream.frames:
        return stream.frames
    rate = stream.average_rate or stream.guessed_rate
    if rate and stream.duration and stream.time_base:
        return round(stream.duration * stream.time_base * rate)
    if rate and container.duration:
        return round(container.duration / 1_000_000 * rate)
    return None


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


def peek_frame(av, items):
    """The first video frame of ``items`` (None if none) and an iterator of all of them."""
    head = []
    for item in items:
        head.append(item)
        if not isinstance(item, av.Packet):
            return item, itertools.chain(head, items)
    return None, iter(head)


def display_matrix(frame) -> list[int] | None:
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
        The display matrix of its frames (:func:`display_matrix`).
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


@dataclass
class Source:
    """An opened input, its first frame decoded.

    Attributes
    ----------
    container : av.container.InputContainer
        Closed by the caller.
    video : av.video.stream.VideoStream
        The stream upscaled (:func:`pick_video_stream`).
    copies : list of av streams
        The audio and subtitle streams copied.
    items : iterator of av.VideoFrame and av.Packet
        The decoded frames of ``video`` and the packets of ``copies``, in
        demux order (:func:`demuxed`), FFmpeg's errors said by
        :func:`input_error`.
    name : str
        The input as messages name it (``"stdin"`` for a pipe).
    turned : bool
        Displayed turned a quarter turn (:func:`quarter_turned`).
    siting : str or None
        The chroma siting, kept on the output (:data:`Y4M_SITING`,
        :data:`CODEC_SITING`).
    """

    container: object
    video: object
    copies: list
    items: Iterator
    name: str
    turned: bool
    siting: str | None


def open_source(av, src: Path, pipe: bool, opts: VideoOptions) -> Source:
    """Open the input (a file, stdin, raw frames), pick its streams, decode its first frame.

    Raises
    ------
    ValueError
        A bad raw size or pixel format, a damaged y4m header, an input FFmpeg
        cannot open or decode (:func:`input_error`), no video stream.
    """
    name = "stdin" if pipe else str(src)
    demuxer, demux_options, raw = _raw_input(av, opts)
    head = read_head(src, pipe)
    y4m_tags = parse_y4m_header(head) if demuxer is None else None
    if y4m_tags is not None:
        check_y4m_header(y4m_tags, name)

    def explain(exc, opening=False):
        return input_error(exc, name, head, pipe=pipe, raw=raw, opening=opening)

    try:
        inp = av.open(sys.stdin.buffer if pipe else str(src), format=demuxer,
                      options=demux_options)
    except av.error.FFmpegError as exc:
        raise explain(exc, opening=True) from exc
    try:
        vin = pick_video_stream(av, inp)
        vin.thread_type = "AUTO"  # frame + slice threads in the decoder
        copies = [st for st in inp.streams if (opts.audio and st.type == "audio")
                  or (opts.subtitles and st.type == "subtitle")]
        # The display matrix (which sizes are displayed) comes with the first frame.
        with ffmpeg_log_level(av, opts.quiet):
            first, items = peek_frame(av, explained(av, demuxed(inp, vin, copies), explain))
        turned = quarter_turned(None if first is None else display_matrix(first), vin.metadata)
        siting = (CODEC_SITING.get(vin.codec_context.name) if y4m_tags is None
                  else Y4M_SITING.get(y4m_tags.get("C", "420")))
    except BaseException:
        inp.close()
        raise
    return Source(inp, vin, copies, items, name, turned, siting)


def _raw_input(av, opts: VideoOptions) -> tuple[str | None, dict | None, str | None]:
    """The demuxer and its options for raw input (``input_size``), and how messages name it."""
    if opts.input_size is None:
        return None, None, None
    output_size((1, 1), size=opts.input_size)  # two positive integers
    w, h = opts.input_size
    try:
        av.VideoFormat(opts.input_pix_fmt)
    except Exception as exc:  # av's ValueError names it badly
        raise ValueError(f"unknown input pixel format {opts.input_pix_fmt!r}") from exc
    options = {"video_size": f"{w}x{h}", "pixel_format": opts.input_pix_fmt,
               "framerate": str(opts.input_rate)}
    return "rawvideo", options, f"{w}x{h} {opts.input_pix_fmt}"
