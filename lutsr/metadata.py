"""Image metadata that travels with the pixels: the EXIF block and orientation, the ICC profile.

:func:`upright_exif` reads a file's EXIF block once, with its orientation set
to 1 as the pixels are turned upright (Pillow's ``exif_transpose``, or
:func:`oriented` for arrays Pillow cannot hold, such as 16-bit RGB), and drops
a damaged block whole; :func:`resized_exif` states the new size in it;
:func:`icc_fits` checks a profile describes the pixels as read.
"""

from __future__ import annotations

import warnings

import numpy as np

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


# EXIF orientation (2..8) as numpy steps on (H, W, ...) arrays: transpose first, then
# flips; the same pixels as Pillow's ImageOps.exif_transpose.
_ORIENT_STEPS = {2: (False, False, True), 3: (False, True, True), 4: (False, True, False),
                 5: (True, False, False), 6: (True, False, True), 7: (True, True, True),
                 8: (True, True, False)}


def oriented(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``pixels`` upright for an EXIF ``orientation`` (1..8)."""
    if orientation not in _ORIENT_STEPS:
        return pixels
    transpose, flip_rows, flip_cols = _ORIENT_STEPS[orientation]
    if transpose:
        pixels = np.swapaxes(pixels, 0, 1)
    if flip_rows:
        pixels = pixels[::-1]
    if flip_cols:
        pixels = pixels[:, ::-1]
    return pixels


def upright_exif(im) -> tuple[bytes | None, int, str]:
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


def icc_fits(profile: bytes, mode: str) -> bool:
    """Whether an ICC profile's colour space is the one of pixels in ``mode``."""
    return len(profile) >= 20 and profile[16:20] == _ICC_SPACE.get(mode)


def resized_exif(exif: bytes, width: int, height: int):
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
