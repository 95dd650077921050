"""Quality metrics of the super-resolution papers' protocol: Y-PSNR and Y-SSIM.

The protocol (``../shared/README.md``):

- convert to the BT.601 luma ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``
  of 0..255 inputs, in float64 (not rounded to integers); a grayscale image is
  first replicated to three channels, so its ``Y = 16 + 219 v / 255``;
- shave ``shave`` pixels (the scale) off every border;
- PSNR with peak 255; SSIM as Wang et al. 2004 with an 11x11 Gaussian window
  (sigma 1.5), ``K1 = 0.01``, ``K2 = 0.03``, ``L = 255`` and 'valid' filtering
  (only windows entirely inside the image), averaged over the SSIM map.

SSIM is computed on the same shaved Y image as PSNR, as the SR-LUT/MuLUT and
BasicSR evaluation scripts do (they crop the border before both metrics).

Grayscale images: the default, ``gray="replicate"``, is the protocol above.
The older MATLAB scripts behind the classic bicubic/SRCNN/VDSR tables convert
only 3-channel images and use a grayscale image's values as Y directly
(``gray="luma"``). That changes one image of the standard sets, Set14's
bridge, whose error is then 255/219 times larger (1.32 dB lower PSNR): the
published Set14 bicubic row (30.24 / 27.55 / 26.00) is reproduced with
``gray="luma"``, and is about 0.09 dB higher with ``"replicate"``.

Beside the protocol, :func:`edge_flat_psnr_y` scores only the flat pixels next to
strong edges, where look-up-table upscalers leave faint streaks ("hatching")
that a whole-image PSNR averages away.

Pure numpy: the Gaussian window is separable, so the 'valid' filtering is two
1-D passes over a sliding window view.
"""

from __future__ import annotations

import numpy as np

__all__ = ["edge_flat_psnr_y", "edge_flat_mask", "psnr_y", "rgb_to_y", "ssim_y"]

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255


GRAY_MODES = ("replicate", "luma")


def rgb_to_y(img: np.ndarray, gray: str = "replicate") -> np.ndarray:
    """BT.601 luma of an RGB or grayscale image with values in 0..255.

    Parameters
    ----------
    img : ndarray, shape (H, W) or (H, W, 3) or (H, W, 1)
        uint8 or float in 0..255, channels in RGB order.
    gray : {"replicate", "luma"}
        A single-channel image is replicated to RGB first (``"replicate"``),
        or its values are taken as Y unchanged (``"luma"``).

    Returns
    -------
    ndarray of float64, shape (H, W)
        ``16 + (65.481 R + 128.553 G + 24.966 B) / 255``, in 16..235 for
        in-range input; not rounded.
    """
    if gray not in GRAY_MODES:
        raise ValueError(f"gray must be one of {GRAY_MODES}, got {gray!r}")
    if not isinstance(img, np.ndarray):
        raise TypeError(f"img must be a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8 and not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"img must be uint8 or floating point in 0..255, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2 and gray == "luma":
        return img.astype(np.float64)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"img must be HxW, HxWx1 or HxWx3 (RGB), got shape {img.shape}")
    rgb = img.astype(np.float64)
    # Written as a sum in R, G, B order rather than a dot product, so the result
    # does not depend on the BLAS in use.
    return 16 + rgb[:, :, 0] * _Y_WEIGHTS[0] + rgb[:, :, 1] * _Y_WEIGHTS[1] \
        + rgb[:, :, 2] * _Y_WEIGHTS[2]


