"""Image files in and out: reading, writing, and alpha premultiplied.

Images are read with Pillow (the ``lutsr[image]`` extra), imported only when
needed so ``import lutsr`` stays light. Arrays are uint8 in one of the layouts
:func:`lutsr.upscale` takes: ``(H, W)`` gray, ``(H, W, 2)`` gray + alpha,
``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA; uint16 in the same layouts for 16-bit
files read with ``deep=True`` (upscaled by :func:`lutsr.deep.upscale_deep`).

16-bit files: Pillow reduces 16-bit RGB, RGBA and gray + alpha to 8 bits per
sample (it keeps only gray, as ``I;16``), so their pixels are read elsewhere:
PNG by lutsr's own decoder (:func:`lutsr.png.decode_png16`: zlib and the five
row filters, no new dependency), TIFF by ``tifffile`` (scikit-image's reader;
``pip install tifffile``); Pillow still reads their metadata. 16-bit PNG is
written by :func:`lutsr.png.encode_png`, 16-bit TIFF by ``tifffile``.

Images with alpha are upscaled premultiplied by :func:`upscale_premultiplied`:
the colour of a fully transparent pixel is invisible, and upscaling it per
channel would pull that invisible colour into the visible edge (a fringe of
whatever the editor left there, often black or white). All integer steps are
exact and documented there. Metadata travels with the pixels: the EXIF
orientation is applied to the pixels once and written back as 1, and the
EXIF block and the ICC profile are written to every output format that can
hold them (:data:`EXIF_FORMATS`, :data:`ICC_FORMATS`).

The EXIF and ICC handling is in :mod:`lutsr.metadata`; output files are written
safely by :mod:`lutsr.safefiles`.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .metadata import icc_fits, oriented, resized_exif, upright_exif
from .png import encode_png

#: Image file suffixes the CLI reads and writes, with Pillow's format name.
IMAGE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".gif": "GIF",
    ".avif": "AVIF",
    ".jxl": "JXL",
}

#: Output formats that hold 16 bits per sample; others get 16-bit pixels rounded to 8.
DEEP_FORMATS = frozenset({"PNG", "TIFF"})

# What to install for a format this Pillow lacks (Pillow's own AVIF needs Pillow 11.3+).
_PLUGINS = {"AVIF": ("avif", "pip install -U 'pillow>=11.3'"),
            "JXL": ("jxl", "pip install 'lutsr[jxl]' (the pillow-jxl-plugin package)")}

# Pillow modes converted to 8-bit RGB(A)/gray before upscaling; each is a
# faithful 8-bit representation of what the file shows.
_CONVERT = {"1": "L", "P": None, "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "La": "LA",
            "RGBa": "RGBA", "RGBX": "RGB"}
_NATIVE = {"L", "LA", "RGB", "RGBA"}
_FORMATS_WITHOUT_ALPHA = {"JPEG"}
_MODE_OF_CHANNELS = {2: "LA", 3: "RGB", 4: "RGBA"}

#: Output formats that get the input's EXIF block, and its ICC profile (Pillow's writers).
EXIF_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "TIFF", "AVIF"})
ICC_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "TIFF", "AVIF"})

#: Default zlib level of PNG outputs. Pillow's own default (6) spends about 100x the
#: x4 upscale of a photo in deflate for a file 15% smaller than level 1; measured in
#: ``bench/test_bench_image_write.py``.
PNG_COMPRESSION = 1

#: JPEG chroma subsampling choices (Pillow's ``subsampling``); None keeps libjpeg's 4:2:0.
JPEG_SUBSAMPLING = ("4:4:4", "4:2:2", "4:2:0")



class ImageError(ValueError):
    """An image file that cannot be read, or an array that cannot be written as asked."""


class AnimatedImageError(ImageError):
    """:func:`read_image` of an animated (or multi-page) file.

    ``frames`` is its frame count, ``format`` Pillow's name of its format.
    :func:`lutsr.animation.read_animation` reads every frame of GIF, WebP and
    APNG (:data:`lutsr.animation.ANIMATED_FORMATS`).
    """

    def __init__(self, message: str, frames: int, format: str):
        super().__init__(message)
        self.frames = frames
        self.format = format


@dataclass
class ImageInfo:
    """What :func:`read_image` keeps of a file besides its pixels.

    Attributes
    ----------
    mode : str
        The Pillow mode of the file as stored (e.g. ``"P"``, ``"RGB"``).
    format : str
        Pillow's name of the file format (e.g. ``"PNG"``).
    icc_profile : bytes or None
        The embedded colour profile, written back to the output; None when the
        file has none or it does not describe the pixels as read (a CMYK
        profile of a file converted to RGB).
    converted : str
        How the pixels were converted to 8-bit, or ``""`` if they were not.
    exif : bytes or None
        The file's EXIF block (``b"Exif\\0\\0"`` + TIFF structure) with the
        orientation set to 1, as the pixels are upright; None without EXIF.
    orientation : int
        The EXIF orientation the file had (1..8; 1 when absent), applied to
        the pixels.
    warnings : list of str
        One line for each thing Pillow warned about while reading (a damaged
        EXIF block, which is then dropped; an image above Pillow's
        decompression-bomb threshold...), each starting with the path. The
        warnings themselves are not re-issued: the CLI prints these lines.
    bits : int
        Bits per sample of the pixels returned: 8, or 16 (uint16 pixels).
    """

    mode: str
    format: str
    icc_profile: bytes | None = None
    converted: str = ""
    exif: bytes | None = None
    orientation: int = 1
    warnings: list[str] = field(default_factory=list)
    bits: int = 8


def _pil():
    """Import Pillow, with an error that names the extra to install."""
    try:
        from PIL import Image, ImageOps
    except ImportError:  # pragma: no cover - Pillow is installed in the test environment
        raise ImportError(
            "reading and writing images needs Pillow: pip install 'lutsr[image]'"
        ) from None
    return Image, ImageOps


# Pillow raw modes of 15/16-bit *pixels* holding 5- or 6-bit samples (RGB565, RGB555 BMPs):
# decoded to 8 bits per sample without loss, unlike ";16B", "I;16", "L;16"... (16-bit samples).
_PACKED_RAWMODE = re.compile(r"[RGBAX]{3,4};1[56]")


def _sample_bits(im) -> int:
    """Bits per sample as stored, which Pillow's mode hides for 16-bit RGB(A)."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        return 16 if im.mode.startswith("I;16") else 32
    for tile in im.tile or ():
        args = tile.args if hasattr(tile, "args") else tile[3]
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if not isinstance(rawmode, str) or _PACKED_RAWMODE.fullmatch(rawmode):
            continue
        if ";16" in rawmode or ";32" in rawmode:
            return 16 if ";16" in rawmode else 32
    return 8


