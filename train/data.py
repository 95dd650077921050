"""Training data: HR images from folders, LR made by the MATLAB-compatible bicubic downscale."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

import lutsr
from lutsr.resize import imresize, modcrop

IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}


def list_images(folders) -> list[Path]:
    """Image files under ``folders`` (recursively), sorted; raises ValueError if none."""
    files = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"training data folder {folder} does not exist")
        files += sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES))
        raise ValueError(f"no images ({kinds}) found in {[str(f) for f in folders]}")
    return files


def read_rgb(path: Path) -> np.ndarray:
    """An image as uint8 (H, W, 3); grayscale replicated, alpha dropped."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I", "F"):
                raise ValueError(f"{path}: {im.mode} images are not supported for training")
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read training image {path}: {exc}") from None


def make_pairs(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) of one RGB image: HR cropped to a multiple of ``scale``, LR = imresize(HR, 1/s)."""
    hr = modcrop(hr, scale)
    if min(hr.shape[:2]) < scale:
        raise ValueError(f"image of shape {hr.shape} is smaller than the scale {scale}")
    return imresize(hr, 1 / scale), hr


def prefilter(hr: np.ndarray, scale: int) -> np.ndarray:
    """The LR image whose bicubic x``scale`` upscale is closest to ``hr``, as uint8.

    The least-squares solution ``z`` of ``imresize(z, scale) = hr``: a
    sharper LR image than the downscale of ``hr`` (the downscale blurs over
    16 HR pixels at x4; ``z`` undoes that as far as a bicubic upscale can use
    it). The upscale is separable, so ``z = pinv(U_H) hr pinv(U_W)^T`` with
    ``U_N`` the (N, N / scale) matrix of the 1-D upscale. A target for a
    first stage at LR (``tools/build_lut.py --first-stage prefilter``).

    Parameters
    ----------
    hr : ndarray, shape (H, W) or (H, W, C)
        H and W multiples of ``scale`` (see :func:`lutsr.resize.modcrop`).
    scale : int

    Returns
    -------
    ndarray of uint8, shape (H / scale, W / scale[, C])
        ``z`` rounded and saturated to 0..255.
    """
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    if (h * scale, w * scale) != hr.shape[:2] or h == 0 or w == 0:
        raise ValueError(f"HR shape {hr.shape} is not a nonzero multiple of the scale {scale}")
    pinv_h, pinv_w = _upscale_pinv(h, scale), _upscale_pinv(w, scale)
    z = np.tensordot(pinv_h, hr.astype(np.float64), axes=(1, 0))  # (h, W[, C])
    z = np.moveaxis(np.tensordot(z, pinv_w, axes=(1, 1)), -1, 1)  # (h, w[, C])
    return np.rint(np.clip(z, 0, 255)).astype(np.uint8)


@functools.lru_cache(maxsize=64)
def _upscale_pinv(n: int, scale: int) -> np.ndarray:
    """Pseudo-inverse of the 1-D bicubic upscale of ``n`` samples (read-only).

    Cached: a training set holds many images of one size (and its scaled copies).
    """
    # The upscale matrix: imresize of an identity image along one axis.
    pinv = np.linalg.pinv(imresize(np.eye(n), size=(n * scale, n)))
    pinv.flags.writeable = False
    return pinv


def load_pairs(paths, scale: int, min_size: int = 0, scale_aug=(), log=None, shift_aug=(),
               invert_aug: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """(LR, HR) RGB pairs for the image files ``paths``: :func:`load_groups`, flattened."""
    return [pair for group in load_groups(paths, scale, min_size, scale_aug, log, shift_aug,
                                          invert_aug)
            for pair in group]


def load_groups(paths, scale: int, min_size: int = 0, scale_aug=(), log=None, shift_aug=(),
                invert_aug: bool = False) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """(LR, HR) RGB pairs for each of the image files ``paths`` (see :func:`list_images`).

    Images whose LR side would be below ``min_size`` raise ValueError, naming
    the file: silently skipping them would train on less than asked for.
    ``scale_aug`` factors (e.g. 0.75, 0.5) add bicubic-downscaled copies of
    each HR image as further HR images (those too small for a patch are
    left out): more edges at more scales from the same photos. ``shift_aug``
    offsets ``(dy, dx)`` (HR pixels, each below ``scale``) add pairs cut from
    the HR image without its first ``dy`` rows and ``dx`` columns: the LR
    pixel grid then falls elsewhere on the same photo, so the pairs are new
    samples of exactly the test-time degradation. ``invert_aug`` adds the
    photographic negative ``255 - HR`` of each of those HR images: the
    downscale is linear, so (up to rounding) the negative's pair is the
    original's, inverted; a LUT is not symmetric under inversion, so dark
    structure then also teaches the table rows of bright structure. Group
    ``i`` holds image ``i``'s pair, its shifted pairs, its downscaled copies,
    then (with ``invert_aug``) the negatives of all of them.
    """
    groups = []
    for i, path in enumerate(paths):
        hr = read_rgb(path)
        lr, hr_c = make_pairs(hr, scale)
        if min(lr.shape[:2]) < min_size:
            raise ValueError(f"{path}: {hr.shape[1]}x{hr.shape[0]} is too small for "
                             f"{min_size}-pixel LR patches at x{scale}")
        group = [(lr, hr_c)]
        for dy, dx in shift_aug:
            if not (0 <= dy < scale and 0 <= dx < scale):
                raise ValueError(f"shift ({dy}, {dx}) is not within 0..{scale - 1}")
            group.append(make_pairs(hr[dy:, dx:], scale))
        for factor in scale_aug:
            smaller = imresize(hr, factor)
            if min(smaller.shape[:2]) >= max(min_size, 2) * scale:
                group.append(make_pairs(smaller, scale))
        if invert_aug:
            group += [make_pairs(255 - hr_part, scale) for _, hr_part in group]
        groups.append(group)
        if log and (i + 1) % 50 == 0:
            log(f"  loaded {i + 1} images")
    return groups


def balance_weights(groups, alpha: float) -> list[float]:
    """A least-squares weight for every pair of ``groups`` (see :func:`load_groups`).

    Image ``i`` with ``n_i`` LR pixels (its own pair; its downscaled copies
    share its weight) gets ``(mean(n) / n_i) ** alpha``: ``alpha`` 0 lets
    every pixel count the same, so big images dominate the fit; 1 lets every
    image count the same in total, as a mean of per-image PSNRs does.
    """
    sizes = np.array([g[0][0].shape[0] * g[0][0].shape[1] for g in groups], np.float64)
    per_image = (sizes.mean() / sizes) ** alpha
    return [float(w) for w, g in zip(per_image, groups) for _ in g]


def output_blocks(image: np.ndarray, r: int) -> np.ndarray:
    """(H*r, W*r) -> (H*W, r*r): each input pixel's r x r output block, row-major."""
    h, w = image.shape[0] // r, image.shape[1] // r
    return image.reshape(h, r, w, r).transpose(0, 2, 1, 3).reshape(h * w, r * r)


