"""The run itself: set up the output's streams, then read, upscale and write in three threads.

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
import threading
from fractions import Fraction

from ..progress import finish, progress_bar
from .colour import to_output_format
from .frames import (
    place_frame,
    resize_frame,
    upscale_frame_alpha,
    upscale_frame_luma,
    upscale_frame_rgb,
)
from .inputs import Source, display_matrix, estimate_frames
from .options import VideoOptions
from .streams import OutputVideo, Plan, add_copied_streams, add_video_stream, note

_QUEUE_SIZE = 6  # frames in flight per queue: enough to ride out jitter, little memory


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
    video = add_video_stream(av, out, source, opts, plan)
    copied, recoders = add_copied_streams(av, out, source.copies, plan.transcode)
    stages = _Stages(av, source, out, video, copied, recoders, opts, plan)
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

    def __init__(self, av, source: Source, out, video: OutputVideo, copied, recoders,
                 opts: VideoOptions, plan: Plan):
        self.av, self.source, self.out, self.video = av, source, out, video
        self.copied, self.recoders = copied, recoders
        self.opts, self.upscaler, self.box = opts, plan.upscaler, plan.box
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
        """One decoded frame upscaled (resized, padded or cropped) as the options ask."""
        opts, upscaler, video, box = self.opts, self.upscaler, self.video, self.box
        size = video.size if box is None else box.scaled
        if video.alpha_fmt is not None and not opts.luma_only:  # premultiplied around LUT, resize
            big = upscale_frame_alpha(frame, upscaler, size, video.source_colorspace,
                                      video.deep, straight=opts.straight_alpha)
        else:
            if upscaler is None:  # a downscale: no LUT, swscale alone
                big = frame
            elif opts.luma_only:
                big = upscale_frame_luma(frame, upscaler, video.deep,
                                         alpha=video.alpha_fmt is not None)
            else:
                big = upscale_frame_rgb(frame, upscaler, video.source_colorspace, video.deep)
            if (big.width, big.height) != tuple(size):
                big = resize_frame(big, size)
        if box is not None:
            big = place_frame(big, box, opts.pad_colour, video.source_colorspace)
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
        frame = to_output_format(item, video.pix_fmt, video.colorspace, video.full_range,
                                 video.source_colorspace)
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