def read_image(path: str | os.PathLike, *, deep: bool = False,
               first_frame: bool = False) -> tuple[np.ndarray, ImageInfo]:
    """Read an image file as a uint8 array (uint16 for 16-bit files with ``deep``).

    Parameters
    ----------
    path : str or path-like
        A PNG, JPEG, BMP, TIFF, WebP, GIF, AVIF or JPEG XL file (anything
        Pillow opens is tried; AVIF and JPEG XL where Pillow or its plugin
        reads them).
    deep : bool
        Read 16-bit PNG and TIFF files (and other 16-bit gray files Pillow
        reads) as uint16, all 16 bits kept. Without it they are refused.
    first_frame : bool
        Read the first frame of an animated or multi-page file instead of
        refusing it.

    Returns
    -------
    pixels : ndarray of uint8 (uint16 for 16-bit files with ``deep``)
        ``(H, W)`` for gray, ``(H, W, 2)`` gray + alpha, ``(H, W, 3)`` RGB or
        ``(H, W, 4)`` RGBA, upright (the EXIF orientation is applied).
    info : ImageInfo

    Raises
    ------
    FileNotFoundError
        No such file.
    AnimatedImageError
        An animated or multi-page file, without ``first_frame``.
    ImageError
        Not an image, a damaged file, a 32-bit image, or a 16-bit one without
        ``deep``: 8-bit readers refuse deeper images rather than silently
        truncate them. A damaged EXIF block is not an error: it is dropped
        (the orientation is then 1) and said in ``info.warnings``. Packed
        16-bit pixels of 5 or 6 bits per sample (RGB565 BMP) are read as
        8-bit RGB.
    """
    Image, _ = _pil()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
    # Pillow's warnings become lines of info.warnings: Python's warning text (file, line
    # number, source line) on stderr says nothing a user can act on.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels, info = _read_image(Image, path, deep, first_frame)
    for line in (_warning_line(path, w.message) for w in caught):
        # once each; a damaged EXIF block is already one line of its own
        if not any(line.removeprefix(f"{path}: ") in seen for seen in info.warnings):
            info.warnings.append(line)
    return pixels, info