def pair_mse(pairs, lut) -> np.ndarray:
    """The MSE of ``lut``'s output (the runtime's, rounded) against the HR image of each pair."""
    return np.array([np.mean(np.square(lutsr.upscale(lr, lut).astype(np.float64) - hr))
                     for lr, hr in pairs])


def error_weights(pairs, lut, floor: float = 1.0) -> list[float]:
    """A least-squares weight per (LR, HR) pair: ``mean(mse) / mse_i`` of ``lut``'s output.

    The papers' metric is a mean of per-image PSNRs, ``-10 log10 mse_i``: its
    gradient weighs each image's squared error by ``1 / mse_i``, where a
    pooled least squares weighs every pixel alike (and so favours the images
    it does worst on). Refitting with these weights is one step of
    iteratively reweighted least squares toward the mean PSNR. ``floor``
    bounds ``mse_i`` from below so that a flat image cannot take the fit over.
    """
    mse = np.maximum(pair_mse(pairs, lut), floor)
    return [float(w) for w in mse.mean() / mse]


def plane_pairs(pairs, flips: bool = True, weights=None, split: bool = True):
    """Single-channel (LR, HR) planes: every channel of every pair, and its mirror image.

    The 4-rotation ensemble makes a LUT model rotation-equivariant, so rotated
    copies add nothing; a mirror image is not a rotation, so it does. With
    ``weights`` (one per pair), yields ``((lr, hr), weight)`` instead. With
    ``split`` False, yields each pair whole (all channels) and its mirror image.
    """
    if weights is not None:
        for pair, weight in zip(pairs, weights, strict=True):
            for planes in plane_pairs([pair], flips, split=split):
                yield planes, weight
        return
    for lr, hr in pairs:
        for c in range(lr.shape[2]) if split else [slice(None)]:
            yield lr[:, :, c], hr[:, :, c]
            if flips:
                yield np.ascontiguousarray(lr[:, ::-1, c]), np.ascontiguousarray(hr[:, ::-1, c])