def _shaved_y_pair(sr: np.ndarray, hr: np.ndarray, shave: int,
                   gray: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(sr, np.ndarray) or not isinstance(hr, np.ndarray):
        raise TypeError("sr and hr must be numpy arrays")
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr differ in shape: {sr.shape} != {hr.shape}")
    if not isinstance(shave, (int, np.integer)) or shave < 0:
        raise ValueError(f"shave must be a non-negative integer, got {shave!r}")
    h, w = hr.shape[:2]
    if h <= 2 * shave or w <= 2 * shave:
        raise ValueError(f"shaving {shave} pixels leaves nothing of a {h}x{w} image")
    crop = (slice(shave, h - shave), slice(shave, w - shave))
    return rgb_to_y(sr, gray)[crop], rgb_to_y(hr, gray)[crop]


def psnr_y(sr: np.ndarray, hr: np.ndarray, shave: int, gray: str = "replicate") -> float:
    """Peak signal-to-noise ratio of the BT.601 Y channels, borders shaved.

    Parameters
    ----------
    sr, hr : ndarray, shape (H, W) or (H, W, 3)
        Same shape; uint8 or float in 0..255, RGB order.
    shave : int
        Pixels removed from each border before comparing (the scale, by the
        papers' protocol).
    gray : {"replicate", "luma"}
        How a 2-D (grayscale) image becomes Y; see :func:`rgb_to_y`.

    Returns
    -------
    float
        ``10 log10(255**2 / MSE)`` in dB; ``inf`` for identical Y channels.
    """
    y_sr, y_hr = _shaved_y_pair(sr, hr, shave, gray)
    mse = np.mean((y_sr - y_hr) ** 2)
    if mse == 0:
        return float("inf")
    return float(10 * np.log10(255.0**2 / mse))


#: :func:`edge_flat_mask`'s defaults: an edge is a step of at least 48 Y levels between
#: neighbours (central differences of a line or a letter's border, not of texture); flat is a
#: 5x5 window spanning at most 2 levels; "next to" is within 6 pixels (the reach of an x4
#: LUT's 4x4 block sampled from a 2x2 or 3x3 LR window).
EDGE_STEP, FLAT_SPAN, NEAR = 48.0, 2.0, 6


def _window_reduce(img: np.ndarray, radius: int, reduce) -> np.ndarray:
    """``reduce`` (np.max or np.min) over the ``(2 radius + 1)``-square window, edges repeated."""
    side = 2 * radius + 1
    padded = np.pad(img, radius, mode="edge")
    rows = reduce(np.lib.stride_tricks.sliding_window_view(padded, side, axis=0), axis=-1)
    return reduce(np.lib.stride_tricks.sliding_window_view(rows, side, axis=1), axis=-1)


def edge_flat_mask(y: np.ndarray, edge_step: float = EDGE_STEP, flat_span: float = FLAT_SPAN,
                   near: int = NEAR) -> np.ndarray:
    """The flat pixels of a luma image that lie next to a strong edge.

    Parameters
    ----------
    y : ndarray, shape (H, W), float
        The reference (HR) luma, 0..255.
    edge_step, flat_span, near : float, float, int
        A pixel is on an edge where its horizontal or vertical central difference
        ``|y[i+1] - y[i-1]| / 2`` reaches ``edge_step``; flat where its 5x5 window spans at
        most ``flat_span`` levels; and next to an edge within a ``(2 near + 1)``-square.

    Returns
    -------
    ndarray of bool, shape (H, W)
    """
    p = np.pad(y, 1, mode="edge")
    step = np.maximum(np.abs(p[2:, 1:-1] - p[:-2, 1:-1]), np.abs(p[1:-1, 2:] - p[1:-1, :-2])) / 2
    span = _window_reduce(y, 2, np.max) - _window_reduce(y, 2, np.min)
    edge_near = _window_reduce((step >= edge_step).astype(np.uint8), near, np.max) > 0
    return edge_near & (span <= flat_span)


def edge_flat_psnr_y(sr: np.ndarray, hr: np.ndarray, shave: int,
                     gray: str = "replicate") -> tuple[float, int]:
    """Y-PSNR over the flat pixels next to strong edges of ``hr``: a measure of hatching.

    Upscalers that work in small windows can leave faint streaks in flat areas
    beside strong edges (line art, text): too few pixels to move the whole
    image's PSNR, plain to the eye against the flat background. This scores
    only those pixels (:func:`edge_flat_mask` of the shaved HR luma), so a
    method that streaks scores lower than one that keeps them flat.

    Parameters
    ----------
    sr, hr, shave, gray
        As :func:`psnr_y`.

    Returns
    -------
    (float, int)
        The PSNR in dB (``inf`` where equal, ``nan`` where no pixel qualifies) and the
        number of pixels it was measured on.
    """
    y_sr, y_hr = _shaved_y_pair(sr, hr, shave, gray)
    mask = edge_flat_mask(y_hr)
    n = int(mask.sum())
    if n == 0:
        return float("nan"), 0
    mse = np.mean((y_sr[mask] - y_hr[mask]) ** 2)
    return (float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))), n


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """1-D factor of MATLAB's ``fspecial('gaussian', size, sigma)`` (their outer product)."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of ``img`` (H, W) with ``outer(g, g)``."""
    n = g.size
    rows = np.lib.stride_tricks.sliding_window_view(img, n, axis=0) @ g     # (H-n+1, W)
    return np.lib.stride_tricks.sliding_window_view(rows, n, axis=1) @ g    # (H-n+1, W-n+1)


def ssim_y(sr: np.ndarray, hr: np.ndarray, shave: int, gray: str = "replicate") -> float:
    """Structural similarity (Wang et al. 2004) of the BT.601 Y channels, borders shaved.

    Parameters
    ----------
    sr, hr : ndarray, shape (H, W) or (H, W, 3)
        Same shape; uint8 or float in 0..255, RGB order.
    shave : int
        Pixels removed from each border first; at least 11x11 pixels must remain.
    gray : {"replicate", "luma"}
        How a 2-D (grayscale) image becomes Y; see :func:`rgb_to_y`.

    Returns
    -------
    float
        Mean of the SSIM map over all 11x11 windows inside the shaved image;
        1.0 for identical Y channels.
    """
    y_sr, y_hr = _shaved_y_pair(sr, hr, shave, gray)
    g = _gaussian_window()
    if min(y_sr.shape) < g.size:
        raise ValueError(f"SSIM needs at least {g.size}x{g.size} pixels after shaving, "
                         f"got {y_sr.shape[0]}x{y_sr.shape[1]}")
    c1 = (0.01 * 255) ** 2
    c2 = (0.03 * 255) ** 2
    mu1 = _filter_valid(y_sr, g)
    mu2 = _filter_valid(y_hr, g)
    var1 = _filter_valid(y_sr * y_sr, g) - mu1 * mu1
    var2 = _filter_valid(y_hr * y_hr, g) - mu2 * mu2
    cov = _filter_valid(y_sr * y_hr, g) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * cov + c2)) / (
        (mu1 * mu1 + mu2 * mu2 + c1) * (var1 + var2 + c2))
    return float(ssim_map.mean())
