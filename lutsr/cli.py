"""The ``lutsr`` command: upscale images and videos from the shell.

::

    lutsr demo [-o OUT]                      upscale the bundled sample image
    lutsr image IN [IN ...] -o OUT           files or folders of images
    lutsr video IN -o OUT [--luma-only]      a video, audio and subtitles kept
    lutsr info LUT                           describe a LUT model
    lutsr list                               the bundled LUT models
    lutsr convert FORMAT SRC -o OUT.lutsr    import published tables (shiftlut, srlut, mulut)

Every output is written under a temporary name (or none) and appears only
when complete; existing files are replaced only with ``--overwrite``; an
input is never an output. Exit status: 0 on success, 1 on an error, 2 on bad
usage, 130 when interrupted. An error is one line on stderr; ``--debug`` (or
the environment variable ``LUTSR_DEBUG=1``) adds the Python traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from importlib import resources
from pathlib import Path

from . import __version__, bundled
from .api import BACKENDS, Upscaler, resolve_lut
from .imageio import (
    IMAGE_FORMATS,
    JPEG_SUBSAMPLING,
    PNG_COMPRESSION,
    ImageError,
    atomic_output,
    image_format,
    read_image,
    upscale_premultiplied,
    write_image,
)

#: The sample image ``lutsr demo`` upscales (inside the package).
SAMPLE = "astronaut.png"


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


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
                        "slow numpy specification)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="worker threads for the LUT (default: all cores)")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and no summary")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``lutsr`` command."""
    parser = argparse.ArgumentParser(
        prog="lutsr", description="Look-up-table super-resolution for images and video.")
    parser.add_argument("--version", action="version", version=f"lutsr {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (also: LUTSR_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("image", help="upscale image files or folders",
                       description="Upscale images (PNG, JPEG, BMP, TIFF, WebP; gray, RGB, "
                                   "RGBA; 8 bits per channel). One input file and an output "
                                   "file name: that file. Several inputs or folders: OUT is a "
                                   "folder and names are kept. Alpha images are upscaled "
                                   "premultiplied; the EXIF orientation is applied to the "
                                   "pixels, and EXIF and the ICC profile are kept.")
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output file (one input) or folder")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1-100 (95)")
    p.add_argument("--png-compression", type=_png_level, default=PNG_COMPRESSION,
                   metavar="0-9",
                   help=f"zlib level of PNG outputs ({PNG_COMPRESSION}: fast; Pillow's usual 6 "
                        "makes files about 15%% smaller and writes them several times slower)")
    p.add_argument("--jpeg-subsampling", choices=JPEG_SUBSAMPLING, default=None,
                   help="chroma subsampling of JPEG outputs (default 4:2:0, libjpeg's)")
    p.add_argument("--straight-alpha", action="store_true",
                   help="upscale alpha images channel by channel, as stored, instead of "
                        "premultiplied (colour of transparent pixels then bleeds into edges)")
    _add_lut_options(p)
    _add_output_options(p)
    p.set_defaults(func=cmd_image)

    p = sub.add_parser("video", help="upscale a video file",
                       description="Upscale a video: decode, upscale, encode, and copy the "
                                   "audio and subtitle streams. Frame rate, timestamps and "
                                   "rotation are kept. The output suffix picks the container.")
    p.add_argument("input", metavar="IN")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output video (.mp4, .mkv, .mov, .webm, .avi, .ts, .m4v)")
    p.add_argument("--luma-only", action="store_true",
                   help="LUT on the luma (Y) plane only, bicubic chroma: about 3x less LUT "
                        "work, no RGB conversion")
    p.add_argument("--codec", default="libx264", help="FFmpeg video encoder (libx264)")
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
    _add_lut_options(p)
    _add_output_options(p)
    p.set_defaults(func=cmd_video)

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


# ---------------------------------------------------------------------------
# Commands


def _upscaler(args) -> Upscaler:
    if args.lut is None and not bundled.names():
        raise CLIError("no bundled default LUT is installed yet; pass --lut NAME|PATH")
    return Upscaler(args.lut, backend=args.backend, threads=args.threads)


def _image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_FORMATS)
    if not files:
        raise CLIError(f"{folder}: no image files ({', '.join(sorted(IMAGE_FORMATS))})")
    return files


