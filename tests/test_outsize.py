"""Any output size (``lutsr.upscale_to``, ``--outscale``, ``--size``) and images through pipes.

The sizes asked are checked exactly (odd sizes, aspect changes), the LUT
choice against the rule "smallest bundled factor at or above the request",
and the resample against what it must keep (constants, independent channels,
the LUT's own output when no resample is needed).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_GUARD_S, random_lut

import lutsr
from lutsr import outsize
from lutsr.cli import main

Image = pytest.importorskip("PIL.Image")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory):
    lut = random_lut(np.random.default_rng(7), scale=2)
    return lutsr.save(lut, tmp_path_factory.mktemp("lut") / "x2.lutsr")


def _img(h=15, w=21, c=3, seed=0) -> np.ndarray:
    shape = (h, w) if c == 0 else (h, w, c)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ---------------------------------------------------------------------------
# Sizes and the LUT choice


def test_parse_size():
    assert outsize.parse_size("1000x700") == (1000, 700)
    assert outsize.parse_size(" 3X5 ") == (3, 5)
    for bad in ("1000", "0x5", "10x", "-3x4", "1.5x2", "axb"):
        with pytest.raises(ValueError, match="1920x1080"):
            outsize.parse_size(bad)


def test_output_size():
    assert outsize.output_size((21, 15), outscale=3) == (63, 45)
    assert outsize.output_size((21, 15), outscale=1.5) == (32, 23)  # 31.5, 22.5: halves up
    assert outsize.output_size((3, 3), outscale=0.01) == (1, 1)  # never empty
    assert outsize.output_size((21, 15), size=(1000, 700)) == (1000, 700)
    for kwargs in ({}, {"outscale": 2, "size": (4, 4)}, {"outscale": 0}, {"outscale": -1},
                   {"outscale": float("inf")}, {"outscale": True}, {"size": (0, 4)},
                   {"size": (4,)}, {"size": (4.0, 4)}):
        with pytest.raises(ValueError):
            outsize.output_size((21, 15), **kwargs)


@pytest.mark.parametrize("names, request_, expected", [
    (["x2", "x4", "x4-sdy", "x2-s"], 3, "x4"),  # no native x3: x4 then area
    (["x2", "x3", "x4"], 3, "x3"),
    (["x2", "x4"], 2, "x2"),
    (["x2", "x4"], 1.01, "x2"),
    (["x2", "x4"], 4, "x4"),
    (["x2", "x4"], 6.5, "x4"),  # beyond the largest: x4, then Lanczos
    (["x2", "x4"], 1, None),  # same size or smaller: no LUT
    (["x2", "x4"], 0.5, None),
])
def test_pick_lut_smallest_factor_at_or_above(monkeypatch, names, request_, expected):
    monkeypatch.setattr(outsize.bundled, "names", lambda: names)
    assert outsize.pick_lut((100, 50), (round(100 * request_), round(50 * request_))) == expected


def test_pick_lut_takes_the_larger_axis(monkeypatch):
    monkeypatch.setattr(outsize.bundled, "names", lambda: ["x2", "x4"])
    assert outsize.pick_lut((100, 100), (150, 300)) == "x4"  # height x3 decides, not width
    assert outsize.pick_lut((100, 100), (50, 200)) == "x2"


def test_pick_lut_without_bundled(monkeypatch):
    monkeypatch.setattr(outsize.bundled, "names", lambda: ["x4-sdy"])
    with pytest.raises(ValueError, match="--lut"):
        outsize.pick_lut((10, 10), (30, 30))


# ---------------------------------------------------------------------------
# The resample


@pytest.mark.parametrize("size", [(1000, 700), (63, 45), (7, 5), (21, 1), (1, 15), (40, 8),
                                  (10, 44)])
@pytest.mark.parametrize("c", [0, 1, 3, 4])
def test_resample_exact_size(size, c):
    img = _img(c=c)
    out = outsize.resample(img, size)
    assert out.dtype == np.uint8
    assert out.shape == (size[1], size[0]) + img.shape[2:]


def test_resample_keeps_a_constant():
    img = np.full((15, 21, 3), 77, np.uint8)
    for size in ((63, 45), (7, 5), (40, 8)):  # up, down, mixed
        assert (outsize.resample(img, size) == 77).all()


def _naive_area(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """The exact area mean, from overlaps computed pixel by pixel with Fractions."""
    from fractions import Fraction

    def weights(n_in, n_out):
        m = np.zeros((n_out, n_in))
        for i in range(n_out):
            lo, hi = Fraction(i * n_in, n_out), Fraction((i + 1) * n_in, n_out)
            for j in range(n_in):
                m[i, j] = max(Fraction(0), min(hi, j + 1) - max(lo, Fraction(j))) / (hi - lo)
        return m

    return weights(img.shape[0], h) @ img.astype(np.float64) @ weights(img.shape[1], w).T


@pytest.mark.parametrize("size", [(15, 12), (10, 8), (7, 5), (20, 3), (1, 1)])
def test_resample_area_when_shrinking(size):
    """Guards the area: true overlap weights (Pillow's BOX is off by up to 99 at 4:3 on noise)."""
    img = _img(16, 20, 0)
    out = outsize.resample(img, size).astype(np.float64)
    exact = _naive_area(img, size[1], size[0])
    err = np.abs(out - exact)
    where = np.unravel_index(err.argmax(), err.shape)
    assert err.max() <= 0.5 + 1e-9, f"max error {err.max()} at {where}"


def test_resample_area_2to1_is_the_block_mean_half_to_even():
    """Rounded once, half to even: no brightening (Pillow's BOX adds 0.5 on average here)."""
    img = _img(160, 200, 0)
    mean = img.reshape(80, 2, 100, 2).astype(np.float64).mean(axis=(1, 3))
    out = outsize.resample(img, (100, 80))
    assert np.array_equal(out, np.rint(mean).astype(np.uint8))
    assert abs(out.mean() - mean.mean()) < 0.02


def test_resample_channels_independent():
    """RGBA is not premultiplied here (the CLI premultiplies around the whole upscale)."""
    img = _img(c=4)
    img[..., 3] = 0  # fully transparent: Pillow's RGBA resize would zero the colour
    out = outsize.resample(img, (50, 31))
    for c in range(4):
        assert np.array_equal(out[..., c], outsize.resample(img[..., c], (50, 31)))
    assert out[..., :3].any()


def test_resample_same_size_is_a_copy():
    img = _img()
    out = outsize.resample(img, (21, 15))
    assert np.array_equal(out, img) and out is not img


# ---------------------------------------------------------------------------
# upscale_to


def test_upscale_to_lut_factor_is_the_lut(lut_file):
    img = _img()
    up = lutsr.upscale(img, lut_file, backend="reference")
    assert np.array_equal(lutsr.upscale_to(img, lut_file, outscale=2, backend="reference"), up)


def test_upscale_to_other_sizes_resample_the_lut(lut_file):
    img = _img()
    up = lutsr.upscale(img, lut_file, backend="reference")
    for kwargs, size in (({"outscale": 3}, (63, 45)), ({"size": (1000, 700)}, (1000, 700)),
                         ({"outscale": 1.5}, (32, 23)), ({"size": (30, 40)}, (30, 40))):
        out = lutsr.upscale_to(img, lut_file, backend="reference", **kwargs)
        assert out.shape == (size[1], size[0], 3), kwargs
        assert np.array_equal(out, outsize.resample(up, size)), kwargs


def test_upscale_to_takes_an_upscaler(lut_file):
    img = _img(c=0)
    up = lutsr.Upscaler(lut_file, backend="reference")
    assert lutsr.upscale_to(img, up, outscale=3).shape == (45, 63)


def test_upscale_to_default_picks_bundled(monkeypatch):
    if not {"x3", "x4"} <= set(lutsr.bundled_names()):
        pytest.skip("no bundled x3 and x4")
    img = _img(6, 8)
    # x3 is native; 3.5 takes x4 then area
    assert np.array_equal(lutsr.upscale_to(img, outscale=3, backend="reference"),
                          lutsr.upscale(img, "x3", backend="reference"))
    x4 = lutsr.upscale(img, "x4", backend="reference")
    out = lutsr.upscale_to(img, outscale=3.5, backend="reference")
    assert np.array_equal(out, outsize.resample(x4, (28, 21)))
    # a downscale needs no LUT
    assert np.array_equal(lutsr.upscale_to(img, size=(4, 3)), outsize.resample(img, (4, 3)))


# ---------------------------------------------------------------------------
# The CLI


def _png(path: Path, img: np.ndarray) -> Path:
    Image.fromarray(img).save(path)
    return path


def _size_of(path_or_bytes) -> tuple[int, int]:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with Image.open(src) as im:
        return im.size


@pytest.mark.parametrize("opt, size", [(("--outscale", "3"), (63, 45)),
                                       (("--size", "1000x700"), (1000, 700)),
                                       (("--size", "33x8"), (33, 8)),
                                       (("--outscale", "2"), (42, 30)),
                                       (("--outscale", "0.5"), (11, 8))])
def test_cli_image_sizes(tmp_path, lut_file, opt, size):
    src = _png(tmp_path / "a.png", _img())
    dst = tmp_path / "b.png"
    assert main(["image", str(src), "-o", str(dst), "--lut", str(lut_file), "--backend",
                 "reference", "-q", *opt]) == 0
    assert _size_of(dst) == size


def test_cli_image_alpha_resized_premultiplied(tmp_path, lut_file):
    img = _img(c=4)
    src = _png(tmp_path / "a.png", img)
    dst = tmp_path / "b.png"
    assert main(["image", str(src), "-o", str(dst), "--lut", str(lut_file), "--backend",
                 "reference", "-q", "--outscale", "3"]) == 0
    with Image.open(dst) as im:
        assert im.mode == "RGBA" and im.size == (63, 45)


@pytest.mark.parametrize("opt", [("--outscale", "0"), ("--outscale", "x"), ("--size", "10x"),
                                 ("--size", "3", ), ("--outscale", "2", "--size", "4x4")])
def test_cli_bad_size_is_usage_error(tmp_path, lut_file, opt, capsys):
    src = _png(tmp_path / "a.png", _img())
    with pytest.raises(SystemExit) as exc:
        main(["image", str(src), "-o", str(tmp_path / "b.png"), *opt])
    assert exc.value.code == 2


def _run(*args, stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                         os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "lutsr", *map(str, args)], input=stdin,
                          capture_output=True, env=env, timeout=HANG_GUARD_S)


