"""The public entry point, :func:`upscale_video`: check, open, plan, then write safely."""

from __future__ import annotations

import errno
import functools
import itertools
import os
import sys
import time
from pathlib import Path

from ..api import Upscaler
from ..outsize import ASPECT_SIDES, BOX_MODES, BoxGeometry, box_geometry, output_size, pick_lut
from ..safefiles import atomic_output, check_output, lut_inputs
from .avutil import ffmpeg_log_level, import_av
from .colour import COLORSPACE_MODES
from .encoding import (
    FRAME_COUNTED,
    check_encoder_options,
    check_streams,
    copied_names,
    output_muxer,
    parse_bitrate,
    pick_encoder,
)
from .inputs import Source, check_frame_size, open_source
from .options import VideoOptions, VideoReport
from .pipeline import run_pipeline
from .streams import Plan


def upscale_video(src: str | os.PathLike, dst: str | os.PathLike, lut=None,
                  options: VideoOptions | None = None, *,
                  upscaler: Upscaler | None = None,
                  span: tuple[int | None, int | None] | None = None) -> VideoReport:
    """Upscale a video file with a LUT model.

    Parameters
    ----------
    src, dst : path or "-"
        Input video (anything FFmpeg reads; ``"-"``: stdin, format probed)
        and output file (``"-"``: stdout, ``options.format`` required); the
        output's suffix picks the container (see
        :data:`lutsr.video.encoding.CONTAINERS`) unless ``options.format`` is
        given.
    lut : LUT, str, path or None
        The model (see :class:`lutsr.Upscaler`); ignored if ``upscaler`` is
        given. None with ``options.outscale`` or ``options.size``: the
        bundled LUT picked by :func:`lutsr.outsize.pick_lut` (none for a
        downscale).
    options : VideoOptions, optional
        How to upscale and encode (default: ``VideoOptions()``).
    upscaler : Upscaler, optional
        A ready :class:`lutsr.Upscaler` to use instead of building one.
    span : (int or None, int or None), optional
        Only the video frames whose timestamps ``pts`` (in the video stream's
        time base) have ``start <= pts < end`` (None: from the first, to the
        last), decoded from the keyframe at or before ``start``: one segment
        of a segmented run (:mod:`lutsr.video.segments`), whose options copy
        no other stream.

    Returns
    -------
    VideoReport

    Raises
    ------
    FileExistsError
        ``dst`` exists and ``options.overwrite`` is false.
    ValueError
        Bad options, no video stream, a stream the output container cannot
        hold, ``dst`` is ``src``, an output shallower than the input without
        ``allow_8bit``, an output frame too large for FFmpeg
        (:func:`lutsr.video.inputs.check_frame_size`), an input FFmpeg cannot
        open or decode (a damaged file, a bad y4m header, raw input that is
        not whole frames, an MP4 on a pipe with its index last:
        :func:`lutsr.video.inputs.input_error`).
    av.error.FFmpegError
        The encoder or muxer fails.

    Notes
    -----
    The output appears at ``dst`` only when complete (see
    :func:`lutsr.safefiles.atomic_output`); on any error or interruption it is
    not created and ``src`` is never modified.
    """
    opts = VideoOptions() if options is None else options
    av = import_av()
    t0 = time.perf_counter()
    src_pipe, dst_pipe = str(src) == "-", str(dst) == "-"
    src, dst = Path(src), Path(dst)
    muxer, reads = _check_request(src, dst, src_pipe, dst_pipe, lut, upscaler, opts)
    encoder, encoder_options = pick_encoder(av, muxer, opts.codec, crf=opts.crf,
                                            preset=opts.preset)
    check_encoder_options(av, encoder, opts.encoder_options,
                          {"crf": opts.crf, "preset": opts.preset, "bitrate": opts.bitrate})
    bit_rate = parse_bitrate(opts.bitrate) if opts.bitrate is not None else None
    if opts.outscale is not None:
        output_size((1, 1), outscale=opts.outscale)  # a bad factor fails before any reading
    if upscaler is None and opts.outscale is None and opts.size is None and opts.box is None:
        upscaler = Upscaler(lut, backend=opts.backend, threads=opts.threads)
    source = open_source(av, src, src_pipe, opts)
    try:
        if span is not None:
            source.items = _span_frames(source, source.items, *span)
        ctx = source.video.codec_context
        in_size = (ctx.width, ctx.height)
        out_size, upscaler, box = _output_size(source, in_size, lut, upscaler, opts)
        exact = (opts.size is not None and not set(opts.size) & set(ASPECT_SIDES)
                 or box is not None and box.mode != "fit")
        plan = Plan(upscaler, encoder, encoder_options, bit_rate, out_size, size_given=exact,
                    desc=source.name if src_pipe else src.name, siting=source.siting,
                    frame_counted=muxer in FRAME_COUNTED, box=box)
        copied = copied_names(source.copies, muxer)  # while the streams are open
        kind = f"{opts.format} output" if opts.format is not None else f"a {dst.suffix} file"
        write_to = functools.partial(_encode_into, av, source, muxer, kind, opts, plan)
        frames, size, notes = _write(write_to, dst, dst_pipe, opts.overwrite, reads)
    finally:
        source.container.close()
    return VideoReport(frames=frames, seconds=time.perf_counter() - t0, input_size=in_size,
                       output_size=size, copied_streams=copied,
                       luma_only=opts.luma_only, turned=source.turned, notes=notes)


