"""The run itself: set up the output streams, then read, upscale and write in three threads.

The three steps overlap in a pipeline of threads joined by bounded queues::

    reader thread           calling thread          writer thread
    demux + decode   -->    upscale (LUT)    -->    colour convert + encode + mux
    (audio/subtitle packets pass through the queues untouched, in demux order)

FFmpeg's decoders, encoders and swscale, and lutsr's numba kernels, all run
with the GIL released, so on two cores the stages really run side by side.
A stage that fails cancels the others, and its error is raised in the calling
thread.
"""

from __future__ import annotations

import queue
import sys
import threading
from dataclasses import dataclass, field
from fractions import Fraction

from ..api import Upscaler
from ..progress import finish, progress_bar
from .avutil import format_depth
from .colour import implied_colorspace, is_full_range, to_output_format
from .encoding import (
    DEFAULT_CRF,
    DEFAULT_PRESETS,
    QUIET_OPTIONS,
    RAW_ALPHA_FORMATS,
    STALE_TAGS,
    alpha_target,
    check_depth,
    choose_pix_fmt,
    subsampled_size,
)
from .frames import resize_frame, upscale_frame_alpha, upscale_frame_luma, upscale_frame_rgb
from .inputs import Source, display_matrix, estimate_frames
from .options import VideoOptions

_QUEUE_SIZE = 6  # frames in flight per queue: enough to ride out jitter, little memory


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
        The size was asked for exactly (``--size``).
    desc : str
        The progress bar's label.
    siting : str or None
        The chroma siting to tag (``"left"``...: :data:`lutsr.video.inputs.CODEC_SITING`).
    frame_counted : bool
        The muxer counts frames: the video's time base is one frame.
    transcode : dict of int to str
        Audio stream indices re-encoded, and their encoder (the other streams
        of the source's ``copies`` are copied packet for packet).
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


@dataclass
class _Video:
    """The output video stream and what it was set up with."""

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


def note(text: str, quiet: bool) -> None:
    """Say ``text`` on stderr (one line), unless ``quiet``."""
    if not quiet:
        print(f"lutsr: note: {text}", file=sys.stderr, flush=True)


def run_pipeline(av, source: Source, out, opts: VideoOptions,
                 plan: Plan) -> tuple[int, tuple[int, int], list[str]]:
    """Set up the output streams, run the three stages.

    Parameters
    ----------
    av : module
        PyAV.
    source : Source
        The opened input; its ``items`` are the video frames and the packets
        of its ``copies``, in demux order (:func:`lutsr.video.inputs.demuxed`).
    out : av.container.OutputContainer
    opts : VideoOptions
    plan : Plan

    Returns
    -------
    frames : int
        Frames encoded.
    size : (int, int)
        The size written.
    notes : list of str
        The notes said (an odd size made even, a variable rate made constant).
    """
    video = _add_video_stream(av, out, source, opts, plan)
    copied, recoders = _add_copied_streams(av, out, source.copies, plan.transcode)
    stages = _Stages(av, source, out, video, copied, recoders, opts, plan.upscaler)
    bar = progress_bar(estimate_frames(source.container, source.video), enabled=opts.progress,
                       unit="frame", desc=plan.desc, plain=True, leave=True,
                       dynamic_ncols=True, smoothing=0.1)
    stages.run(bar)
    if stages.uneven:
        text = (f"the input's frame rate varies, but y4m holds one constant rate: its "
                f"{stages.frames} frames were written one each at the average rate, "
                f"{float(video.rate):.6g} fps (the length is kept, single frames may show early "
                "or late)")
        note(text, opts.quiet)
        video.notes.append(text)
    return stages.frames, video.size, video.notes


def _add_video_stream(av, out, source: Source, opts: VideoOptions, plan: Plan) -> _Video:
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
    colorspace, full_range = _tag_colour(av, vin.codec_context, ctx_out, target_fmt)
    vout.options = _encoder_options(plan, opts, ctx_out)
    for key in ("language", "title"):
        if key in vin.metadata:
            vout.metadata[key] = vin.metadata[key]
    out.metadata.update({k: v for k, v in source.container.metadata.items()
                         if k.lower() not in STALE_TAGS})
    return _Video(vout, rate, target_fmt, alpha_fmt, deep, out_size, colorspace, full_range,
                  time_base, notes)


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
                         f"give an even --size (e.g. {even[0]}x{even[1]}) or use --pix-fmt "
                         "yuv444p")
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


def _encoder_options(plan: Plan, opts: VideoOptions, ctx_out) -> dict[str, str]:
    """The encoder's options (preset, CRF, quiet, siting); a bitrate is set on ``ctx_out``."""
    name, options = plan.encoder.name, plan.encoder_options
    chosen = {}
    if "preset" in options and (opts.preset or DEFAULT_PRESETS.get(name)):
        chosen["preset"] = opts.preset or DEFAULT_PRESETS[name]
    if plan.bit_rate is not None:
        ctx_out.bit_rate = plan.bit_rate
    elif "crf" in options:
        chosen["crf"] = f"{opts.crf if opts.crf is not None else DEFAULT_CRF:g}"
        if name.startswith("libvpx"):
            ctx_out.bit_rate = 0  # libvpx's constant-quality mode
    if opts.quiet:
        chosen.update(QUIET_OPTIONS.get(name, {}))
    if plan.siting is not None:
        chosen["chroma_sample_location"] = plan.siting  # a generic option of every encoder
    return chosen


def _add_copied_streams(av, out, copies, transcode: dict[int, str]):
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


