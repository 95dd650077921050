"""MATLAB-compatible bicubic resize: the papers' LR inputs and bicubic baseline.

:func:`imresize` reproduces MATLAB's ``imresize(img, scale, 'bicubic')`` byte
for byte on uint8 images (checked against ``../shared/data/test/*/LR_bicubic``
by ``tests/test_resize.py``). What MATLAB does, and so what this does:

- output size ``ceil(scale * in)`` per dimension;
- output pixel ``x`` (1-based) samples the input at ``u = x / scale + 0.5 * (1 - 1 / scale)``;
- Keys' cubic kernel with ``a = -0.5``; when downscaling (``scale < 1``) the
  kernel is stretched by ``1 / scale`` (antialiasing) and its width becomes
  ``4 / scale``;
- the weights of each output pixel are normalised to sum to one;
- taps that fall outside the image are mirrored (symmetric, edge pixel
  repeated) onto it;
- the dimension with the smaller scale (the stronger reduction) is resized
  first, rows first on a tie, in float64; a uint8 result is saturated and
  rounded once, at the end.

Rounding, checked against the shared ``LR_bicubic`` bytes (all 357 images of
Set5/Set14/B100 at x2, x3, x4): the intermediate pass must *not* be rounded to
uint8 (rounding it changes 0.37M to 2.1M pixels per scale over the 119
images); without that rounding, resizing rows or columns first gives the same
bytes. Exact ties are rounded half to even. In these sets ties occur only at
x2, where the normalised weights are multiples of 1/256 so sums of integers
can land exactly on .5; rounding them half away from zero instead changes
64, 50 and 91 values of Set5, Set14 and B100 at x2. ``../shared/README.md`` says the x4 bytes equal
MATLAB's own output on Set5; x4 has no ties there, so the tie rule is fixed by
the shared data, not checked against MATLAB itself.

Weights are computed once per ``(in_len, out_len, scale)`` and cached; a pass
is a sum over the few taps of gathered rows or columns, in tap order (the
order MATLAB accumulates in).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

__all__ = ["imresize", "modcrop"]


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel, ``a = -0.5``, written as MATLAB writes it."""
    absx = np.abs(x)
    absx2 = absx**2
    absx3 = absx**3
    return ((1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1)
            + (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((1 < absx) & (absx <= 2)))


@lru_cache(maxsize=256)
def _contributions(in_len: int, out_len: int, scale: float,
                   antialiasing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Taps of a 1-D bicubic resize.

    Returns
    -------
    weights : ndarray of float64, shape (P, out_len)
        ``weights[k, i]`` multiplies input sample ``indices[k, i]`` for output ``i``.
    indices : ndarray of intp, shape (P, out_len)
        0-based input indices, already mirrored into ``[0, in_len)``.
    """
    kernel_width = 4.0
    if scale < 1 and antialiasing:
        def kernel(x):
            return scale * _cubic(scale * x)
        kernel_width = kernel_width / scale
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    P = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(P)[None, :]          # 1-based, may be out of range
    weights = kernel(u[:, None] - indices)
    weights = weights / np.sum(weights, axis=1, keepdims=True)
    # Symmetric boundary: 1..n, n..1 repeated (the edge pixel appears twice).
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = aux[np.mod(indices.astype(np.int64) - 1, aux.size)]
    keep = np.any(weights != 0, axis=0)
    weights = np.ascontiguousarray(weights[:, keep].T)
    indices = np.ascontiguousarray(indices[:, keep].T)
    weights.setflags(write=False)
    indices.setflags(write=False)
    return weights, indices


def _round_uint8(x: np.ndarray) -> np.ndarray:
    """Saturate to 0..255 and round half to even (see the module docstring for why)."""
    return np.rint(np.clip(x, 0, 255)).astype(np.uint8)


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    """Resize float64 ``img`` along ``axis`` (0 or 1); returns float64."""
    weights, indices = _contributions(img.shape[axis], out_len, scale)
    shape = [1] * img.ndim
    shape[axis] = out_len
    out = np.zeros(img.shape[:axis] + (out_len,) + img.shape[axis + 1:])
    for w, idx in zip(weights, indices, strict=True):
        out += w.reshape(shape) * np.take(img, idx, axis=axis)
    return out


def _output_size(shape: tuple[int, int], scale, size) -> tuple[tuple[float, float],
                                                                tuple[int, int]]:
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale and size")
    if scale is not None:
        if isinstance(scale, (tuple, list)):
            if len(scale) != 2:
                raise ValueError(f"scale must be a number or a pair, got {scale!r}")
            scales = tuple(float(s) for s in scale)
        else:
            scales = (float(scale), float(scale))
        if not all(np.isfinite(s) and s > 0 for s in scales):
            raise ValueError(f"scale must be positive and finite, got {scale!r}")
        sizes = tuple(math.ceil(s * n) for s, n in zip(scales, shape, strict=True))
    else:
        if len(size) != 2 or not all(isinstance(n, (int, np.integer)) and n > 0 for n in size):
            raise ValueError(f"size must be a pair of positive integers (rows, cols), got {size!r}")
        sizes = (int(size[0]), int(size[1]))
        scales = (sizes[0] / shape[0], sizes[1] / shape[1])
    return scales, sizes


def imresize(img: np.ndarray, scale=None, *, size=None) -> np.ndarray:
    """Resize like MATLAB's ``imresize(img, scale, 'bicubic')`` (antialiased).

    Parameters
    ----------
    img : ndarray, shape (H, W) or (H, W, C)
        uint8 (result saturated and rounded to uint8, see the module
        docstring) or floating point (result float64, not rounded or clipped).
    scale : float or (float, float), optional
        Resize factor, e.g. ``1/4`` to downscale by 4 or ``4`` to upscale. The
        output has ``ceil(scale * H)`` rows and ``ceil(scale * W)`` columns.
        Pass ``1 / s`` (not a rounded decimal) to match MATLAB's
        ``imresize(img, 1/s)``.
    size : (int, int), optional
        Output ``(rows, cols)`` instead of ``scale``; the scale of each
        dimension is then ``out / in``, as in MATLAB.

    Returns
    -------
    ndarray
        ``(H', W')`` or ``(H', W', C)``; uint8 for uint8 input, else float64.

    Raises
    ------
    TypeError
        ``img`` is not a numpy array of uint8 or floating dtype.
    ValueError
        Wrong number of dimensions, empty image, bad ``scale``/``size``.
    """
    if not isinstance(img, np.ndarray):
        raise TypeError(f"img must be a numpy array, got {type(img).__name__}")
    is_uint8 = img.dtype == np.uint8
    if not is_uint8 and not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"img must be uint8 or floating point, got {img.dtype}")
    if img.ndim not in (2, 3):
        raise ValueError(f"img must be HxW or HxWxC, got shape {img.shape}")
    if 0 in img.shape:
        raise ValueError(f"img is empty: shape {img.shape}")
    scales, sizes = _output_size(img.shape[:2], scale, size)
    # MATLAB resizes the dimension with the smaller scale first (stable: rows on a tie).
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)
    out = img
    for axis in order:
        if out.shape[axis] == sizes[axis] and scales[axis] == 1:
            continue
        out = _resize_axis(out.astype(np.float64, copy=False), axis, sizes[axis], scales[axis])
    if out is img:
        return img.copy() if is_uint8 else img.astype(np.float64)
    return _round_uint8(out) if is_uint8 else out


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom and right so height and width are multiples of ``scale``.

    Parameters
    ----------
    img : ndarray, shape (H, W) or (H, W, C)
    scale : int
        Positive integer.

    Returns
    -------
    ndarray
        A view ``img[:H - H % scale, :W - W % scale]``.
    """
    if not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
        raise ValueError("img must be an HxW or HxWxC numpy array")
    h, w = img.shape[0] - img.shape[0] % scale, img.shape[1] - img.shape[1] % scale
    if h == 0 or w == 0:
        raise ValueError(f"image {img.shape[:2]} is smaller than the scale {scale}")
    return img[:h, :w]
