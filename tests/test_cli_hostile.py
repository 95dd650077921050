"""What a new user of ``lutsr image`` (and the shared CLI paths) hits first: short writes to a
closed pipe, damaged EXIF and RGB565 BMPs, an endless stdin, absurd sizes, library warnings on
stderr, silent resizes, silent skips and mistyped LUT names (issue 39: 6, 9, 13, 14, 17, 19).

Each case ends in one clear line (or works exactly), never in Python's own warning or
traceback text.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import types
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_GUARD_S, assert_images_equal, random_lut

import lutsr
from lutsr import bundled, outsize
from lutsr.cli import main
from lutsr.commands import common, image
from lutsr.imageio import read_image
from lutsr.reference import upscale_reference

Image = pytest.importorskip("PIL.Image")

ROOT = Path(__file__).resolve().parents[1]

# A directory entry count of 5 with only one 12-byte entry after it: Pillow reads the
# orientation (6), then warns "Corrupt EXIF data" and stops.
TRUNCATED_EXIF = (b"MM\x00\x2a\x00\x00\x00\x08\x00\x05"
                  b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00")
GARBAGE_EXIF = b"garbage, not a TIFF structure"


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory):
    lut = random_lut(np.random.default_rng(39), scale=2)
    return lut, lutsr.save(lut, tmp_path_factory.mktemp("lut") / "x2.lutsr")


def _img(h=12, w=16, c=3, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def _png(path: Path, img: np.ndarray) -> Path:
    Image.fromarray(img).save(path)
    return path


def _cli(lut_file, *args) -> int:
    return main(["image", *map(str, args), "--lut", str(lut_file[1]), "--backend", "reference"])


def _env(**extra) -> dict:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return env


def _lines(text: str) -> list[str]:
    return text.strip().splitlines()


# --------------------------------------------------------------- 6: every write to stdout checked


@pytest.mark.parametrize("unbuffered", ["1", ""])
def test_reader_leaving_early_ends_in_one_line_and_exit_1(tmp_path, lut_file, unbuffered):
    """``lutsr image - -o - | head -c 10``: with PYTHONUNBUFFERED=1 stdout is the raw file, whose
    write stops at the 64 KiB the pipe took and returns the count; that was taken for success."""
    src = _png(tmp_path / "big.png", _img(200, 200))  # ~480 KB of PNG out: far above a pipe
    with open(src, "rb") as stdin:
        proc = subprocess.Popen([sys.executable, "-m", "lutsr", "image", "-", "-o", "-",
                                 "--lut", str(lut_file[1]), "--backend", "reference"],
                                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=_env(PYTHONUNBUFFERED=unbuffered))
        assert proc.stdout.read(10) == b"\x89PNG\r\n\x1a\n\x00\x00"
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=HANG_GUARD_S) == 1, err
    assert _lines(err) == ["lutsr: error: the output pipe was closed by its reader before the end"]


class _Trickle:
    """A raw stdout that takes at most 7 bytes a call, then nothing (a closed reader)."""

    def __init__(self, accept: int):
        self.data, self.accept = bytearray(), accept

    def write(self, view) -> int:
        n = min(len(view), 7, self.accept - len(self.data))
        if n <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.data += bytes(view[:n])
        return n

    def flush(self) -> None:
        pass


def test_write_stdout_writes_everything_through_short_writes(monkeypatch):
    data = bytes(range(256)) * 3
    out = _Trickle(accept=10**6)
    monkeypatch.setattr(sys, "stdout", types.SimpleNamespace(buffer=out))
    common.write_stdout(data)
    assert bytes(out.data) == data
    short = _Trickle(accept=100)  # the reader leaves after 100 bytes
    monkeypatch.setattr(sys, "stdout", types.SimpleNamespace(buffer=short))
    with pytest.raises(BrokenPipeError):
        common.write_stdout(data)
    assert len(short.data) == 100


# ------------------------------------------------------ 9 and 17: damaged EXIF, RGB565, warnings


def _chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _with_exif(path: Path, img: np.ndarray, exif: bytes) -> Path:
    """``img`` as PNG (an eXIf chunk) or JPEG (an APP1 block) carrying the ``exif`` bytes."""
    if path.suffix == ".jpg":
        Image.fromarray(img).save(path, quality=95, exif=b"Exif\x00\x00" + exif)
        return path
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    raw = buf.getvalue()
    end = raw.index(b"IEND") - 4
    path.write_bytes(raw[:end] + _chunk(b"eXIf", exif) + raw[end:])
    return path


@pytest.mark.parametrize("exif", [TRUNCATED_EXIF, GARBAGE_EXIF], ids=["truncated", "garbage"])
@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_damaged_exif_is_ignored_with_one_warning(tmp_path, lut_file, capsys, suffix, exif):
    """A PNG's damaged eXIf was refused ("not a TIFF file") or printed Pillow's UserWarning; the
    same block in a JPEG was used. Both now: the pixels as stored, no EXIF, one warning line."""
    img = _img()
    src = _with_exif(tmp_path / f"in{suffix}", img, exif)
    dst = tmp_path / "out.png"
    assert _cli(lut_file, src, "-o", dst, "-q") == 0
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1, err
    assert err[0].startswith(f"lutsr: warning: {src}: damaged EXIF data ignored"), err
    with Image.open(dst) as im:
        assert not im.getexif()  # not copied
        out = np.asarray(im)
    assert out.shape == (24, 32, 3)  # not rotated by the damaged block's orientation 6
    if suffix == ".png":
        assert_images_equal(out, upscale_reference(img, lut_file[0]))


def test_damaged_exif_leaves_no_python_warning_text(tmp_path, lut_file):
    """In a real process (no pytest capturing warnings): stderr is the one lutsr line."""
    src = _with_exif(tmp_path / "in.png", _img(), TRUNCATED_EXIF)
    done = subprocess.run([sys.executable, "-m", "lutsr", "image", str(src), "-o",
                           str(tmp_path / "out.png"), "--lut", str(lut_file[1]), "--backend",
                           "reference", "-q"], capture_output=True, text=True, env=_env(),
                          timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    err = _lines(done.stderr)
    assert len(err) == 1 and err[0].startswith("lutsr: warning: "), err
    assert "Warning" not in done.stderr and "warnings.warn" not in done.stderr


def _rgb565_bmp(path: Path, words: np.ndarray) -> Path:
    """A 16-bit BMP with BI_BITFIELDS masks 0xF800 / 0x07E0 / 0x001F (RGB565), bottom-up."""
    h, w = words.shape
    stride = (2 * w + 3) // 4 * 4
    rows = b"".join(words[y].astype("<u2").tobytes().ljust(stride, b"\0")
                    for y in range(h - 1, -1, -1))
    dib = (struct.pack("<IiiHHIIiiII", 40, w, h, 1, 16, 3, len(rows), 2835, 2835, 0, 0)
           + struct.pack("<III", 0xF800, 0x07E0, 0x001F))
    offset = 14 + len(dib)
    path.write_bytes(b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + dib + rows)
    return path


def test_rgb565_bmp_is_read_as_8_bit_rgb(tmp_path, lut_file, capsys):
    """Refused as "16-bit images are not supported" before: its samples are 5 and 6 bits."""
    words = np.random.default_rng(1).integers(0, 2**16, (9, 11), dtype=np.uint16)
    src = _rgb565_bmp(tmp_path / "565.bmp", words)
    r, g, b = ((words.astype(np.int64) >> shift) & mask for shift, mask in
               ((11, 31), (5, 63), (0, 31)))
    # each sample stretched to 0..255 (Pillow's floor(v * 255 / max)): 0 -> 0, max -> 255
    expected = np.stack([r * 255 // 31, g * 255 // 63, b * 255 // 31], axis=-1).astype(np.uint8)
    pixels, info = read_image(src)
    assert_images_equal(pixels, expected)
    assert info.warnings == []
    assert _cli(lut_file, src, "-o", tmp_path / "out.png", "-q") == 0
    assert capsys.readouterr().err == ""
    with Image.open(tmp_path / "out.png") as im:
        assert_images_equal(np.asarray(im), upscale_reference(expected, lut_file[0]))


def test_decompression_bomb_warning_is_one_lutsr_line(tmp_path, lut_file, capsys, monkeypatch):
    """Pillow's DecompressionBombWarning (an image above MAX_IMAGE_PIXELS, below twice it)
    reached stderr as Python's warning text, even on success."""
    src = _png(tmp_path / "big.png", _img())  # 192 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)
    assert _cli(lut_file, src, "-o", tmp_path / "out.png", "-q") == 0
    err = _lines(capsys.readouterr().err)
    assert err == [f"lutsr: warning: {src}: a very large image, above Pillow's "
                   "decompression-bomb threshold of 150 pixels; read anyway, its upscale needs "
                   "a lot of memory"]
    assert (tmp_path / "out.png").exists()