def _warning_line(path: Path, message: Warning) -> str:
    """One line for a warning Pillow gave while reading ``path``."""
    from PIL import Image

    text = " ".join(str(message).split())
    if isinstance(message, Image.DecompressionBombWarning):
        return (f"{path}: a very large image, above Pillow's decompression-bomb threshold "
                f"of {Image.MAX_IMAGE_PIXELS} pixels; read anyway, its upscale needs a lot "
                "of memory")
    return f"{path}: {text}"


def _read_image(Image, path: Path, deep: bool,
                first_frame: bool) -> tuple[np.ndarray, ImageInfo]:
    """:func:`read_image` without the warnings' handling."""
    from PIL import ImageOps

    _check_plugin(path)
    try:
        with Image.open(path) as im:
            frames = getattr(im, "n_frames", 1)
            if frames > 1 and not first_frame:
                raise AnimatedImageError(f"{path}: an animated or multi-page image ({frames} "
                                         "frames)", frames, im.format or "")
            bits = _sample_bits(im)
            if bits == 16 and deep:
                return _read_deep(im, path)
            if bits != 8:
                raise ImageError(
                    f"{path}: {bits}-bit images are not supported (mode {im.mode}); lutsr's "
                    "LUTs work on 8-bit values. Convert to 8 bits per channel first, e.g. "
                    "with Pillow or `ffmpeg -i in.png -pix_fmt rgb24 out.png`")
            info = ImageInfo(mode=im.mode, format=im.format or "",
                             icc_profile=im.info.get("icc_profile"))
            im.load()
            info.exif, info.orientation, note = upright_exif(im)
            if note:
                info.warnings.append(f"{path}: {note}")
            if info.orientation != 1:  # not after damage: Pillow would read the damaged block
                im = ImageOps.exif_transpose(im)
            if im.mode not in _NATIVE:
                if im.mode not in _CONVERT:
                    raise ImageError(f"{path}: unsupported image mode {im.mode}")
                target = _CONVERT[im.mode]
                if target is None:  # palette: keep transparency if the file has any
                    has_alpha = "transparency" in im.info or im.palette.mode == "RGBA"
                    target = "RGBA" if has_alpha else "RGB"
                info.converted = f"{im.mode} -> {target}"
                im = im.convert(target)
            if info.icc_profile and not icc_fits(info.icc_profile, im.mode):
                info.converted += ("; " if info.converted else "") + "ICC profile dropped"
                info.icc_profile = None
            pixels = np.asarray(im, dtype=np.uint8)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        # Pillow reports truncated or garbage files as OSError/SyntaxError.
        raise ImageError(f"{path}: cannot read image: {exc}") from exc
    return np.ascontiguousarray(pixels), info


def _check_plugin(path: Path) -> None:
    """Refuse a format this Pillow cannot read in one line that says what to install."""
    fmt = IMAGE_FORMATS.get(path.suffix.lower())
    if fmt in _PLUGINS and not has_format(fmt):
        raise ImageError(f"{path}: this Pillow cannot read {fmt}: {_PLUGINS[fmt][1]}")


def has_format(fmt: str) -> bool:
    """Whether Pillow (with its plugins, if installed) reads and writes ``fmt`` (``"AVIF"``...)."""
    Image, _ = _pil()
    if fmt == "JXL":
        try:
            import pillow_jxl  # noqa: F401 - registers JPEG XL with Pillow
        except ImportError:
            return False
    if fmt == "AVIF":
        from PIL import features

        return bool(features.check("avif"))
    Image.init()
    return fmt in Image.SAVE


