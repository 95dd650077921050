"""Image files in and out: reading, writing, and alpha premultiplied.

Images are read with Pillow (the ``lutsr[image]`` extra), imported only when
needed so ``import lutsr`` stays light. Arrays are uint8 in one of the layouts
:func:`lutsr.upscale` takes: ``(H, W)`` gray, ``(H, W, 2)`` gray + alpha,
``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA.

Images with alpha are upscaled premultiplied by :func:`upscale_premultiplied`:
the colour of a fully transparent pixel is invisible, and upscaling it per
channel would pull that invisible colour into the visible edge (a fringe of
whatever the editor left there, often black or white). All integer steps are
exact and documented there. Metadata travels with the pixels: the EXIF
orientation is applied to the pixels once and written back as 1, and the
EXIF block and the ICC profile are written to every output format that can
hold them (:data:`EXIF_FORMATS`, :data:`ICC_FORMATS`).

Output files are written safely by :mod:`lutsr.safefiles`.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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
}

# Pillow modes converted to 8-bit RGB(A)/gray before upscaling; each is a
# faithful 8-bit representation of what the file shows.
_CONVERT = {"1": "L", "P": None, "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "La": "LA",
            "RGBa": "RGBA", "RGBX": "RGB"}
_NATIVE = {"L", "LA", "RGB", "RGBA"}
_FORMATS_WITHOUT_ALPHA = {"JPEG"}
_MODE_OF_CHANNELS = {2: "LA", 3: "RGB", 4: "RGBA"}

#: Output formats that get the input's EXIF block, and its ICC profile (Pillow's writers).
EXIF_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "TIFF"})
ICC_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "TIFF"})

#: Default zlib level of PNG outputs. Pillow's own default (6) spends about 100x the
#: x4 upscale of a photo in deflate for a file 15% smaller than level 1; measured in
#: ``bench/test_bench_image_write.py``.
PNG_COMPRESSION = 1

#: JPEG chroma subsampling choices (Pillow's ``subsampling``); None keeps libjpeg's 4:2:0.
JPEG_SUBSAMPLING = ("4:4:4", "4:2:2", "4:2:0")

_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_PIXEL_X, _PIXEL_Y = 0xA002, 0xA003  # PixelXDimension, PixelYDimension in the Exif IFD
# TIFF tags that describe the file's own pixel layout: Pillow's getexif() of a TIFF
# returns them with the real EXIF tags, and they must not travel to another file.
_TIFF_LAYOUT_TAGS = frozenset({
    254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 277, 278, 279, 280, 281, 284,
    288, 289, 290, 291, 292, 293, 317, 318, 319, 320, 321, 322, 323, 324, 325, 330, 332, 338,
    339, 340, 341, 347, 512, 513, 514, 515, 517, 518, 519, 520, 521, 529, 530, 531, 532,
    700, 33723, 34377, 34675, 37724,
})
# The colour space an ICC profile must declare (header bytes 16..20) to fit a mode.
_ICC_SPACE = {"L": b"GRAY", "LA": b"GRAY", "RGB": b"RGB ", "RGBA": b"RGB "}


class ImageError(ValueError):
    """An image file that cannot be read, or an array that cannot be written as asked."""


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
    """

    mode: str
    format: str
    icc_profile: bytes | None = None
    converted: str = ""
    exif: bytes | None = None
    orientation: int = 1
    warnings: list[str] = field(default_factory=list)


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


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, ImageInfo]:
    """Read an image file as a uint8 array.

    Parameters
    ----------
    path : str or path-like
        A PNG, JPEG, BMP, TIFF or WebP file (anything Pillow opens is tried).

    Returns
    -------
    pixels : ndarray of uint8
        ``(H, W)`` for gray, ``(H, W, 2)`` gray + alpha, ``(H, W, 3)`` RGB or
        ``(H, W, 4)`` RGBA, upright (the EXIF orientation is applied).
    info : ImageInfo

    Raises
    ------
    FileNotFoundError
        No such file.
    ImageError
        Not an image, a damaged file, an animated image, or a 16/32-bit image:
        lutsr's LUTs map 8-bit values, so deeper images are refused rather
        than silently truncated. A damaged EXIF block is not an error: it is
        dropped (the orientation is then 1) and said in ``info.warnings``.
        Packed 16-bit pixels of 5 or 6 bits per sample (RGB565 BMP) are read
        as 8-bit RGB.
    """
    Image, _ = _pil()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
    # Pillow's warnings become lines of info.warnings: Python's warning text (file, line
    # number, source line) on stderr says nothing a user can act on.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels, info = _read_image(Image, path)
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


