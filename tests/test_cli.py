"""`lutsr image / demo / info / list` and the safe-output helper.

Images are small and the LUT random, so the numpy reference backend is the
oracle and the runtime: outputs must equal ``upscale_reference`` exactly
(PNG is lossless).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_images_equal, random_lut

import lutsr
from lutsr import bundled, imageio, safefiles
from lutsr.cli import main
from lutsr.reference import upscale_reference

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def lut(tmp_path_factory):
    model = random_lut(np.random.default_rng(3), scale=2)
    path = lutsr.save(model, tmp_path_factory.mktemp("lut") / "x2.lutsr")
    return model, path


def image_cli(lut, *args) -> int:
    return main(["image", *map(str, args), "--lut", str(lut[1]), "--backend", "reference",
                 "-q"])


def expected(src: np.ndarray, model, straight_alpha: bool = False) -> np.ndarray:
    """What `lutsr image` makes of ``src``: alpha layouts are upscaled premultiplied."""
    if src.ndim == 3 and src.shape[2] in (2, 4) and not straight_alpha:
        return imageio.upscale_premultiplied(lambda x: upscale_reference(x, model), src)
    return upscale_reference(src, model)


def pixels(rng, *shape):
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def png16(path: Path, array: np.ndarray) -> Path:
    """Write a 16-bit PNG by hand (Pillow cannot write 16-bit RGB)."""
    h, w = array.shape[:2]
    color = 2 if array.ndim == 3 else 0
    rows = array.astype(">u2").reshape(h, -1)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)

    def chunk(kind, data):
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([16, color, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("straight", [False, True])
@pytest.mark.parametrize("mode, channels", [("L", None), ("LA", 2), ("RGB", 3), ("RGBA", 4)])
def test_modes_round_trip_exactly(tmp_path, lut, mode, channels, straight):
    """Gray stays gray; alpha goes through the LUT premultiplied, or per channel on request."""
    rng = np.random.default_rng(0)
    shape = (9, 13) if channels is None else (9, 13, channels)
    src = pixels(rng, *shape)
    Image.fromarray(src).save(tmp_path / "in.png")
    flag = ("--straight-alpha",) if straight else ()
    assert image_cli(lut, tmp_path / "in.png", "-o", tmp_path / "out.png", *flag) == 0
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == mode
        out = np.asarray(im)
    assert_images_equal(out, expected(src, lut[0], straight), mode)


def test_palette_and_bilevel_converted_explicitly(tmp_path, lut):
    rng = np.random.default_rng(1)
    rgb = pixels(rng, 8, 10, 3)
    pal = Image.fromarray(rgb).quantize(16)
    pal.save(tmp_path / "p.png")
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pt.png", transparency=0)
    Image.fromarray(pixels(rng, 8, 10) > 127).save(tmp_path / "b.png")
    for name, want_mode, expect in [
        ("p.png", "RGB", np.asarray(pal.convert("RGB"))),
        ("pt.png", "RGBA", np.asarray(Image.open(tmp_path / "pt.png").convert("RGBA"))),
        ("b.png", "L", np.asarray(Image.open(tmp_path / "b.png").convert("L"))),
    ]:
        out = tmp_path / f"out-{name}"
        assert image_cli(lut, tmp_path / name, "-o", out) == 0
        with Image.open(out) as im:
            assert im.mode == want_mode, name
            assert_images_equal(np.asarray(im), expected(expect, lut[0]), name)


@pytest.mark.parametrize("fmt", ["jpg", "bmp", "tif", "webp"])
def test_other_formats(tmp_path, lut, fmt):
    src = pixels(np.random.default_rng(2), 12, 16, 3)
    Image.fromarray(src).save(tmp_path / f"in.{fmt}")
    assert image_cli(lut, tmp_path / f"in.{fmt}", "-o", tmp_path / f"out.{fmt}") == 0
    with Image.open(tmp_path / f"out.{fmt}") as im:
        assert im.size == (32, 24) and im.mode == "RGB"
    if fmt in ("bmp", "tif"):  # lossless: exact
        want = upscale_reference(np.asarray(Image.open(tmp_path / f"in.{fmt}")), lut[0])
        assert_images_equal(np.asarray(Image.open(tmp_path / f"out.{fmt}")), want, fmt)


def test_sixteen_bit_upscaled_32_bit_refused_clearly(tmp_path, lut, capsys):
    """16-bit PNGs are upscaled in 16 bits (tests/test_images_deep.py); 32-bit is refused."""
    rng = np.random.default_rng(4)
    data = rng.integers(0, 65536, size=(6, 7, 3), dtype=np.uint16)
    png16(tmp_path / "rgb16.png", data)
    Image.fromarray(data[..., 0]).save(tmp_path / "gray16.png")  # mode I;16
    for name in ("rgb16.png", "gray16.png"):
        assert image_cli(lut, tmp_path / name, "-o", tmp_path / f"out-{name}") == 0
    Image.fromarray(data[..., 0].astype(np.int32) << 8).save(tmp_path / "i32.tif")  # mode I
    assert image_cli(lut, tmp_path / "i32.tif", "-o", tmp_path / "out-i32.tif") == 1
    err = capsys.readouterr().err
    assert "32-bit images are not supported" in err and "i32.tif" in err
    assert not (tmp_path / "out-i32.tif").exists()


def test_corrupt_file_in_a_folder(tmp_path, lut, capsys):
    """A damaged image fails alone: the others are written, the exit status is 1."""
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(5)
    Image.fromarray(pixels(rng, 8, 8, 3)).save(src / "a.png")
    Image.fromarray(pixels(rng, 8, 8)).save(src / "c.jpg")
    whole = (src / "a.png").read_bytes()
    (src / "b.png").write_bytes(whole[: len(whole) // 2])  # truncated
    (src / "notes.txt").write_text("not an image")
    assert image_cli(lut, src, "-o", dst) == 1
    err = capsys.readouterr().err
    assert "b.png" in err and "cannot read image" in err
    assert sorted(os.listdir(dst)) == ["a.png", "c.jpg"]  # names kept, .txt ignored
    assert (src / "b.png").read_bytes() == whole[: len(whole) // 2]


def test_folder_with_one_image_makes_the_output_folder(tmp_path, lut):
    (tmp_path / "in").mkdir()
    Image.fromarray(pixels(np.random.default_rng(9), 5, 6, 3)).save(tmp_path / "in" / "a.bmp")
    assert image_cli(lut, tmp_path / "in", "-o", tmp_path / "new" / "out") == 0
    assert Image.open(tmp_path / "new" / "out" / "a.bmp").size == (12, 10)


def test_refuses_overwrite_unless_asked(tmp_path, lut, capsys):
    Image.fromarray(pixels(np.random.default_rng(6), 5, 5, 3)).save(tmp_path / "in.png")
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    assert image_cli(lut, tmp_path / "in.png", "-o", out) == 1
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert image_cli(lut, tmp_path / "in.png", "-o", out, "--overwrite") == 0
    assert Image.open(out).size == (10, 10)


def test_input_is_never_the_output(tmp_path, lut, capsys):
    Image.fromarray(pixels(np.random.default_rng(7), 5, 5, 3)).save(tmp_path / "in.png")
    before = (tmp_path / "in.png").read_bytes()
    assert image_cli(lut, tmp_path / "in.png", "-o", tmp_path / "in.png", "--overwrite") == 1
    assert image_cli(lut, tmp_path, "-o", tmp_path, "--overwrite") == 1  # folder onto itself
    assert capsys.readouterr().err.count("input") >= 2
    assert (tmp_path / "in.png").read_bytes() == before
    assert os.listdir(tmp_path) == ["in.png"]


def test_usage_errors(tmp_path, lut, capsys):
    rng = np.random.default_rng(8)
    Image.fromarray(pixels(rng, 4, 4, 4)).save(tmp_path / "rgba.png")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        Image.fromarray(pixels(rng, 4, 4, 3)).save(tmp_path / folder / "same.png")
    cases = [
        ((tmp_path / "rgba.png", "-o", tmp_path / "out.jpg"), "alpha"),
        ((tmp_path / "rgba.png", "-o", tmp_path / "out.xyz"), "unknown image suffix"),
        ((tmp_path / "missing.png", "-o", tmp_path / "o.png"), "no such file"),
        ((tmp_path / "a", tmp_path / "b", "-o", tmp_path / "out"), "would both be written"),
    ]
    for args, message in cases:
        assert image_cli(lut, *args) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.jpg").exists()


def test_info_and_list(tmp_path, lut, capsys):
    model, path = lut
    tagged = lutsr.LUT(model.stages, model.interval, "tagged", {"data": ["T91"], "psnr": 1.5})
    lutsr.save(tagged, tmp_path / "t.lutsr")
    assert main(["info", str(tmp_path / "t.lutsr")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(tagged.describe()) and '"T91"' in out and '"psnr": 1.5' in out
    assert main(["info", "no-such-lut"]) == 1
    assert "no-such-lut" in capsys.readouterr().err
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    names = bundled.names()
    assert all(name in listed for name in names) if names else "no bundled" in listed
    if "x4-s" in names:  # each stage's patterns, and which have a base
        assert "x4-s: LUT x4-s: x4, interval 4 (q=16, L=17), 1 stage(s) (S)," in listed
    if "x4-sdy" in names:
        assert "2 stage(s) (SDY then SDY)" in listed
    if "x4-sdy-taps" in names:
        assert ("3 stage(s) (SDY (learned taps) then SDY (learned taps) then SDY (learned taps))"
                in listed)
    if "x4-layered" in names:
        assert "x4-layered: LUT x4-layered: x4, 1 stage(s) (layered)" in listed
    if "x4" in names:
        assert "x4 (default): LUT x4: x4, interval 4 (q=16, L=17), 1 stage(s) (S + linear base)" \
            in listed


def test_demo(tmp_path, lut, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--lut", str(lut[1]), "--backend", "reference"]) == 0
    out = capsys.readouterr().out
    assert "160x120 -> 320x240" in out and " ms " in out
    with Image.open(tmp_path / "lutsr-demo-x2.png") as im:
        assert im.size == (320, 240)
    assert main(["demo", "--lut", str(lut[1]), "--backend", "reference"]) == 1  # exists
    assert "--overwrite" in capsys.readouterr().err
    if not bundled.names():  # before a default LUT ships, the demo says what to do
        assert main(["demo", "-o", "d.png"]) == 1
        assert "--lut" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# atomic_output


@pytest.fixture(params=["tmpfile", "named"])
def temp_kind(request, monkeypatch):
    """Run a test with O_TMPFILE files and with the named-temporary fallback."""
    if request.param == "named":
        monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    elif not hasattr(os, "O_TMPFILE"):
        pytest.skip("no O_TMPFILE on this platform")
    return request.param


def test_atomic_output_commits_and_discards(tmp_path, temp_kind):
    target = tmp_path / "x.bin"
    with pytest.raises(RuntimeError):
        with safefiles.atomic_output(target) as pending:
            Path(pending.path).write_bytes(b"half")
            raise RuntimeError("failed mid-write")
    assert os.listdir(tmp_path) == []
    with safefiles.atomic_output(target) as pending:
        Path(pending.path).write_bytes(b"whole")
        assert not target.exists()  # nothing visible until the end
    assert target.read_bytes() == b"whole" and os.listdir(tmp_path) == ["x.bin"]
    with pytest.raises(FileExistsError):
        with safefiles.atomic_output(target):
            pass
    with safefiles.atomic_output(target, overwrite=True) as pending:
        Path(pending.path).write_bytes(b"newer")
    assert target.read_bytes() == b"newer" and os.listdir(tmp_path) == ["x.bin"]


def test_atomic_output_never_clobbers_a_file_that_appears(tmp_path, temp_kind):
    target = tmp_path / "x.bin"
    with pytest.raises(FileExistsError, match="appeared"):
        with safefiles.atomic_output(target) as pending:
            Path(pending.path).write_bytes(b"ours")
            target.write_bytes(b"theirs")  # another program wins the race
    assert target.read_bytes() == b"theirs" and os.listdir(tmp_path) == ["x.bin"]


# ---------------------------------------------------------------------------
# Folders: --ext, -r, GIF, and an output file name for several inputs (issue 31, item 5)


def test_several_inputs_refuse_an_output_file_name(tmp_path, lut, capsys):
    rng = np.random.default_rng(20)
    for name in ("a.png", "b.png"):
        Image.fromarray(pixels(rng, 4, 4, 3)).save(tmp_path / name)
    assert image_cli(lut, tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "o.png") == 1
    err = capsys.readouterr().err.strip()
    assert "o.png" in err and "folder" in err and "\n" not in err
    assert image_cli(lut, tmp_path, "-o", tmp_path / "o.jpg") == 1  # a folder input too
    assert "folder" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "o.jpg").exists()


def test_ext_recursive_and_gif(tmp_path, lut, capsys):
    model, _ = lut
    rng = np.random.default_rng(21)
    src = tmp_path / "in"
    (src / "sub" / "deep").mkdir(parents=True)
    images = {"a.png": pixels(rng, 5, 6, 3), "sub/b.bmp": pixels(rng, 4, 3, 3)}
    for name, img in images.items():
        Image.fromarray(img).save(src / name)
    palette = Image.fromarray(pixels(rng, 5, 4, 3)).convert("P")
    palette.save(src / "sub" / "deep" / "c.gif")
    images["sub/deep/c.gif"] = np.asarray(palette.convert("RGB"))

    # without -r: the top folder only, suffixes kept
    assert image_cli(lut, src, "-o", tmp_path / "flat") == 0
    assert sorted(os.listdir(tmp_path / "flat")) == ["a.png"]

    # -r mirrors the tree; --ext picks the format; lossless, so the pixels are exact
    assert image_cli(lut, src, "-o", tmp_path / "tree", "-r", "--ext", "png") == 0
    for name, img in images.items():
        out = (tmp_path / "tree" / name).with_suffix(".png")
        assert_images_equal(np.asarray(Image.open(out)), expected(img, model))

    # a GIF becomes PNG by default; named GIFs are accepted too
    assert image_cli(lut, src / "sub" / "deep" / "c.gif", src / "a.png", "-o",
                     tmp_path / "named") == 0
    assert sorted(os.listdir(tmp_path / "named")) == ["a.png", "c.png"]

    # an output folder inside the input tree is not read back as input
    assert image_cli(lut, src, "-o", src / "up", "-r") == 0
    assert image_cli(lut, src, "-o", src / "up", "-r", "--overwrite") == 0
    assert not (src / "up" / "up").exists()
    assert sorted(p.relative_to(src / "up").as_posix() for p in (src / "up").rglob("*.*")) \
        == ["a.png", "sub/b.bmp", "sub/deep/c.png"]


def test_animated_gif_to_a_still_format_refused_others_written(tmp_path, lut, capsys):
    rng = np.random.default_rng(22)
    frames = [Image.fromarray(pixels(rng, 4, 4, 3)).convert("P") for _ in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    Image.fromarray(pixels(rng, 4, 4, 3)).save(tmp_path / "still.png")
    assert image_cli(lut, tmp_path, "-o", tmp_path / "out", "--ext", "bmp") == 1
    err = capsys.readouterr().err
    assert "anim.gif" in err and "animated" in err and "--first-frame" in err
    assert os.listdir(tmp_path / "out") == ["still.bmp"]


def test_ext_usage(tmp_path, lut, capsys):
    Image.fromarray(pixels(np.random.default_rng(23), 4, 4, 3)).save(tmp_path / "a.png")
    # one file to one named file: the name already picks the format
    assert image_cli(lut, tmp_path / "a.png", "-o", tmp_path / "o.png", "--ext", "jpg") == 1
    assert "--ext" in capsys.readouterr().err
    assert image_cli(lut, tmp_path / "a.png", "-o", tmp_path / "o.png", "--ext", "png") == 0
    # a folder output (trailing /) takes --ext
    assert image_cli(lut, tmp_path / "a.png", "-o", f"{tmp_path / 'd'}/", "--ext", "jpg") == 0
    assert os.listdir(tmp_path / "d") == ["a.jpg"]
    with pytest.raises(SystemExit):  # argparse: not a format lutsr writes
        image_cli(lut, tmp_path, "-o", tmp_path / "x", "--ext", "heic")
