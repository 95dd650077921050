"""The ``lutsr`` command: upscale images and videos from the shell.

::

    lutsr demo [-o OUT]                      upscale the bundled sample image
    lutsr image IN [IN ...] -o OUT           files or folders of images ("-": a pipe)
    lutsr video IN -o OUT [--luma-only]      a video, audio and subtitles kept ("-": y4m pipes)
    lutsr info LUT                           describe a LUT model
    lutsr list                               the bundled LUT models
    lutsr backends                           the backends that can run here
    lutsr convert FORMAT SRC -o OUT.lutsr    import published tables (shiftlut, srlut, mulut)

``--outscale S`` / ``--size WxH`` give any output size (a LUT, then a resample);
``--cluster ADDRESS`` sends one task per file to a Dask cluster
(:mod:`lutsr.cluster`). What each command does is in :mod:`lutsr.commands`.
Every output is written under a temporary name (or none) and appears only
when complete; existing files are replaced only with ``--overwrite``; an
input (the ``--lut`` file included) is never an output. Exit status: 0 on
success, 1 on an error, 2 on bad usage, 130 when interrupted, 141 (quietly)
when the reader of a text output such as ``lutsr list | head -1`` leaves
early. An error is one line on stderr; ``--debug`` (or the environment variable
``LUTSR_DEBUG=1``) adds the Python traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import select
import signal
import sys
import threading
import traceback
import warnings

from . import __version__, bundled
from .api import BACKENDS
from .commands.common import CLIError, print_error, print_warning, silence_stdout
from .commands.image import STDIN_LIMIT, cmd_demo, cmd_image
from .commands.info import IMPORTERS, cmd_backends, cmd_convert, cmd_info, cmd_list
from .commands.video import cmd_video, cmd_video_segments
from .imageio import (
    IMAGE_FORMATS,
    JPEG_SUBSAMPLING,
    PNG_COMPRESSION,
)
from .outsize import parse_colour, parse_size

#: The exit status when stdout's reader leaves before the end of a text output: a shell's
#: status for a process ended by SIGPIPE (128 + 13), as 130 is its status for Ctrl-C.
READER_LEFT = 128 + 13

#: ``--format`` names of ``lutsr video`` (the same as :data:`lutsr.video.PIPE_FORMATS`;
#: kept here so building the parser does not import PyAV).
PIPE_FORMATS = ("mkv", "nut", "ts", "y4m")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _png_level(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 9:
        raise argparse.ArgumentTypeError(f"must be an integer 0-9, got {text}")
    return value


def _add_lut_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lut", metavar="NAME|PATH", default=None,
                   help="bundled LUT name (see `lutsr list`) or a .lutsr file "
                        f"(default: the bundled {bundled.DEFAULT!r})")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="LUT backend (default 'auto': numba on the CPU; 'reference' is the "
                        "slow numpy specification; 'webgpu' any GPU via wgpu, adapter from "
                        "LUTSR_WEBGPU_ADAPTER)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="worker threads for the LUT (default: all cores)")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and no summary")


def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip-existing", action="store_true",
                   help="skip inputs whose output exists (to resume an interrupted run), "
                        "instead of refusing to start; with or without --cluster")
    p.add_argument("--cluster", metavar="ADDRESS", default=None,
                   help="one task per file on a Dask cluster: tcp://HOST:PORT of a running "
                        "scheduler, or local:N for N worker processes here; existing outputs "
                        "are refused as without it (needs lutsr[cluster])")


def _outscale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _aspect_size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text, aspect=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _colour(text: str) -> tuple[int, int, int]:
    try:
        return parse_colour(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_size_options(p: argparse.ArgumentParser) -> None:
    size = p.add_mutually_exclusive_group()
    size.add_argument("--outscale", type=_outscale, default=None, metavar="S",
                      help="output S times the input size (any S > 0, e.g. 3 or 1.5): the "
                           "bundled LUT with the smallest factor at or above S (or --lut), then "
                           "an exact resample (area when shrinking, Lanczos when growing)")
    size.add_argument("--size", type=_aspect_size, default=None, metavar="WxH",
                      help="output exactly W x H pixels (the aspect ratio may change), "
                           "the same way; W or H -1 computes that side from the aspect "
                           "ratio, -2 the same rounded to even (e.g. 1920x-2)")
    for mode, what in (("fit", "the largest size inside the box, aspect kept"),
                       ("pad", "that, padded to exactly W x H with --pad-colour bars"),
                       ("crop", "the smallest size covering the box, its centre cut out")):
        size.add_argument(f"--{mode}", type=_size, default=None, metavar="WxH",
                          help=f"upscale (LUT, then resample) to {what}")
    p.add_argument("--pad-colour", type=_colour, default=(0, 0, 0), metavar="COLOUR",
                   help="colour of --pad's bars: black (default), white, gray, or #RRGGBB")


class _Parser(argparse.ArgumentParser):
    """argparse's parser, but a failed write of ``--help`` or ``--version`` raises.

    argparse drops the error and exits 0 with the text cut short (with
    unbuffered stdout), where a buffered stdout fails later at exit:
    :func:`main` sees both alike this way.
    """

    def _print_message(self, message, file=None):
        if message:
            (file or sys.stderr).write(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``lutsr`` command."""
    parser = _Parser(
        prog="lutsr", description="Look-up-table super-resolution for images and video.")
    parser.add_argument("--version", action="version", version=f"lutsr {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (also: LUTSR_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("image", help="upscale image files or folders",
                       description="Upscale images (PNG, JPEG, BMP, TIFF, WebP, GIF, AVIF, "
                                   "JPEG XL with the jxl extra; gray, RGB, RGBA). 16-bit PNG "
                                   "and TIFF are upscaled in 16 bits (the LUT on the top 8, "
                                   "the low 8 interpolated) and written in 16 bits to PNG and "
                                   "TIFF. Animated GIF, WebP and PNG (APNG): every frame, "
                                   "with its duration and the loop count, written to GIF, "
                                   "WebP or PNG; GIF output is palette-quantised by Pillow "
                                   "(255 colours, dithered, alpha on or off at 128). One "
                                   "input file and an output file name: that file. Several "
                                   "inputs or folders: OUT is a folder and names are kept "
                                   "(GIF becomes PNG). Alpha images are upscaled "
                                   "premultiplied; the EXIF orientation is applied to the "
                                   "pixels, and EXIF and the ICC profile are kept.")
    p.add_argument("inputs", nargs="+", metavar="IN",
                   help="image files or folders; - reads one image from stdin (at most "
                        f"{STDIN_LIMIT // 2**20} MiB; a larger one is read by its file name)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file (one input) or folder")
    p.add_argument("--ext", choices=sorted(k[1:] for k in IMAGE_FORMATS), default=None,
                   help="format of the images written to an output folder (default: each "
                        "input's own; PNG for GIF inputs, APNG if animated)")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="include images in subfolders of folder inputs; the tree is "
                        "mirrored in the output folder")
    p.add_argument("--quality", type=int, default=95,
                   help="JPEG/WebP/AVIF/JPEG XL quality 1-100 (95)")
    p.add_argument("--png-compression", type=_png_level, default=PNG_COMPRESSION,
                   metavar="0-9",
                   help=f"zlib level of PNG outputs ({PNG_COMPRESSION}: lutsr's parallel encoder; "
                        "the others Pillow's: 6 makes files about 18%% smaller and writes them "
                        "30 times slower)")
    p.add_argument("--jpeg-subsampling", choices=JPEG_SUBSAMPLING, default=None,
                   help="chroma subsampling of JPEG outputs (default 4:2:0, libjpeg's)")
    p.add_argument("--straight-alpha", action="store_true",
                   help="upscale alpha images channel by channel, as stored, instead of "
                        "premultiplied (colour of transparent pixels then bleeds into edges)")
    p.add_argument("--first-frame", action="store_true",
                   help="upscale only the first frame of an animated or multi-page image "
                        "(without it, one written to a still format is refused)")
    p.add_argument("--format", choices=sorted(k[1:] for k in IMAGE_FORMATS), default=None,
                   help="image format written to stdout with -o - (default: the input's "
                        "format, PNG if lutsr cannot write it); IN and OUT may be - for a pipe")
    _add_size_options(p)
    _add_lut_options(p)
    _add_output_options(p)
    _add_cluster_options(p)
    p.set_defaults(func=_image)

    p = sub.add_parser("video", help="upscale a video file",
                       description="Upscale a video: decode, upscale, encode, and copy the "
                                   "audio and subtitle streams. Frame rate, timestamps and "
                                   "rotation are kept. The output suffix picks the container.")
    p.add_argument("input", metavar="IN")
    p.add_argument("more_inputs", nargs="*", metavar="IN",
                   help="more videos, with --cluster (OUT is then a folder)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output video (.mp4, .mkv, .mov, .webm, .avi, .ts, .m4v, .y4m), or - "
                        "for stdout with --format")
    p.add_argument("--luma-only", action="store_true",
                   help="LUT on the luma (Y) plane only, bicubic chroma: about 3x less LUT "
                        "work, no RGB conversion")
    p.add_argument("--codec", default=None,
                   help="video encoder: an FFmpeg name (libx264, libx265, ffv1, h264_nvenc...) "
                        "or a common one (h264, h265/hevc, av1, vp9, prores); default libx264 "
                        "(raw frames for y4m, vp9 for .webm)")
    p.add_argument("--encoder-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="an FFmpeg encoder option, e.g. tune=film or x265-params=aq-mode=3 "
                        "(repeatable); a key the encoder lacks is refused")
    p.add_argument("--colorspace", choices=("auto", "bt709", "keep"), default="auto",
                   help="colour matrix written: 'auto' (default) converts a BT.601 (SD) "
                        "input to BT.709 when the output is HD, as players expect; 'bt709' "
                        "always; 'keep' the input's")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--crf", type=float, default=None,
                      help="constant quality (default 18 for encoders that have CRF)")
    rate.add_argument("--bitrate", default=None, help="target bitrate, e.g. 8M or 2500k")
    p.add_argument("--pix-fmt", default=None,
                   help="encoded pixel format (default: the input's YUV layout and bit depth "
                        "when the encoder takes it, else yuv420p at that depth)")
    p.add_argument("--preset", default=None,
                   help="encoder preset (default 'fast' for libx264/libx265)")
    p.add_argument("--allow-8bit", action="store_true",
                   help="accept writing fewer bits than the input has (a 10-bit input "
                        "is refused otherwise when the output would be 8-bit)")
    p.add_argument("--no-audio", action="store_true", help="do not copy audio streams")
    p.add_argument("--no-subtitles", action="store_true",
                   help="do not copy subtitle streams")
    p.add_argument("--no-alpha", action="store_true",
                   help="drop the input's alpha channel (the colour stored under transparent "
                        "pixels then shows); without it, alpha is kept, and an output that "
                        "cannot hold it is refused")
    p.add_argument("--straight-alpha", action="store_true",
                   help="upscale alpha videos channel by channel, as stored, instead of "
                        "premultiplied (needed with --luma-only)")
    p.add_argument("--format", choices=sorted(PIPE_FORMATS), default=None,
                   help="output format instead of OUT's suffix; needed for -o - (stdout), e.g. "
                        "y4m; IN may be - (stdin, format probed)")
    p.add_argument("--input-size", type=_size, default=None, metavar="WxH",
                   help="read IN as raw video frames of this size (no header; e.g. from "
                        "ffmpeg -f rawvideo -), with --input-pix-fmt and --input-rate")
    p.add_argument("--input-pix-fmt", default="yuv420p",
                   help="pixel format of raw input (yuv420p)")
    p.add_argument("--input-rate", default="25",
                   help="frame rate of raw input, e.g. 25 or 30000/1001 (25)")
    _add_size_options(p)
    _add_lut_options(p)
    _add_output_options(p)
    _add_cluster_options(p)
    _add_segment_options(p)
    p.set_defaults(func=_video)

    p = sub.add_parser("demo", help="upscale the bundled sample image and time it",
                       description="Upscale a bundled 160x120 sample image with the bundled "
                                   "default LUT, write the result and print the time taken.")
    p.add_argument("-o", "--output", default=None, metavar="OUT",
                   help="output image (default ./lutsr-demo-xS.png, S the scale)")
    _add_lut_options(p)
    _add_output_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("info", help="describe a LUT model and its metadata")
    p.add_argument("lut", metavar="LUT", help="bundled name or .lutsr file")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("list", help="list the bundled LUT models")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("backends", help="list the --backend choices that can run here",
                       description="List the backends: numba's CPU kernels (AVX-512, AVX2 or "
                                   "portable), whether CUDA can run and why not, and the "
                                   "WebGPU adapters (the one used marked *; "
                                   "LUTSR_WEBGPU_ADAPTER picks another).")
    p.set_defaults(func=cmd_backends)

    p = sub.add_parser("convert", help="import published LUT tables into a .lutsr file",
                       description="Import the tables of a published LUT model: a ShiftLUT "
                                   "folder (DW*/PW*/UP_MSB .npz+.json, offset.npy), an SR-LUT "
                                   "table (.npy) or a MuLUT folder (*_s{1,2}_{s,d,y}.npy).")
    p.add_argument("format", choices=sorted(IMPORTERS), help="layout of the tables")
    p.add_argument("source", metavar="SRC", help="the folder or file of tables")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the .lutsr file")
    p.add_argument("--scale", type=_positive_int, default=4, help="upscale factor (4)")
    p.add_argument("--name", default="", help="the model's name (default: from the format)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_convert)
    return parser


def _image(args) -> int:
    if args.cluster is not None:
        from .cluster import cli_images

        return cli_images(args)
    return cmd_image(args)


def _segments(text: str):
    from .video.segments import parse_segments

    try:
        return parse_segments(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--segments ")) from None


def _add_segment_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--segments", type=_segments, default=None, metavar="auto|N|SECONDS",
                   help="cut the video at keyframes into segments (auto; N of them; or about "
                        "SECONDS each, e.g. 30s), upscale them in parallel processes (or on "
                        "--cluster), join them without re-encoding; a rerun reuses the "
                        "finished ones (kept in OUT.lutsr-segments until joined)")
    p.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                   help="with --segments: segments encoded at once here (default: the cores)")


