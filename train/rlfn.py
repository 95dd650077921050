"""RLFN, the efficient CNN that the LUTs are benchmarked against (torch only).

RLFN is the Residual Local Feature Network of Kong et al., "Residual Local
Feature Network for Efficient Super-Resolution" (CVPR 2022 workshops,
arXiv 2205.07514), written here from the paper so that the authors' published
state dicts (``../shared/models/rlfn/``) load with ``strict=True``:

- ``conv_1``: 3x3 conv from RGB to ``features`` channels (the shallow features);
- ``block_1`` ... ``block_n``: residual local feature blocks (RLFB). Each runs
  three 3x3 convs ``c1_r``, ``c2_r``, ``c3_r``, each followed by a LeakyReLU of
  slope 0.05, adds the block input back, then a 1x1 conv ``c5`` and an
  enhanced spatial attention unit ``esa`` that scales every feature by a
  sigmoid mask;
- ``conv_2``: 3x3 conv whose output is added to the shallow features (a long
  skip);
- ``upsampler``: a 3x3 conv to ``3 * scale**2`` channels and a pixel shuffle.

ESA (the light version RLFN uses): ``conv1`` reduces to ``esa`` channels
(1x1); ``conv2`` (3x3, stride 2, no padding), a 7x7 max pool of stride 3 and
``conv3`` (3x3) see a large context at low resolution; the result is upsampled
bilinearly back to the input size, added to ``conv_f`` (1x1) of the reduced
features, expanded by ``conv4`` (1x1) and passed through a sigmoid.

The network sees RGB as float32 in 0..255 (not 0..1) and outputs the same
range; :func:`upscale_rlfn` clamps and rounds to uint8. The pruned NTIRE 2022
entry has its own width per layer, so every conv's channel counts are read
from the state dict (:meth:`RLFN.from_state_dict`) rather than fixed.

Because of the ESA's strided conv and max pool, an input must be at least
:data:`MIN_SIDE` pixels on each side.

This module is part of ``train/`` and needs torch; the runtime package
``lutsr`` never imports it.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MIN_SIDE", "RLFN", "BlockWidths", "RLFNShape", "load_rlfn", "load_rlfn_method",
           "upscale_rlfn"]

#: Negative slope of every LeakyReLU in the RLFB (the authors' setting).
LEAKY_SLOPE = 0.05

#: Smallest LR height and width RLFN accepts: the ESA's stride-2 3x3 conv must
#: leave at least 7 pixels for its 7x7 max pool, ``(n - 3) // 2 + 1 >= 7``.
MIN_SIDE = 15

@dataclass(frozen=True)
class BlockWidths:
    """Channel counts of one RLFB.

    ``channels`` enter the block and leave ``c3_r`` (the residual add needs
    them equal); ``mid1``/``mid2`` leave ``c1_r``/``c2_r``; ``out`` leaves
    ``c5`` and the ESA, which works on ``esa`` channels internally.
    """

    channels: int
    mid1: int
    mid2: int
    out: int
    esa: int


@dataclass(frozen=True)
class RLFNShape:
    """Everything that fixes an RLFN's parameter shapes.

    ``features`` channels leave ``conv_1`` and ``conv_2`` (the long skip adds
    them); ``blocks`` are chained, each block's ``out`` being the next one's
    ``channels``; ``colors`` is the number of image channels in and out.
    """

    features: int
    blocks: tuple[BlockWidths, ...]
    scale: int
    colors: int = 3

    def __post_init__(self):
        if self.scale < 1 or not self.blocks:
            raise ValueError(f"an RLFN needs a scale >= 1 and at least one block: {self}")
        width = self.features
        for i, b in enumerate(self.blocks, 1):
            if b.channels != width:
                raise ValueError(f"block_{i} takes {b.channels} channels but receives {width}")
            width = b.out
        if width != self.features:
            raise ValueError(f"the last block gives {width} channels; conv_2 expects "
                             f"{self.features} (conv_1's width) for the long skip")

    @classmethod
    def uniform(cls, features: int, *, mid: int | None = None, blocks: int = 6,
                esa: int = 16, scale: int = 4) -> RLFNShape:
        """An RLFN whose blocks are all alike.

        The published models: RLFN is ``uniform(52)``, RLFN-S ``uniform(48)``,
        the NTIRE entry ``uniform(46, mid=48, blocks=4)``.
        """
        mid = features if mid is None else mid
        block = BlockWidths(features, mid, mid, features, esa)
        return cls(features, (block,) * blocks, scale)


def _conv(cin: int, cout: int, k: int, **kw) -> nn.Conv2d:
    # 'same' padding unless the caller says otherwise (ESA's strided conv).
    kw.setdefault("padding", k // 2)
    return nn.Conv2d(cin, cout, k, **kw)


class ESA(nn.Module):
    """Enhanced spatial attention: ``x * sigmoid(mask(x))``, shape-preserving."""

    def __init__(self, channels: int, esa: int):
        super().__init__()
        self.conv1 = _conv(channels, esa, 1)
        self.conv_f = _conv(esa, esa, 1)
        self.conv2 = _conv(esa, esa, 3, stride=2, padding=0)
        self.conv3 = _conv(esa, esa, 3)
        self.conv4 = _conv(esa, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.conv1(x)
        context = F.max_pool2d(self.conv2(reduced), kernel_size=7, stride=3)
        context = F.interpolate(self.conv3(context), size=x.shape[-2:], mode="bilinear",
                                align_corners=False)
        return x * torch.sigmoid(self.conv4(context + self.conv_f(reduced)))


class RLFB(nn.Module):
    """Residual local feature block: three conv+LeakyReLU with a skip, then 1x1 conv and ESA."""

    def __init__(self, w: BlockWidths):
        super().__init__()
        self.c1_r = _conv(w.channels, w.mid1, 3)
        self.c2_r = _conv(w.mid1, w.mid2, 3)
        self.c3_r = _conv(w.mid2, w.channels, 3)
        self.c5 = _conv(w.channels, w.out, 1)
        self.esa = ESA(w.out, w.esa)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for conv in (self.c1_r, self.c2_r, self.c3_r):
            y = F.leaky_relu(conv(y), LEAKY_SLOPE)
        return self.esa(self.c5(y + x))


class RLFN(nn.Module):
    """The residual local feature network.

    Parameters
    ----------
    shape : RLFNShape
        The channel counts; :meth:`from_state_dict` reads them off a saved model.

    Notes
    -----
    ``forward`` maps float32 ``(N, colors, h, w)`` in 0..255 to float32
    ``(N, colors, h*scale, w*scale)`` in about 0..255 (not clamped); ``h`` and
    ``w`` must be at least :data:`MIN_SIDE`.
    """

    def __init__(self, shape: RLFNShape):
        super().__init__()
        self.shape = shape
        self.conv_1 = _conv(shape.colors, shape.features, 3)
        for i, widths in enumerate(shape.blocks, 1):
            self.add_module(f"block_{i}", RLFB(widths))
        self.conv_2 = _conv(shape.features, shape.features, 3)
        # A Sequential so that the conv's parameters are named upsampler.0.*.
        self.upsampler = nn.Sequential(
            _conv(shape.features, shape.colors * shape.scale ** 2, 3),
            nn.PixelShuffle(shape.scale))

    @property
    def scale(self) -> int:
        return self.shape.scale

    def blocks(self) -> Iterator[RLFB]:
        for i in range(1, len(self.shape.blocks) + 1):
            yield getattr(self, f"block_{i}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.conv_1(x)
        y = shallow
        for block in self.blocks():
            y = block(y)
        return self.upsampler(self.conv_2(y) + shallow)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> RLFN:
        """An RLFN with the channel counts of ``sd`` (weights not loaded).

        Raises
        ------
        ValueError
            ``sd`` lacks RLFN's keys or its shapes do not chain.
        """
        def out_in(name: str) -> tuple[int, int]:
            key = f"{name}.weight"
            if key not in sd:
                raise ValueError(f"not an RLFN state dict: no {key!r}")
            return int(sd[key].shape[0]), int(sd[key].shape[1])

        features, colors = out_in("conv_1")
        numbers = sorted({int(m.group(1)) for k in sd
                          if (m := re.match(r"block_(\d+)\.", k))})
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"RLFN blocks must be numbered 1..n, found {numbers}")
        blocks = []
        for i in numbers:
            p = f"block_{i}"
            mid1, channels = out_in(f"{p}.c1_r")
            mid2, _ = out_in(f"{p}.c2_r")
            out, _ = out_in(f"{p}.c5")
            esa, _ = out_in(f"{p}.esa.conv1")
            blocks.append(BlockWidths(channels, mid1, mid2, out, esa))
        up, _ = out_in("upsampler.0")
        scale = math.isqrt(up // colors)
        if scale * scale * colors != up:
            raise ValueError(f"upsampler.0 gives {up} channels, not {colors} x a square")
        return cls(RLFNShape(features, tuple(blocks), scale, colors))


def load_rlfn(path) -> RLFN:
    """The RLFN saved as a state dict at ``path``, on the CPU, in eval mode.

    Loads with ``weights_only=True`` (no arbitrary unpickling) and
    ``strict=True``: every key and shape must match.

    Raises
    ------
    ValueError
        The file is missing, not a torch state dict, or not an RLFN's.
    """
    try:
        sd = torch.load(Path(path), weights_only=True, map_location="cpu")
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path}: cannot read a torch state dict ({exc})") from exc
    if not isinstance(sd, Mapping):
        raise ValueError(f"{path}: expected a state dict, got {type(sd).__name__}")
    try:
        model = RLFN.from_state_dict(sd)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:  # torch's report of unexpected keys or shapes
        raise ValueError(f"{path}: not an RLFN state dict: {exc}") from exc
    return model.eval()


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """Run the body with ``threads`` intra-op threads (None: leave torch's setting)."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 is linear in RGB with weights
# summing to 219/255, so a gray v with the output's Y is this weighted mean.
_LUMA_OF_GRAY = torch.tensor([65.481, 128.553, 24.966]) / 219.0


def upscale_rlfn(model: RLFN, img: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Upscale one image with an RLFN.

    Parameters
    ----------
    model : RLFN
        A model in eval mode (e.g. from :func:`load_rlfn`), on the CPU.
    img : ndarray of uint8, shape (h, w, 3) or (h, w)
        RGB, or gray; ``h, w >= MIN_SIDE``. A gray image is replicated to RGB,
        as the benchmark protocol does, and the output is reduced back to one
        channel by the BT.601 luma weights, so its luma equals that of the RGB
        output up to rounding.
    threads : int, optional
        torch intra-op threads for this call (restored afterwards); default:
        torch's current setting.

    Returns
    -------
    ndarray of uint8, shape (h*scale, w*scale[, 3])
        The network output clamped to 0..255 and rounded (half to even).
    """
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        raise TypeError(f"img must be a uint8 array, got "
                        f"{getattr(img, 'dtype', type(img).__name__)}")
    colors = model.shape.colors
    gray = img.ndim == 2 and colors == 3  # the luma weights are for RGB
    if not (gray or (img.ndim == 3 and img.shape[2] == colors)):
        shapes = f"(h, w) or (h, w, {colors})" if colors == 3 else f"(h, w, {colors})"
        raise ValueError(f"img must be {shapes}, got {img.shape}")
    if min(img.shape[:2]) < MIN_SIDE:
        raise ValueError(f"RLFN needs at least {MIN_SIDE}x{MIN_SIDE} pixels, got "
                         f"{img.shape[1]}x{img.shape[0]}")
    planes = np.repeat(img[None], colors, axis=0) if gray else img.transpose(2, 0, 1)
    x = torch.from_numpy(np.ascontiguousarray(planes))[None].float()
    with _torch_threads(threads), torch.no_grad():
        y = model(x)[0]
        if gray:
            y = torch.tensordot(_LUMA_OF_GRAY, y, dims=([0], [0]))
        y = y.clamp(0, 255).round().to(torch.uint8)
    out = y.numpy()
    return out if gray else np.ascontiguousarray(out.transpose(1, 2, 0))


def load_rlfn_method(path, threads: int | None = None):
    """``(name, scale, fn)`` for ``tools/evaluate.py``.

    ``fn`` is :func:`upscale_rlfn` with the model saved at ``path``.
    """
    model = load_rlfn(path)

    def upscale(img: np.ndarray) -> np.ndarray:
        return upscale_rlfn(model, img, threads=threads)

    return f"RLFN ({Path(path).stem})", model.scale, upscale
