"""Hatching: faint streaks in flat areas beside strong edges, measured and shown.

For each method, :func:`lutsr.metrics.edge_flat_psnr_y` (Y-PSNR over the flat pixels within
6 pixels of a strong edge of the HR image, squared errors pooled over a set) beside the
whole-image Y-PSNR, on

- a line-art image drawn here (black strokes, circles and letters on white, drawn at 4x and
  reduced with an area filter, so its edges are anti-aliased as scanned or rendered line
  art is): no licence question, the same bytes on every machine;
- ``../shared/data/test/{Set5,Set14,B100}`` where present (their LR_bicubic x4 inputs).

``--crops PNG`` writes crops of the line art: HR, bicubic and each LUT in the top row, below
each its error ``|SR - HR|`` in Y, times 8 (black: none), so streaks too faint to see at a
glance show. Run from the repository root::

    python -m bench.hatching [--luts x4 x4-layered ...] [--crops docs/images/hatching.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import lutsr
from bench.helpers import SHARED
from lutsr.imageio import read_image
from lutsr.metrics import edge_flat_mask, rgb_to_y
from lutsr.resize import imresize, modcrop

SCALE = 4
SETS = ("Set5", "Set14", "B100")


def line_art(width: int = 384, height: int = 256) -> np.ndarray:
    """A (height, width, 3) uint8 line drawing: strokes at many angles, circles, letters."""
    s = 4  # drawn at 4x, reduced by area: anti-aliased edges
    img = Image.new("L", (width * s, height * s), 255)
    d = ImageDraw.Draw(img)
    for i, angle in enumerate(np.linspace(0, np.pi, 12, endpoint=False)):
        c = np.array([96, 96]) * s
        r = 80 * s
        d.line([tuple(c - r * np.array([np.cos(angle), np.sin(angle)])),
                tuple(c + r * np.array([np.cos(angle), np.sin(angle)]))], fill=0,
               width=(2 + i % 3) * s)
    for k, radius in enumerate((20, 38, 56)):
        d.ellipse([(208 - radius) * s, (80 - radius) * s, (208 + radius) * s,
                   (80 + radius) * s], outline=0, width=(2 + k) * s)
    d.rectangle([270 * s, 24 * s, 370 * s, 120 * s], outline=0, width=3 * s)
    font = ImageFont.load_default(size=44 * s)
    d.text((200 * s, 150 * s), "lutsr x4", fill=0, font=font)
    d.text((16 * s, 190 * s), "AVX2 NEON", fill=0, font=ImageFont.load_default(size=30 * s))
    small = img.resize((width, height), Image.Resampling.BOX)
    return np.repeat(np.asarray(small)[..., None], 3, axis=2)


def _pairs(folder: Path):
    """(LR, HR) of a test set: its given LR_bicubic x4 and the HR cropped to a multiple of 4."""
    for hr_path in sorted((folder / "HR").iterdir()):
        lr_path = next((folder / "LR_bicubic" / f"X{SCALE}").glob(hr_path.stem + "*"), None)
        if lr_path is not None:
            yield read_image(lr_path)[0], modcrop(read_image(hr_path)[0], SCALE)


def _errors(sr: np.ndarray, hr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared Y errors over the whole shaved image and over its edge-flat pixels."""
    crop = (slice(SCALE, -SCALE), slice(SCALE, -SCALE))
    y_sr, y_hr = rgb_to_y(sr)[crop], rgb_to_y(hr)[crop]
    e = (y_sr - y_hr) ** 2
    return e.ravel(), e[edge_flat_mask(y_hr)]


def _psnr(squared: list[np.ndarray]) -> float:
    mse = np.concatenate(squared).mean()
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def measure(luts: list[str], pairs) -> dict[str, tuple[float, float, int]]:
    """Per method: (whole-image Y-PSNR, edge-flat Y-PSNR, edge-flat pixels), pooled over pairs."""
    methods = {"bicubic": lambda lr: imresize(lr, SCALE)}
    methods.update({name: lutsr.Upscaler(lutsr.load_bundled(name)) for name in luts})
    whole = {m: [] for m in methods}
    flat = {m: [] for m in methods}
    for lr, hr in pairs:
        for m, up in methods.items():
            w, f = _errors(up(lr), hr)
            whole[m].append(w)
            flat[m].append(f)
    return {m: (_psnr(whole[m]), _psnr(flat[m]), sum(f.size for f in flat[m])) for m in methods}


def crops(luts: list[str], path: Path, box=(150, 20, 278, 148)) -> None:
    """A PNG of line-art crops (top) and their Y errors times 8 (bottom), 2x nearest."""
    hr = line_art()
    lr = imresize(hr, 1 / SCALE)
    outs = [("HR", hr), ("bicubic", imresize(lr, SCALE))]
    outs += [(name, lutsr.upscale(lr, lutsr.load_bundled(name))) for name in luts]
    x0, y0, x1, y1 = box
    top, bottom = [], []
    for _, img in outs:
        top.append(img[y0:y1, x0:x1, 0])
        err = np.abs(rgb_to_y(img) - rgb_to_y(hr))[y0:y1, x0:x1] * 8
        bottom.append(np.clip(err, 0, 255).astype(np.uint8))
    gap = np.full((y1 - y0, 4), 128, np.uint8)

    def row(tiles):
        return np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1)

    sheet = np.concatenate([row(top), np.full((4, row(top).shape[1]), 128, np.uint8),
                            row(bottom)], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).resize((sheet.shape[1] * 2, sheet.shape[0] * 2),
                                  Image.Resampling.NEAREST).save(path, optimize=True)
    print(f"wrote {path}: columns " + ", ".join(name for name, _ in outs))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--luts", nargs="+", default=["x4", "x4-s", "x4-sdy", "x4-layered"])
    parser.add_argument("--crops", type=Path, help="write line-art crops to this PNG")
    args = parser.parse_args(argv)
    hr = line_art()
    cases = {"line art": [(imresize(hr, 1 / SCALE), hr)]}
    for name in SETS:
        folder = SHARED / "data" / "test" / name
        if folder.is_dir():
            cases[name] = list(_pairs(folder))
    results = {case: measure(args.luts, pairs) for case, pairs in cases.items()}
    print("Y-PSNR, whole image / flat pixels beside strong edges (dB; pixels in the second)\n")
    print("| method | " + " | ".join(results) + " |")
    print("|---" * (1 + len(results)) + "|")
    for m in ["bicubic", *args.luts]:
        cells = [f"{r[m][0]:.2f} / **{r[m][1]:.2f}**" for r in results.values()]
        print(f"| {m} | " + " | ".join(cells) + " |")
    print("| edge-flat pixels | " + " | ".join(
        f"{r['bicubic'][2]:,}" for r in results.values()) + " |")
    if args.crops:
        crops(args.luts, args.crops)


if __name__ == "__main__":
    main()
