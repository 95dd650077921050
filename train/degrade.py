"""Compression degradations of LR images: JPEG (Pillow) and H.264 (PyAV libx264).

Real inputs are rarely the clean bicubic downscale the papers train and test
on; they are JPEG photos and H.264 video frames. A :class:`Degradation`
compresses an LR image and decodes it back, the way such an input reaches an
upscaler, so that evaluation (``tools/evaluate.py --degrade``) and training
(:func:`degrade_pairs`, ``tools/build_lut.py --degrade-jpeg/--degrade-h264``)
can use it; the HR target always stays the clean image.

Neither torch nor the lutsr runtime is needed here (numpy, Pillow, PyAV), so
the evaluation tool can use it for LUTs alone.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The kinds of degradation and the range of their level (inclusive).
KINDS = {"jpeg": (1, 95), "h264": (0, 51)}

# BT.601 limited range, the colour of SD H.264 (and of what x264 assumes untagged).
_KR, _KB = 0.299, 0.114
_KG = 1 - _KR - _KB


@dataclass(frozen=True)
class Degradation:
    """One compression: ``kind`` "jpeg" (``level`` = quality 1..95) or "h264" (CRF 0..51).

    Deterministic: the same image and degradation give the same output.
    """

    kind: str
    level: int

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"degradation {self.kind!r} is not one of {tuple(KINDS)}")
        lo, hi = KINDS[self.kind]
        if not lo <= self.level <= hi or int(self.level) != self.level:
            what = "quality" if self.kind == "jpeg" else "CRF"
            raise ValueError(f"{self.kind} {what} must be an integer in {lo}..{hi}, "
                             f"got {self.level!r}")

    @property
    def spec(self) -> str:
        """``"kind:level"``, as :func:`parse` reads it."""
        return f"{self.kind}:{self.level}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The image compressed and decoded back.

        Parameters
        ----------
        image : ndarray of uint8, shape (H, W, 3) RGB or (H, W) gray

        Returns
        -------
        ndarray of uint8, the shape of ``image``
        """
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
                image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"expected a uint8 (H, W, 3) or (H, W) image, got "
                             f"{image.dtype} {image.shape}")
        if self.kind == "jpeg":
            return jpeg(image, self.level)
        return h264(image, self.level)