def _read_deep(im, path: Path) -> tuple[np.ndarray, ImageInfo]:
    """The pixels of an opened 16-bit image as uint16, upright, and its :class:`ImageInfo`."""
    from .png import PNGError, decode_png16

    info = ImageInfo(mode=im.mode, format=im.format or "", bits=16,
                     icc_profile=im.info.get("icc_profile"))
    if im.format == "PNG":
        try:
            pixels = decode_png16(path.read_bytes())
        except PNGError as exc:
            raise ImageError(f"{path}: cannot read image: {exc}") from None
    elif im.format == "TIFF" and not im.mode.startswith("I;16"):
        pixels = _read_tiff16(path)
    elif im.mode.startswith("I;16"):  # 16-bit gray: Pillow keeps every bit
        im.load()
        pixels = np.asarray(im).astype(np.uint16)
    else:
        raise ImageError(f"{path}: 16-bit {im.format} images are not supported (mode "
                         f"{im.mode}); 16-bit PNG and TIFF are")
    info.exif, info.orientation, note = upright_exif(im)
    if note:
        info.warnings.append(f"{path}: {note}")
    pixels = oriented(pixels, info.orientation)
    mode = "L" if pixels.ndim == 2 else _MODE_OF_CHANNELS[pixels.shape[2]]
    if info.icc_profile and not icc_fits(info.icc_profile, mode):
        info.converted = "ICC profile dropped"
        info.icc_profile = None
    return np.ascontiguousarray(pixels), info


def _read_tiff16(path: Path) -> np.ndarray:
    """The first page of a 16-bit gray or RGB TIFF (alpha kept) by ``tifffile``."""
    try:
        import tifffile
    except ImportError:
        raise ImageError(f"{path}: reading 16-bit RGB TIFF needs tifffile (Pillow reduces "
                         "it to 8 bits): pip install tifffile") from None
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        photometric = int(page.photometric)
        pixels = page.asarray()
        if page.axes.startswith("S") and pixels.ndim == 3:  # planes stored one after another
            pixels = np.moveaxis(pixels, 0, -1)
        extra = tuple(page.extrasamples or ())
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    # photometric 1: min-is-black gray (+ alpha), 2: RGB (+ alpha)
    if pixels.dtype != np.uint16 or (photometric, channels) not in (
            (1, 1), (1, 2), (2, 3), (2, 4)):
        raise ImageError(f"{path}: a 16-bit TIFF lutsr does not read (photometric "
                         f"{photometric}, {channels} samples, {pixels.dtype}); gray and RGB, "
                         "with or without alpha, are read")
    if extra[:1] == (1,):  # associated (premultiplied) alpha: straight, as PNG stores it
        pixels = unpremultiply(pixels)
    return pixels


