"""Any output size: a LUT upscale followed by a resample to the exact size asked.

A LUT upscales by a whole factor (2, 4...). To reach another size, the image is
upscaled by a LUT whose factor is at least the one asked, then resampled to
the exact size:

* the LUT: without an explicit one, the bundled model of the default family
  (``x2``, ``x4``, ``x3`` when bundled: :func:`family`) whose factor is the
  smallest at or above the larger of the two axis factors asked. A request at
  or below 1 on both axes needs no LUT and is a plain resample. A request above
  the largest bundled factor uses the largest, then upscales further. An
  explicit LUT is always used, then resampled.
* the resample (:func:`resample`), per axis: an exact area average when the
  axis shrinks (each output pixel is the mean of the input area it covers,
  partial pixels weighted by their overlap: no aliasing, no ringing; computed
  here in float64 and rounded once, half to even), Pillow's ``LANCZOS`` (3
  lobes, the sharpest of its kernels) when it grows (after a LUT, growing is
  only needed beyond the largest bundled factor or to fix an aspect ratio).

Why not Pillow's ``BOX`` for the area: it weights input pixels by whether
their *centre* falls in the output pixel, not by overlap, so at x4 -> x3 an
output pixel averages one or two inputs instead of 4/3 of them (up to 99 code
values from the true area mean on noise), and its round-half-up in each pass
brightens an exact 2:1 reduction by 0.5 on average. Pillow is the
``lutsr[image]`` extra already; its Lanczos rounds once per pass to uint8.
Channels are resampled one by one as gray planes, so the result does not
depend on the channel count and RGBA is not premultiplied behind the
caller's back (the CLI premultiplies itself around the whole upscale). Video
frames are resampled by swscale instead (``AREA`` / ``LANCZOS``, see
:mod:`lutsr.video`), which works on every pixel format and depth (its
``AREA`` is within 0.63 of the exact area mean on the same test).

Sizes are ``(width, height)`` here, as on the command line (``--size WxH``).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass

import numpy as np

from . import bundled

__all__ = ["MAX_SIDE", "BoxGeometry", "ResizePlan", "box_geometry", "family", "output_size",
           "parse_colour", "parse_size", "pick_lut", "place", "plan_resize", "resample",
           "upscale_to"]

#: The largest output side, in pixels: Pillow's and libavcodec's sizes are C ``int``.
MAX_SIDE = 2**31 - 1

_FAMILY = re.compile(r"x(\d+)")


#: ``--size`` sides computed from the other one, keeping the aspect ratio: -1 any
#: size, -2 rounded to an even one (as FFmpeg's scale filter reads them).
ASPECT_SIDES = (-1, -2)


def parse_size(text: str, aspect: bool = False) -> tuple[int, int]:
    """``"1000x700"`` as ``(1000, 700)`` (width, height), both positive.

    With ``aspect``, one side may be -1 or -2 (:data:`ASPECT_SIDES`):
    ``"1920x-2"`` is ``(1920, -2)``, resolved by :func:`output_size`.
    """
    m = re.fullmatch(r"\s*(-?\d+)\s*[xX]\s*(-?\d+)\s*", text)
    sides = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    kept = [n for n in sides if n in ASPECT_SIDES] if aspect else []
    if min(sides) < 1 and (len(kept) != 1 or min(n for n in sides if n not in kept) < 1):
        hint = " or 1920x-2 (the height from the aspect ratio)" if aspect else ""
        raise ValueError(f"size must look like 1920x1080 (positive width x height){hint}, "
                         f"got {text!r}")
    return sides


def output_size(in_size: tuple[int, int], *, outscale: float | None = None,
                size: tuple[int, int] | None = None) -> tuple[int, int]:
    """The exact ``(width, height)`` of an output.

    Parameters
    ----------
    in_size : (int, int)
        Input ``(width, height)``.
    outscale : float, optional
        Factor > 0 on both axes; each side is ``round(outscale * side)``
        (halves up), at least 1.
    size : (int, int), optional
        The output ``(width, height)`` itself. Give exactly one of the two.
        One side may be -1: ``round(other * in_side / in_other)`` (halves
        up, at least 1), the input's aspect ratio kept; or -2: the same
        rounded to the nearest even number (at least 2).

    Raises
    ------
    ValueError
        Both or neither given, a factor that is not finite and positive, a
        size that is not two positive integers (one may be -1 or -2), an
        output side above :data:`MAX_SIDE`.
    """
    if (outscale is None) == (size is None):
        raise ValueError("give exactly one of outscale and size")
    if size is not None:
        if (len(size) == 2 and all(isinstance(n, (int, np.integer)) and not isinstance(n, bool)
                                   for n in size)
                and sum(n in ASPECT_SIDES for n in size) == 1 and max(size) > 0):
            size = _aspect_size(in_size, tuple(int(n) for n in size))
        if (len(size) != 2 or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool)
                                      and n > 0 for n in size)):
            raise ValueError(f"size must be two positive integers (width, height), got {size!r}")
        if max(size) > MAX_SIDE:
            raise ValueError(f"size {size[0]}x{size[1]} is too large: each side must be at "
                             f"most {MAX_SIDE} pixels")
        return int(size[0]), int(size[1])
    if isinstance(outscale, bool) or not isinstance(outscale, (int, float, np.number)) \
            or not math.isfinite(outscale) or outscale <= 0:
        raise ValueError(f"outscale must be a finite number > 0, got {outscale!r}")
    # in floats first: a huge factor gives an infinite or out-of-range side, not an int overflow
    sides = [outscale * n + 0.5 for n in in_size]
    if not all(side < MAX_SIDE + 1 for side in sides):
        raise ValueError(f"outscale {outscale:g} is too large: it makes a {in_size[0]}x"
                         f"{in_size[1]} input more than {MAX_SIDE} pixels a side")
    return tuple(max(1, math.floor(side)) for side in sides)


def _aspect_size(in_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int]:
    """``size`` with its -1 or -2 side computed from the other (see :func:`output_size`)."""
    axis = 0 if size[0] < 0 else 1
    given = size[1 - axis]
    exact = given * in_size[axis] / in_size[1 - axis]
    if size[axis] == -2:
        side = max(2, 2 * math.floor(exact / 2 + 0.5))
    else:
        side = max(1, math.floor(exact + 0.5))
    side = min(side, MAX_SIDE + 1)  # too large: refused by the caller's check
    return (side, given) if axis == 0 else (given, side)


#: The ways of fitting a picture to a target box (``--fit``, ``--pad``, ``--crop``).
BOX_MODES = ("fit", "pad", "crop")


@dataclass(frozen=True)
class BoxGeometry:
    """How a picture is fitted to a box (:func:`box_geometry`).

    Attributes
    ----------
    mode : str
        ``"fit"``, ``"pad"`` or ``"crop"`` (:data:`BOX_MODES`).
    scaled : (int, int)
        ``(width, height)`` the input is upscaled (LUT, then resample) to.
    out : (int, int)
        ``(width, height)`` written: ``scaled`` for ``"fit"``, the box
        otherwise.
    offset : (int, int)
        ``"pad"``: where the scaled picture's top-left corner lies in the
        output; ``"crop"``: where the output's top-left corner lies in the
        scaled picture; ``(0, 0)`` for ``"fit"``.
    """

    mode: str
    scaled: tuple[int, int]
    out: tuple[int, int]
    offset: tuple[int, int]

    def turned(self) -> BoxGeometry:
        """The same geometry with width and height swapped (a video stored turned)."""
        return BoxGeometry(self.mode, self.scaled[::-1], self.out[::-1], self.offset[::-1])


def box_geometry(in_size: tuple[int, int], box: tuple[int, int], mode: str,
                 align: int = 1) -> BoxGeometry:
    """Fit a picture of ``in_size`` to ``box``, keeping its aspect ratio.

    Parameters
    ----------
    in_size, box : (int, int)
        ``(width, height)``, positive.
    mode : str
        ``"fit"``: scaled by ``f = min(box_w / in_w, box_h / in_h)``, each
        side ``round(f * side)`` (halves up, at least ``align``, at most the
        box), and written at that size; ``"pad"``: the same, placed in the
        centre of a box-sized output (the bars are the caller's colour);
        ``"crop"``: scaled by ``max(box_w / in_w, box_h / in_h)`` (each side
        at least the box's) and its centre cut out at the box's size.
    align : int
        The scaled sides (``"fit"``, ``"pad"``: rounded down, staying in the
        box) and the offsets (rounded down) are made multiples of it: 2 for
        video, whose 4:2:0 chroma covers two pixels each way.

    Returns
    -------
    BoxGeometry

    Raises
    ------
    ValueError
        A mode not in :data:`BOX_MODES`, or a box side above :data:`MAX_SIDE`.
    """
    if mode not in BOX_MODES:
        raise ValueError(f"box mode must be one of {', '.join(BOX_MODES)}, got {mode!r}")
    box = output_size((1, 1), size=box)
    (iw, ih), (bw, bh) = in_size, box
    if mode == "crop":
        f = max(bw / iw, bh / ih)
        scaled = (max(bw, math.floor(f * iw + 0.5)), max(bh, math.floor(f * ih + 0.5)))
        offset = tuple((s - b) // 2 // align * align for s, b in zip(scaled, box, strict=True))
        return BoxGeometry(mode, scaled, box, offset)
    f = min(bw / iw, bh / ih)
    scaled = tuple(max(align, min(b, math.floor(f * n + 0.5)) // align * align)
                   for n, b in zip(in_size, box, strict=True))
    if mode == "fit":
        return BoxGeometry(mode, scaled, scaled, (0, 0))
    offset = tuple((b - s) // 2 // align * align for s, b in zip(scaled, box, strict=True))
    return BoxGeometry(mode, scaled, box, offset)


#: Colour names ``--pad-colour`` takes, as 8-bit RGB (else ``#RRGGBB``).
COLOUR_NAMES = {"black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128),
                "grey": (128, 128, 128), "red": (255, 0, 0), "green": (0, 255, 0),
                "blue": (0, 0, 255)}


def parse_colour(text: str) -> tuple[int, int, int]:
    """``"black"``, ``"#1a2b3c"`` or ``"1a2b3c"`` as 8-bit ``(r, g, b)``."""
    t = text.strip().lower()
    if t in COLOUR_NAMES:
        return COLOUR_NAMES[t]
    m = re.fullmatch(r"#?([0-9a-f]{6})", t)
    if m is None:
        raise ValueError(f"colour must be a name ({', '.join(COLOUR_NAMES)}) or #RRGGBB, "
                         f"got {text!r}")
    return tuple(int(m.group(1)[i:i + 2], 16) for i in (0, 2, 4))


def place(img: np.ndarray, geometry: BoxGeometry, colour: tuple[int, int, int]) -> np.ndarray:
    """An image of ``geometry.scaled`` padded or cropped to ``geometry.out``.

    Parameters
    ----------
    img : ndarray, shape (H, W) or (H, W, C)
        ``(W, H) == geometry.scaled``; C is 1 to 4 (gray, gray + alpha,
        RGB, RGBA).
    geometry : BoxGeometry
    colour : (int, int, int)
        The bars' 8-bit RGB (``"pad"``), scaled to the image's depth; gray
        images take its BT.601 luma; alpha is opaque there.

    Returns
    -------
    ndarray of img's dtype, shape (out_h, out_w) or (out_h, out_w, C)
    """
    (sw, sh), (ow, oh), (x, y) = geometry.scaled, geometry.out, geometry.offset
    if img.shape[:2] != (sh, sw):
        raise ValueError(f"the image is {img.shape[1]}x{img.shape[0]}, not the scaled "
                         f"{sw}x{sh}")
    if geometry.mode == "crop":
        return img[y:y + oh, x:x + ow].copy()
    if geometry.mode == "fit":
        return img.copy()
    top = np.iinfo(img.dtype).max if img.dtype.kind in "ui" else 1.0
    channels = 1 if img.ndim == 2 else img.shape[2]
    r, g, b = (c / 255 for c in colour)
    fill = {1: [0.299 * r + 0.587 * g + 0.114 * b], 2: [0.299 * r + 0.587 * g + 0.114 * b, 1],
            3: [r, g, b], 4: [r, g, b, 1]}[channels]
    out = np.empty((oh, ow) + img.shape[2:], img.dtype)
    out[...] = np.asarray([round(v * top) for v in fill], img.dtype).reshape(
        (-1,) if img.ndim == 3 else ())
    out[y:y + sh, x:x + sw] = img
    return out


def family() -> dict[int, str]:
    """The bundled default-family LUTs by factor, e.g. ``{2: "x2", 4: "x4"}``."""
    out = {}
    for name in bundled.names():
        m = _FAMILY.fullmatch(name)
        if m:
            out[int(m.group(1))] = name
    return out


def pick_lut(in_size: tuple[int, int], out_size: tuple[int, int]) -> str | None:
    """The bundled LUT to upscale ``in_size`` towards ``out_size`` with, or None for none.

    The smallest factor of :func:`family` at or above ``max(out_w / in_w,
    out_h / in_h)``; the largest when none is that large; None when the
    request is at most 1 (a plain resample).

    Raises
    ------
    ValueError
        An upscale is asked and no default-family LUT is bundled.
    """
    need = max(out_size[0] / in_size[0], out_size[1] / in_size[1])
    if need <= 1:
        return None
    luts = family()
    if not luts:
        raise ValueError("no bundled x2/x4 LUT is installed; pass lut= (--lut) explicitly")
    at_least = [s for s in luts if s >= need]
    return luts[min(at_least) if at_least else max(luts)]


@dataclass(frozen=True)
class ResizePlan:
    """What an upscale to any size does: which LUT, then which resample.

    Attributes
    ----------
    in_size, out_size : (int, int)
        Input and output ``(width, height)``.
    lut : str or None
        The LUT's name (or path) as the user would say it; None: no LUT (a
        plain resample, for a request at or below 1).
    scale : int
        The LUT's factor (1 without a LUT).
    box : BoxGeometry or None
        ``--pad`` / ``--crop`` after the resample (``out_size`` is then the
        scaled size, ``box.out`` the one written).
    """

    in_size: tuple[int, int]
    out_size: tuple[int, int]
    lut: str | None
    scale: int
    box: BoxGeometry | None = None

    @property
    def lut_size(self) -> tuple[int, int]:
        """``(width, height)`` after the LUT, before the resample."""
        return self.in_size[0] * self.scale, self.in_size[1] * self.scale

    def _axes(self) -> list[tuple[str, float]]:
        """Per axis (width, height): the resample (``""``, ``"Lanczos"``, ``"area"``), factor.

        As :func:`resample` (and the video command's swscale pass) choose it:
        Lanczos on an axis that grows, an area average on one that shrinks.
        """
        return [("" if o == n else "Lanczos" if o > n else "area", o / n)
                for n, o in zip(self.lut_size, self.out_size, strict=True)]

    def summary(self) -> str:
        """The steps without sizes, e.g. ``"LUT x2, then Lanczos"`` (the same for many files)."""
        lut = "no LUT" if self.lut is None else f"LUT {self.lut}"
        kinds = sorted({k for k, _ in self._axes() if k})
        return (f"{lut}, then {' and '.join(kinds)}" if kinds else lut) + self._placed(False)

    def _placed(self, sizes: bool) -> str:
        """``", padded to 1920x1080"`` or ``", centre cropped ..."``: the box step, if any."""
        if self.box is None or self.box.mode == "fit":
            return ""
        what = "padded" if self.box.mode == "pad" else "centre cropped"
        return f", {what} to {self.box.out[0]}x{self.box.out[1]}" if sizes else f", {what}"

    def describe(self) -> str:
        """One line with the sizes.

        E.g. ``"LUT x2 (2x: 512x288 -> 1024x576), then Lanczos 1.875x to 1920x1080"``.
        """
        (w, h), (lw, lh), (ow, oh) = self.in_size, self.lut_size, self.out_size
        if self.lut is None:
            text = f"no LUT (not an upscale): {w}x{h}"
        else:
            text = f"LUT {self.lut} ({self.scale}x: {w}x{h} -> {lw}x{lh})"
        (kx, fx), (ky, fy) = self._axes()
        if not kx and not ky:
            return text + self._placed(True)
        if kx == ky and math.isclose(fx, fy, rel_tol=1e-3):
            steps = f"{kx} {fx:.4g}x"
        elif kx == ky:
            steps = f"{kx} {fx:.4g}x across and {fy:.4g}x down"
        else:
            steps = " and ".join(f"{k} {f:.4g}x {axis}" for k, f, axis in
                                 ((kx, fx, "across"), (ky, fy, "down")) if k)
        return f"{text}, then {steps} to {ow}x{oh}" + self._placed(True)


def plan_resize(in_size: tuple[int, int], out_size: tuple[int, int],
                lut: str | None = None, scale: int | None = None,
                box: BoxGeometry | None = None) -> ResizePlan:
    """The :class:`ResizePlan` of an upscale from ``in_size`` to ``out_size``.

    Parameters
    ----------
    in_size, out_size : (int, int)
        ``(width, height)``.
    lut : str, optional
        The name of the LUT given; None: the one :func:`pick_lut` picks.
    scale : int, optional
        The given LUT's factor (needed with ``lut``).
    box : BoxGeometry, optional
        ``--fit``/``--pad``/``--crop``: ``out_size`` is ``box.scaled``.
    """
    if lut is None:
        lut = pick_lut(in_size, out_size)
        scale = 1 if lut is None else next(f for f, name in family().items() if name == lut)
    elif scale is None:
        raise ValueError("give the scale of the LUT named")
    return ResizePlan(tuple(in_size), tuple(out_size), lut, int(scale), box)


def _pil_image():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is installed in the test environment
        raise ImportError("resizing needs Pillow: pip install 'lutsr[image]'") from None
    return Image


@functools.lru_cache(maxsize=64)
def _area_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights and indices of an exact area reduction from ``n_in`` to ``n_out`` samples.

    Returns
    -------
    weights : ndarray of float64, shape (P, n_out)
        ``weights[k, i]`` = the overlap of input ``indices[k, i]`` with output
        ``i``, over the output's width; each column sums to 1.
    indices : ndarray of intp, shape (P, n_out)
    """
    # In units of 1/n_out of an input pixel: output i spans [i*n_in, (i+1)*n_in) and
    # input j spans [j*n_out, (j+1)*n_out), so every overlap is an exact integer.
    i = np.arange(n_out, dtype=np.int64)[:, None]
    first = (i * n_in) // n_out
    taps = -(-n_in // n_out) + 1
    j = first + np.arange(taps, dtype=np.int64)[None, :]
    overlap = (np.minimum((i + 1) * n_in, (j + 1) * n_out) - np.maximum(i * n_in, j * n_out))
    weights = np.clip(overlap, 0, None) / n_in
    indices = np.minimum(j, n_in - 1)  # out-of-range taps have weight 0
    weights, indices = np.ascontiguousarray(weights.T), np.ascontiguousarray(indices.T)
    weights.setflags(write=False)
    indices.setflags(write=False)
    return weights, indices


def _area_axis(plane: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Area-reduce a float64 2-D ``plane`` along ``axis`` to ``n_out`` samples."""
    weights, indices = _area_taps(plane.shape[axis], n_out)
    shape = (-1, 1) if axis == 0 else (1, -1)
    out = np.zeros(plane.shape[:axis] + (n_out,) + plane.shape[axis + 1:])
    for w, idx in zip(weights, indices, strict=True):
        out += w.reshape(shape) * np.take(plane, idx, axis=axis)
    return out


def resample(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 image to exactly ``size``: area when shrinking, Lanczos when growing.

    Parameters
    ----------
    img : ndarray of uint8, shape (H, W) or (H, W, C)
    size : (int, int)
        Output ``(width, height)``.

    Returns
    -------
    ndarray of uint8, shape (height, width) or (height, width, C)
        A new array (a copy when the size is already right). Each axis is
        area-averaged if it shrinks and Lanczos-resampled if it grows (see
        the module docstring); every channel independently. Growing axes go
        first (uint8, Pillow), shrinking ones after, in float64 rounded once.
    """
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise TypeError("img must be a uint8 numpy array of shape (H, W) or (H, W, C)")
    w, h = output_size((1, 1), size=size)
    if img.shape[:2] == (h, w):
        return img.copy()
    Image = _pil_image()
    planes = img[..., None] if img.ndim == 2 else img
    out = np.empty((h, w, planes.shape[2]), np.uint8)
    grow = (max(w, img.shape[1]), max(h, img.shape[0]))
    for c in range(planes.shape[2]):
        plane = np.ascontiguousarray(planes[..., c])
        if grow != (plane.shape[1], plane.shape[0]):
            im = Image.fromarray(plane).resize(grow, Image.Resampling.LANCZOS)
            plane = np.asarray(im)
        if (h, w) != plane.shape:
            area = plane.astype(np.float64)
            if w < area.shape[1]:
                area = _area_axis(area, 1, w)
            if h < area.shape[0]:
                area = _area_axis(area, 0, h)
            plane = np.clip(np.rint(area), 0, 255)  # half to even: no bias on exact halves
        out[..., c] = plane
    return out[..., 0] if img.ndim == 2 else out


def upscale_to(img: np.ndarray, lut=None, *, size: tuple[int, int] | None = None,
               outscale: float | None = None, backend: str = "auto",
               threads: int | None = None) -> np.ndarray:
    """Upscale an image to any size: a LUT, then an exact resample.

    Parameters
    ----------
    img : ndarray of uint8, shape (H, W) or (H, W, C)
        Channels are processed independently (as :func:`lutsr.upscale`).
    lut : LUT, str, path, Upscaler or None
        None picks the bundled LUT from the factor asked (see
        :func:`pick_lut`); anything else is that model, always applied, then
        resampled.
    size : (int, int), optional
        Output ``(width, height)`` (note: width first, as ``--size WxH``).
    outscale : float, optional
        Output factor > 0, e.g. 3 or 1.5; each side is ``round(outscale *
        side)``. Give exactly one of ``size`` and ``outscale``.
    backend, threads
        As :func:`lutsr.upscale` (ignored when ``lut`` is an Upscaler).

    Returns
    -------
    ndarray of uint8, shape (height, width) or (height, width, C)

    Raises
    ------
    TypeError, ValueError
        As :func:`lutsr.upscale`, and for a bad ``size`` or ``outscale``.
    """
    from .api import Upscaler, upscale

    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
        raise TypeError("img must be a numpy array of shape (H, W) or (H, W, C)")
    in_size = (img.shape[1], img.shape[0])
    target = output_size(in_size, outscale=outscale, size=size)
    if isinstance(lut, Upscaler):
        big = lut.up(img)
    else:
        if lut is None:
            lut = pick_lut(in_size, target)
        big = img if lut is None else upscale(img, lut, backend=backend, threads=threads)
    if big is not img and big.shape[:2] == (target[1], target[0]):
        return big  # the LUT alone hit the size (e.g. --outscale 4 with x4)
    return resample(big, target)
