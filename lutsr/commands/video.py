"""``lutsr video``: one video whole, or cut in segments upscaled in parallel.

:func:`cmd_video` and :func:`cmd_video_segments` turn the parsed arguments
into :class:`lutsr.video.VideoOptions`; the work is
:func:`lutsr.video.upscale_video` or :func:`lutsr.video.segments.upscale_segmented`
(segments in local processes, or on a Dask cluster's workers when
:mod:`lutsr.cluster` passes its executor). PyAV is imported only when a video
command runs, so parsing the command line does not need it.
"""

from __future__ import annotations

import os
import sys

from .common import (
    CLIError,
    box_asked,
    broken_pipe,
    refuse_lut_output,
    resize_asked,
    resize_plan,
    show_progress,
    upscaler_from_args,
)


def _video_options(args):
    """``lutsr video``'s options as :class:`lutsr.video.VideoOptions`."""
    from ..video import VideoOptions

    return VideoOptions(
        backend=args.backend, threads=args.threads, luma_only=args.luma_only, codec=args.codec,
        crf=args.crf, bitrate=args.bitrate, pix_fmt=args.pix_fmt, preset=args.preset,
        audio=not args.no_audio, subtitles=not args.no_subtitles, allow_8bit=args.allow_8bit,
        overwrite=args.overwrite, progress=show_progress(args), outscale=args.outscale,
        size=args.size, format=args.format, input_size=args.input_size,
        input_pix_fmt=args.input_pix_fmt, input_rate=args.input_rate, quiet=args.quiet,
        alpha=not args.no_alpha, straight_alpha=args.straight_alpha, box=box_asked(args)[1],
        box_mode=box_asked(args)[0] or "fit", pad_colour=getattr(args, "pad_colour", (0, 0, 0)),
        colorspace=getattr(args, "colorspace", "auto"),
        encoder_options=_encoder_options(getattr(args, "encoder_opt", [])))


def _encoder_options(given: list[str]) -> dict[str, str]:
    """``--encoder-opt`` arguments as a dict; a key given twice is refused."""
    from ..video.encoding import parse_encoder_option

    options: dict[str, str] = {}
    for text in given:
        key, value = parse_encoder_option(text)
        if key in options:
            raise CLIError(f"--encoder-opt {key} is given twice")
        options[key] = value
    return options


def cmd_video(args) -> int:
    from ..video import upscale_video

    if args.more_inputs:
        raise CLIError("several videos need --cluster ADDRESS (e.g. local:2) and a folder "
                       "as OUT; or run lutsr video once per file")
    if args.output != "-":
        refuse_lut_output(args.lut, [args.output])
    if getattr(args, "skip_existing", False) and args.output != "-" \
            and os.path.lexists(args.output) and not args.overwrite:
        if not args.quiet:
            print(f"wrote 0 videos; 1 skipped (output exists): {args.output}")
        return 0
    upscaler = upscaler_from_args(args) if args.lut is not None or not resize_asked(args) else None
    try:
        report = upscale_video(args.input, args.output, options=_video_options(args),
                               upscaler=upscaler)
    except BrokenPipeError:
        if args.output != "-":
            raise
        return broken_pipe()
    if not args.quiet:
        (w, h), (ow, oh) = report.input_size, report.output_size
        kept = f"; copied {', '.join(report.copied_streams)}" if report.copied_streams else ""
        mode = "luma-only" if report.luma_only else "RGB"
        if report.turned:  # stored sizes above; --size gives the displayed ones
            mode += f", displayed {h}x{w} -> {oh}x{ow}"
        where = "stdout" if args.output == "-" else args.output
        stream = sys.stderr if args.output == "-" else sys.stdout
        if resize_asked(args):  # in displayed sizes, as --size gives them
            turned = getattr(report, "turned", False)
            sizes = ((h, w), (oh, ow)) if turned else ((w, h), (ow, oh))
            print(f"resized: {resize_plan(upscaler, args, *sizes, align=2).describe()}",
                  file=stream)
        print(f"wrote {where}: {report.frames} frames {w}x{h} -> {ow}x{oh} ({mode}) in "
              f"{report.seconds:.1f} s, {report.fps:.1f} fps{kept}", file=stream)
    return 0


def cmd_video_segments(args, executor=None, workers: int | None = None) -> int:
    """``lutsr video IN -o OUT --segments ...``: cut, upscale in parallel, join (resumable).

    ``executor`` and ``workers``: a Dask cluster's (:func:`lutsr.cluster.cli_video_segments`);
    None: ``--jobs`` processes here.
    """
    from ..video.segments import describe, upscale_segmented

    if args.segments is None:
        raise CLIError("--jobs is for --segments (the segments encoded at once); a whole "
                       "video runs in one process")
    if args.more_inputs:
        raise CLIError("--segments takes one input video (its segments are spread over "
                       "the workers)")
    refuse_lut_output(args.lut, [args.output])
    if args.skip_existing and os.path.lexists(args.output) and not args.overwrite:
        if not args.quiet:
            print(f"wrote 0 videos; 1 skipped (output exists): {args.output}")
        return 0
    upscaler = upscaler_from_args(args) if args.lut is not None or not resize_asked(args) else None
    report = upscale_segmented(args.input, args.output, _video_options(args),
                               segments=args.segments, upscaler=upscaler, executor=executor,
                               workers=workers or args.jobs)
    if not args.quiet:
        (w, h), (ow, oh) = report.input_size, report.output_size
        kept = f"; copied {', '.join(report.copied_streams)}" if report.copied_streams else ""
        print(f"wrote {args.output}: {report.frames} frames {w}x{h} -> {ow}x{oh} in "
              f"{report.seconds:.1f} s, {report.fps:.1f} fps{kept}; {describe(report)}")
    return 0
