"""``lutsr image`` and ``lutsr demo``: plan the outputs, read, upscale and write images.

:func:`plan_images` pairs every input (files, folders, ``-r`` trees) with
its output and checks the pairs before any work; :func:`upscale_image` does
one file (16-bit, alpha, animated images and the resizes included), the
unit :mod:`lutsr.cluster` sends to Dask workers; ``-`` as input or output
goes through a pipe, stdin read up to :data:`STDIN_LIMIT`. :func:`cmd_demo`
upscales the sample image that ships in the package.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
import types
from importlib import resources
from pathlib import Path

import numpy as np

from ..animation import ANIMATED_FORMATS, Animation, read_animation, write_animation
from ..api import Upscaler
from ..deep import upscale_deep
from ..imageio import (
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
from ..outsize import (
    box_geometry,
    output_size,
    place,
    upscale_to,
)
from ..progress import progress_bar
from ..safefiles import atomic_output, same_file
from .common import (
    CLIError,
    box_asked,
    broken_pipe,
    print_error,
    print_warning,
    refuse_existing,
    refuse_lut_output,
    resize_asked,
    resize_plan,
    show_progress,
    some_paths,
    upscaler_from_args,
    write_stdout,
)

#: The sample image ``lutsr demo`` upscales (inside the package).
SAMPLE = "astronaut.png"

#: The most bytes ``lutsr image -`` reads from stdin (512 MiB): a bound on the memory and
#: disk an endless or wrong stream can take. A larger image is read from its file by name.
STDIN_LIMIT = 512 * 2**20


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
                       + (f"; not read: {some_paths(others)}" if others else "")
                       + ("" if recursive else "; -r looks in subfolders too"))
    return [(p, p.relative_to(folder)) for p in files], others


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
            print_warning(f"skipped {len(others)} file{'s' * (len(others) != 1)} that lutsr "
                          f"does not read ({', '.join(suffixes)}): {some_paths(others)}")
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


def _fit_pixels(upscaler: Upscaler | None, pixels, args) -> tuple:
    """:func:`upscale_pixels`, then to ``--outscale``/``--size`` when asked.

    ``upscaler`` None (only with a size asked): the bundled LUT picked by
    :func:`lutsr.outsize.pick_lut` for this image's size. Returns the result
    and its :class:`lutsr.outsize.ResizePlan` (None without a size asked).
    """
    if not resize_asked(args):
        return upscale_pixels(upscaler, pixels, args.straight_alpha), None
    if pixels.dtype == np.uint16:
        raise ImageError("--outscale, --size and the other resizes do not take 16-bit images "
                         "yet (the resample is 8-bit); upscale by the LUT's own scale, or "
                         "convert to 8 bits")
    in_size = (pixels.shape[1], pixels.shape[0])
    mode, box = box_asked(args)
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


def upscale_image(upscaler: Upscaler, src: Path, dst: Path, args) -> tuple:
    """Upscale one image file; return the input and output shapes and the resize plan."""
    fmt = image_format(dst)
    data, info = _read_source(src, fmt, args)
    for line in info.warnings:
        print_warning(line)
    _check_alpha_fits(data.frames[0] if isinstance(data, Animation) else data, fmt, src)
    result, plan = _fit_source(upscaler, data, args)
    dst.parent.mkdir(parents=True, exist_ok=True)  # a subfolder mirrored with -r
    with atomic_output(dst, overwrite=args.overwrite, inputs=(src,)) as pending:
        _write_source(pending.path, result, fmt, info, args)
    return _shape(data), _shape(result), plan


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
    upscaler = upscaler_from_args(args) if args.lut is not None or not resize_asked(args) else None
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
        print_warning(line)
    result, plan = _fit_source(upscaler, data, args)
    if args.output == "-":
        buf = io.BytesIO()  # encoded whole first: some writers seek, a pipe cannot
        _write_source(buf, result, fmt, info, args)
        try:
            write_stdout(buf.getbuffer())
        except BrokenPipeError:
            return broken_pipe()
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


def cmd_image(args) -> int:
    if "-" in args.inputs or args.output == "-":
        return _pipe_image(args)
    skip_existing = getattr(args, "skip_existing", False)
    pairs = plan_images(args.inputs, args.output, args.overwrite or skip_existing,
                        ext=args.ext, recursive=args.recursive, lut=args.lut)
    if not 1 <= args.quality <= 100:
        raise CLIError(f"--quality must be in 1..100, got {args.quality}")
    upscaler = upscaler_from_args(args) if args.lut is not None or not resize_asked(args) else None
    if pairs[0][1] != Path(args.output):  # folder mode: the output folder may be new
        Path(args.output).mkdir(parents=True, exist_ok=True)
    where = pairs[0][1] if len(pairs) == 1 else Path(args.output)
    todo = pairs
    if skip_existing and not args.overwrite:  # as --cluster does: resume an earlier run
        todo = [(src, dst) for src, dst in pairs if not os.path.lexists(dst)]
    bar = image_bar(len(todo), show_progress(args) and len(todo) > 1)
    failed = 0
    plans: dict[str, int] = {}
    t0 = time.perf_counter()
    for src, dst in todo:
        try:
            *_, plan = upscale_image(upscaler, src, dst, args)
            if plan is not None:  # one line for one image, the steps counted for several
                key = plan.describe() if len(pairs) == 1 else plan.summary()
                plans[key] = plans.get(key, 0) + 1
        except (ImageError, OSError, ValueError) as exc:
            failed += 1
            print_error(str(exc) if str(src) in str(exc) else f"{src}: {exc}")
        except MemoryError:
            failed += 1
            print_error(f"{src}: out of memory upscaling it; no output was written")
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


def image_bar(total: int, enabled: bool):
    """The bar of a run over several images (nothing without tqdm)."""
    return progress_bar(total, enabled=enabled, unit="image")


def cmd_demo(args) -> int:
    upscaler = upscaler_from_args(args)
    out = Path(args.output or f"lutsr-demo-x{upscaler.scale}.png")
    refuse_lut_output(args.lut, [out])
    sample = resources.files("lutsr") / "samples" / SAMPLE
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
