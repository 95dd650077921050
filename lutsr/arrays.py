"""Checks and views of host image arrays, shared by the API and the backends.

Plain numpy; no backend's private code, so every backend may use it.
"""

from __future__ import annotations

import numpy as np

#: DLPack device types whose memory is on a CUDA device (kDLCUDA, kDLCUDAManaged).
DLPACK_CUDA_DEVICES = (2, 13)


def as_frames(a: np.ndarray) -> np.ndarray:
    """A (N, H, W, C) view of an (H, W), (H, W, C) or (N, H, W, C) array (never a copy)."""
    if a.ndim == 2:
        return a[None, :, :, None]
    return a[None] if a.ndim == 3 else a


def check_image(img, scale: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Validate ``img``; return it as (N, H, W, C) and the output shape."""
    if type(img) is not np.ndarray:
        # Subclasses (np.matrix, masked arrays) carry meaning the kernels would drop.
        hint = " (an ndarray subclass); pass np.asarray(img)" if isinstance(img, np.ndarray) else ""
        raise TypeError(f"img must be a numpy uint8 array, got {type(img).__name__}{hint}")
    if img.dtype != np.uint8:
        raise TypeError(f"img must be uint8, got {img.dtype}; convert explicitly "
                        "(e.g. np.clip(x, 0, 255).astype(np.uint8)) so no values are lost silently")
    if img.ndim not in (2, 3, 4):
        raise ValueError(f"img must be HxW, HxWxC or NxHxWxC, got {img.ndim} dimensions "
                         f"{img.shape}")
    if 0 in img.shape:
        raise ValueError(f"img is empty: shape {img.shape}")
    frames = as_frames(img)
    n, h, w, c = frames.shape
    if img.ndim == 2:
        out_shape = (h * scale, w * scale)
    elif img.ndim == 3:
        out_shape = (h * scale, w * scale, c)
    else:
        out_shape = (n, h * scale, w * scale, c)
    return frames, out_shape


def self_overlapping(shape, strides) -> bool:
    """Whether two elements of an array with this shape and byte strides (itemsize 1)
    can share memory: a zero stride, or an axis stepping less than the axes inside
    it span (conservative: a strided layout that interleaves axes counts too)."""
    span = 0
    for n, stride in sorted(((n, abs(st)) for n, st in zip(shape, strides) if n > 1),
                            key=lambda a: a[1]):
        if stride <= span:
            return True
        span += (n - 1) * stride
    return False


def check_out(out, shape: tuple[int, ...], img: np.ndarray) -> np.ndarray:
    if type(out) is not np.ndarray:
        raise TypeError(f"out must be a numpy array, got {type(out).__name__}"
                        + (" (an ndarray subclass)" if isinstance(out, np.ndarray) else ""))
    if out.dtype != np.uint8:
        raise TypeError(f"out must be uint8, got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, expected {shape}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if self_overlapping(out.shape, out.strides):
        raise ValueError(f"out has strides {out.strides} under which elements share memory "
                         "(e.g. a broadcast view): writes to it would collide")
    if np.shares_memory(out, img):
        raise ValueError("out overlaps the input image")
    return out