def plan_images(inputs: list[str], output: str, overwrite: bool) -> list[tuple[Path, Path]]:
    """Pair every input image with its output path, and check the pairs before any work.

    One input file with an output that is not a folder: that output file.
    Otherwise the output is a folder (created if missing) and every image
    keeps its file name.

    Raises
    ------
    CLIError
        Missing inputs, empty folders, an unknown suffix, two inputs with one
        output name, an input that is also an output, or existing outputs
        without ``overwrite``.
    """
    paths = [Path(p) for p in inputs]
    for p in paths:
        if not p.exists():
            raise CLIError(f"no such file or folder: {p}")
    out = Path(output)
    single = len(paths) == 1 and paths[0].is_file()
    if single and not out.is_dir() and not output.endswith(("/", "\\")):
        image_format(out)  # an unknown output suffix fails now, not after the work
        pairs = [(paths[0], out)]
    else:
        if out.exists() and not out.is_dir():
            raise CLIError(f"output {out} must be a folder for several inputs or a folder input")
        files = [f for p in paths for f in (_image_files(p) if p.is_dir() else [p])]
        pairs = [(f, out / f.name) for f in files]
    names: dict[Path, Path] = {}
    for src, dst in pairs:
        if dst in names:
            raise CLIError(f"{names[dst]} and {src} would both be written to {dst}")
        names[dst] = src
    inodes = {(st.st_dev, st.st_ino) for st in (src.stat() for src, _ in pairs)}
    for _, dst in pairs:
        if dst.exists() and (dst.stat().st_dev, dst.stat().st_ino) in inodes:
            raise CLIError(f"output {dst} is an input file; refusing to overwrite it")
    if not overwrite:
        existing = [str(dst) for _, dst in pairs if os.path.lexists(dst)]
        if existing:
            more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
            raise CLIError(f"output exists: {', '.join(existing[:3])}{more}; use --overwrite "
                           "to replace")
    return pairs


def upscale_pixels(upscaler: Upscaler, pixels, straight_alpha: bool = False):
    """Upscale an image as read by :func:`lutsr.imageio.read_image`.

    Gray + alpha and RGBA go through
    :func:`lutsr.imageio.upscale_premultiplied` unless ``straight_alpha``, which
    upscales every channel as stored.
    """
    if pixels.ndim == 3 and pixels.shape[2] in (2, 4) and not straight_alpha:
        return upscale_premultiplied(upscaler.up, pixels)
    return upscaler.up(pixels)


def _upscale_image(upscaler: Upscaler, src: Path, dst: Path, args) -> tuple:
    pixels, info = read_image(src)
    fmt = image_format(dst)
    if fmt == "JPEG" and pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        raise ImageError(f"{src} has an alpha channel, which JPEG cannot store; write "
                         "PNG, WebP or TIFF instead")
    result = upscale_pixels(upscaler, pixels, args.straight_alpha)
    with atomic_output(dst, overwrite=args.overwrite, inputs=(src,)) as pending:
        write_image(pending.path, result, fmt, icc_profile=info.icc_profile, exif=info.exif,
                    quality=args.quality, png_compression=args.png_compression,
                    jpeg_subsampling=args.jpeg_subsampling)
    return pixels.shape, result.shape


def _show_progress(args) -> bool:
    return not args.quiet and sys.stderr.isatty()