def image_format(path: str | os.PathLike) -> str:
    """Pillow's format name for an output path, from its suffix.

    Raises
    ------
    ImageError
        The suffix is not one of :data:`IMAGE_FORMATS`, or names a format this
        Pillow cannot write (AVIF before Pillow 11.3, JPEG XL without its
        plugin), with what to install.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise ImageError(f"{path}: unknown image suffix {suffix!r}; use one of "
                         f"{', '.join(sorted(IMAGE_FORMATS))}")
    fmt = IMAGE_FORMATS[suffix]
    if fmt in _PLUGINS and not has_format(fmt):
        raise ImageError(f"{path}: this Pillow cannot write {fmt}: {_PLUGINS[fmt][1]}")
    return fmt


def write_image(file, pixels: np.ndarray, format: str, *, icc_profile: bytes | None = None,
                exif: bytes | None = None, quality: int = 95,
                png_compression: int = PNG_COMPRESSION,
                jpeg_subsampling: str | None = None) -> None:
    """Encode a uint8 (or uint16) array into an open binary file or a path.

    Parameters
    ----------
    file : path or binary file object
    pixels : ndarray of uint8 or uint16
        ``(H, W)``, ``(H, W, 2)``, ``(H, W, 3)`` or ``(H, W, 4)``. uint16 is
        written with 16 bits per sample to the formats of
        :data:`DEEP_FORMATS` (PNG by lutsr's encoder, TIFF by ``tifffile``),
        and rounded to 8 bits (``round(v / 257)``) for the others.
    format : str
        A Pillow format name from :data:`IMAGE_FORMATS` (``"PNG"``, ``"JPEG"``...).
        GIF is palette-quantised by Pillow (median cut, Floyd-Steinberg
        dither, 255 colours and a transparent one where alpha is below 128).
    icc_profile : bytes, optional
        Colour profile to embed (formats in :data:`ICC_FORMATS`; ignored by others).
    exif : bytes, optional
        EXIF block to embed, as :attr:`ImageInfo.exif` (formats in
        :data:`EXIF_FORMATS`; ignored by others). Its pixel dimensions, if it
        has them, are set to the size of ``pixels``.
    quality : int
        1..100, for JPEG, (lossy) WebP, AVIF and JPEG XL.
    png_compression : int
        zlib level 0..9 of 8-bit PNG files: 1 (the default) is lutsr's own fast
        encoder (:func:`lutsr.png.encode_png`), the others Pillow's
        ``compress_level``: 0 stores, 9 is the smallest and slowest. 16-bit
        PNGs are always written by lutsr's encoder (Pillow writes 16-bit gray
        only).
    jpeg_subsampling : {"4:4:4", "4:2:2", "4:2:0"} or None
        Chroma subsampling of JPEG files; None is libjpeg's default 4:2:0.

    Raises
    ------
    ImageError
        A layout the format cannot store (e.g. alpha in JPEG).
    ValueError
        An option out of range.
    """
    Image, _ = _pil()
    if not isinstance(pixels, np.ndarray) or pixels.dtype not in (np.uint8, np.uint16):
        raise TypeError("pixels must be a uint8 or uint16 numpy array")
    if format in _PLUGINS and not has_format(format):
        raise ImageError(f"this Pillow cannot write {format}: {_PLUGINS[format][1]}")
    if pixels.dtype == np.uint16 and format not in DEEP_FORMATS:
        pixels = to_8bit(pixels)
    if pixels.ndim == 2:
        mode = "L"
    elif pixels.ndim == 3 and pixels.shape[2] in _MODE_OF_CHANNELS:
        mode = _MODE_OF_CHANNELS[pixels.shape[2]]
    else:
        raise ImageError(f"cannot write an image of shape {pixels.shape}")
    if format in _FORMATS_WITHOUT_ALPHA and mode in ("LA", "RGBA"):
        raise ImageError(f"{format} cannot store an alpha channel; write PNG, WebP or TIFF "
                         "instead")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    if isinstance(png_compression, bool) or png_compression not in range(10):
        raise ValueError(f"PNG compression must be in 0..9, got {png_compression}")
    if jpeg_subsampling is not None and jpeg_subsampling not in JPEG_SUBSAMPLING:
        raise ValueError(f"JPEG subsampling must be one of {', '.join(JPEG_SUBSAMPLING)}, "
                         f"got {jpeg_subsampling!r}")
    options: dict = {}
    if format in ("JPEG", "WEBP", "AVIF", "JXL"):
        options["quality"] = quality
    if format == "PNG":
        options["compress_level"] = png_compression
    if format == "JPEG" and jpeg_subsampling is not None:
        options["subsampling"] = jpeg_subsampling
    if icc_profile and format in ICC_FORMATS:
        options["icc_profile"] = icc_profile
    try:
        if exif and format in EXIF_FORMATS:
            height, width = pixels.shape[:2]
            options["exif"] = resized_exif(exif, width, height).tobytes()
        if format == "PNG" and (png_compression == 1 or pixels.dtype == np.uint16):
            _write_bytes(file, encode_png(pixels, icc_profile=options.get("icc_profile"),
                                          exif=options.get("exif")))
            return
        if format == "TIFF" and pixels.dtype == np.uint16:
            _write_tiff16(file, pixels, options.get("icc_profile"))
            return
        if format == "GIF":
            im, gif_options = gif_frame(pixels)
            im.save(file, format=format, **gif_options)
            return
        im = Image.fromarray(np.ascontiguousarray(pixels))  # the mode follows the channel count
        im.save(file, format=format, **options)
    except (OSError, KeyError, ValueError, SyntaxError) as exc:
        raise ImageError(f"cannot write a {mode} image as {format}: {exc}") from exc


def to_8bit(pixels: np.ndarray) -> np.ndarray:
    """uint16 samples rounded to uint8: ``round(v / 257)``, so ``v * 257`` gives back ``v``."""
    # (v + 128) // 257 is v / 257 rounded: v / 257 is never halfway (257 is odd)
    return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _write_tiff16(file, pixels: np.ndarray, icc_profile: bytes | None) -> None:
    """A 16-bit TIFF by ``tifffile`` (Pillow writes 16-bit gray only), uncompressed as Pillow's."""
    try:
        import tifffile
    except ImportError:
        raise ImageError("writing 16-bit RGB TIFF needs tifffile: pip install tifffile "
                         "(or write PNG, which lutsr writes in 16 bits itself)") from None
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    extratags = [(34675, "B", len(icc_profile), icc_profile, True)] if icc_profile else []
    # no EXIF: tifffile writes an EXIF IFD only from tags, not from a block (said in the docs)
    options = dict(photometric="rgb" if channels >= 3 else "minisblack",
                   extrasamples=("unassalpha",) if channels in (2, 4) else None,
                   extratags=extratags, metadata=None)
    if hasattr(file, "write"):
        tifffile.imwrite(file, np.ascontiguousarray(pixels), **options)
        return
    # opened here: tifffile does not write to an O_TMPFILE's /proc/self/fd name itself
    with open(file, "wb") as fh:
        tifffile.imwrite(fh, np.ascontiguousarray(pixels), **options)


