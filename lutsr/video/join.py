"""Joining a segmented run's files without re-encoding, with the input's other streams.

See :mod:`lutsr.video.segments`: each segment is a file of the output's
container whose video packets carry the timestamps of the input frames they
came from; :func:`join_segments` muxes them one after the other, interleaved
with the input's audio and subtitle packets, into the output.
"""

from __future__ import annotations

import heapq
from pathlib import Path

from ..safefiles import atomic_output
from .encoding import STALE_TAGS, check_streams, copied_names
from .inputs import pick_video_stream
from .options import VideoOptions
from .streams import add_copied_streams


def join_segments(av, src: Path, parts: list[str], dst: Path, opts: VideoOptions,
                  muxer: str) -> list[str]:
    """Join the segment files into ``dst`` without re-encoding, with the input's other streams.

    The video packets keep their timestamps (those of the input frames they
    came from); the input's audio and subtitle packets are copied (or
    re-encoded where the container needs it, as a whole run does), with its
    chapters and metadata. ``dst`` appears only when complete.

    Returns
    -------
    list of str
        The streams copied, as :attr:`lutsr.video.VideoReport.copied_streams` names them.
    """
    inp = av.open(str(src))
    opened = []
    try:
        vin = pick_video_stream(av, inp)
        copies = [st for st in inp.streams if (opts.audio and st.type == "audio")
                  or (opts.subtitles and st.type == "subtitle")]
        for part in parts:
            opened.append(av.open(part))
        kind = f"a {dst.suffix} file"
        with atomic_output(dst, overwrite=opts.overwrite, inputs=(src,)) as pending:
            out = av.open(pending.path, "w", format=muxer)
            try:
                _mux_joined(av, inp, vin, copies, opened, out, muxer, kind)
            finally:
                out.close()
        return copied_names(copies, muxer)
    finally:
        for container in opened:
            container.close()
        inp.close()


def _mux_joined(av, inp, vin, copies, parts, out, muxer: str, kind: str) -> None:
    """Set up ``out``'s streams, then mux every packet in time order."""
    template = parts[0].streams.video[0]
    encoder = av.Codec(template.codec_context.name, "w")
    transcode = check_streams(av, out, muxer, encoder, copies, kind)
    vout = out.add_stream_from_template(template)
    vout.time_base = template.time_base
    for key in ("language", "title"):
        if key in vin.metadata:
            vout.metadata[key] = vin.metadata[key]
    copied, recoders = add_copied_streams(av, out, copies, transcode)
    out.metadata.update({k: v for k, v in inp.metadata.items() if k.lower() not in STALE_TAGS})
    chapters = inp.chapters()
    if chapters:
        out.set_chapters(chapters)

    delay = max(_reorder_delay(part) for part in parts)

    def video_packets():
        for part in parts:
            times = sorted(_video_pts(part))
            part.seek(0)
            packets = (p for p in part.demux(part.streams.video[0]) if p.size)
            for packet, pts in zip(packets, times):
                # Matroska stores no decoding times: its demuxer leaves them unset on a
                # stream's first reordered packets, and a muxer then guesses them from
                # the presentation times, out of order across the joins (EINVAL).
                packet.dts = pts - delay
                yield packet

    def other_packets():
        if not copies:
            return
        for packet in inp.demux(copies):
            if packet.size and packet.dts is not None:  # skip demuxer flush packets
                yield packet

    def when(packet):
        ts = packet.dts if packet.dts is not None else packet.pts
        return (ts or 0) * packet.time_base

    for packet in heapq.merge(video_packets(), other_packets(), key=when):
        if packet.stream.type == "video":
            packet.stream = vout
            out.mux(packet)
        elif packet.stream.index in recoders:
            dec, ast = recoders[packet.stream.index]
            for p in [p for f in dec.decode(packet) for p in ast.encode(f)]:
                out.mux(p)
        else:
            packet.stream = copied[packet.stream.index]
            out.mux(packet)
    for dec, ast in recoders.values():
        for p in [p for f in dec.decode(None) for p in ast.encode(f)]:
            out.mux(p)
        for p in ast.encode(None):
            out.mux(p)


def _video_pts(part) -> list[int]:
    """The presentation times of ``part``'s video packets, in decoding order (a demux pass)."""
    part.seek(0)
    return [p.pts for p in part.demux(part.streams.video[0]) if p.size]


def _reorder_delay(part) -> int:
    """How far (in the stream's time base) decoding runs ahead of presentation in ``part``.

    With the packets' presentation times ``P`` in decoding order, ``sorted(P)[k] - delay``
    is the smallest monotonic decoding-time sequence that never passes ``P[k]``: the one
    an encoder writes for B-frames (``delay`` is the reordering depth times the frame
    duration). One value for every part keeps the sequence monotonic across the joins.
    """
    pts = _video_pts(part)
    return max((t - p for t, p in zip(sorted(pts), pts)), default=0)