def _video(args) -> int:
    if args.segments is not None or args.jobs is not None:
        if args.cluster is not None:
            from .cluster import cli_video_segments

            return cli_video_segments(args)
        return cmd_video_segments(args)
    if args.cluster is not None:
        from .cluster import cli_videos

        return cli_videos(args, [args.input, *args.more_inputs])
    return cmd_video(args)


# ---------------------------------------------------------------------------
# Entry point


def _expected_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [CLIError, ValueError, TypeError, OSError, ImportError,
                                         RuntimeError]
    with contextlib.suppress(ImportError):
        import av

        errors.append(av.error.FFmpegError)
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    """Run the ``lutsr`` command on ``argv`` (default ``sys.argv[1:]``); return the exit status.

    A text output whose reader leaves early (``lutsr list | head -1``, ``lutsr
    -h | head``) ends quietly with :data:`READER_LEFT`, as ``ls`` or ``yes`` end
    by SIGPIPE: reading part of a listing is what the reader asked for, so no
    error line. An image or video written to stdout (``-o -``) and cut short is
    lost data instead: one error line, exit 1 (:func:`lutsr.commands.common.broken_pipe`).
    """
    try:
        try:
            return _main(argv)
        finally:
            # what was printed reaches the pipe here, where a closed reader is seen, not in
            # the flush at interpreter exit (Python's "Exception ignored" lines, exit 120)
            if sys.stdout is not None:
                sys.stdout.flush()
    except BrokenPipeError:  # the flush above, or argparse writing --help or --version
        silence_stdout()
        return READER_LEFT