def gif_frame(pixels: np.ndarray):
    """A uint8 image as a Pillow palette image for GIF, and the options to save it with.

    Colour is quantised by Pillow (median cut, Floyd-Steinberg dither) to at
    most 256 colours, or 255 and a transparent index where the image has
    alpha: GIF's transparency is on or off, so alpha below 128 becomes
    transparent and the rest opaque.
    """
    Image, _ = _pil()
    alpha = pixels[..., -1] if pixels.ndim == 3 and pixels.shape[2] in (2, 4) else None
    colour = pixels[..., :-1] if alpha is not None else pixels
    if colour.ndim == 3 and colour.shape[2] == 1:
        colour = colour[..., 0]
    rgb = Image.fromarray(np.ascontiguousarray(colour)).convert("RGB")
    im = rgb.quantize(colors=256 if alpha is None else 255, method=Image.Quantize.MEDIANCUT,
                      dither=Image.Dither.FLOYDSTEINBERG)
    if alpha is None:
        return im, {}
    index = np.asarray(im).copy()
    index[alpha < 128] = 255
    out = Image.fromarray(index, "P")
    palette = im.getpalette()[:255 * 3]
    out.putpalette(palette + [0] * (768 - len(palette)))
    return out, {"transparency": 255}


def _write_bytes(file, data: bytes) -> None:
    if hasattr(file, "write"):
        file.write(data)
    else:
        with open(file, "wb") as f:
            f.write(data)


# ---------------------------------------------------------------------------
# Alpha


def premultiply(pixels: np.ndarray) -> np.ndarray:
    """Colour times alpha, the colour channels of an image with alpha last.

    Parameters
    ----------
    pixels : ndarray of uint8 or uint16, shape ``(..., C)``
        ``C`` = 2 (gray + alpha) or 4 (RGBA), straight (unassociated) alpha.

    Returns
    -------
    ndarray, same shape and dtype
        Colour ``round(c * a / M)`` with ``M`` = 255 (uint8) or 65535 (uint16)
        (exact: ``(c*a + (M-1)/2) // M``, as ``c*a/M`` is never halfway
        between integers, ``M`` being odd), alpha unchanged. A fully
        transparent pixel becomes 0 in every channel whatever its straight
        colour was; an opaque one is unchanged.
    """
    _check_alpha_layout(pixels)
    if pixels.dtype == np.uint16:
        wide = pixels.astype(np.uint64)
        wide[..., :-1] = (wide[..., :-1] * wide[..., -1:] + 32767) // 65535
        return wide.astype(np.uint16)
    return _apply_alpha_table(pixels, _alpha_tables()[0])


