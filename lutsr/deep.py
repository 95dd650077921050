"""Upscaling samples deeper than 8 bits: the LUT on the top 8 bits, the bits below interpolated.

lutsr's LUTs map 8-bit values. A 10-bit video frame or a 16-bit image is not
truncated to 8 bits: :func:`upscale_deep` runs the LUT on the top 8 bits of each
sample and adds the bits below, upscaled by linear interpolation
(:func:`_upsample_linear`), so flat areas and smooth gradients keep every bit.
Both the video path (:mod:`lutsr.video.frames`) and 16-bit images
(:mod:`lutsr.imageio`, ``lutsr image``) use it.
"""

from __future__ import annotations

import numpy as np


def _upsample_linear(img: np.ndarray, s: int) -> np.ndarray:
    """Linear interpolation by an integer factor, pixel centres aligned, edges replicated.

    Parameters
    ----------
    img : ndarray of float32, shape (H, W) or (H, W, C)
    s : int

    Returns
    -------
    ndarray of float32, shape (s*H, s*W) or (s*H, s*W, C)
        Output pixel ``o`` samples the input at ``(o + 0.5) / s - 0.5``; the
        weights of each output pixel sum to one, so a constant stays constant.
    """
    for axis in (0, 1):
        n = img.shape[axis]
        pad = [(0, 0)] * img.ndim
        pad[axis] = (1, 1)
        padded = np.pad(img, pad, mode="edge")
        centre = np.take(padded, range(1, n + 1), axis=axis)
        phases = []
        for p in range(s):
            d = (2 * p + 1 - s) / (2 * s)  # offset of the sample from the input pixel
            side = range(0, n) if d < 0 else range(2, n + 2)
            phases.append(centre * np.float32(1 - abs(d))
                          + np.take(padded, side, axis=axis) * np.float32(abs(d)))
        img = np.stack(phases, axis=axis + 1)
        shape = list(centre.shape)
        shape[axis] = n * s
        img = img.reshape(shape)
    return img


def upscale_deep(img: np.ndarray, upscaler, bits: int,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Upscale samples deeper than 8 bits: the LUT on the top 8, linear interpolation below.

    Parameters
    ----------
    img : ndarray of uint16, shape (H, W) or (H, W, C)
        Samples in ``0 .. 2**bits - 1``.
    upscaler : Upscaler
        Anything with ``up`` (uint8 in, uint8 ``scale`` times larger out) and
        ``scale``, as :class:`lutsr.Upscaler`.
    bits : int
        Sample depth, 9 to 16.
    out : ndarray of uint16, shape (s*H, s*W) or (s*H, s*W, C), optional
        Written in place (may be a strided view of a frame's plane).

    Returns
    -------
    ndarray of uint16, ``scale`` times larger
        ``LUT(hi) * 2**k + round(linear(lo))`` with ``k = bits - 8``,
        ``hi = img >> k`` and ``lo = img - (hi << k)``. As linear
        interpolation is linear, this equals ``linear(img) + 2**k *
        (LUT(hi) - linear(hi))``: the smooth upscale of every bit plus the
        detail the LUT adds over a smooth upscale of the top 8 bits. Where the
        low bits are constant they come out exactly as they went in; the sum
        never exceeds ``2**bits - 1``.
    """
    k = bits - 8
    hi = (img >> k).astype(np.uint8)
    lo = (img - (hi.astype(np.uint16) << k)).astype(np.float32)
    result = upscaler.up(hi).astype(np.uint16) << k
    # lo_up is in 0 .. 2**k - 1 (a convex combination), so the sum cannot overflow
    result += np.rint(_upsample_linear(lo, upscaler.scale)).astype(np.uint16)
    if out is None:
        return result
    out[...] = result
    return out