def parse(spec: str) -> Degradation:
    """A :class:`Degradation` from ``"jpeg:Q"`` or ``"h264:CRF"``; ValueError if malformed."""
    kind, sep, level = str(spec).partition(":")
    try:
        value = int(level)
    except ValueError:
        value = None
    if not sep or value is None:
        raise ValueError(f"degradation {spec!r} is not KIND:LEVEL (jpeg:Q or h264:CRF)")
    return Degradation(kind.strip().lower(), value)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` (uint8 (H, W, 3) or (H, W)) saved as a Pillow JPEG of ``quality`` and read back.

    Pillow's defaults otherwise: 4:2:0 chroma, its standard tables, baseline.
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("L" if image.ndim == 2 else "RGB"))


def rgb_to_yuv420(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.601 limited-range Y, Cb, Cr planes of an RGB image, chroma halved by 2x2 means.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W, 3), H and W even

    Returns
    -------
    y : ndarray of uint8, shape (H, W), 16..235
    cb, cr : ndarray of uint8, shape (H/2, W/2), 16..240
    """
    rgb = image.astype(np.float64) / 255
    y = _KR * rgb[..., 0] + _KG * rgb[..., 1] + _KB * rgb[..., 2]
    cb = (rgb[..., 2] - y) / (2 * (1 - _KB))
    cr = (rgb[..., 0] - y) / (2 * (1 - _KR))
    h, w = y.shape

    def half(c):
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    def code(v, scale, offset):
        return np.clip(np.round(v * scale + offset), 0, 255).astype(np.uint8)
    return code(y, 219, 16), code(half(cb), 224, 128), code(half(cr), 224, 128)


def yuv420_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb_to_yuv420` (chroma repeated 2x2), rounded: uint8 (H, W, 3)."""
    yf = (y.astype(np.float64) - 16) / 219
    up = [np.repeat(np.repeat((c.astype(np.float64) - 128) / 224, 2, 0), 2, 1) for c in (cb, cr)]
    r = yf + 2 * (1 - _KR) * up[1]
    b = yf + 2 * (1 - _KB) * up[0]
    g = (yf - _KR * r - _KB * b) / _KG
    rgb = np.stack([r, g, b], axis=-1) * 255
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def h264(image: np.ndarray, crf: int) -> np.ndarray:
    """``image`` encoded as a one-frame yuv420p H.264 clip (libx264, ``crf``) and decoded back.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W, 3) RGB or (H, W) gray
    crf : int
        0..51; x264's constant rate factor (23 is its default).

    Returns
    -------
    ndarray of uint8, the shape of ``image``

    Notes
    -----
    The colour conversion is exact BT.601 limited range done here (2x2 chroma
    means, chroma repeated back), so the round trip costs no brightness: the
    only losses are the 4:2:0 chroma and the codec. The frame is intra-coded
    (a clip's first frame, preset "medium", one thread for determinism); a
    gray image is coded as luma with neutral chroma. Odd sides are padded by
    replication to even ones and cropped back.
    """
    import av

    h, w = image.shape[:2]
    pad = ((0, h % 2), (0, w % 2)) + (((0, 0),) if image.ndim == 3 else ())
    padded = np.pad(image, pad, mode="edge")
    if image.ndim == 2:  # luma is the gray level, in the limited range
        y = np.round(padded.astype(np.float64) * 219 / 255 + 16).astype(np.uint8)
        cb = cr = np.full((padded.shape[0] // 2, padded.shape[1] // 2), 128, np.uint8)
    else:
        y, cb, cr = rgb_to_yuv420(padded)
    ph, pw = y.shape
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="h264") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": "medium", "threads": "1"}
        frame = av.VideoFrame.from_ndarray(np.concatenate([y.ravel(), cb.ravel(), cr.ravel()])
                                           .reshape(ph * 3 // 2, pw), format="yuv420p")
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    buf.seek(0)
    with av.open(buf, mode="r", format="h264") as inp:
        decoded = next(inp.decode(video=0))
        planes = decoded.to_ndarray(format="yuv420p")
    y2 = planes[:ph]
    chroma = planes[ph:].reshape(2, ph // 2, pw // 2)
    if image.ndim == 2:
        gray = np.clip(np.round((y2.astype(np.float64) - 16) * 255 / 219), 0, 255)
        return gray.astype(np.uint8)[:h, :w]
    return yuv420_to_rgb(y2, chroma[0], chroma[1])[:h, :w]


@dataclass(frozen=True)
class DegradeMix:
    """How a build degrades its training LR: a share of the images, each by one draw.

    Parameters
    ----------
    jpeg : tuple of int
        ``()`` (no JPEG) or ``(lo, hi)``: qualities drawn uniformly in lo..hi.
    h264 : tuple of int
        ``()`` (no H.264) or ``(lo, hi)``: CRFs drawn uniformly in lo..hi.
    share : float
        The share of LR images degraded (0..1); the rest stay clean.
    seed : int
    """

    jpeg: tuple[int, ...] = ()
    h264: tuple[int, ...] = ()
    share: float = 0.8
    seed: int = 0

    def __post_init__(self):
        for kind in ("jpeg", "h264"):
            span = getattr(self, kind)
            if span and (len(span) != 2 or span[0] > span[1]):
                raise ValueError(f"the {kind} range must be two levels LO HI with LO <= HI, "
                                 f"got {span}")
            if span:
                Degradation(kind, span[0]), Degradation(kind, span[1])
        if not 0 <= self.share <= 1:
            raise ValueError(f"the degraded share must be in 0..1, got {self.share}")

    @property
    def active(self) -> bool:
        """Whether any image is degraded at all."""
        return bool(self.jpeg or self.h264) and self.share > 0

    def draw(self, index: int) -> Degradation | None:
        """The degradation of the ``index``-th LR image (None: clean), from seed and index alone."""
        if not self.active:
            return None
        rng = np.random.default_rng([self.seed, index])
        if rng.random() >= self.share:
            return None
        kinds = [k for k in ("jpeg", "h264") if getattr(self, k)]
        kind = kinds[int(rng.integers(len(kinds)))]
        lo, hi = getattr(self, kind)
        return Degradation(kind, int(rng.integers(lo, hi + 1)))


def library_versions() -> dict:
    """The versions of what encodes: Pillow (JPEG) and PyAV with its libavcodec (H.264).

    Another libjpeg or x264 may round differently, so a build records them.
    """
    import av
    import PIL

    return {"pillow": PIL.__version__, "pyav": av.__version__,
            "libavcodec": ".".join(map(str, av.library_versions.get("libavcodec", ())))}


def degrade_pairs(pairs: Sequence, mix: DegradeMix) -> tuple[list, dict]:
    """The (LR, HR) pairs with their LR degraded as ``mix`` draws; and a count per degradation.

    The HR targets are the same arrays. With ``mix`` inactive the pairs come
    back as they are (the same list items), so a build without degradation
    is unchanged.

    Returns
    -------
    pairs : list of (ndarray, ndarray)
    counts : dict of str to int
        ``{"clean": n, "jpeg:30": n, ...}``, sorted by key.
    """
    out, counts = [], {}
    for i, (lr, hr) in enumerate(pairs):
        deg = mix.draw(i)
        key = "clean" if deg is None else deg.spec
        counts[key] = counts.get(key, 0) + 1
        out.append((lr, hr) if deg is None else (deg(lr), hr))
    return out, dict(sorted(counts.items()))