def test_any_library_warning_is_one_lutsr_line(capsys, monkeypatch):
    def warns(args):
        warnings.warn("something odd\n  over two lines", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr("lutsr.cli.cmd_list", warns)
    assert main(["list"]) == 0
    assert _lines(capsys.readouterr().err) == ["lutsr: warning: something odd over two lines"]


# -------------------------------------------------------------------------- 13: stdin is capped


class _EndlessStdin:
    """``cat /dev/zero``: zeros for every read with a size; a read of "all" gets 4 times the cap."""

    def __init__(self, cap: int):
        self.total, self.cap = 0, cap

    def read(self, n: int = -1) -> bytes:
        n = 4 * self.cap if n is None or n < 0 else n
        self.total += n
        return bytes(n)


def test_stdin_is_read_up_to_a_limit(tmp_path, lut_file, capsys, monkeypatch):
    """``cat /dev/zero | lutsr image - -o z.png`` read until memory ran out (1.8 GB seen)."""
    assert image.STDIN_LIMIT == 512 * 2**20
    with pytest.raises(SystemExit):
        main(["image", "-h"])
    assert "stdin (at most 512 MiB" in " ".join(capsys.readouterr().out.split())  # documented
    cap = 3 * 2**20
    monkeypatch.setattr(image, "STDIN_LIMIT", cap)
    stdin = _EndlessStdin(cap)
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=stdin))
    assert _cli(lut_file, "-", "-o", tmp_path / "z.png") == 1
    err = _lines(capsys.readouterr().err)
    assert err == ["lutsr: error: stdin holds more than 3 MiB, the most lutsr image reads from a "
                   "pipe; give the file's name instead of -"]
    assert stdin.total <= cap + 1
    assert not (tmp_path / "z.png").exists()