def _read_image(Image, path: Path) -> tuple[np.ndarray, ImageInfo]:
    """:func:`read_image` without the warnings' handling."""
    from PIL import ImageOps

    try:
        with Image.open(path) as im:
            if getattr(im, "n_frames", 1) > 1:
                raise ImageError(f"{path}: animated or multi-page images are not supported "
                                 f"({im.n_frames} frames)")
            bits = _sample_bits(im)
            if bits != 8:
                raise ImageError(
                    f"{path}: {bits}-bit images are not supported (mode {im.mode}); lutsr's "
                    "LUTs work on 8-bit values. Convert to 8 bits per channel first, e.g. "
                    "with Pillow or `ffmpeg -i in.png -pix_fmt rgb24 out.png`")
            info = ImageInfo(mode=im.mode, format=im.format or "",
                             icc_profile=im.info.get("icc_profile"))
            im.load()
            info.exif, info.orientation, note = _upright_exif(im)
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
            if info.icc_profile and not _icc_fits(info.icc_profile, im.mode):
                info.converted += ("; " if info.converted else "") + "ICC profile dropped"
                info.icc_profile = None
            pixels = np.asarray(im, dtype=np.uint8)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        # Pillow reports truncated or garbage files as OSError/SyntaxError.
        raise ImageError(f"{path}: cannot read image: {exc}") from exc
    return np.ascontiguousarray(pixels), info


def _upright_exif(im) -> tuple[bytes | None, int, str]:
    """The EXIF block of an opened image with orientation 1, the orientation it had, and a note.

    The note is empty, or says why the EXIF is not copied. A block Pillow
    cannot parse, or parses only with a warning (a truncated directory), is
    dropped whole, its orientation too (``(None, 1, note)``): the values of a
    damaged block cannot be trusted, and copying half of it would write a
    damaged block again.
    """
    from PIL import Image

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if im.info.get("exif") is not None:
                # parsed here, not only by getexif(): a JPEG's block is parsed (and
                # warned about) when the file is opened, and getexif() returns that
                Image.Exif().load(im.info["exif"])
            original = im.getexif()
            damage = " ".join(str(caught[0].message).split()) if caught else ""
        except Exception as exc:  # noqa: BLE001 - any parse failure of the block is damage
            damage = " ".join(str(exc).split()) or type(exc).__name__
    if damage:
        return None, 1, f"damaged EXIF data ignored (not copied, no rotation applied): {damage}"
    orientation = original.get(_ORIENTATION, 1)
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1  # Pillow's exif_transpose ignores invalid values too
    try:
        # a copy: getexif() is the image's own, which exif_transpose reads afterwards
        exif = Image.Exif()
        exif.load(original.tobytes())
        if im.format == "TIFF":
            for tag in _TIFF_LAYOUT_TAGS & set(exif):
                del exif[tag]
        if not len(exif):
            return None, orientation, ""
        exif[_ORIENTATION] = 1
        return exif.tobytes(), orientation, ""
    except Exception as exc:  # noqa: BLE001 - a damaged EXIF block costs the metadata, not the image
        return None, orientation, f"EXIF data not copied, it cannot be written back: {exc}"


def _icc_fits(profile: bytes, mode: str) -> bool:
    """Whether an ICC profile's colour space is the one of pixels in ``mode``."""
    return len(profile) >= 20 and profile[16:20] == _ICC_SPACE.get(mode)


def _resized_exif(exif: bytes, width: int, height: int):
    """``exif`` as a Pillow Exif whose pixel dimensions, if it states them, are the new size."""
    from PIL import Image

    data = Image.Exif()
    data.load(exif)
    sub = data.get_ifd(_EXIF_IFD)
    if _PIXEL_X in sub:
        sub[_PIXEL_X] = width
    if _PIXEL_Y in sub:
        sub[_PIXEL_Y] = height
    return data


