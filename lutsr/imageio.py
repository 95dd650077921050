"""Image files in and out, and writing any output file safely.

Images are read with Pillow (the ``lutsr[image]`` extra), imported only when
needed so ``import lutsr`` stays light. Arrays are uint8 in one of the layouts
:func:`lutsr.upscale` takes: ``(H, W)`` gray, ``(H, W, 2)`` gray + alpha,
``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA. Every channel, alpha included, goes
through the LUT.

Output files are created by :func:`atomic_output`: the data is written to a
file with no name (Linux ``O_TMPFILE``) or a hidden temporary name beside the
target, and only appears under the target name once it is complete. A failed,
interrupted or killed run never leaves a partial file at the target.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
        The embedded colour profile, written back to the output.
    converted : str
        How the pixels were converted to 8-bit, or ``""`` if they were not.
    """

    mode: str
    format: str
    icc_profile: bytes | None = None
    converted: str = ""


def _pil():
    """Import Pillow, with an error that names the extra to install."""
    try:
        from PIL import Image, ImageOps
    except ImportError:  # pragma: no cover - Pillow is installed in the test environment
        raise ImportError(
            "reading and writing images needs Pillow: pip install 'lutsr[image]'"
        ) from None
    return Image, ImageOps


def _sample_bits(im) -> int:
    """Bits per sample as stored, which Pillow's mode hides for 16-bit RGB(A)."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        return 16 if im.mode.startswith("I;16") else 32
    for tile in im.tile or ():
        args = tile.args if hasattr(tile, "args") else tile[3]
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and (";16" in rawmode or ";32" in rawmode):
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
        than silently truncated.
    """
    Image, ImageOps = _pil()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
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
            pixels = np.asarray(im, dtype=np.uint8)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        # Pillow reports truncated or garbage files as OSError/SyntaxError.
        raise ImageError(f"{path}: cannot read image: {exc}") from exc
    return np.ascontiguousarray(pixels), info


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
                quality: int = 95) -> None:
    """Encode a uint8 array into an open binary file or a path.

    Parameters
    ----------
    file : path or binary file object
    pixels : ndarray of uint8
        ``(H, W)``, ``(H, W, 2)``, ``(H, W, 3)`` or ``(H, W, 4)``.
    format : str
        A Pillow format name from :data:`IMAGE_FORMATS` (``"PNG"``, ``"JPEG"``...).
    icc_profile : bytes, optional
        Colour profile to embed.
    quality : int
        1..100, for JPEG and (lossy) WebP.

    Raises
    ------
    ImageError
        A layout the format cannot store (e.g. alpha in JPEG).
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
    options = {}
    if format in ("JPEG", "WEBP"):
        options["quality"] = quality
    if icc_profile and format != "BMP":
        options["icc_profile"] = icc_profile
    im = Image.fromarray(np.ascontiguousarray(pixels))  # the mode follows the channel count
    try:
        im.save(file, format=format, **options)
    except (OSError, KeyError, ValueError) as exc:
        raise ImageError(f"cannot write a {mode} image as {format}: {exc}") from exc


# ---------------------------------------------------------------------------
# Output files


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file (existing or not)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


@dataclass
class PendingOutput:
    """An output being written; see :func:`atomic_output`.

    Attributes
    ----------
    path : str
        A path to write the data to (ffmpeg and Pillow open it by name). It is
        ``/proc/self/fd/N`` for a nameless ``O_TMPFILE`` file, else a hidden
        temporary file beside the target.
    target : pathlib.Path
        Where the file appears on success.
    """

    path: str
    target: Path
    _fd: int = -1
    _temp_name: str | None = None


def _make_pending(target: Path) -> PendingOutput:
    folder = target.parent
    mode = 0o666  # the umask applies, as for any file the user creates
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        try:
            fd = os.open(folder, os.O_TMPFILE | os.O_RDWR, mode)
        except OSError:  # filesystem without O_TMPFILE support: use a named temp
            pass
        else:
            return PendingOutput(path=f"/proc/self/fd/{fd}", target=target, _fd=fd)
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.",
                                suffix=f".lutsr-partial{target.suffix}")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, mode & ~umask)
    return PendingOutput(path=name, target=target, _fd=fd, _temp_name=name)


def _commit(pending: PendingOutput, overwrite: bool) -> None:
    os.fsync(pending._fd)
    target = pending.target
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if pending._temp_name is None:
            src = pending.path
            if overwrite:
                # link under a fresh hidden name, then rename over the target
                tmp = f".{target.name}.{secrets.token_hex(6)}.lutsr-partial"
                os.link(src, tmp, dst_dir_fd=dir_fd, follow_symlinks=True)
                os.replace(tmp, target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                # linkat fails if the target exists: no-clobber without a race
                os.link(src, target.name, dst_dir_fd=dir_fd, follow_symlinks=True)
        elif overwrite:
            os.replace(pending._temp_name, target)
        else:
            try:
                os.link(pending._temp_name, target)
            except FileExistsError:
                raise
            except OSError:  # no hard links on this filesystem
                if target.exists():
                    raise FileExistsError(f"{target} exists") from None
                os.replace(pending._temp_name, target)
            else:
                os.unlink(pending._temp_name)
    except FileExistsError:
        raise FileExistsError(f"{target} appeared while it was being written; "
                              "not overwritten (use --overwrite)") from None
    finally:
        os.close(dir_fd)


def check_output(target: str | os.PathLike, overwrite: bool,
                 inputs: tuple = ()) -> Path:
    """Validate an output path before any work is done.

    Raises
    ------
    FileExistsError
        ``target`` exists and ``overwrite`` is false.
    ValueError
        ``target`` is one of ``inputs``, is a directory, or its folder does
        not exist.
    """
    target = Path(target)
    for source in inputs:
        if same_file(source, target):
            raise ValueError(f"output {target} is the input file; refusing to overwrite it")
    if target.is_dir():
        raise ValueError(f"output {target} is a directory")
    if not target.parent.is_dir():
        raise ValueError(f"output folder {target.parent} does not exist")
    if os.path.lexists(target) and not overwrite:
        dangling = " (a dangling symbolic link)" if not target.exists() else ""
        raise FileExistsError(f"{target} exists{dangling}; use --overwrite to replace it")
    return target


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike, *, overwrite: bool = False,
                  inputs: tuple = ()) -> Iterator[PendingOutput]:
    """Create ``target`` all at once, or not at all.

    Yields a :class:`PendingOutput` whose ``path`` the caller writes (and
    closes) inside the ``with`` block. When the block ends without an
    exception the file appears at ``target``; on any exception, Ctrl-C
    included, it is discarded. A process killed outright leaves nothing behind
    when the filesystem supports ``O_TMPFILE`` (Linux ext4, xfs, btrfs, tmpfs),
    else at worst a hidden ``.NAME.*.lutsr-partial*`` file, never the target.

    Parameters
    ----------
    target : path
    overwrite : bool
        Replace an existing ``target`` (atomically) instead of refusing.
    inputs : tuple of paths
        Files that must never be the target.

    Raises
    ------
    FileExistsError, ValueError
        See :func:`check_output`.
    """
    target = check_output(target, overwrite, inputs)
    pending = _make_pending(target)
    try:
        yield pending
        _commit(pending, overwrite)
    finally:
        os.close(pending._fd)
        if pending._temp_name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pending._temp_name)