def test_stdin_below_the_limit_still_works(tmp_path, lut_file, capsys, monkeypatch):
    img = _img()
    data = _png(tmp_path / "a.png", img).read_bytes()
    monkeypatch.setattr(image, "STDIN_LIMIT", len(data))  # exactly at the limit: read
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(data)))
    assert _cli(lut_file, "-", "-o", tmp_path / "z.png", "-q") == 0
    with Image.open(tmp_path / "z.png") as im:
        assert_images_equal(np.asarray(im), upscale_reference(img, lut_file[0]))


# ---------------------------------------------------------------------- 14: absurd output sizes


@pytest.mark.parametrize("option", [("--outscale", "1e308"), ("--outscale", "1e9"),
                                    ("--size", "3000000000x10")])
@pytest.mark.parametrize("pipe", [False, True])
def test_absurd_output_size_is_one_clear_line(tmp_path, lut_file, capsys, monkeypatch, option,
                                              pipe):
    """``--outscale 1e308`` gave "internal error OverflowError"."""
    src = _png(tmp_path / "a.png", _img())
    if pipe:
        monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(
            src.read_bytes())))
    assert _cli(lut_file, "-" if pipe else src, "-o", tmp_path / "b.png", *option) == 1
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "too large" in err[0] and "internal error" not in err[0], err
    assert f"{outsize.MAX_SIDE} pixels" in err[0]
    assert not (tmp_path / "b.png").exists()