def test_image_through_a_pipe(tmp_path, lut_file):
    img = _img()
    src = _png(tmp_path / "a.png", img)
    done = _run("image", "-", "-o", "-", "--lut", lut_file, "--backend", "reference",
                "--outscale", "3", stdin=src.read_bytes())
    assert done.returncode == 0, done.stderr
    assert done.stdout[:8] == b"\x89PNG\r\n\x1a\n"  # the input's format
    assert _size_of(done.stdout) == (63, 45)
    assert b"wrote stdout" in done.stderr  # the summary stays off the data
    with Image.open(io.BytesIO(done.stdout)) as im:
        expected = lutsr.upscale_to(img, lut_file, outscale=3, backend="reference")
        assert np.array_equal(np.asarray(im), expected)


def test_image_pipe_format_and_files(tmp_path, lut_file):
    src = _png(tmp_path / "a.png", _img())
    done = _run("image", src, "-o", "-", "--format", "jpg", "--lut", lut_file, "-q",
                "--backend", "reference")
    assert done.returncode == 0, done.stderr
    assert done.stdout[:2] == b"\xff\xd8" and _size_of(done.stdout) == (42, 30)
    dst = tmp_path / "b.webp"
    done = _run("image", "-", "-o", dst, "--lut", lut_file, "-q", "--backend", "reference",
                stdin=src.read_bytes())
    assert done.returncode == 0, done.stderr
    assert _size_of(dst) == (42, 30)


@pytest.mark.parametrize("stdin, message", [(b"", b"stdin is empty"),
                                            (b"not an image", b"stdin: cannot read image")])
def test_image_pipe_errors_one_line(lut_file, stdin, message):
    done = _run("image", "-", "-o", "-", "--lut", lut_file, stdin=stdin)
    assert done.returncode == 1
    assert done.stdout == b""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(b"lutsr: error: ") and message in lines[0]