def image_format(path: str | os.PathLike) -> str:
    """Pillow's format name for an output path, from its suffix.

    Raises
    ------
    ImageError
        The suffix is not one of :data:`IMAGE_FORMATS`.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise ImageError(f"{path}: unknown image suffix {suffix!r}; use one of "
                         f"{', '.join(sorted(IMAGE_FORMATS))}")
    return IMAGE_FORMATS[suffix]


def write_image(file, pixels: np.ndarray, format: str, *, icc_profile: bytes | None = None,
                exif: bytes | None = None, quality: int = 95,
                png_compression: int = PNG_COMPRESSION,
                jpeg_subsampling: str | None = None) -> None:
    """Encode a uint8 array into an open binary file or a path.

    Parameters
    ----------
    file : path or binary file object
    pixels : ndarray of uint8
        ``(H, W)``, ``(H, W, 2)``, ``(H, W, 3)`` or ``(H, W, 4)``.
    format : str
        A Pillow format name from :data:`IMAGE_FORMATS` (``"PNG"``, ``"JPEG"``...).
    icc_profile : bytes, optional
        Colour profile to embed (formats in :data:`ICC_FORMATS`; ignored by others).
    exif : bytes, optional
        EXIF block to embed, as :attr:`ImageInfo.exif` (formats in
        :data:`EXIF_FORMATS`; ignored by others). Its pixel dimensions, if it
        has them, are set to the size of ``pixels``.
    quality : int
        1..100, for JPEG and (lossy) WebP.
    png_compression : int
        zlib level 0..9 of PNG files: 1 (the default) is lutsr's own fast
        encoder (:func:`lutsr.png.encode_png`), the others Pillow's
        ``compress_level``: 0 stores, 9 is the smallest and slowest.
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
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        raise TypeError("pixels must be a uint8 numpy array")
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
    if format in ("JPEG", "WEBP"):
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
            options["exif"] = _resized_exif(exif, width, height).tobytes()
        if format == "PNG" and png_compression == 1:
            _write_bytes(file, encode_png(pixels, icc_profile=options.get("icc_profile"),
                                          exif=options.get("exif")))
            return
        im = Image.fromarray(np.ascontiguousarray(pixels))  # the mode follows the channel count
        im.save(file, format=format, **options)
    except (OSError, KeyError, ValueError, SyntaxError) as exc:
        raise ImageError(f"cannot write a {mode} image as {format}: {exc}") from exc


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
    pixels : ndarray of uint8, shape ``(..., C)``
        ``C`` = 2 (gray + alpha) or 4 (RGBA), straight (unassociated) alpha.

    Returns
    -------
    ndarray of uint8, same shape
        Colour ``round(c * a / 255)`` (exact: ``(c*a + 127) // 255``, as
        ``c*a/255`` is never halfway between integers), alpha unchanged. A
        fully transparent pixel becomes 0 in every channel whatever its
        straight colour was; an opaque one is unchanged.
    """
    _check_alpha_layout(pixels)
    return _apply_alpha_table(pixels, _alpha_tables()[0])


def unpremultiply(pixels: np.ndarray) -> np.ndarray:
    """Straight colour from premultiplied colour, the inverse of :func:`premultiply`.

    Parameters
    ----------
    pixels : ndarray of uint8, shape ``(..., C)``
        ``C`` = 2 or 4, premultiplied colour then alpha.

    Returns
    -------
    ndarray of uint8, same shape
        Colour ``min(255, round(p * 255 / a))`` rounded half up (exact:
        ``(510*p + a) // (2*a)``), 0 where ``a`` is 0; alpha unchanged. A
        colour above its alpha (which an upscaler's overshoot can produce) is
        clipped to 255. For ``a`` = 255 this is the identity, so opaque images
        come out as if upscaled without alpha.
    """
    _check_alpha_layout(pixels)
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
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        raise TypeError("pixels must be a uint8 numpy array")
    if pixels.ndim < 3 or pixels.shape[-1] not in (2, 4):
        raise ValueError(f"an image with alpha has 2 or 4 channels last, got shape "
                         f"{pixels.shape}")