class _Stages:
    """The reader, upscaler and writer of one run, joined by two bounded queues."""

    def __init__(self, av, source: Source, out, video: _Video, copied, recoders,
                 opts: VideoOptions, upscaler: Upscaler | None):
        self.av, self.source, self.out, self.video = av, source, out, video
        self.copied, self.recoders = copied, recoders
        self.opts, self.upscaler = opts, upscaler
        self.cancel = threading.Event()
        self.decoded, self.upscaled = _Pipe(self.cancel), _Pipe(self.cancel)
        self.matrix = None  # the first frame's display matrix, for the output's header
        self.frames = 0
        self.tick: int | None = None
        self.uneven = False  # y4m output of a variable frame rate
        self.one_rate = out.format.name == "yuv4mpegpipe"  # one frame rate, no timestamps

    def run(self, bar) -> None:
        """Read and write in their threads, upscale here; raise a stage's error."""
        reader = _Worker("read", self.read, self.cancel)
        writer = _Worker("write", self.write, self.cancel)
        reader.start()
        writer.start()
        try:
            while True:
                item = self.decoded.get()
                if item is not _END and not isinstance(item, self.av.Packet):
                    item = self.upscale(item)
                    bar.update(1)
                self.upscaled.put(item)
                if item is _END:
                    break
            while writer.is_alive():  # a timed join keeps Ctrl-C responsive
                writer.join(0.1)
            if writer.error is None and reader.error is None:
                finish(bar)
        except _CancelledError:
            pass  # a stage failed: its error is raised below
        except BaseException:
            self.cancel.set()
            raise
        finally:
            self.cancel.set()  # no-op on success: both stages have finished
            for stage in (reader, writer):
                stage.join(10)
            bar.close()
        for stage in (reader, writer):
            if stage.error is not None:
                raise stage.error

    def read(self) -> None:
        """Decoded frames (numbered when they have no timestamp) and packets, in order."""
        fallback_tb = Fraction(1, 1) / self.video.rate
        count = 0
        for frame in self.source.items:
            if isinstance(frame, self.av.Packet):
                self.decoded.put(frame)
                continue
            if count == 0:
                self.matrix = display_matrix(frame)
            if frame.pts is None:  # e.g. raw .h264: number the frames
                frame.pts, frame.time_base = count, fallback_tb
            count += 1
            self.decoded.put(frame)
        self.decoded.put(_END)

    def upscale(self, frame):
        """One decoded frame upscaled (and resized) as the options ask."""
        opts, upscaler, video = self.opts, self.upscaler, self.video
        size = video.size
        if video.alpha_fmt is not None and not opts.luma_only:  # premultiplied around LUT, resize
            return upscale_frame_alpha(frame, upscaler, size, video.colorspace, video.deep,
                                       straight=opts.straight_alpha)
        if upscaler is None:  # a downscale: no LUT, swscale alone
            big = frame
        elif opts.luma_only:
            big = upscale_frame_luma(frame, upscaler, video.deep,
                                     alpha=video.alpha_fmt is not None)
        else:
            big = upscale_frame_rgb(frame, upscaler, video.colorspace, video.deep)
        if (big.width, big.height) != tuple(size):
            big = resize_frame(big, size)
        return big

    def write(self) -> None:
        """Encode the upscaled frames and mux them with the copied packets; close the output."""
        held: list = []  # packets that arrive before the first frame fixes the header
        started = False
        last_pts = None
        while True:
            item = self.upscaled.get()
            if item is _END:
                break
            if isinstance(item, self.av.Packet):
                packets = self._output_packets(item)
                if started:
                    for packet in packets:
                        self.out.mux(packet)
                else:
                    held.extend(packets)
                continue
            if not started:
                self._start(held)
                started = True
            last_pts = self._encode(item, last_pts)
        if not started:
            inp = self.source.container
            name = "stdin" if inp.name.startswith("<") else inp.name  # "<stdin>", "<none>"
            raise ValueError(f"{name}: no video frame could be decoded: the input is "
                             "empty, or ends before its first frame is complete")
        self._flush()

    def _output_packets(self, packet) -> list:
        """A copied stream's packet as the output's, or a re-encoded one's new packets."""
        if packet.stream_index in self.recoders:
            dec, ast = self.recoders[packet.stream_index]
            return [p for f in dec.decode(packet) for p in ast.encode(f)]
        packet.stream = self.copied[packet.stream_index]
        return [packet]

    def _start(self, held: list) -> None:
        """Set the display matrix (in the header, which the first mux writes); mux ``held``."""
        vin, vout = self.source.video, self.video.stream
        if self.matrix is not None:
            vout.set_display_matrix(self.matrix)
        elif "rotate" in vin.metadata:  # legacy tag: clockwise degrees
            vout.set_display_rotation(-float(vin.metadata["rotate"]))
        for packet in held:
            self.out.mux(packet)
        held.clear()

    def _encode(self, item, last_pts: int | None) -> int:
        """Convert, timestamp and encode one upscaled frame; return its timestamp."""
        video = self.video
        frame = to_output_format(item, video.pix_fmt, video.colorspace, video.full_range)
        if self.one_rate and frame.pts is not None and frame.time_base is not None:
            # the frame's place at the constant rate (y4m has no timestamps)
            tick = round(frame.pts * frame.time_base / video.time_base)
            if self.tick is not None and tick != self.tick + 1:
                self.uneven = True
            self.tick = tick
        frame = _for_encoder(frame, video.time_base, last_pts)
        for packet in video.stream.encode(frame):
            self.out.mux(packet)
        self.frames += 1
        return frame.pts

    def _flush(self) -> None:
        """Drain the encoders and close the output."""
        for packet in self.video.stream.encode(None):
            self.out.mux(packet)
        for dec, ast in self.recoders.values():
            for packet in [p for f in dec.decode(None) for p in ast.encode(f)]:
                self.out.mux(packet)
            for packet in ast.encode(None):
                self.out.mux(packet)
        self.out.close()


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
