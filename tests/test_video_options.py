"""Encoder choice and options, and colour (issue 44, items 2 and 4).

* ``--codec`` takes FFmpeg's encoder names and the common ones (``h265`` means
  ``libx265``), refuses what this FFmpeg lacks in one line naming what it has;
  a hardware encoder the build has but cannot open here is one line too (no
  hardware encoder runs in these tests).
* ``--encoder-opt key=value`` reaches the encoder; a key it does not have is
  refused (FFmpeg would ignore it silently), as are bad values.
* ``--colorspace``: BT.601 and BT.709 matrices against the values their
  coefficients give for pure colours; an SD (BT.601) input written HD is
  converted to BT.709 and tagged so (``keep``: as before), checked on decoded
  pixels and on the tags read back by PyAV (and ffprobe, when installed) from
  every container that holds them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction

import numpy as np
import pytest
from conftest import HANG_GUARD_S, random_lut

import lutsr
from lutsr.cli import main
from lutsr.video.avutil import plane_array
from lutsr.video.colour import (
    convert_matrix,
    is_hd,
    matrix_conversion,
    output_colorspace,
    rgb_to_codes,
)
from lutsr.video.encoding import CODEC_ALIASES, parse_encoder_option, resolve_codec

av = pytest.importorskip("av")

BT601, BT709 = 6, 1  # FFmpeg AVColorSpace: SMPTE 170M (BT.601 525), BT.709


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory):
    lut = random_lut(np.random.default_rng(44), scale=2)
    return lutsr.save(lut, tmp_path_factory.mktemp("lut") / "x2.lutsr")


def run(src, dst, *extra, lut=None) -> int:
    return main(["video", str(src), "-o", str(dst), "-q", "--backend", "reference",
                 *(["--lut", str(lut)] if lut else []), *map(str, extra)])


def solid(path, size, codes, pix_fmt="yuv444p", colorspace=BT601, frames=2, codec="ffv1"):
    """A clip of one Y'CbCr colour ``codes`` (8-bit), tagged ``colorspace``, limited range."""
    w, h = size
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=25)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        ctx = vs.codec_context
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = colorspace
        ctx.color_range = 1
        if codec == "libx264":
            vs.options = {"preset": "ultrafast", "crf": "0"}
        for _ in range(frames):
            frame = av.VideoFrame(w, h, pix_fmt)
            for plane, value in zip(frame.planes, codes, strict=True):
                np.frombuffer(plane, np.uint8)[:] = value
            frame.colorspace, frame.color_range = colorspace, 1
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
    return path


