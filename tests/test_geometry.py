"""Geometry (issue 44, item 3): ``--size 1920x-2`` / ``-1`` keep the aspect ratio; ``--fit``,
``--pad`` and ``--crop`` fit a picture to a box, for images and video.

The sizes are checked against hand-computed values (the arithmetic of
:func:`lutsr.outsize.output_size` and :func:`lutsr.outsize.box_geometry`), the
pixels against the same run without the box step: ``--pad`` is the ``--size``
upscale at the scaled size with bars around it, ``--crop`` its centre.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_lut

import lutsr
from lutsr.cli import main
from lutsr.outsize import (
    BoxGeometry,
    box_geometry,
    output_size,
    parse_colour,
    parse_size,
    place,
)


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory):
    lut = random_lut(np.random.default_rng(44), scale=2)
    return lutsr.save(lut, tmp_path_factory.mktemp("lut") / "x2.lutsr")


# 1. Parsing and arithmetic


@pytest.mark.parametrize("text, size", [("1920x-2", (1920, -2)), ("-1x720", (-1, 720)),
                                        ("640x480", (640, 480))])
def test_parse_size_takes_one_aspect_side(text, size):
    assert parse_size(text, aspect=True) == size


@pytest.mark.parametrize("text", ["-1x-2", "-2x-1", "0x-2", "-3x100", "1920x-2x3", "x-2"])
def test_parse_size_refuses_other_negatives(text):
    with pytest.raises(ValueError, match="1920x-2"):
        parse_size(text, aspect=True)


def test_parse_size_without_aspect_is_unchanged():
    with pytest.raises(ValueError, match="positive width x height"):
        parse_size("1920x-2")
    assert parse_size(" 7 X 5 ") == (7, 5)


@pytest.mark.parametrize("in_size, size, out", [
    ((640, 360), (1920, -2), (1920, 1080)),
    ((640, 360), (1920, -1), (1920, 1080)),
    ((641, 361), (-1, 1080), (1918, 1080)),   # 1917.67 rounds up
    ((640, 480), (-1, 101), (135, 101)),      # 134.67
    ((640, 480), (-2, 101), (134, 101)),      # the nearest even
    ((640, 480), (-2, 99), (132, 99)),        # 132.0
    ((100, 10), (1, -1), (1, 1)),             # at least 1
    ((100, 10), (1, -2), (1, 2)),             # at least 2
    ((360, 640), (-2, 1920), (1080, 1920)),   # portrait
])
def test_aspect_sides(in_size, size, out):
    assert output_size(in_size, size=size) == out


def test_aspect_side_too_large_is_refused():
    with pytest.raises(ValueError, match="at most"):
        output_size((1, 10**6), size=(10**6, -1))


@pytest.mark.parametrize("mode, box, align, scaled, out, offset", [
    ("fit", (1920, 1080), 1, (1440, 1080), (1440, 1080), (0, 0)),        # 4:3 in 16:9
    ("pad", (1920, 1080), 1, (1440, 1080), (1920, 1080), (240, 0)),
    ("crop", (1920, 1080), 1, (1920, 1440), (1920, 1080), (0, 180)),
    ("fit", (1000, 1000), 2, (1000, 750), (1000, 750), (0, 0)),
    ("pad", (1001, 1001), 2, (1000, 750), (1001, 1001), (0, 124)),        # 125.5 down to even
    ("pad", (1001, 1001), 1, (1001, 751), (1001, 1001), (0, 125)),        # 750.75 rounds up
    ("crop", (300, 300), 2, (400, 300), (300, 300), (50, 0)),
    ("crop", (301, 300), 2, (400, 300), (301, 300), (48, 0)),             # 49.5 down to even
])
def test_box_geometry(mode, box, align, scaled, out, offset):
    g = box_geometry((640, 480), box, mode, align)
    assert (g.scaled, g.out, g.offset) == (scaled, out, offset)
    if mode == "crop":
        assert all(s >= b for s, b in zip(g.scaled, g.out, strict=True))
    else:
        assert all(s <= b for s, b in zip(g.scaled, box, strict=True))


def test_box_geometry_refuses_unknown_mode():
    with pytest.raises(ValueError, match="fit, pad, crop"):
        box_geometry((10, 10), (20, 20), "stretch")


@pytest.mark.parametrize("text, rgb", [("black", (0, 0, 0)), ("White", (255, 255, 255)),
                                       ("#102030", (16, 32, 48)), ("ff8000", (255, 128, 0))])
def test_parse_colour(text, rgb):
    assert parse_colour(text) == rgb


def test_parse_colour_refuses_others():
    with pytest.raises(ValueError, match="#RRGGBB"):
        parse_colour("#12345")


def test_place_pads_with_colour_and_opaque_alpha():
    img = np.full((2, 3, 4), 7, np.uint8)
    g = BoxGeometry("pad", (3, 2), (5, 6), (1, 2))
    out = place(img, g, (10, 20, 30))
    assert out.shape == (6, 5, 4)
    assert (out[2:4, 1:4] == 7).all()
    bars = np.ones((6, 5), bool)
    bars[2:4, 1:4] = False
    assert (out[bars] == [10, 20, 30, 255]).all()


def test_place_crops_the_offset_window():
    img = np.arange(6 * 8, dtype=np.uint16).reshape(6, 8)
    out = place(img, BoxGeometry("crop", (8, 6), (4, 2), (2, 3)), (0, 0, 0))
    assert (out == img[3:5, 2:6]).all()


# 2. Images


def _image(path, size=(40, 30)):
    from PIL import Image

    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _read(path):
    from PIL import Image

    return np.asarray(Image.open(path))


def _img(args, lut_file):
    return main(["image", *map(str, args), "--lut", str(lut_file), "--backend", "reference",
                 "-q"])


@pytest.mark.parametrize("size, shape", [("100x-2", (76, 100)), ("100x-1", (75, 100)),
                                         ("-2x45", (45, 60))])
def test_image_size_keeps_aspect(tmp_path, lut_file, size, shape):
    src = _image(tmp_path / "in.png")
    assert _img([src, "-o", tmp_path / "o.png", f"--size={size}"], lut_file) == 0
    assert _read(tmp_path / "o.png").shape[:2] == shape


def test_image_pad_and_crop_are_the_scaled_image_placed(tmp_path, lut_file):
    src = _image(tmp_path / "in.png")
    # 40x30 in 100x100: fit scales by 2.5 to 100x75, bars of 12 and 13 rows
    assert _img([src, "-o", tmp_path / "s.png", "--size", "100x75"], lut_file) == 0
    assert _img([src, "-o", tmp_path / "p.png", "--pad", "100x100", "--pad-colour", "#0a141e"],
                lut_file) == 0
    assert _img([src, "-o", tmp_path / "f.png", "--fit", "100x100"], lut_file) == 0
    scaled, padded = _read(tmp_path / "s.png"), _read(tmp_path / "p.png")
    assert padded.shape == (100, 100, 3)
    assert (padded[12:87] == scaled).all()
    assert (padded[:12] == [10, 20, 30]).all() and (padded[87:] == [10, 20, 30]).all()
    assert (_read(tmp_path / "f.png") == scaled).all()
    # cover 50x50: scaled by 5/3 to 67x50, the centre 50 columns from column 8
    assert _img([src, "-o", tmp_path / "c.png", "--crop", "50x50"], lut_file) == 0
    assert _img([src, "-o", tmp_path / "s2.png", "--size", "67x50"], lut_file) == 0
    assert (_read(tmp_path / "c.png") == _read(tmp_path / "s2.png")[:, 8:58]).all()


def test_box_options_exclude_each_other(tmp_path, lut_file, capsys):
    src = _image(tmp_path / "in.png")
    with pytest.raises(SystemExit) as exc:
        _img([src, "-o", tmp_path / "o.png", "--pad", "10x10", "--size", "10x10"], lut_file)
    assert exc.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


# 3. Video

av = pytest.importorskip("av")


def _clip(path, size=(64, 48), rotation=None, frames=3):
    w, h = size
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "0"}
        if rotation is not None:
            vs.set_display_rotation(rotation)
        yy, xx = np.mgrid[0:h, 0:w]
        for i in range(frames):
            img = np.stack([(xx * 4 + i) % 256, (yy * 5) % 256, (xx + yy) % 256], -1)
            out.mux(vs.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")))
        out.mux(vs.encode())
    return path


def _frames(path):
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    return frames


def _vid(src, dst, lut_file, *extra):
    return main(["video", str(src), "-o", str(dst), "--lut", str(lut_file), "--backend",
                 "reference", "-q", "--codec", "ffv1", *map(str, extra)])


@pytest.mark.parametrize("luma", [False, True], ids=["rgb", "luma"])
def test_video_size_keeps_aspect(tmp_path, lut_file, luma):
    src = _clip(tmp_path / "in.mp4")
    extra = ["--luma-only"] if luma else []
    assert _vid(src, tmp_path / "a.mkv", lut_file, "--size", "100x-2", *extra) == 0
    assert (_frames(tmp_path / "a.mkv")[0].width, _frames(tmp_path / "a.mkv")[0].height) \
        == (100, 76)  # 75 to the nearest even
    # -1: 75 is odd, which 4:2:0 cannot hold: made even with a note, not refused
    assert _vid(src, tmp_path / "b.mkv", lut_file, "--size", "100x-1", *extra) == 0
    assert _frames(tmp_path / "b.mkv")[0].height == 74


@pytest.mark.parametrize("luma", [False, True], ids=["rgb", "luma"])
def test_video_pad_is_the_scaled_video_with_bars(tmp_path, lut_file, luma):
    src = _clip(tmp_path / "in.mp4")
    extra = ["--luma-only"] if luma else []
    # 64x48 in 160x100: scaled by 100/48 to 133.3 -> 132 (even) x 100, bars of 14 columns
    assert _vid(src, tmp_path / "s.mkv", lut_file, "--size", "132x100", *extra) == 0
    assert _vid(src, tmp_path / "p.mkv", lut_file, "--pad", "160x100", "--pad-colour", "white",
                *extra) == 0
    for scaled, padded in zip(_frames(tmp_path / "s.mkv"), _frames(tmp_path / "p.mkv"),
                              strict=True):
        assert (padded.width, padded.height) == (160, 100)
        for p, (s, q) in enumerate(zip(scaled.planes, padded.planes, strict=True)):
            a = np.frombuffer(s, np.uint8).reshape(s.height, s.line_size)[:, :s.width]
            b = np.frombuffer(q, np.uint8).reshape(q.height, q.line_size)[:, :q.width]
            x, w = (14, 132) if p == 0 else (7, 66)
            # RGB mode pads in RGB, before the 4:2:0 downsampling: its taps (bicubic) mix
            # the bars into the chroma of the picture's 3 outer samples, and back
            m = 3 if p and not luma else 0
            assert (b[:, x + m:x + w - m] == a[:, m:w - m]).all(), f"plane {p}"
            white = 235 if p == 0 else 128  # limited-range BT.601 white
            assert (b[:, :x - m] == white).all() and (b[:, x + w + m:] == white).all()


def test_video_crop_is_the_centre_of_the_scaled_video(tmp_path, lut_file):
    src = _clip(tmp_path / "in.mp4")
    # cover 80x80: scaled by 80/48 to 107x80, the centre from column 12 (13.5 down to even)
    assert _vid(src, tmp_path / "s.mkv", lut_file, "--size", "107x80", "--pix-fmt",
                "yuv444p") == 0
    assert _vid(src, tmp_path / "c.mkv", lut_file, "--crop", "80x80", "--pix-fmt",
                "yuv444p") == 0
    for scaled, cropped in zip(_frames(tmp_path / "s.mkv"), _frames(tmp_path / "c.mkv"),
                               strict=True):
        a = scaled.to_ndarray(format="yuv444p")
        b = cropped.to_ndarray(format="yuv444p")
        assert b.shape == (3, 80, 80)
        assert (b == a[:, :, 12:92]).all()


def test_video_fit_and_rotated_box(tmp_path, lut_file):
    src = _clip(tmp_path / "in.mp4", rotation=90)  # displayed 48x64
    assert _vid(src, tmp_path / "f.mkv", lut_file, "--fit", "100x100") == 0
    frame = _frames(tmp_path / "f.mkv")[0]
    assert (frame.height, frame.width) == (74, 100)  # stored turned: displayed 74x100 (75 even)
    assert _vid(src, tmp_path / "p.mkv", lut_file, "--pad", "200x100") == 0
    frame = _frames(tmp_path / "p.mkv")[0]
    assert (frame.height, frame.width) == (200, 100)


def test_video_odd_box_is_refused_for_420(tmp_path, lut_file, capsys):
    src = _clip(tmp_path / "in.mp4")
    assert _vid(src, tmp_path / "p.mkv", lut_file, "--pad", "101x100") == 1
    err = capsys.readouterr().err.strip()
    assert "101x100" in err and "\n" not in err
    assert not (tmp_path / "p.mkv").exists()
