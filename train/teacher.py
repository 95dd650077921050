"""Distilled training targets: an RLFN teacher's output in place of (or mixed with) the HR.

With ``BuildConfig.teacher``, every training pair's HR target becomes
``alpha * T(LR) + (1 - alpha) * HR`` (``alpha`` = ``teacher_mix``), where
``T(LR)`` is the teacher (:class:`train.rlfn.RLFN`) run once on the pair's
whole LR image: the very image the patch sampler crops, scale-augmentation
copies included. The held-out images keep their HR: the teacher only changes
what the LUT is trained toward, never what it is scored against.

The teacher's output is kept in float32, clamped to 0..255 (the runtime's
output range, which the HR targets also lie in) and not rounded: rounding to
uint8 would add a quantisation error of 1/12 level squared to every target
for nothing. It is cached on disk (``<checkpoint dir>/teacher/``) under a
key of the LR image's content, the teacher's weights and the scale, so a
resumed build (or another mix of the same teacher) does not rerun it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from train.config import BuildConfig, BuildError
from train.rlfn import MIN_SIDE, RLFN, load_rlfn

#: Bumped when the cached arrays' meaning changes, so old caches are not read.
CACHE_VERSION = b"lutsr-teacher-1"


def load_teacher(path, scale: int) -> tuple[RLFN, str]:
    """The RLFN at ``path`` and the SHA-256 of its file (the cache key's part for the weights).

    Raises
    ------
    BuildError
        In one line: the file cannot be read, is not an RLFN state dict, or
        its scale is not ``scale``.
    """
    try:
        model = load_rlfn(path)
    except ValueError as exc:  # torch's own reasons run to several lines: keep the first
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BuildError(f"config.teacher={str(path)!r}: not a usable RLFN state dict "
                         f"({reason})") from None
    if model.scale != scale:
        raise BuildError(f"config.teacher={str(path)!r}: an x{model.scale} RLFN, the build is "
                         f"x{scale}")
    return model, hashlib.sha256(Path(path).read_bytes()).hexdigest()


def teacher_output(model: RLFN, lr: np.ndarray) -> np.ndarray:
    """The teacher's upscaled image of ``lr``, unrounded.

    Parameters
    ----------
    model : RLFN
        In eval mode, on the CPU.
    lr : ndarray of uint8, shape (h, w, 3)

    Returns
    -------
    ndarray of float32, shape (h*scale, w*scale, 3)
        Clamped to 0..255. An image smaller than :data:`train.rlfn.MIN_SIDE`
        is edge-padded to it for the network and the output cropped back.
    """
    h, w = lr.shape[:2]
    padded = np.pad(lr, ((0, max(MIN_SIDE - h, 0)), (0, max(MIN_SIDE - w, 0)), (0, 0)),
                    mode="edge")
    x = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)))[None].float()
    with torch.no_grad():
        y = model(x)[0].clamp(0, 255)
    s = model.scale
    return np.ascontiguousarray(y.numpy().transpose(1, 2, 0)[:h * s, :w * s])


class TeacherCache:
    """A teacher's output per LR image, computed once.

    Parameters
    ----------
    run : callable
        ``run(lr)``: uint8 (h, w, 3) to float32 (h*s, w*s, 3), the teacher.
    key : bytes
        What identifies the teacher (its weights' digest and the scale).
    folder : Path, optional
        Where the outputs are kept as ``<sha256>.npy`` (created); None: in
        memory, for this object's life.

    Attributes
    ----------
    computed, reused : int
        How many outputs were run and how many came from the cache.
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], key: bytes,
                 folder: Path | None = None):
        self.run, self.key, self.folder = run, key, folder
        self.memory: dict[str, np.ndarray] = {}
        self.computed = self.reused = 0
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def digest(self, lr: np.ndarray) -> str:
        """The cache key of ``lr``: its content (shape included) under this teacher."""
        h = hashlib.sha256(CACHE_VERSION)
        h.update(self.key)
        h.update(repr((lr.dtype.str, lr.shape)).encode())
        h.update(np.ascontiguousarray(lr).tobytes())
        return h.hexdigest()

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        name = self.digest(lr)
        path = None if self.folder is None else self.folder / f"{name}.npy"
        if name in self.memory:
            self.reused += 1
            return self.memory[name]
        if path is not None and path.exists():
            self.reused += 1
            return np.load(path)
        out = self.run(lr)
        self.computed += 1
        if path is None:
            self.memory[name] = out
        else:  # written whole or not at all: an interrupted build leaves no torn file
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                np.save(f, out)
            tmp.replace(path)
        return out


def mix_target(hr: np.ndarray, taught: np.ndarray, alpha: float) -> np.ndarray:
    """``alpha * taught + (1 - alpha) * hr`` as float32 (``taught`` itself at alpha 1).

    Parameters
    ----------
    hr : ndarray of uint8, shape (H, W, 3)
    taught : ndarray of float32, shape (H, W, 3)
        The teacher's output for the pair's LR.
    alpha : float
        In 0..1.
    """
    if hr.shape != taught.shape:
        raise ValueError(f"teacher output {taught.shape} is not the HR's shape {hr.shape}")
    if alpha == 1:
        return taught.astype(np.float32, copy=False)
    return (alpha * taught.astype(np.float64) + (1 - alpha) * hr).astype(np.float32)


def taught_pairs(pairs, cache: TeacherCache, alpha: float) -> list:
    """``pairs`` of (LR uint8, HR uint8) with each HR replaced by its mixed target (float32).

    At ``alpha`` 0 the pairs come back unchanged and the teacher is not run.
    """
    if alpha == 0:
        return list(pairs)
    return [(lr, mix_target(hr, cache(lr), alpha)) for lr, hr in pairs]


def teacher_pairs(pairs, config: BuildConfig, ckdir: Path | None, log=print) -> tuple[list, dict]:
    """The training pairs with ``config``'s teacher targets, and what to record of them.

    The teacher runs with torch's current thread setting; its outputs are
    cached under ``ckdir / "teacher"`` (in memory without ``ckdir``).

    Returns
    -------
    pairs : list of (ndarray, ndarray)
        LR uint8 as given; targets float32 (uint8 HR at mix 0).
    record : dict
        The weights' file name and digest, the mix, how many outputs were
        computed and reused, and the CPU seconds of it all.
    """
    t0 = time.process_time()
    model, digest = load_teacher(config.teacher, config.scale)
    cache = TeacherCache(lambda lr: teacher_output(model, lr),
                         f"{digest} x{config.scale}".encode(),
                         None if ckdir is None else ckdir / "teacher")
    pairs = taught_pairs(pairs, cache, config.teacher_mix)
    record = {"weights": Path(config.teacher).name, "sha256": digest,
              "mix": config.teacher_mix, "computed": cache.computed, "reused": cache.reused,
              "cpu_seconds": round(time.process_time() - t0, 1)}
    log(f"teacher {record['weights']} (mix {config.teacher_mix}): {cache.computed} images run, "
        f"{cache.reused} from the cache, {record['cpu_seconds']} CPU s")
    return pairs, record