def test_output_size_bounds_each_side():
    assert outsize.output_size((1, 1), outscale=float(outsize.MAX_SIDE)) == (outsize.MAX_SIDE,) * 2
    for outscale in (1e308, float(outsize.MAX_SIDE) / 2 + 1):
        with pytest.raises(ValueError, match="too large"):
            outsize.output_size((4, 3), outscale=outscale)
    with pytest.raises(ValueError, match="too large"):
        outsize.output_size((4, 3), size=(outsize.MAX_SIDE + 1, 1))


# ------------------------------------------------------------- 19: what --outscale / --size did


def test_size_says_which_lut_and_which_resample(tmp_path, lut_file, capsys):
    """``--lut x2 --size`` did a silent 1.875x Lanczos after the LUT."""
    src = _png(tmp_path / "a.png", _img())
    assert _cli(lut_file, src, "-o", tmp_path / "b.png", "--size", "60x45") == 0
    out = _lines(capsys.readouterr().out)
    assert out[0] == (f"resized: LUT {lut_file[1]} (2x: 16x12 -> 32x24), then Lanczos 1.875x "
                      "to 60x45"), out
    assert _cli(lut_file, src, "-o", tmp_path / "c.png", "--outscale", "1.5", "-q") == 0
    assert capsys.readouterr() == ("", "")  # -q: nothing


def test_outscale_names_the_bundled_lut_it_picked(tmp_path, capsys):
    src = _png(tmp_path / "a.png", _img())
    picked = outsize.pick_lut((16, 12), (40, 30))
    if picked is None:
        pytest.skip("no bundled x2/x3/x4 LUT")
    scale = {name: f for f, name in outsize.family().items()}[picked]
    assert main(["image", str(src), "-o", str(tmp_path / "b.png"), "--outscale", "2.5",
                 "--backend", "reference"]) == 0
    line = _lines(capsys.readouterr().out)[0]
    assert line.startswith(f"resized: LUT {picked} ({scale}x: 16x12 -> {16 * scale}x"
                           f"{12 * scale})"), line
    assert line.endswith(" to 40x30") and ("then area" in line) == (scale > 2.5), line


def test_folder_resize_line_counts_the_steps(tmp_path, lut_file, capsys):
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png"):
        _png(tmp_path / "in" / name, _img(seed=len(name)))
    assert _cli(lut_file, tmp_path / "in", "-o", tmp_path / "out", "--outscale", "1.5") == 0
    out = _lines(capsys.readouterr().out)
    assert out[0] == f"resized: LUT {lut_file[1]}, then area (2 images)", out


def test_video_resize_line(tmp_path, lut_file, capsys):
    pytest.importorskip("av")
    from test_video import make_clip

    clip = make_clip(tmp_path / "in.mp4", frames=2, size=(32, 24), audio=False)
    assert main(["video", str(clip), "-o", str(tmp_path / "out.mp4"), "--lut", str(lut_file[1]),
                 "--backend", "reference", "--size", "96x72"]) == 0
    out = _lines(capsys.readouterr().out)
    assert f"resized: LUT {lut_file[1]} (2x: 32x24 -> 64x48), then Lanczos 1.5x to 96x72" in out


# --------------------------------------------------- 19: existing outputs: one rule, cluster too


def _folder_with_one_done(tmp_path: Path) -> tuple[Path, Path]:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    _png(src / "a.png", _img(seed=1))
    _png(src / "b.png", _img(seed=2))
    (out / "a.png").write_bytes(b"an earlier run's output")
    return src, out


