"""Training data: HR images from folders, LR made by the MATLAB-compatible bicubic downscale."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import lutsr
from lutsr.imageio import ImageError, read_image
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
    """An image as uint8 (H, W, 3); grayscale replicated, alpha dropped.

    Read by :func:`lutsr.imageio.read_image` (the runtime's reader: EXIF
    orientation applied, 16-bit images refused); any error is a ValueError
    naming the file.
    """
    try:
        pixels, _ = read_image(path)
    except (ImageError, OSError) as exc:
        raise ValueError(f"cannot read training image {path}: {exc}") from None
    if pixels.ndim == 2:
        return np.ascontiguousarray(np.repeat(pixels[:, :, None], 3, axis=2))
    if pixels.shape[2] == 2:  # gray + alpha
        return np.ascontiguousarray(np.repeat(pixels[:, :, :1], 3, axis=2))
    return np.ascontiguousarray(pixels[:, :, :3])


def make_pairs(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) of one RGB image: HR cropped to a multiple of ``scale``, LR = imresize(HR, 1/s)."""
    hr = modcrop(hr, scale)
    if min(hr.shape[:2]) < scale:
        raise ValueError(f"image of shape {hr.shape} is smaller than the scale {scale}")
    return imresize(hr, 1 / scale), hr


def load_pairs(paths, scale: int, min_size: int = 0, scale_aug=(),
               log=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(LR, HR) RGB pairs for the image files ``paths`` (see :func:`list_images`).

    Images whose LR side would be below ``min_size`` raise ValueError, naming
    the file: silently skipping them would train on less than asked for.
    ``scale_aug`` factors (e.g. 0.75, 0.5) add bicubic-downscaled copies of
    each HR image as further HR images (those too small for a patch are
    left out): more edges at more scales from the same photos. Each image's
    pair comes first, then its downscaled copies.
    """
    pairs = []
    for i, path in enumerate(paths):
        hr = read_rgb(path)
        lr, hr_c = make_pairs(hr, scale)
        if min(lr.shape[:2]) < min_size:
            raise ValueError(f"{path}: {hr.shape[1]}x{hr.shape[0]} is too small for "
                             f"{min_size}-pixel LR patches at x{scale}")
        pairs.append((lr, hr_c))
        for factor in scale_aug:
            smaller = imresize(hr, factor)
            if min(smaller.shape[:2]) >= max(min_size, 2) * scale:
                pairs.append(make_pairs(smaller, scale))
        if log and (i + 1) % 50 == 0:
            log(f"  loaded {i + 1} images")
    return pairs


def output_blocks(image: np.ndarray, r: int) -> np.ndarray:
    """(H*r, W*r) -> (H*W, r*r): each input pixel's r x r output block, row-major."""
    h, w = image.shape[0] // r, image.shape[1] // r
    return image.reshape(h, r, w, r).transpose(0, 2, 1, 3).reshape(h * w, r * r)


def pair_mse(pairs, lut) -> np.ndarray:
    """The MSE of ``lut``'s output (the runtime's, rounded) against the HR image of each pair."""
    return np.array([np.mean(np.square(lutsr.upscale(lr, lut).astype(np.float64) - hr))
                     for lr, hr in pairs])


def plane_pairs(pairs, flips: bool = True):
    """Single-channel (LR, HR) planes: every channel of every pair, and its mirror image.

    The 4-rotation ensemble makes a LUT model rotation-equivariant, so rotated
    copies add nothing; a mirror image is not a rotation, so it does.
    """
    for lr, hr in pairs:
        for c in range(lr.shape[2]):
            yield lr[:, :, c], hr[:, :, c]
            if flips:
                yield np.ascontiguousarray(lr[:, ::-1, c]), np.ascontiguousarray(hr[:, ::-1, c])
