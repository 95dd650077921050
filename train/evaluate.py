"""Evaluate upscalers (LUTs, bicubic, the full CNN) on SR benchmark folders.

The command line is ``tools/evaluate.py`` (:func:`main`); numpy, Pillow and
PyAV only, torch just for ``--cnn``.

The papers' protocol (``../shared/README.md``): each dataset folder holds HR
images in ``HR/`` (or directly in the folder); the LR input of ``HR/<name>`` is
``LR_bicubic/X<s>/<name>`` when that file exists, else the modcropped HR
downscaled by :func:`lutsr.resize.imresize` (MATLAB-compatible bicubic, which
reproduces the shared ``LR_bicubic`` files byte for byte). Each method upscales
the LR image; Y-PSNR and Y-SSIM are measured against the modcropped HR with
``scale`` pixels shaved (:mod:`lutsr.metrics`).

Example::

    python tools/evaluate.py --lut x4 path/to/a.lutsr --bicubic \\
        --datasets ../shared/data/test/Set5 ../shared/data/test/Set14 --scale 4 \\
        --out results.md --csv results.csv --save-images sr/

    # the efficient CNN peer (RLFN, the authors' weights; needs torch)
    python tools/evaluate.py --cnn rlfn:../shared/models/rlfn/rlfn_x4.pth \\
        --datasets ../shared/data/test/Set5 --scale 4

    # compressed inputs: the LR JPEG-compressed (Pillow) or H.264-coded (libx264)
    python tools/evaluate.py --lut x4 --bicubic --datasets ../shared/data/test/Set14 \\
        --scale 4 --degrade clean jpeg:30 jpeg:70 h264:28

``--degrade`` (``train/degrade.py``) compresses each LR input and decodes it
back before the methods see it; the HR reference stays the clean image. Each
degradation gets its own table, and with several a summary table follows.

From Python, :func:`evaluate` takes any ``{name: callable}`` of methods, each
mapping an LR uint8 ``(h, w, 3)`` or ``(h, w)`` image to the uint8 image
``scale`` times larger.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import lutsr
import lutsr.imageio
from lutsr.metrics import GRAY_MODES, psnr_y, ssim_y
from lutsr.progress import progress_bar
from lutsr.resize import imresize, modcrop

#: A method maps an LR uint8 (h, w, 3) or (h, w) image to its uint8 upscaled image.
Method = Callable[[np.ndarray], np.ndarray]

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Dataset:
    """A benchmark folder: its name, its HR images and where its LR inputs live."""

    name: str
    hr_paths: tuple[Path, ...]
    lr_dir: Path  # LR_bicubic/X<s>; need not exist


@dataclass(frozen=True)
class ImageResult:
    """The scores of one method on one image."""

    method: str
    dataset: str
    image: str
    psnr: float
    ssim: float
    seconds: float
    lr_source: str  # "file" (LR_bicubic) or "imresize"
    degrade: str = "clean"  # what the LR went through ("jpeg:30", "h264:28", ...)


# --------------------------------------------------------------------------- images

def read_image(path: Path) -> np.ndarray:
    """Read an 8-bit image as uint8 ``(H, W)`` (gray) or ``(H, W, 3)`` (RGB).

    Read by :func:`lutsr.imageio.read_image` (the runtime's reader: palette
    images become RGB, EXIF orientation applied, 16-bit and float images
    refused); an alpha channel is dropped, since the protocol scores luma only.
    Any error is a ValueError naming the file.
    """
    try:
        pixels, _ = lutsr.imageio.read_image(path)
    except ValueError:  # lutsr.imageio.ImageError: names the file and what is wrong
        raise
    except OSError as exc:
        raise ValueError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc
    if pixels.ndim == 3 and pixels.shape[2] == 2:  # gray + alpha
        pixels = pixels[:, :, 0]
    elif pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]
    return np.ascontiguousarray(pixels)


def find_dataset(folder, scale: int) -> Dataset:
    """Describe a dataset folder: ``folder/HR/*`` (or ``folder/*``) and ``folder/LR_bicubic/X<s>``.

    Raises
    ------
    ValueError
        The folder does not exist or holds no images.
    """
    root = Path(folder)
    if root.name == "HR" and not (root / "HR").is_dir():
        root = root.parent  # given .../Set5/HR: the dataset is .../Set5
    if not root.is_dir():
        raise ValueError(f"dataset folder {str(folder)!r} does not exist")
    hr_dir = root / "HR" if (root / "HR").is_dir() else root
    hr_paths = tuple(sorted(p for p in hr_dir.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
    if not hr_paths:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {hr_dir}")
    return Dataset(root.name, hr_paths, root / "LR_bicubic" / f"X{scale}")


def load_pair(dataset: Dataset, hr_path: Path, scale: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The LR input and modcropped HR of one image, and where the LR came from."""
    hr = read_image(hr_path)
    if min(hr.shape[:2]) < scale:
        raise ValueError(f"{hr_path}: image {hr.shape[:2]} is smaller than the scale {scale}")
    hr = np.ascontiguousarray(modcrop(hr, scale))
    lr_path = dataset.lr_dir / hr_path.name
    if not lr_path.is_file():
        return imresize(hr, 1 / scale), hr, "imresize"
    lr = read_image(lr_path)
    want = (hr.shape[0] // scale, hr.shape[1] // scale)
    if lr.shape[:2] != want:
        raise ValueError(
            f"{lr_path}: LR is {lr.shape[1]}x{lr.shape[0]} but the x{scale} input of the "
            f"{hr.shape[1]}x{hr.shape[0]} (modcropped) HR must be {want[1]}x{want[0]}: "
            f"wrong scale folder?")
    if lr.ndim != hr.ndim:
        raise ValueError(f"{lr_path}: LR has {'1' if lr.ndim == 2 else '3'} channel(s), "
                         f"HR {hr_path.name} has {'1' if hr.ndim == 2 else '3'}")
    return lr, hr, "file"


# --------------------------------------------------------------------------- methods

def bicubic_method(scale: int) -> Method:
    """The papers' bicubic baseline: MATLAB-compatible ``imresize(lr, scale, 'bicubic')``."""
    def bicubic(lr: np.ndarray) -> np.ndarray:
        return imresize(lr, scale)
    return bicubic


def lut_method(spec: str, scale: int, backend: str = "auto") -> tuple[str, Method]:
    """A bundled LUT name or a ``.lutsr`` path as a named method.

    Raises
    ------
    ValueError
        No such LUT, or the LUT's scale is not ``scale``.
    """
    lut = lutsr.api.resolve_lut(spec)
    bundled = spec in lutsr.bundled_names()
    name = spec if bundled else Path(spec).stem
    if lut.scale != scale:
        raise ValueError(f"LUT {spec!r} upscales x{lut.scale}, but the evaluation is x{scale} "
                         f"(--scale {scale}); evaluate it with --scale {lut.scale}")
    upscaler = lutsr.Upscaler(lut, backend=backend)

    def run(lr: np.ndarray) -> np.ndarray:
        return upscaler(np.ascontiguousarray(lr))
    return name, run


#: ``--cnn`` prefix of the RLFN state dicts (the efficient CNN peer, ``train.rlfn``).
RLFN_PREFIX = "rlfn:"


def cnn_method(spec: str, scale: int) -> tuple[str, Method]:
    """A full CNN as a named method (needs torch: the ``train`` extra).

    ``spec`` is ``rlfn:PATH`` for an RLFN state dict (``train.rlfn.load_rlfn_method``),
    else a net checkpoint of ``tools/build_lut.py``, the network a LUT is sampled
    from (``train.checkpoint.load_cnn_method``).
    """
    rlfn = spec.startswith(RLFN_PREFIX)
    try:
        if rlfn:
            from train.rlfn import load_rlfn_method as load
        else:
            from train.checkpoint import load_cnn_method as load
    except ImportError as exc:
        raise ValueError(
            f"--cnn needs torch (pip install 'lutsr[train]'): {exc}") from exc
    path = spec[len(RLFN_PREFIX):] if rlfn else spec
    name, cnn_scale, fn = load(path)
    if cnn_scale != scale:
        raise ValueError(f"CNN {spec!r} upscales x{cnn_scale}, but the evaluation is "
                         f"x{scale} (--scale {scale})")
    return name, fn


# --------------------------------------------------------------------------- evaluation

def _check_output(method: str, sr, lr: np.ndarray, hr: np.ndarray, where: str) -> np.ndarray:
    if not isinstance(sr, np.ndarray) or sr.dtype != np.uint8:
        what = sr.dtype if isinstance(sr, np.ndarray) else type(sr).__name__
        raise TypeError(f"method {method!r} returned {what} for {where}; it must return uint8")
    if sr.shape != hr.shape:
        raise ValueError(f"method {method!r} turned the {lr.shape} LR of {where} into "
                         f"{sr.shape}, expected {hr.shape}: wrong scale?")
    return sr


def evaluate(methods: Mapping[str, Method], datasets: Sequence, scale: int, *,
             gray: str = "replicate", save_images=None, progress: bool = True,
             warmup: bool = True, degrade=None) -> list[ImageResult]:
    """Run every method on every image of every dataset and score it.

    Parameters
    ----------
    methods : mapping of str to callable
        ``name -> f(lr) -> sr``; ``lr`` is uint8 ``(h, w, 3)`` RGB or ``(h, w)``
        gray, ``sr`` must be uint8 of shape ``(h*scale, w*scale[, 3])``.
    datasets : sequence of path
        Dataset folders (see :func:`find_dataset`); all are listed before any
        work starts, so an empty or missing folder fails at once.
    scale : int
        The upscale factor; selects ``LR_bicubic/X<scale>`` and the shave.
    gray : {"replicate", "luma"}
        How grayscale images become Y (:func:`lutsr.metrics.rgb_to_y`).
    save_images : path, optional
        Write each output to ``save_images/<dataset>/<method>/<image>.png``.
    progress : bool
        Show a progress bar (only when stderr is a terminal).
    warmup : bool
        Call each method once, untimed, on the first LR image, so one-off
        costs (numba compilation) stay out of the per-image times.
    degrade : train.degrade.Degradation, optional
        Compress each LR image and decode it back before the methods see it
        (the HR reference stays clean); see :func:`degradation`. Images are
        then saved under ``save_images/<dataset>/<method>/<degrade>/``.

    Returns
    -------
    list of ImageResult
        One per (dataset, image, method), in that order.
    """
    if not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if not methods:
        raise ValueError("no methods to evaluate")
    if gray not in GRAY_MODES:
        raise ValueError(f"gray must be one of {GRAY_MODES}, got {gray!r}")
    if not datasets:
        raise ValueError("no datasets to evaluate")
    found = [find_dataset(d, scale) for d in datasets]
    names = [d.name for d in found]
    if len(set(names)) != len(names):
        raise ValueError(f"two dataset folders share a name: {names}")
    from PIL import Image

    label = "clean" if degrade is None else degrade.spec
    bar = progress_bar(sum(len(d.hr_paths) for d in found) * len(methods),
                       enabled=progress and sys.stderr.isatty(), unit="img", dynamic_ncols=True)
    results = []
    try:
        for dataset in found:
            for hr_path in dataset.hr_paths:
                lr, hr, source = load_pair(dataset, hr_path, scale)
                if degrade is not None:
                    lr = degrade(lr)
                where = f"{dataset.name}/{hr_path.name}"
                for method, fn in methods.items():
                    if warmup:
                        _check_output(method, fn(lr), lr, hr, where)
                    t0 = time.perf_counter()
                    sr = fn(lr)
                    seconds = time.perf_counter() - t0
                    _check_output(method, sr, lr, hr, where)
                    results.append(ImageResult(method, dataset.name, hr_path.name,
                                               psnr_y(sr, hr, scale, gray),
                                               ssim_y(sr, hr, scale, gray), seconds, source,
                                               label))
                    if save_images is not None:
                        out_dir = Path(save_images) / dataset.name / method
                        if degrade is not None:
                            out_dir = out_dir / label
                        out_dir.mkdir(parents=True, exist_ok=True)
                        Image.fromarray(sr).save(out_dir / f"{hr_path.stem}.png")
                    bar.set_postfix_str(f"{dataset.name} {method}")
                    bar.update()
                warmup = False
    finally:
        bar.close()
    return results


def degradation(spec: str):
    """``"clean"``: None; ``"jpeg:Q"``, ``"h264:CRF"``: a :class:`train.degrade.Degradation`.

    Raises
    ------
    ValueError
        A malformed spec or an out-of-range level.
    """
    if spec.strip().lower() in ("clean", "none"):
        return None
    from train.degrade import parse  # numpy, Pillow and PyAV only: no torch

    return parse(spec)


# --------------------------------------------------------------------------- reports

def summarize(results: Iterable[ImageResult]) -> dict[tuple[str, str], tuple[float, float, int]]:
    """Mean PSNR, mean SSIM and image count per (method, dataset)."""
    groups: dict[tuple[str, str], list[ImageResult]] = {}
    for r in results:
        groups.setdefault((r.method, r.dataset), []).append(r)
    return {k: (float(np.mean([r.psnr for r in v])), float(np.mean([r.ssim for r in v])), len(v))
            for k, v in groups.items()}


def markdown_table(results: Sequence[ImageResult], scale: int, gray: str = "replicate") -> str:
    """A Markdown table: one row per method, PSNR and SSIM columns per dataset.

    ``results`` must share one degradation (see :func:`degradation_table` for several).
    """
    summary = summarize(results)
    methods = list(dict.fromkeys(r.method for r in results))
    datasets = list(dict.fromkeys(r.dataset for r in results))
    gray_text = {"replicate": "gray images replicated to RGB",
                 "luma": "gray images taken as Y"}[gray]
    degrades = {r.degrade for r in results}
    if len(degrades) > 1:
        raise ValueError(f"markdown_table: the results mix degradations {sorted(degrades)}; "
                         "one table each")
    lr_text = "" if degrades <= {"clean"} else f" LR degraded by {degrades.pop()}."
    lines = [f"x{scale}: mean Y-PSNR (dB) / SSIM, BT.601 Y, {scale} px shaved, {gray_text}."
             + lr_text,
             "",
             "| method | " + " | ".join(f"{d} PSNR | {d} SSIM" for d in datasets) + " |",
             "|---|" + "---:|---:|" * len(datasets)]
    for m in methods:
        cells = []
        for d in datasets:
            psnr, ssim, _ = summary[(m, d)]
            cells += [f"{psnr:.2f}", f"{ssim:.4f}"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    counts = ", ".join(f"{d} {summary[(methods[0], d)][2]}" for d in datasets)
    lines += ["", f"Images: {counts}."]
    return "\n".join(lines) + "\n"


def degradation_table(results: Sequence[ImageResult], scale: int) -> str:
    """A Markdown table of mean Y-PSNR: one row per method, one column per degradation.

    Each cell pools every image of every dataset (so a big dataset weighs more).
    """
    methods = list(dict.fromkeys(r.method for r in results))
    degrades = list(dict.fromkeys(r.degrade for r in results))
    datasets = list(dict.fromkeys(r.dataset for r in results))
    cells: dict[tuple[str, str], list[float]] = {}
    for r in results:
        cells.setdefault((r.method, r.degrade), []).append(r.psnr)
    count = len(cells[(methods[0], degrades[0])])
    lines = [f"x{scale}: mean Y-PSNR (dB) of degraded LR, {' + '.join(datasets)} "
             f"({count} images pooled).",
             "",
             "| method | " + " | ".join(degrades) + " |",
             "|---|" + "---:|" * len(degrades)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(f"{np.mean(cells[(m, d)]):.2f}"
                                              for d in degrades) + " |")
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("method", "dataset", "image", "scale", "psnr", "ssim", "seconds", "lr_source",
              "degrade")


def write_csv(results: Iterable[ImageResult], path, scale: int) -> None:
    """One row per (method, dataset, image); PSNR of identical images is ``inf``."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for r in results:
            psnr = "inf" if math.isinf(r.psnr) else f"{r.psnr:.4f}"
            writer.writerow([r.method, r.dataset, r.image, scale, psnr, f"{r.ssim:.6f}",
                             f"{r.seconds:.6f}", r.lr_source, r.degrade])


# --------------------------------------------------------------------------- command line

def build_methods(args) -> dict[str, Method]:
    """The methods named on the command line, in the order bicubic, LUTs, CNNs."""
    named: list[tuple[str, Method]] = []
    if args.bicubic:
        named.append(("bicubic", bicubic_method(args.scale)))
    for spec in args.lut or ():
        named.append(lut_method(spec, args.scale, args.backend))
    for spec in args.cnn or ():
        named.append(cnn_method(spec, args.scale))
    if not named:
        raise ValueError("nothing to evaluate: give --bicubic, --lut and/or --cnn")
    methods: dict[str, Method] = {}
    for name, fn in named:
        if name in methods:
            raise ValueError(f"two methods are named {name!r}; rename one of the files")
        methods[name] = fn
    return methods


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", nargs="+", required=True,
                   help="dataset folders (HR/ and optionally LR_bicubic/X<s>/)")
    p.add_argument("--scale", type=int, required=True, help="upscale factor")
    p.add_argument("--lut", nargs="+", action="extend", metavar="NAME|PATH",
                   help="bundled LUT names or .lutsr files")
    p.add_argument("--bicubic", action="store_true", help="the MATLAB-bicubic baseline")
    p.add_argument("--cnn", nargs="+", action="extend", metavar="CHECKPOINT|rlfn:PATH",
                   help="full CNNs (need torch): net checkpoints of tools/build_lut.py "
                        "(train.checkpoint), or rlfn:PATH for an RLFN state dict (train.rlfn)")
    p.add_argument("--backend", default="auto", choices=lutsr.api.BACKENDS,
                   help="lutsr backend for the LUTs")
    p.add_argument("--gray", default="replicate", choices=GRAY_MODES,
                   help="grayscale images: replicate to RGB (the protocol) or take as Y "
                        "(the older MATLAB scripts; reproduces the published Set14 bicubic)")
    p.add_argument("--degrade", nargs="+", action="extend", metavar="SPEC",
                   help="evaluate on LR compressed and decoded back: jpeg:Q (Pillow quality "
                        "1..95), h264:CRF (libx264, 0..51) or clean; several give one table each "
                        "and a summary")
    p.add_argument("--out", help="write the Markdown table here (it is always printed)")
    p.add_argument("--csv", help="write per-image scores here")
    p.add_argument("--save-images", metavar="DIR", help="write the outputs as PNG under DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.scale < 1:
            raise ValueError(f"--scale must be a positive integer, got {args.scale}")
        degrades = [degradation(spec) for spec in dict.fromkeys(args.degrade or ["clean"])]
        methods = build_methods(args)
        runs = [evaluate(methods, args.datasets, args.scale, gray=args.gray,
                         save_images=args.save_images, progress=not args.no_progress,
                         warmup=i == 0, degrade=d) for i, d in enumerate(degrades)]
    except (ValueError, TypeError) as exc:
        print(f"evaluate.py: error: {exc}", file=sys.stderr)
        return 2
    results = [r for run in runs for r in run]
    table = "\n".join(markdown_table(run, args.scale, args.gray) for run in runs)
    if len(runs) > 1:
        table += "\n" + degradation_table(results, args.scale)
    print(table, end="")
    if args.out:
        Path(args.out).write_text(table)
    if args.csv:
        write_csv(results, args.csv, args.scale)
    return 0
