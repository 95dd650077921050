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

__all__ = ["MAX_SIDE", "ResizePlan", "family", "output_size", "parse_size", "pick_lut",
           "plan_resize", "resample", "upscale_to"]

#: The largest output side, in pixels: Pillow's and libavcodec's sizes are C ``int``.
MAX_SIDE = 2**31 - 1

_FAMILY = re.compile(r"x(\d+)")


def parse_size(text: str) -> tuple[int, int]:
    """``"1000x700"`` as ``(1000, 700)`` (width, height), both positive."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if m is None or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"size must look like 1920x1080 (positive width x height), got {text!r}")
    return int(m.group(1)), int(m.group(2))


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

    Raises
    ------
    ValueError
        Both or neither given, a factor that is not finite and positive, a
        size that is not two positive integers, an output side above
        :data:`MAX_SIDE`.
    """
    if (outscale is None) == (size is None):
        raise ValueError("give exactly one of outscale and size")
    if size is not None:
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
    """

    in_size: tuple[int, int]
    out_size: tuple[int, int]
    lut: str | None
    scale: int

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
        return f"{lut}, then {' and '.join(kinds)}" if kinds else lut

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
            return text
        if kx == ky and math.isclose(fx, fy, rel_tol=1e-3):
            steps = f"{kx} {fx:.4g}x"
        elif kx == ky:
            steps = f"{kx} {fx:.4g}x across and {fy:.4g}x down"
        else:
            steps = " and ".join(f"{k} {f:.4g}x {axis}" for k, f, axis in
                                 ((kx, fx, "across"), (ky, fy, "down")) if k)
        return f"{text}, then {steps} to {ow}x{oh}"


def plan_resize(in_size: tuple[int, int], out_size: tuple[int, int],
                lut: str | None = None, scale: int | None = None) -> ResizePlan:
    """The :class:`ResizePlan` of an upscale from ``in_size`` to ``out_size``.

    Parameters
    ----------
    in_size, out_size : (int, int)
        ``(width, height)``.
    lut : str, optional
        The name of the LUT given; None: the one :func:`pick_lut` picks.
    scale : int, optional
        The given LUT's factor (needed with ``lut``).
    """
    if lut is None:
        lut = pick_lut(in_size, out_size)
        scale = 1 if lut is None else next(f for f, name in family().items() if name == lut)
    elif scale is None:
        raise ValueError("give the scale of the LUT named")
    return ResizePlan(tuple(in_size), tuple(out_size), lut, int(scale))


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
