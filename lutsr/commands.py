"""What the ``lutsr`` commands do (:mod:`lutsr.cli` parses the command line and calls them).

Each ``cmd_*`` takes the parsed arguments and returns the exit status; user
errors raise :class:`CLIError` (or ``ValueError``/``OSError``), which the entry
point prints as one line. :mod:`lutsr.cluster` runs the per-file work of
``image`` and ``video`` on Dask workers through the same functions.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import sys
import tempfile
import time
import types
from importlib import resources
from pathlib import Path

import numpy as np

from . import bundled
from .animation import ANIMATED_FORMATS, Animation, read_animation, write_animation
from .api import Upscaler, resolve_lut
from .deep import upscale_deep
from .imageio import (
    IMAGE_FORMATS,
    AnimatedImageError,
    ImageError,
    image_format,
    premultiply,
    read_image,
    unpremultiply,
    upscale_premultiplied,
    write_image,
)
from .outsize import (
    BOX_MODES,
    ResizePlan,
    box_geometry,
    output_size,
    place,
    plan_resize,
    upscale_to,
)
from .progress import progress_bar
from .safefiles import atomic_output, lut_inputs, same_file

#: The sample image ``lutsr demo`` upscales (inside the package).
SAMPLE = "astronaut.png"

#: The most bytes ``lutsr image -`` reads from stdin (512 MiB): a bound on the memory and
#: disk an endless or wrong stream can take. A larger image is read from its file by name.
STDIN_LIMIT = 512 * 2**20


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def _error(message: str) -> None:
    print(f"lutsr: error: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    """One line on stderr about something done anyway (printed with ``-q`` too)."""
    print(f"lutsr: warning: {message}", file=sys.stderr)


def _upscaler(args) -> Upscaler:
    if args.lut is None and not bundled.names():
        raise CLIError("no bundled default LUT is installed yet; pass --lut NAME|PATH")
    return Upscaler(args.lut, backend=args.backend, threads=args.threads)


#: Input suffixes written in another format in an output folder unless ``--ext`` says
#: otherwise: GIF as PNG (full colour, no palette; an animated GIF as an APNG).
DEFAULT_OUTPUT_SUFFIX = {".gif": ".png"}

#: Suffixes of the files a folder input contributes.
INPUT_SUFFIXES = frozenset(IMAGE_FORMATS)


def _image_files(folder: Path, recursive: bool = False,
                 skip: Path | None = None) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """The images in ``folder`` (and its subfolders if ``recursive``), with paths relative to it.

    ``skip`` is a folder left out (the output folder, when it is inside). Also
    returns the other files found (not an image suffix lutsr reads, or not a
    regular file), which the caller must not pass over in silence.
    """
    found = folder.rglob("*") if recursive else folder.iterdir()
    files, others = [], []
    for p in found:
        if p.is_dir() or (skip is not None and p.resolve().is_relative_to(skip)):
            continue
        (files if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES else others).append(p)
    files.sort(key=lambda p: p.relative_to(folder).parts)
    others.sort(key=lambda p: p.relative_to(folder).parts)
    if not files:
        where = f"{folder} or its subfolders" if recursive else str(folder)
        raise CLIError(f"{where}: no image files ({', '.join(sorted(INPUT_SUFFIXES))})"
                       + (f"; not read: {_some(others)}" if others else "")
                       + ("" if recursive else "; -r looks in subfolders too"))
    return [(p, p.relative_to(folder)) for p in files], others


def _some(paths: list, shown: int = 3) -> str:
    """The first few of ``paths`` and how many more, for a one-line message."""
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(map(str, paths[:shown])) + more


def _output_name(rel: Path, ext: str | None) -> Path:
    """The output path (relative to the output folder) of an input image."""
    if ext is not None:
        return rel.with_suffix("." + ext)
    return rel.with_suffix(DEFAULT_OUTPUT_SUFFIX.get(rel.suffix.lower(), rel.suffix))


def plan_images(inputs: list[str], output: str, overwrite: bool, *, ext: str | None = None,
                recursive: bool = False, lut=None) -> list[tuple[Path, Path]]:
    """Pair every input image with its output path, and check the pairs before any work.

    One input file with an output that is not a folder: that output file.
    Otherwise the output is a folder (created if missing) and every image
    keeps its file name, with the suffix ``ext`` (``"png"``, ``"jpg"``...) if
    given; a GIF becomes PNG by default (GIF's palette would quantise the
    upscale). With
    ``recursive`` the images in subfolders are included and the folder tree
    is mirrored in the output (the output folder itself is skipped when it
    is inside an input folder).

    Files in an input folder that lutsr does not read (``.heic``, ``.txt``...)
    are left out with one warning line on stderr that counts and names them.
    ``lut`` is what ``--lut`` was given: a file it names is an input too.

    Raises
    ------
    CLIError
        Missing inputs, empty folders, an unknown suffix, an output file name
        (``out.png``) for several inputs or a folder, ``ext`` with a single
        output file, two inputs with one output name, an input (or the
        ``--lut`` file) that is also an output, or existing outputs without
        ``overwrite``.
    """
    paths = [Path(p) for p in inputs]
    for p in paths:
        if not p.exists():
            raise CLIError(f"no such file or folder: {p}")
    if ext is not None and "." + ext.lower().lstrip(".") not in IMAGE_FORMATS:
        raise CLIError(f"--ext {ext}: lutsr writes "
                       f"{', '.join(sorted(k[1:] for k in IMAGE_FORMATS))}")
    ext = None if ext is None else ext.lower().lstrip(".")
    if ext is not None:
        image_format(f"out.{ext}")  # a format this Pillow lacks fails now, not per file
    out = Path(output)
    single = len(paths) == 1 and paths[0].is_file()
    if single and not out.is_dir() and not output.endswith(("/", "\\")):
        if ext is not None and out.suffix.lower() != "." + ext:
            raise CLIError(f"--ext {ext} is for an output folder; the name {out} already "
                           "picks the format (or end it with / to make it a folder)")
        image_format(out)  # an unknown output suffix fails now, not after the work
        pairs = [(paths[0], out)]
    else:
        if out.exists() and not out.is_dir():
            raise CLIError(f"output {out} must be a folder for several inputs or a folder input")
        if not out.exists() and out.suffix.lower() in INPUT_SUFFIXES:
            raise CLIError(f"output {out} looks like an image file, but "
                           f"{'several inputs' if len(paths) > 1 else 'a folder input'} "
                           "need an output folder; give a folder name (--ext picks the format)")
        skip = out.resolve()
        files, others = [], []
        for p in paths:
            if p.is_dir():
                found, left = _image_files(p, recursive, skip)
                files += found
                others += left
            else:
                files.append((p, Path(p.name)))
        if others:
            suffixes = sorted({f.suffix.lower() or "no suffix" for f in others})
            _warn(f"skipped {len(others)} file{'s' * (len(others) != 1)} that lutsr does not "
                  f"read ({', '.join(suffixes)}): {_some(others)}")
        pairs = [(f, out / _output_name(rel, ext)) for f, rel in files]
    names: dict[Path, Path] = {}
    for src, dst in pairs:
        if dst in names:
            raise CLIError(f"{names[dst]} and {src} would both be written to {dst}")
        names[dst] = src
    refuse_lut_output(lut, [dst for _, dst in pairs])
    inodes = {(st.st_dev, st.st_ino) for st in (src.stat() for src, _ in pairs)}
    for _, dst in pairs:
        if dst.exists() and (dst.stat().st_dev, dst.stat().st_ino) in inodes:
            raise CLIError(f"output {dst} is an input file; refusing to overwrite it")
    if not overwrite:
        refuse_existing([dst for _, dst in pairs])
    return pairs


def refuse_lut_output(lut, outputs: list) -> None:
    """Raise :class:`CLIError` when one of ``outputs`` is the file ``--lut`` names.

    The same file through a symbolic or hard link counts, as for the other
    inputs (:func:`lutsr.safefiles.check_output`). Checked before existing
    outputs, so the message never suggests ``--overwrite`` for a LUT.
    """
    for source in lut_inputs(lut):
        for dst in outputs:
            if same_file(source, dst):
                raise CLIError(f"output {dst} is the --lut file; refusing to overwrite it")


def refuse_existing(outputs: list) -> None:
    """Raise :class:`CLIError` naming the ``outputs`` that exist (with or without ``--cluster``).

    The caller skips this with ``--overwrite`` (redo them) or ``--skip-existing``
    (keep them: resume an earlier run).
    """
    existing = [dst for dst in outputs if os.path.lexists(dst)]
    if existing:
        raise CLIError(f"output exists: {_some(existing)}; use --overwrite to replace, or "
                       "--skip-existing to keep what exists and do the rest")


def upscale_pixels(upscaler: Upscaler, pixels, straight_alpha: bool = False):
    """Upscale an image as read by :func:`lutsr.imageio.read_image`.

    Gray + alpha and RGBA go through
    :func:`lutsr.imageio.upscale_premultiplied` unless ``straight_alpha``, which
    upscales every channel as stored. uint16 pixels (16-bit files) are
    upscaled by :func:`lutsr.deep.upscale_deep` (the LUT on the top 8 bits, the
    low 8 interpolated), premultiplied in 16 bits likewise.
    """
    if pixels.dtype == np.uint16:
        if pixels.ndim == 3 and pixels.shape[2] in (2, 4) and not straight_alpha:
            return unpremultiply(upscale_deep(premultiply(pixels), upscaler, 16))
        return upscale_deep(pixels, upscaler, 16)
    if pixels.ndim == 3 and pixels.shape[2] in (2, 4) and not straight_alpha:
        return upscale_premultiplied(upscaler.up, pixels)
    return upscaler.up(pixels)


def _box(args) -> tuple[str | None, tuple[int, int] | None]:
    """The ``--fit``/``--pad``/``--crop`` asked, as ``(mode, (width, height))``, or (None, None)."""
    for mode in BOX_MODES:
        if getattr(args, mode, None) is not None:
            return mode, getattr(args, mode)
    return None, None


def _resized(args) -> bool:
    return args.outscale is not None or args.size is not None or _box(args)[0] is not None


def resize_plan(upscaler: Upscaler | None, args, in_size: tuple[int, int],
                out_size: tuple[int, int], align: int = 1) -> ResizePlan:
    """What ``--outscale``/``--size``/``--fit``/``--pad``/``--crop`` does to one input: the LUT
    (as ``--lut`` named it), then the resample (then the box). ``upscaler`` None: the bundled
    LUT :func:`lutsr.outsize.pick_lut` picks. ``out_size``: the size written; ``align``: as
    :func:`lutsr.outsize.box_geometry` (2 for video)."""
    mode, box = _box(args)
    geometry = None
    if mode is not None:
        geometry = box_geometry(in_size, box, mode, align=align)
        out_size = geometry.scaled
    if upscaler is None:
        return plan_resize(in_size, out_size, box=geometry)
    name = args.lut if isinstance(args.lut, str) else upscaler.lut.name or "(unnamed)"
    return plan_resize(in_size, out_size, name, upscaler.scale, box=geometry)


def _fit_pixels(upscaler: Upscaler | None, pixels, args) -> tuple:
    """:func:`upscale_pixels`, then to ``--outscale``/``--size`` when asked.

    ``upscaler`` None (only with a size asked): the bundled LUT picked by
    :func:`lutsr.outsize.pick_lut` for this image's size. Returns the result
    and its :class:`lutsr.outsize.ResizePlan` (None without a size asked).
    """
    if not _resized(args):
        return upscale_pixels(upscaler, pixels, args.straight_alpha), None
    if pixels.dtype == np.uint16:
        raise ImageError("--outscale, --size and the other resizes do not take 16-bit images "
                         "yet (the resample is 8-bit); upscale by the LUT's own scale, or "
                         "convert to 8 bits")
    in_size = (pixels.shape[1], pixels.shape[0])
    mode, box = _box(args)
    geometry = None if mode is None else box_geometry(in_size, box, mode)
    target = (geometry.scaled if geometry is not None
              else output_size(in_size, outscale=args.outscale, size=args.size))

    def up(img):
        return upscale_to(img, upscaler, size=target, backend=args.backend,
                          threads=args.threads)

    # premultiplied around LUT and resample together, so neither bleeds hidden colour
    result = upscale_pixels(types.SimpleNamespace(up=up), pixels, args.straight_alpha)
    if geometry is not None:  # --pad / --crop: the scaled picture into the box
        result = place(result, geometry, args.pad_colour)
    return result, resize_plan(upscaler, args, in_size, target)


def _read_source(path: Path, fmt: str | None, args, name: str | None = None) -> tuple:
    """An input image's pixels (an :class:`lutsr.animation.Animation` if animated) and info.

    16-bit files are read in 16 bits. An animated GIF, WebP or APNG is read
    whole when ``fmt`` (the output format; None: the input's) is one that
    animates; other outputs, and other formats of several frames (multi-page
    TIFF, MPO), are refused unless ``--first-frame``. ``name`` is how messages
    call the input.
    """
    try:
        return read_image(path, deep=True, first_frame=getattr(args, "first_frame", False))
    except AnimatedImageError as exc:
        what = f"{name or path} has {exc.frames} frames"
        if exc.format not in ANIMATED_FORMATS:
            raise ImageError(f"{what} ({exc.format} pages); lutsr upscales one: pass "
                             "--first-frame for the first") from None
        if fmt is not None and fmt not in ANIMATED_FORMATS:
            raise ImageError(f"{what} (animated {exc.format}) and {fmt} holds one image: "
                             "write GIF, WebP or PNG (APNG) to keep every frame, or pass "
                             "--first-frame") from None
    return read_animation(path)


def _check_alpha_fits(pixels, fmt: str, name) -> None:
    if fmt == "JPEG" and pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        raise ImageError(f"{name} has an alpha channel, which JPEG cannot store; write "
                         "PNG, WebP or TIFF instead")


def _fit_source(upscaler: Upscaler | None, data, args) -> tuple:
    """:func:`_fit_pixels` of an image, or of every frame of an animation (timing kept)."""
    if not isinstance(data, Animation):
        return _fit_pixels(upscaler, data, args)
    frames, plan = [], None
    for frame in data.frames:
        result, plan = _fit_pixels(upscaler, frame, args)
        frames.append(result)
    return Animation(frames, data.durations, data.loop), plan


def _write_source(file, result, fmt: str, info, args) -> None:
    """Write an upscaled image or animation with the options of ``lutsr image``."""
    if isinstance(result, Animation):
        write_animation(file, result, fmt, icc_profile=info.icc_profile, quality=args.quality)
    else:
        write_image(file, result, fmt, icc_profile=info.icc_profile, exif=info.exif,
                    quality=args.quality, png_compression=args.png_compression,
                    jpeg_subsampling=args.jpeg_subsampling)


def _shape(data) -> tuple:
    return data.frames[0].shape if isinstance(data, Animation) else data.shape


def _upscale_image(upscaler: Upscaler, src: Path, dst: Path, args) -> tuple:
    """Upscale one image file; return the input and output shapes and the resize plan."""
    fmt = image_format(dst)
    data, info = _read_source(src, fmt, args)
    for line in info.warnings:
        _warn(line)
    _check_alpha_fits(data.frames[0] if isinstance(data, Animation) else data, fmt, src)
    result, plan = _fit_source(upscaler, data, args)
    dst.parent.mkdir(parents=True, exist_ok=True)  # a subfolder mirrored with -r
    with atomic_output(dst, overwrite=args.overwrite, inputs=(src,)) as pending:
        _write_source(pending.path, result, fmt, info, args)
    return _shape(data), _shape(result), plan


def _show_progress(args) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _read_stdin_image(fmt: str | None, args):
    """The image on stdin (:func:`_read_source`), through a private temporary file of at most
    :data:`STDIN_LIMIT`; ``fmt`` is the output format, None when it is the input's."""
    stdin, limit = sys.stdin.buffer, STDIN_LIMIT
    # read_image takes a path; a private temporary file keeps its checks and metadata handling
    with tempfile.TemporaryDirectory(prefix="lutsr-") as tmp:
        path = Path(tmp) / "stdin"
        size = 0
        with open(path, "wb") as fh:
            while chunk := stdin.read(min(2**20, limit + 1 - size)):
                size += len(chunk)
                if size > limit:
                    raise CLIError(f"stdin holds more than {limit // 2**20} MiB, the most "
                                   "lutsr image reads from a pipe; give the file's name "
                                   "instead of -")
                fh.write(chunk)
        if size == 0:
            raise CLIError("stdin is empty: no image to read")
        try:
            pixels, info = _read_source(path, fmt, args, "stdin")
        except ImageError as exc:
            raise ImageError(str(exc).replace(str(path), "stdin")) from None
        info.warnings = [line.replace(str(path), "stdin") for line in info.warnings]
        return pixels, info


def _pipe_image(args) -> int:
    """``lutsr image`` with ``-`` as the input or the output: one image through a pipe."""
    if len(args.inputs) != 1:
        raise CLIError("with - (a pipe) as input or output, give exactly one input")
    src = args.inputs[0]
    if src != "-" and not Path(src).is_file():
        raise CLIError(f"no such image file: {src}")
    if args.output != "-":
        refuse_lut_output(args.lut, [args.output])
        image_format(args.output)  # an unknown suffix fails before reading stdin
        if getattr(args, "skip_existing", False) and not args.overwrite \
                and os.path.lexists(args.output):
            if not args.quiet:
                print(f"wrote 0 images; 1 skipped (output exists): {args.output}",
                      file=sys.stderr)
            return 0
    if not 1 <= args.quality <= 100:
        raise CLIError(f"--quality must be in 1..100, got {args.quality}")
    upscaler = _upscaler(args) if args.lut is not None or not _resized(args) else None
    t0 = time.perf_counter()
    if args.output != "-":
        fmt = image_format(args.output)
    elif args.format is not None:
        fmt = IMAGE_FORMATS["." + args.format]
    else:
        fmt = None  # the input's format, known once it is read
    data, info = _read_stdin_image(fmt, args) if src == "-" else _read_source(Path(src), fmt,
                                                                                args)
    if fmt is None:
        fmt = info.format if info.format in IMAGE_FORMATS.values() else "PNG"
    _check_alpha_fits(data.frames[0] if isinstance(data, Animation) else data, fmt,
                      "the image")
    for line in info.warnings:
        _warn(line)
    result, plan = _fit_source(upscaler, data, args)
    if args.output == "-":
        buf = io.BytesIO()  # encoded whole first: some writers seek, a pipe cannot
        _write_source(buf, result, fmt, info, args)
        try:
            write_stdout(buf.getbuffer())
        except BrokenPipeError:
            return _broken_pipe()
    else:
        with atomic_output(args.output, overwrite=args.overwrite,
                           inputs=() if src == "-" else (src,)) as pending:
            _write_source(pending.path, result, fmt, info, args)
    if not args.quiet:
        (h, w), (oh, ow) = _shape(data)[:2], _shape(result)[:2]
        if plan is not None:
            print(f"resized: {plan.describe()}", file=sys.stderr)
        print(f"wrote {'stdout' if args.output == '-' else args.output}: {w}x{h} -> {ow}x{oh} "
              f"in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return 0


def write_stdout(data) -> None:
    """Write all of ``data`` to stdout, or raise :class:`BrokenPipeError`.

    ``sys.stdout.buffer`` is the raw file when Python runs unbuffered
    (``PYTHONUNBUFFERED=1``, ``python -u``), whose ``write`` may write only part
    of the data and say so in its return value (a pipe whose reader left after
    the first 64 KiB): the rest is written in a loop, so a short write is
    never taken for success.
    """
    out = sys.stdout.buffer
    view = memoryview(data).cast("B")
    while view:
        written = out.write(view)
        if written is None:  # a non-blocking stdout that is full: wait, as a blocking one
            select.select([], [out], [])
            continue
        if written == 0:
            raise BrokenPipeError("stdout accepted no more data")
        view = view[written:]
    out.flush()


def silence_stdout() -> None:
    """Point stdout at the null device: what is still buffered, and the flush at interpreter
    exit, then go nowhere instead of raising :class:`BrokenPipeError` again."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def _broken_pipe() -> int:
    """The reader of an image or video on stdout went away: one line, exit 1.

    The data written is cut short, so it is an error (unlike a text listing,
    see :func:`lutsr.cli.main`).
    """
    silence_stdout()
    _error("the output pipe was closed by its reader before the end")
    return 1


def cmd_image(args) -> int:
    if "-" in args.inputs or args.output == "-":
        return _pipe_image(args)
    skip_existing = getattr(args, "skip_existing", False)
    pairs = plan_images(args.inputs, args.output, args.overwrite or skip_existing,
                        ext=args.ext, recursive=args.recursive, lut=args.lut)
    if not 1 <= args.quality <= 100:
        raise CLIError(f"--quality must be in 1..100, got {args.quality}")
    upscaler = _upscaler(args) if args.lut is not None or not _resized(args) else None
    if pairs[0][1] != Path(args.output):  # folder mode: the output folder may be new
        Path(args.output).mkdir(parents=True, exist_ok=True)
    where = pairs[0][1] if len(pairs) == 1 else Path(args.output)
    todo = pairs
    if skip_existing and not args.overwrite:  # as --cluster does: resume an earlier run
        todo = [(src, dst) for src, dst in pairs if not os.path.lexists(dst)]
    bar = _bar(len(todo), _show_progress(args) and len(todo) > 1)
    failed = 0
    plans: dict[str, int] = {}
    t0 = time.perf_counter()
    for src, dst in todo:
        try:
            *_, plan = _upscale_image(upscaler, src, dst, args)
            if plan is not None:  # one line for one image, the steps counted for several
                key = plan.describe() if len(pairs) == 1 else plan.summary()
                plans[key] = plans.get(key, 0) + 1
        except (ImageError, OSError, ValueError) as exc:
            failed += 1
            _error(str(exc) if str(src) in str(exc) else f"{src}: {exc}")
        except MemoryError:
            failed += 1
            _error(f"{src}: out of memory upscaling it; no output was written")
        bar.update(1)
    bar.close()
    done, skipped = len(todo) - failed, len(pairs) - len(todo)
    if not args.quiet:
        if plans:
            print("resized: " + "; ".join(
                key if len(pairs) == 1 else f"{key} ({n} image{'s' * (n != 1)})"
                for key, n in plans.items()))
        print(f"wrote {done} image{'s' * (done != 1)} to {where} in "
              f"{time.perf_counter() - t0:.2f} s"
              + (f"; {skipped} skipped (output exists)" if skipped else "")
              + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


def _bar(total: int, enabled: bool):
    """The bar of a run over several images (nothing without tqdm)."""
    return progress_bar(total, enabled=enabled, unit="image")


def _video_options(args):
    """``lutsr video``'s options as :class:`lutsr.video.VideoOptions`."""
    from .video import VideoOptions

    return VideoOptions(
        backend=args.backend, threads=args.threads, luma_only=args.luma_only, codec=args.codec,
        crf=args.crf, bitrate=args.bitrate, pix_fmt=args.pix_fmt, preset=args.preset,
        audio=not args.no_audio, subtitles=not args.no_subtitles, allow_8bit=args.allow_8bit,
        overwrite=args.overwrite, progress=_show_progress(args), outscale=args.outscale,
        size=args.size, format=args.format, input_size=args.input_size,
        input_pix_fmt=args.input_pix_fmt, input_rate=args.input_rate, quiet=args.quiet,
        alpha=not args.no_alpha, straight_alpha=args.straight_alpha, box=_box(args)[1],
        box_mode=_box(args)[0] or "fit", pad_colour=getattr(args, "pad_colour", (0, 0, 0)),
        colorspace=getattr(args, "colorspace", "auto"),
        encoder_options=_encoder_options(getattr(args, "encoder_opt", [])))


def _encoder_options(given: list[str]) -> dict[str, str]:
    """``--encoder-opt`` arguments as a dict; a key given twice is refused."""
    from .video.encoding import parse_encoder_option

    options: dict[str, str] = {}
    for text in given:
        key, value = parse_encoder_option(text)
        if key in options:
            raise CLIError(f"--encoder-opt {key} is given twice")
        options[key] = value
    return options


def cmd_video(args) -> int:
    from .video import upscale_video

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
    upscaler = _upscaler(args) if args.lut is not None or not _resized(args) else None
    try:
        report = upscale_video(args.input, args.output, options=_video_options(args),
                               upscaler=upscaler)
    except BrokenPipeError:
        if args.output != "-":
            raise
        return _broken_pipe()
    if not args.quiet:
        (w, h), (ow, oh) = report.input_size, report.output_size
        kept = f"; copied {', '.join(report.copied_streams)}" if report.copied_streams else ""
        mode = "luma-only" if report.luma_only else "RGB"
        if report.turned:  # stored sizes above; --size gives the displayed ones
            mode += f", displayed {h}x{w} -> {oh}x{ow}"
        where = "stdout" if args.output == "-" else args.output
        stream = sys.stderr if args.output == "-" else sys.stdout
        if _resized(args):  # in displayed sizes, as --size gives them
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
    from .video.segments import describe, upscale_segmented

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
    upscaler = _upscaler(args) if args.lut is not None or not _resized(args) else None
    report = upscale_segmented(args.input, args.output, _video_options(args),
                               segments=args.segments, upscaler=upscaler, executor=executor,
                               workers=workers or args.jobs)
    if not args.quiet:
        (w, h), (ow, oh) = report.input_size, report.output_size
        kept = f"; copied {', '.join(report.copied_streams)}" if report.copied_streams else ""
        print(f"wrote {args.output}: {report.frames} frames {w}x{h} -> {ow}x{oh} in "
              f"{report.seconds:.1f} s, {report.fps:.1f} fps{kept}; {describe(report)}")
    return 0

def cmd_demo(args) -> int:
    upscaler = _upscaler(args)
    out = Path(args.output or f"lutsr-demo-x{upscaler.scale}.png")
    refuse_lut_output(args.lut, [out])
    sample = resources.files(__package__) / "samples" / SAMPLE
    with resources.as_file(sample) as path:
        if same_file(path, out):  # -o at the installed package's own sample
            raise CLIError(f"output {out} is lutsr's sample image; refusing to overwrite it")
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


def numba_lines() -> list[str]:
    """``lutsr backends``: the numba backend's CPU kernels for simplex and layered stages."""
    import numba

    from ._cpu import avx512bw_available, vnni_available
    from ._cpu.layered_plan import PreparedLayered
    from .layered import LayeredStage

    lines = [f"numba: available (numba {numba.__version__}, the default for numpy arrays)"]
    if avx512bw_available():
        simplex = "AVX-512BW kernels" + (", VNNI dot products at r=4" if vnni_available()
                                         else "")
    else:
        simplex = "portable kernels (no AVX-512BW, or LUTSR_PORTABLE_KERNEL=1)"
    lines.append(f"  simplex stages: {simplex}")
    # The layered path depends on the stage as well as the CPU (layers of more than 16
    # inputs run portable): ask the preparation itself, on the bundled layered LUT.
    layered = next((lut for lut in map(bundled.load_bundled, bundled.names())
                    if any(isinstance(s, LayeredStage) for s in lut.stages)), None)
    if layered is None:
        lines.append("  layered stages: not probed (no bundled layered LUT)")
    else:
        plan = PreparedLayered(next(s for s in layered.stages if isinstance(s, LayeredStage)))
        lines.append(f"  layered stages: {plan.path} kernels (for {layered.name}; layers of more "
                     "than 16 inputs run portable)")
    return lines


def cuda_lines() -> list[str]:
    """``lutsr backends``: whether the CUDA backend can run here, and if not why.

    Asks the CUDA driver for its devices (``cuInit``) but creates no context on
    a GPU.
    """
    try:
        from numba import cuda
    except ImportError as exc:
        return [f"cuda: not available: numba.cuda failed to import: {exc}"]
    if cuda.is_available() and getattr(cuda, "simulator", None) is not None:
        return ["cuda: available in numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1; no GPU "
                "is used)"]
    if not cuda.is_available():
        why = next((line.strip() for line in str(cuda.cuda_error() or "").splitlines()
                    if line.strip()), "numba.cuda finds no GPU")
        return [f"cuda: not available: {why}"]
    from numba.cuda.cudadrv.driver import driver

    lines = ["cuda: available (pip install 'lutsr[gpu]' adds CuPy for zero-copy arrays)"]
    for i in range(driver.get_device_count()):
        dev = driver.get_device(i)
        name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
        lines.append(f"  {i}: {name}, compute capability "
                     f"{'.'.join(map(str, dev.compute_capability))}")
    return lines


def webgpu_lines() -> list[str]:
    """``lutsr backends``: the WebGPU adapters, the one ``backend="webgpu"`` uses marked."""
    from ._webgpu import device

    try:
        wgpu = device.import_wgpu()
    except RuntimeError as exc:
        return [f"webgpu: not available: {exc}"]
    found = device.report()
    chosen = any(line.startswith("*") for line in found)
    named = os.environ.get(device.ADAPTER_ENV)
    choice = f"{device.ADAPTER_ENV}={named}" if named else "best hardware adapter"
    head = (f"webgpu: available (wgpu {wgpu.__version__}); adapters, * = used ({choice}):"
            if chosen else f"webgpu: no usable adapter (wgpu {wgpu.__version__}); adapters:")
    return [head, *(f"  {line}" for line in found)]


def cmd_backends(args) -> int:
    print("reference: available (the numpy specification; slow)")
    for lines in (numba_lines, cuda_lines, webgpu_lines):
        print("\n".join(lines()), flush=True)
    return 0


#: ``lutsr convert`` formats and their importers (each takes the source, scale and name).
IMPORTERS = {"shiftlut": "import_shiftlut", "srlut": "import_srlut", "mulut": "import_mulut"}


def cmd_convert(args) -> int:
    from . import importers
    from .fileformat import to_bytes

    importer = getattr(importers, IMPORTERS[args.format])
    lut = importer(args.source, args.scale, name=args.name)
    out = Path(args.output)
    # Every file the import read, not only the folder named: `-o FOLDER/DW0_MSB.json
    # --overwrite` would replace one of the tables it was made from.
    inputs = (args.source, *importers.files_read(IMPORTERS[args.format], args.source))
    with atomic_output(out, overwrite=args.overwrite, inputs=inputs) as pending, \
            open(pending.path, "wb") as fh:
        fh.write(to_bytes(lut))
    print(f"wrote {out}: {lut.describe().splitlines()[0]}")
    return 0