def centre_codes(path) -> tuple[list[int], int]:
    """The Y, Cb, Cr codes at the first frame's centre, and its colour matrix tag."""
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
    codes = []
    for plane in frame.planes[:3]:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        codes.append(int(rows[plane.height // 2, plane.width // 2]))
    return codes, int(frame.colorspace)


# 1. --codec


def test_common_names_map_to_encoders_present():
    for alias, encoders in CODEC_ALIASES.items():
        present = [e for e in encoders if e in av.codecs_available]
        if present:
            assert resolve_codec(av, alias) == present[0]
            assert resolve_codec(av, alias.upper()) == present[0]
    assert resolve_codec(av, "ffv1") == "ffv1"


def test_missing_common_name_lists_what_is_here(monkeypatch):
    monkeypatch.setattr(av, "codecs_available", av.codecs_available - {"libx265"})
    with pytest.raises(ValueError) as exc:
        resolve_codec(av, "h265")
    text = str(exc.value)
    assert "no h265 encoder" in text and "libx265" in text and "available:" in text
    assert "h264 (libx264)" in text and "\n" not in text


@pytest.mark.skipif("libx265" not in av.codecs_available, reason="needs libx265")
def test_codec_h265_writes_hevc(tmp_path, lut_file):
    src = solid(tmp_path / "in.mkv", (32, 24), (81, 90, 240), pix_fmt="yuv420p", frames=8)
    assert run(src, tmp_path / "o.mkv", "--codec", "h265", "--encoder-opt",
               "x265-params=log-level=error", lut=lut_file) == 0
    with av.open(str(tmp_path / "o.mkv")) as c:
        assert c.streams.video[0].codec_context.name == "hevc"


#: Hardware encoders lutsr accepts by name; this machine has none it can open.
HARDWARE = ("h264_nvenc", "hevc_nvenc", "h264_qsv", "h264_vaapi", "h264_amf",
            "h264_videotoolbox", "h264_v4l2m2m")


def test_hardware_encoder_present_but_not_openable_is_one_line(tmp_path, lut_file, capsys):
    present = [name for name in HARDWARE if name in av.codecs_available]
    if not present:
        pytest.skip("this FFmpeg build has no hardware encoder")
    src = solid(tmp_path / "in.mkv", (32, 24), (81, 90, 240), pix_fmt="yuv420p")
    name = present[0]
    try:  # a machine where it does open would run it: this test is about the refusal
        ctx = av.Codec(name, "w").create()
        ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.open()
        pytest.skip(f"{name} opens here")
    except av.error.FFmpegError:
        pass
    assert run(src, tmp_path / "o.mp4", "--codec", name, lut=lut_file) == 1
    err = capsys.readouterr().err.strip()
    assert name in err and "cannot open here" in err and "libx264" in err and "\n" not in err
    assert not (tmp_path / "o.mp4").exists()


# 2. --encoder-opt


def test_parse_encoder_option():
    assert parse_encoder_option("x264-params=keyint=5:bframes=0") == \
        ("x264-params", "keyint=5:bframes=0")
    assert parse_encoder_option("tune=") == ("tune", "")
    for bad in ("tune", "=film", " tune=film"):
        with pytest.raises(ValueError, match="key=value"):
            parse_encoder_option(bad)


def _keyframes(path) -> list[bool]:
    with av.open(str(path)) as c:
        return [p.is_keyframe for p in c.demux(video=0) if p.size]


def test_encoder_options_reach_the_encoder(tmp_path, lut_file):
    src = solid(tmp_path / "in.mkv", (32, 24), (81, 90, 240), pix_fmt="yuv420p", frames=12)
    assert run(src, tmp_path / "a.mp4", lut=lut_file) == 0
    assert sum(_keyframes(tmp_path / "a.mp4")) == 1  # x264's default GOP: one keyframe
    assert run(src, tmp_path / "b.mp4", "--encoder-opt", "g=5", "--encoder-opt",
               "tune=film", lut=lut_file) == 0
    assert [i for i, k in enumerate(_keyframes(tmp_path / "b.mp4")) if k] == [0, 5, 10]
    assert run(src, tmp_path / "c.mp4", "--encoder-opt", "x264-params=keyint=4:scenecut=0",
               lut=lut_file) == 0
    assert [i for i, k in enumerate(_keyframes(tmp_path / "c.mp4")) if k] == [0, 4, 8]


@pytest.mark.parametrize("opts, words", [
    (["bogus=1"], ["bogus", "libx264"]),  # PyAV 17 and 18+ word it differently
    (["crf=abc"], ["crf=abc", "does not open"]),
    (["tune=nosuchtune"], ["tune=nosuchtune"]),
    (["crf=20", "--crf", "20"], ["--crf", "give one"]),
    (["g=5", "--encoder-opt", "g=6"], ["given twice"]),
    (["novalue"], ["key=value"]),
])
def test_bad_encoder_options_are_one_line(tmp_path, lut_file, capsys, opts, words):
    src = solid(tmp_path / "in.mkv", (32, 24), (81, 90, 240), pix_fmt="yuv420p")
    assert run(src, tmp_path / "o.mp4", "--encoder-opt", *opts, lut=lut_file) == 1
    err = capsys.readouterr().err.strip()
    assert all(w in err for w in words) and "\n" not in err, err
    assert not (tmp_path / "o.mp4").exists()


# 3. Matrices against the standards' values

#: 8-bit limited-range Y'CbCr of pure colours, from the standards' luma weights
#: (BT.601: Kr 0.299, Kb 0.114; BT.709: Kr 0.2126, Kb 0.0722), Y' = 16 + 219 Y,
#: C = 128 + 224 C, rounded: e.g. BT.709 red Y' = 16 + 219 * 0.2126 = 62.56.
KNOWN = {
    BT601: {"red": (81, 90, 240), "green": (145, 54, 34), "blue": (41, 240, 110),
            "white": (235, 128, 128), "black": (16, 128, 128)},
    BT709: {"red": (63, 102, 240), "green": (173, 42, 26), "blue": (32, 240, 118),
            "white": (235, 128, 128), "black": (16, 128, 128)},
}
RGB = {"red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "white": (1, 1, 1),
       "black": (0, 0, 0)}


@pytest.mark.parametrize("colorspace", [BT601, BT709], ids=["bt601", "bt709"])
@pytest.mark.parametrize("colour", list(RGB))
def test_matrix_known_values(colorspace, colour):
    assert tuple(rgb_to_codes(RGB[colour], colorspace)) == KNOWN[colorspace][colour]


def test_matrix_depth_and_range():
    # 10-bit limited: the 8-bit scale times 4 (BT.709 red: 64 + 876 * 0.2126 = 250.2)
    assert tuple(rgb_to_codes((1, 0, 0), BT709, bits=10)) == (250, 409, 960)
    assert tuple(rgb_to_codes((1, 1, 1), BT709, full_range=True)) == (255, 128, 128)
    assert tuple(rgb_to_codes((1, 0, 0), BT601, full_range=True)) == (76, 85, 255)


def test_matrix_conversion_keeps_colours():
    t = matrix_conversion(BT601, BT709)
    assert t[1:, 0] == pytest.approx([0, 0], abs=1e-12)  # gray stays gray
    for rgb in RGB.values():
        kr = {BT601: (0.299, 0.114), BT709: (0.2126, 0.0722)}
        ys = {}
        for cs, (r, b) in kr.items():
            y = r * rgb[0] + (1 - r - b) * rgb[1] + b * rgb[2]
            ys[cs] = np.array([y, (rgb[2] - y) / (2 * (1 - b)), (rgb[0] - y) / (2 * (1 - r))])
        assert t @ ys[BT601] == pytest.approx(ys[BT709], abs=1e-12)


@pytest.mark.parametrize("pix_fmt", ["yuv444p", "yuv420p", "yuv422p10le", "yuva420p"])
def test_convert_matrix_frame(pix_fmt):
    frame = av.VideoFrame(8, 4, pix_fmt)
    scale = 4 if "10le" in pix_fmt else 1
    dtype = np.uint16 if scale > 1 else np.uint8
    for plane, value in zip(frame.planes, (81, 90, 240, 200), strict=False):
        plane_array(plane, 1, dtype)[...] = value * scale
    frame.colorspace, frame.color_range = BT601, 1
    out = convert_matrix(frame, BT601, BT709)
    assert out.format.name == pix_fmt and int(out.colorspace) == BT709
    # the exact conversion of (81, 90, 240): (62.10, 102.13, 239.98) at 8 bits
    want = [62, 102, 240] if scale == 1 else [248, 409, 960]  # 248.41, 408.52, 959.94
    for p, value in enumerate(want):
        assert (plane_array(out.planes[p], 1, dtype) == value).all(), p
    if pix_fmt == "yuva420p":
        assert (plane_array(out.planes[3]) == 200).all()


# 4. --colorspace: when, and the pixels written


@pytest.mark.parametrize("size, hd", [((640, 360), False), ((720, 576), False),
                                      ((1280, 720), True), ((1024, 600), True),
                                      ((1280, 536), True), ((960, 720), True)])
def test_is_hd_is_the_players_rule(size, hd):
    assert is_hd(size) is hd


def test_output_colorspace():
    assert output_colorspace("auto", BT601, (640, 360)) == BT601
    assert output_colorspace("auto", BT601, (1280, 720)) == BT709
    assert output_colorspace("auto", 5, (1920, 1080)) == BT709  # BT.470BG (625 lines)
    assert output_colorspace("auto", 9, (1920, 1080)) == 9  # BT.2020: never
    assert output_colorspace("keep", BT601, (1920, 1080)) == BT601
    assert output_colorspace("bt709", BT601, (64, 48)) == BT709
    assert output_colorspace("bt709", BT709, (64, 48)) == BT709
    with pytest.raises(ValueError, match="BT.2020"):
        output_colorspace("bt709", 9, (64, 48))


def test_hd_output_of_bt601_is_converted(tmp_path):
    """No LUT (the size asked is the input's): the matrix alone changes the codes."""
    src = solid(tmp_path / "in.mkv", (1280, 720), KNOWN[BT601]["red"])
    assert run(src, tmp_path / "auto.mkv", "--codec", "ffv1", "--size", "1280x720") == 0
    assert centre_codes(tmp_path / "auto.mkv") == ([62, 102, 240], BT709)
    assert run(src, tmp_path / "keep.mkv", "--codec", "ffv1", "--size", "1280x720",
               "--colorspace", "keep") == 0
    assert centre_codes(tmp_path / "keep.mkv") == ([81, 90, 240], BT601)


@pytest.mark.parametrize("mode", ["rgb", "luma"])
@pytest.mark.parametrize("pix_fmt", ["yuv444p", "yuv420p"])
def test_sd_colorspace_bt709_through_the_lut(tmp_path, mode, pix_fmt):
    """The bundled x2 LUT keeps a flat colour flat: the codes are the matrix's."""
    src = solid(tmp_path / "in.mkv", (32, 24), KNOWN[BT601]["green"], pix_fmt=pix_fmt)
    extra = ["--luma-only"] if mode == "luma" else []
    assert run(src, tmp_path / "sd.mkv", "--codec", "ffv1", "--lut", "x2", *extra) == 0
    assert centre_codes(tmp_path / "sd.mkv") == ([145, 54, 34], BT601)  # SD: kept
    assert run(src, tmp_path / "o.mkv", "--codec", "ffv1", "--lut", "x2", "--colorspace",
               "bt709", *extra) == 0
    codes, tag = centre_codes(tmp_path / "o.mkv")
    # 601 green (145, 54, 34) is R'G'B' (0.002, 1.000, 0.003): BT.709 (172.4, 42.6, 26.6)
    assert tag == BT709
    assert np.abs(np.array(codes) - [172, 43, 27]).max() <= 1, codes


def _ffprobe_colours(path) -> dict | None:
    if shutil.which("ffprobe") is None:
        return None
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=color_space,color_primaries,color_transfer,color_range",
                          "-of", "json", str(path)], capture_output=True, text=True,
                         check=True, timeout=HANG_GUARD_S)
    return json.loads(out.stdout)["streams"][0]


@pytest.mark.parametrize("suffix, codec", [(".mp4", "libx264"), (".mov", "libx264"),
                                           (".mkv", "ffv1"), (".ts", "libx264"),
                                           (".webm", "libvpx-vp9")])
def test_tags_read_back_from_every_container(tmp_path, suffix, codec):
    if codec not in av.codecs_available:
        pytest.skip(f"needs {codec}")
    # MPEG-TS: a file of two flat frames is too short for FFmpeg to probe it back
    src = solid(tmp_path / "in.mkv", (1280, 720), KNOWN[BT601]["blue"], pix_fmt="yuv420p",
                frames=40 if suffix == ".ts" else 2)
    dst = tmp_path / f"o{suffix}"
    assert run(src, dst, "--codec", codec, "--size", "1280x720") == 0
    with av.open(str(dst)) as c:
        ctx = c.streams.video[0].codec_context
        tags = (int(ctx.colorspace), int(ctx.color_primaries), int(ctx.color_trc),
                int(ctx.color_range))
        frame = next(c.decode(video=0))
    assert tags == (BT709, BT709, BT709, 1)
    assert (int(frame.colorspace), int(frame.color_range)) == (BT709, 1)
    probed = _ffprobe_colours(dst)
    if probed is not None:
        assert probed == {"color_range": "tv", "color_space": "bt709",
                          "color_transfer": "bt709", "color_primaries": "bt709"}


def test_y4m_keeps_range_and_siting_through_the_conversion(tmp_path):
    """y4m holds no matrix, but the range and siting: H.264 4:2:0 is C420mpeg2."""
    src = solid(tmp_path / "in.mp4", (1280, 720), KNOWN[BT601]["red"], pix_fmt="yuv420p",
                codec="libx264")
    dst = tmp_path / "o.y4m"
    assert run(src, dst, "--size", "1280x720", "--no-audio") == 0
    header = dst.read_bytes().split(b"\n", 1)[0].decode()
    assert " C420mpeg2" in header and "XCOLORRANGE=LIMITED" in header, header
    codes, _ = centre_codes(dst)
    assert np.abs(np.array(codes) - [62, 102, 240]).max() <= 1, codes  # converted


def test_api_refuses_unknown_modes_before_writing(tmp_path):
    from lutsr.video import VideoOptions, upscale_video

    src = solid(tmp_path / "in.mkv", (32, 24), (81, 90, 240))
    for options, word in ((VideoOptions(colorspace="bt2020"), "colorspace"),
                          (VideoOptions(box=(64, 64), box_mode="stretch"), "box_mode")):
        with pytest.raises(ValueError, match=word):
            upscale_video(src, tmp_path / "o.mkv", "x2", options)
        assert not (tmp_path / "o.mkv").exists()