def _stdout_closed() -> bool:
    """Whether stdout is a pipe or socket that its reader has closed."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a stream without a file
        return False
    if hasattr(select, "poll"):  # the write end of a pipe without readers polls as an error
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    try:  # elsewhere: what failed to go out is still buffered, and fails again
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    return False


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "overwrite", False) and getattr(args, "skip_existing", False):
        parser.error("give --overwrite (redo existing outputs) or --skip-existing (keep "
                     "them), not both")
    debug = args.debug or os.environ.get("LUTSR_DEBUG", "") not in ("", "0")
    # SIGTERM ends the run like Ctrl-C, so temporary outputs are cleaned up.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with warnings.catch_warnings():
            # any warning a library gives is one lutsr line, not Python's file:line + source
            warnings.showwarning = _show_warning
            return args.func(args)
    except KeyboardInterrupt as exc:  # a message says what a run that stopped early kept
        print_error(f"interrupted; {exc.args[0] if exc.args else 'no partial output was written'}")
        return 130
    except BrokenPipeError as exc:
        if _stdout_closed():  # a text output's reader left: quietly, see main
            silence_stdout()
            return READER_LEFT
        _traceback(debug)  # another pipe or socket: an error like any other
        print_error(str(exc) or type(exc).__name__)
        return 1
    except MemoryError:
        _traceback(debug)
        print_error("out of memory; try a smaller input, fewer --threads, or a machine with "
                    "more memory (no partial output was written)")
        return 1
    except _expected_errors() as exc:
        _traceback(debug)
        print_error(str(exc) or type(exc).__name__)
        return 1
    except Exception as exc:  # a bug in lutsr: one line, the traceback on request
        _traceback(debug)
        print_error(f"internal error {type(exc).__name__}: {exc}"
                    + ("" if debug else " (run with --debug for the traceback)"))
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """:func:`warnings.showwarning` for the CLI: ``lutsr: warning: <the message>``."""
    print_warning(" ".join(str(message).split()) or category.__name__)


def _traceback(debug: bool) -> None:
    if debug:
        traceback.print_exc()


def _terminate(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