def unpremultiply(pixels: np.ndarray) -> np.ndarray:
    """Straight colour from premultiplied colour, the inverse of :func:`premultiply`.

    Parameters
    ----------
    pixels : ndarray of uint8 or uint16, shape ``(..., C)``
        ``C`` = 2 or 4, premultiplied colour then alpha.

    Returns
    -------
    ndarray, same shape and dtype
        Colour ``min(M, round(p * M / a))`` rounded half up (exact:
        ``(2*M*p + a) // (2*a)``), ``M`` = 255 (uint8) or 65535 (uint16), 0
        where ``a`` is 0; alpha unchanged. A colour above its alpha (which an
        upscaler's overshoot can produce) is clipped to ``M``. For ``a`` =
        ``M`` this is the identity, so opaque images come out as if upscaled
        without alpha.
    """
    _check_alpha_layout(pixels)
    if pixels.dtype == np.uint16:
        wide = pixels.astype(np.uint64)
        a = wide[..., -1:]
        colour = (2 * 65535 * wide[..., :-1] + a) // np.maximum(2 * a, 1)
        wide[..., :-1] = np.where(a == 0, 0, np.minimum(colour, 65535))
        return wide.astype(np.uint16)
    return _apply_alpha_table(pixels, _alpha_tables()[1])


@functools.cache
def _alpha_tables() -> tuple[np.ndarray, np.ndarray]:
    """The premultiply and un-premultiply maps as flat tables indexed by ``a * 256 + c``.

    Both are functions of two bytes, so one 64 KiB table each replaces the
    per-pixel integer divisions (several times faster on a 4K image).
    """
    c = np.arange(256, dtype=np.int64)[None, :]
    a = np.arange(256, dtype=np.int64)[:, None]
    pre = (c * a + 127) // 255
    straight = np.where(a > 0, np.minimum(255, (510 * c + a) // np.maximum(2 * a, 1)), 0)
    return pre.astype(np.uint8).ravel(), straight.astype(np.uint8).ravel()


def _apply_alpha_table(pixels: np.ndarray, table: np.ndarray) -> np.ndarray:
    out = np.empty_like(pixels)
    index = (pixels[..., -1:].astype(np.uint16) << 8) | pixels[..., :-1]  # alpha * 256 + colour
    out[..., :-1] = table.take(index)
    out[..., -1] = pixels[..., -1]
    return out


def upscale_premultiplied(upscaler, pixels: np.ndarray) -> np.ndarray:
    """Upscale an image with alpha without colour bleeding from transparent pixels.

    :func:`premultiply`, upscale every channel (colour and alpha) with
    ``upscaler``, :func:`unpremultiply`. The colour a transparent pixel
    carries is invisible in the input; upscaled per channel it would blend
    into the neighbouring visible pixels (a dark fringe from transparent
    black, a light one from white). Premultiplied, every transparent pixel is
    0, so the visible result does not depend on it.

    Parameters
    ----------
    upscaler : callable
        Maps a uint8 ``(H, W, C)`` array to its ``(H*s, W*s, C)`` upscale
        (a :class:`lutsr.Upscaler`, or ``lambda x: lutsr.upscale(x, lut)``).
    pixels : ndarray of uint8, shape ``(H, W, 2)`` or ``(H, W, 4)``
        Gray + alpha or RGBA, straight alpha (as PNG, WebP and TIFF store it).

    Returns
    -------
    ndarray of uint8, shape ``(H*s, W*s, C)``
        Straight alpha. Composited over any background it equals, within
        the rounding of the premultiply, the premultiplied upscale composited
        over that background. Colour precision where alpha is small is
        limited by the premultiply (about ``255 / a`` levels).
    """
    return unpremultiply(upscaler(premultiply(pixels)))


def _check_alpha_layout(pixels) -> None:
    if not isinstance(pixels, np.ndarray) or pixels.dtype not in (np.uint8, np.uint16):
        raise TypeError("pixels must be a uint8 or uint16 numpy array")
    if pixels.ndim < 3 or pixels.shape[-1] not in (2, 4):
        raise ValueError(f"an image with alpha has 2 or 4 channels last, got shape "
                         f"{pixels.shape}")