def cmd_image(args) -> int:
    pairs = plan_images(args.inputs, args.output, args.overwrite)
    if not 1 <= args.quality <= 100:
        raise CLIError(f"--quality must be in 1..100, got {args.quality}")
    upscaler = _upscaler(args)
    if pairs[0][1] != Path(args.output):  # folder mode: the output folder may be new
        Path(args.output).mkdir(parents=True, exist_ok=True)
    bar = _bar(len(pairs), _show_progress(args) and len(pairs) > 1)
    failed = 0
    t0 = time.perf_counter()
    for src, dst in pairs:
        try:
            _upscale_image(upscaler, src, dst, args)
        except (ImageError, OSError, ValueError) as exc:
            failed += 1
            _error(str(exc) if str(src) in str(exc) else f"{src}: {exc}")
        except MemoryError:
            failed += 1
            _error(f"{src}: out of memory upscaling it; no output was written")
        bar.update(1)
    bar.close()
    done = len(pairs) - failed
    if not args.quiet:
        where = pairs[0][1] if len(pairs) == 1 else Path(args.output)
        print(f"wrote {done} image{'s' * (done != 1)} to {where} in "
              f"{time.perf_counter() - t0:.2f} s" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def _bar(total: int, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="image", disable=not enabled)


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def cmd_video(args) -> int:
    from .video import upscale_video

    report = upscale_video(
        args.input, args.output, backend=args.backend, threads=args.threads,
        luma_only=args.luma_only, codec=args.codec, crf=args.crf, bitrate=args.bitrate,
        pix_fmt=args.pix_fmt, preset=args.preset, audio=not args.no_audio,
        subtitles=not args.no_subtitles, allow_8bit=args.allow_8bit, overwrite=args.overwrite,
        progress=_show_progress(args), upscaler=_upscaler(args))
    if not args.quiet:
        (w, h), (ow, oh) = report.input_size, report.output_size
        kept = f"; copied {', '.join(report.copied_streams)}" if report.copied_streams else ""
        mode = "luma-only" if report.luma_only else "RGB"
        print(f"wrote {args.output}: {report.frames} frames {w}x{h} -> {ow}x{oh} ({mode}) in "
              f"{report.seconds:.1f} s, {report.fps:.1f} fps{kept}")
    return 0


def cmd_demo(args) -> int:
    upscaler = _upscaler(args)
    out = Path(args.output or f"lutsr-demo-x{upscaler.scale}.png")
    sample = resources.files(__package__) / "samples" / SAMPLE
    with resources.as_file(sample) as path:
        pixels, info = read_image(path)
    t0 = time.perf_counter()
    result = upscale_pixels(upscaler, pixels)  # the first call loads (or compiles) the kernels
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = upscale_pixels(upscaler, pixels)
    warm = time.perf_counter() - t0
    with atomic_output(out, overwrite=args.overwrite) as pending:
        write_image(pending.path, result, image_format(out), icc_profile=info.icc_profile,
                    exif=info.exif)
    if not args.quiet:
        (h, w), (oh, ow) = pixels.shape[:2], result.shape[:2]
        lut = upscaler.lut
        load = ", including loading the compiled kernels" if upscaler.backend == "numba" else ""
        print(f"upscaled {SAMPLE} {w}x{h} -> {ow}x{oh} with LUT {lut.name or '(unnamed)'} "
              f"({upscaler.backend}) in {warm * 1e3:.1f} ms (first call {first:.2f} s{load})")
        print(f"wrote {out}")
    return 0


def cmd_info(args) -> int:
    lut = resolve_lut(args.lut)
    print(lut.describe())
    if lut.metadata:
        print(json.dumps(lut.metadata, indent=2, sort_keys=True, default=str))
    else:
        print("(no metadata)")
    return 0


def cmd_list(args) -> int:
    names = bundled.names()
    if not names:
        print("no bundled LUTs are installed")
        return 0
    for name in names:
        default = " (default)" if name == bundled.DEFAULT else ""
        try:
            summary = bundled.load_bundled(name).describe().splitlines()[0]
        except ValueError as exc:  # a damaged install: say so, keep listing
            summary = f"cannot load: {exc}"
        print(f"{name}{default}: {summary}")
    return 0


#: ``lutsr convert`` formats and their importers (each takes the source, scale and name).
IMPORTERS = {"shiftlut": "import_shiftlut", "srlut": "import_srlut", "mulut": "import_mulut"}


def cmd_convert(args) -> int:
    from . import importers
    from .fileformat import to_bytes

    importer = getattr(importers, IMPORTERS[args.format])
    lut = importer(args.source, args.scale, name=args.name)
    out = Path(args.output)
    with atomic_output(out, overwrite=args.overwrite, inputs=(args.source,)) as pending, \
            open(pending.path, "wb") as fh:
        fh.write(to_bytes(lut))
    print(f"wrote {out}: {lut.describe().splitlines()[0]}")
    return 0


# ---------------------------------------------------------------------------
# Entry point


def _error(message: str) -> None:
    print(f"lutsr: error: {message}", file=sys.stderr)


def _expected_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [CLIError, ValueError, TypeError, OSError, ImportError,
                                         RuntimeError]
    with contextlib.suppress(ImportError):
        import av

        errors.append(av.error.FFmpegError)
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    """Run the ``lutsr`` command on ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("LUTSR_DEBUG", "") not in ("", "0")
    # SIGTERM ends the run like Ctrl-C, so temporary outputs are cleaned up.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _error("interrupted; no partial output was written")
        return 130
    except MemoryError:
        _traceback(debug)
        _error("out of memory; try a smaller input, fewer --threads, or a machine with more "
               "memory (no partial output was written)")
        return 1
    except _expected_errors() as exc:
        _traceback(debug)
        _error(str(exc) or type(exc).__name__)
        return 1
    except Exception as exc:  # a bug in lutsr: one line, the traceback on request
        _traceback(debug)
        _error(f"internal error {type(exc).__name__}: {exc}"
               + ("" if debug else " (run with --debug for the traceback)"))
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _traceback(debug: bool) -> None:
    if debug:
        traceback.print_exc()


def _terminate(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