def test_cluster_refuses_existing_outputs_as_a_plain_run(tmp_path, lut_file, capsys):
    """``--cluster`` skipped existing outputs with exit 0 where a plain run refused them."""
    pytest.importorskip("distributed")
    src, out = _folder_with_one_done(tmp_path)
    for cluster in ([], ["--cluster", "local:1"]):
        assert _cli(lut_file, src, "-o", out, *cluster) == 1
        err = _lines(capsys.readouterr().err)
        assert len(err) == 1 and err[0].startswith(f"lutsr: error: output exists: {out}"), err
        assert "--skip-existing" in err[0]
        assert sorted(os.listdir(out)) == ["a.png"]


def test_cluster_refuses_existing_video_outputs(tmp_path, lut_file, capsys):
    pytest.importorskip("distributed")
    pytest.importorskip("av")
    (tmp_path / "a.mp4").write_bytes(b"a video")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.mp4").write_bytes(b"done before")
    assert main(["video", str(tmp_path / "a.mp4"), "-o", str(tmp_path / "out"), "--lut",
                 str(lut_file[1]), "--cluster", "local:1"]) == 1
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "output exists" in err[0], err


def test_skip_existing_without_cluster(tmp_path, lut_file, capsys):
    src, out = _folder_with_one_done(tmp_path)
    assert _cli(lut_file, src, "-o", out, "--skip-existing") == 0
    assert "wrote 1 image to" in (text := capsys.readouterr().out)
    assert "1 skipped (output exists)" in text
    assert (out / "a.png").read_bytes() == b"an earlier run's output"
    with Image.open(out / "b.png") as im:
        assert_images_equal(np.asarray(im), upscale_reference(_img(seed=2), lut_file[0]))
    with pytest.raises(SystemExit) as exc:
        _cli(lut_file, src, "-o", out, "--skip-existing", "--overwrite")
    assert exc.value.code == 2


# ------------------------------------------------------------- 19: no file skipped in silence


def test_folder_says_which_files_it_skips(tmp_path, lut_file, capsys):
    """A folder run passed over ``.heic`` (and any other file) without a word."""
    src = tmp_path / "in"
    src.mkdir()
    _png(src / "a.png", _img())
    (src / "b.heic").write_bytes(b"\x00\x00\x00\x1cftypheic")
    (src / "notes.txt").write_text("x")
    assert _cli(lut_file, src, "-o", tmp_path / "out", "-q") == 0
    err = _lines(capsys.readouterr().err)
    assert err == [f"lutsr: warning: skipped 2 files that lutsr does not read (.heic, .txt): "
                   f"{src / 'b.heic'}, {src / 'notes.txt'}"]
    assert os.listdir(tmp_path / "out") == ["a.png"]


def test_folder_of_only_unread_files_names_them(tmp_path, lut_file, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "b.heic").write_bytes(b"x")
    assert _cli(lut_file, src, "-o", tmp_path / "out") == 1
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "no image files" in err[0] and "b.heic" in err[0], err


# --------------------------------------------------------- 19: a mistyped LUT name is helped


@pytest.mark.parametrize("typed", ["X4-SDY", "x4sdy", "x4_sdy"])
def test_unknown_lut_name_suggests_the_closest(typed, capsys):
    if "x4-sdy" not in bundled.names():
        pytest.skip("x4-sdy is not bundled")
    assert main(["info", typed]) == 1
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "did you mean x4-sdy?" in err[0], err
    with pytest.raises(ValueError, match="did you mean x4-sdy"):
        lutsr.upscale(_img(), typed)
    with pytest.raises(ValueError, match="did you mean x4-sdy"):
        bundled.load_bundled(typed)


def test_unknown_lut_name_without_a_close_one(capsys):
    assert main(["info", "zzzzzzzz"]) == 1
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "did you mean" not in err[0] and "bundled:" in err[0], err