def _span_frames(source: Source, items, start: int | None, end: int | None):
    """The frames of ``source.video`` with ``start <= pts < end``, decoded from a keyframe.

    Frames are selected by presentation time, so B-frames reordered across
    ``end`` (and an open GOP's leading frames before ``start``) land in the
    segment they are shown in.
    """
    frames = items  # source.items, decoded from the first frame: nothing to seek
    if start is not None:
        inp, vin = source.container, source.video
        inp.seek(start, stream=vin, backward=True, any_frame=False)
        packets = inp.demux(vin)
        first = next(packets, None)
        if first is not None and not (first.is_keyframe and first.pts is not None
                                      and first.pts <= start):
            # no index to land on the keyframe (MPEG-TS...): decode from the first packet
            inp.seek(0)
            packets = inp.demux(vin)
        elif first is not None:
            packets = itertools.chain([first], packets)
        frames = (f for packet in packets for f in vin.decode(packet))
    for frame in frames:
        if end is not None and frame.pts is not None and frame.pts >= end:
            return  # decoded in display order: every later frame is later still
        if start is None or frame.pts is None or frame.pts >= start:
            yield frame


def _check_request(src: Path, dst: Path, src_pipe: bool, dst_pipe: bool, lut,
                   upscaler: Upscaler | None, opts: VideoOptions) -> tuple[str, tuple]:
    """Refuse a missing input, an unusable output and contradictory options; before any work.

    Returns
    -------
    muxer : str
    reads : tuple of paths
        The files the run reads (the input, a LUT file), which ``dst`` must not be.
    """
    if not src_pipe and not src.is_file():
        raise FileNotFoundError(f"no such video file: {src}")
    muxer = output_muxer(dst, opts.format)
    # the LUT file read is an input too (an upscaler given makes lut unused)
    reads = (() if src_pipe else (src,)) + (lut_inputs(lut) if upscaler is None else ())
    if not dst_pipe:
        check_output(dst, opts.overwrite, reads)
    if opts.crf is not None and opts.bitrate is not None:
        raise ValueError("give either crf or bitrate, not both")
    if sum(x is not None for x in (opts.outscale, opts.size, opts.box)) > 1:
        raise ValueError("give one of outscale, size and box (--fit/--pad/--crop)")
    if opts.box_mode not in BOX_MODES:
        raise ValueError(f"box_mode must be one of {', '.join(BOX_MODES)}, got {opts.box_mode!r}")
    if opts.colorspace not in COLORSPACE_MODES:
        raise ValueError(f"colorspace must be one of {', '.join(COLORSPACE_MODES)}, got "
                         f"{opts.colorspace!r}")
    return muxer, reads


def _output_size(source: Source, in_size: tuple[int, int], lut, upscaler: Upscaler | None,
                 opts: VideoOptions) -> tuple[tuple[int, int], Upscaler | None,
                                              BoxGeometry | None]:
    """The encoded frames' size, the upscaler (the bundled LUT picked for a size asked), and
    the ``--fit``/``--pad``/``--crop`` geometry in stored sizes (None without a box)."""
    box = None
    if opts.outscale is not None or opts.size is not None or opts.box is not None:
        # --size and the box are displayed sizes (as for images, after EXIF rotation)
        turned = source.turned
        shown_in = in_size[::-1] if turned else in_size
        if opts.box is not None:
            # even sides and offsets: 4:2:0 chroma covers two pixels each way
            box = box_geometry(shown_in, opts.box, opts.box_mode, align=2)
            box = box.turned() if turned else box
            out_size, scaled = box.out, box.scaled
        else:
            shown = output_size(shown_in, outscale=opts.outscale, size=opts.size)
            out_size = scaled = shown[::-1] if turned else shown
        if upscaler is None:
            if lut is None:
                lut = pick_lut(in_size, scaled)
            if lut is not None:
                upscaler = Upscaler(lut, backend=opts.backend, threads=opts.threads)
        check_frame_size(scaled, "the scaled size", "choose a smaller box")
    else:
        out_size = (in_size[0] * upscaler.scale, in_size[1] * upscaler.scale)
    check_frame_size(out_size, "the output size", "choose a smaller --size or --outscale")
    return out_size, upscaler, box


def _encode_into(av, source: Source, muxer: str, kind: str, opts: VideoOptions, plan: Plan,
                 target):
    """Open ``target`` (a path or a file object) as the output and run the pipeline into it."""
    out = av.open(target, "w", format=muxer)
    try:
        plan.transcode = check_streams(av, out, muxer, plan.encoder, source.copies, kind)
        with ffmpeg_log_level(av, opts.quiet):
            return run_pipeline(av, source, out, opts, plan)
    finally:
        out.close()  # idempotent; the pending file is discarded on error


def _write(write_to, dst: Path, dst_pipe: bool, overwrite: bool, reads: tuple):
    """``write_to(target)`` on stdout, or on a file that appears at ``dst`` only when complete."""
    if not dst_pipe:
        with atomic_output(dst, overwrite=overwrite, inputs=reads) as pending:
            return write_to(pending.path)
    try:
        result = write_to(sys.stdout.buffer)
        sys.stdout.buffer.flush()
    except Exception as exc:
        # PyAV reports a failed write as its own callback error; say what it was
        if _caused_by(exc, BrokenPipeError):
            raise BrokenPipeError(errno.EPIPE, "the output pipe was closed by its "
                                               "reader") from None
        raise
    return result


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether ``exc`` or an exception in its cause/context chain is a ``kind``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
