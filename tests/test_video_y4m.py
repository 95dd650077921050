"""`lutsr video` and YUV4MPEG2, odd and huge sizes, and inputs FFmpeg refuses (issue 39).

y4m: the header's frame rate is the stream's, not its container's time base;
10-bit (4:2:0, 4:2:2, 4:4:4) goes in and out; chroma siting and colour range
are kept. Odd 4:2:0 sizes from --outscale are made even with a note; sizes,
factors and bitrates beyond what FFmpeg holds, damaged y4m headers, raw input
of the wrong size and MP4s a pipe cannot read end in one line naming the input.
Clips are made here with PyAV (no ffmpeg binary), tiny, and upscaled with the
numpy reference backend.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import random_lut

import lutsr
from lutsr.cli import main
from lutsr.video import VideoOptions, upscale_video
from lutsr.video.avutil import plane_array
from lutsr.video.encoding import parse_bitrate, subsampled_size
from lutsr.video.inputs import check_frame_size

av = pytest.importorskip("av")

W, H = 32, 24


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory):
    lut = random_lut(np.random.default_rng(39), scale=2)
    return lutsr.save(lut, tmp_path_factory.mktemp("lut") / "x2.lutsr")


def run(src, dst, lut_file, *extra, quiet=True) -> int:
    return main(["video", str(src), "-o", str(dst), "--lut", str(lut_file),
                 "--backend", "reference", *(["-q"] if quiet else []), *extra])


def make_clip(path: Path, *, codec="libx264", rate=25, pts=None, size=(W, H), frames=5,
              noise=False, **container_options) -> Path:
    """A small clip: ``frames`` frames (at ``pts`` in 1/``rate`` units if given)."""
    w, h = size
    with av.open(str(path), "w", options=container_options or None) as out:
        vs = out.add_stream(codec, rate=rate)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            vs.options = {"preset": "ultrafast", **({"crf": "0"} if noise else {})}
        rng = np.random.default_rng(1)
        yy, xx = np.mgrid[0:h, 0:w]
        for i in range(frames):
            img = (rng.integers(0, 256, (h, w, 3)) if noise else
                   np.stack([(xx * 8 + i * 9) % 256, (yy * 10 + i * 5) % 256,
                             (xx + yy) * 4 % 256], axis=-1))
            frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            frame.pts = i if pts is None else pts[i]
            frame.time_base = Fraction(1, 1) / Fraction(rate)
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    return path


#: Bytes per pixel of a y4m colour tag (luma plus chroma), and its sample size.
_Y4M_LAYOUTS = {"420": (1.5, 1), "422": (2, 1), "444": (3, 1), "420p10": (1.5, 2),
                "422p10": (2, 2), "444p10": (3, 2)}


def make_y4m(path: Path, colour: str = "420jpeg", extra: str = "", frames: int = 2,
             size=(W, H), rate="25:1") -> Path:
    """A YUV4MPEG2 file of random samples written byte by byte (any header we like)."""
    layout = colour if colour in _Y4M_LAYOUTS else colour[:3]
    per_pixel, sample = _Y4M_LAYOUTS[layout]
    count = int(size[0] * size[1] * per_pixel)
    rng = np.random.default_rng(2)
    top = 1023 if sample == 2 else 255
    # limited-range-ish values, so a full/limited mix-up would not clip them all alike
    body = b"".join(b"FRAME\n" + rng.integers(top // 16, top - top // 16, count)
                    .astype("<u2" if sample == 2 else "u1").tobytes() for _ in range(frames))
    path.write_bytes(f"YUV4MPEG2 W{size[0]} H{size[1]} F{rate} Ip A1:1 C{colour}{extra}\n"
                     .encode() + body)
    return path


def header(path: Path) -> list[str]:
    return path.read_bytes().split(b"\n", 1)[0].decode().split()


def frames_of(path: Path) -> list:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "internal error" not in err[0] and "returned" not in err[0], err[0]
    return err[0]


# ---------------------------------------------------------------------------
# 1. The frame rate of y4m written from a container


@pytest.mark.parametrize("suffix, rate, tag", [("mp4", 25, "F25:1"),
                                               ("mkv", Fraction(30000, 1001), "F30000:1001")])
def test_y4m_frame_rate_is_the_streams(tmp_path, lut_file, capsys, suffix, rate, tag):
    """Not the container's time base (1/12800 in MP4, 1/1000 in Matroska)."""
    src = make_clip(tmp_path / f"in.{suffix}", rate=rate)
    with av.open(str(src)) as c:
        assert 1 / c.streams.video[0].time_base in (12800, 1000)
    dst = tmp_path / "out.y4m"
    assert run(src, dst, lut_file, quiet=False) == 0
    assert tag in header(dst)
    with av.open(str(dst)) as c:
        assert c.streams.video[0].average_rate == rate
    assert len(frames_of(dst)) == 5
    assert "note" not in capsys.readouterr().err  # constant rate: nothing to say


def test_y4m_variable_rate_says_what_it_does(tmp_path, lut_file, capsys):
    src = make_clip(tmp_path / "vfr.mp4", pts=[0, 1, 2, 4, 5, 8, 9, 10, 12, 13], frames=10)
    with av.open(str(src)) as c:
        average = c.streams.video[0].average_rate
    assert average not in (25, None)
    dst = tmp_path / "out.y4m"
    assert run(src, dst, lut_file, quiet=False) == 0
    assert f"F{average.numerator}:{average.denominator}" in header(dst)
    assert len(frames_of(dst)) == 10  # every frame once: none dropped or repeated
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lutsr: note:" in err[0], err
    assert "frame rate varies" in err[0] and "10 frames" in err[0] and "average" in err[0]
    assert run(src, tmp_path / "quiet.y4m", lut_file) == 0  # -q: no note
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------
# 8. 10-bit y4m, chroma siting and colour range


@pytest.mark.parametrize("colour", ["420p10", "422p10", "444p10"])
@pytest.mark.parametrize("luma", [False, True], ids=["rgb", "luma"])
def test_y4m_10_bit_in_and_out(tmp_path, lut_file, colour, luma):
    src = make_y4m(tmp_path / "in.y4m", colour)
    dst, ref = tmp_path / "out.y4m", tmp_path / "ref.mkv"
    extra = ["--luma-only"] if luma else []
    assert run(src, dst, lut_file, *extra) == 0
    assert f"C{colour}" in header(dst)
    got = frames_of(dst)
    assert {(f.width, f.height, f.format.name) for f in got} == \
        {(2 * W, 2 * H, f"yuv{colour[:3]}p10le")}
    # the same run into lossless FFV1 gives the same samples: y4m adds nothing, drops nothing
    assert run(src, ref, lut_file, "--codec", "ffv1", *extra) == 0
    want = frames_of(ref)
    assert len(got) == len(want) == 2
    for g, w in zip(got, want, strict=True):
        for pg, pw in zip(g.planes, w.planes, strict=True):
            assert np.array_equal(plane_array(pg, 1, np.uint16),
                                  plane_array(pw, 1, np.uint16))


@pytest.mark.parametrize("extra", [(), ("--allow-8bit",), ("--pix-fmt", "yuv420p10le")])
def test_y4m_10_bit_from_a_10_bit_file(tmp_path, lut_file, extra):
    """The commands of the issue: a 10-bit input written as y4m, with and without options."""
    src = tmp_path / "in10.mkv"
    with av.open(str(src), "w") as out:
        vs = out.add_stream("ffv1", rate=25)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p10le"
        for i in range(2):
            frame = av.VideoFrame(W, H, "yuv420p10le")
            for p, plane in enumerate(frame.planes):
                plane_array(plane, 1, np.uint16)[...] = 300 + 100 * p + i
            frame.pts = i
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    dst = tmp_path / "out.y4m"
    assert run(src, dst, lut_file, "--luma-only", *extra) == 0
    assert "C420p10" in header(dst)
    got = frames_of(dst)
    assert len(got) == 2 and got[0].format.name == "yuv420p10le"
    # a flat frame stays flat, every bit kept (the LUT is random, so only chroma is exact)
    assert np.all(plane_array(got[1].planes[1], 1, np.uint16) == 401)


@pytest.mark.parametrize("colour", ["420jpeg", "420mpeg2", "420paldv"])
@pytest.mark.parametrize("rng_tag", ["FULL", "LIMITED"])
def test_y4m_keeps_chroma_siting_and_range(tmp_path, lut_file, colour, rng_tag):
    src = make_y4m(tmp_path / "in.y4m", colour, f" XCOLORRANGE={rng_tag}")
    dst = tmp_path / "out.y4m"
    assert run(src, dst, lut_file) == 0
    tags = header(dst)
    assert f"C{colour}" in tags and f"XCOLORRANGE={rng_tag}" in tags, tags


def test_h264_input_is_tagged_with_its_siting(tmp_path, lut_file):
    """H.264's 4:2:0 chroma is co-sited left (the codec's default): C420mpeg2, not C420jpeg."""
    src = make_clip(tmp_path / "in.mp4")
    dst = tmp_path / "out.y4m"
    assert run(src, dst, lut_file) == 0
    assert "C420mpeg2" in header(dst)


# ---------------------------------------------------------------------------
# 10. Odd sizes for 4:2:0


def test_odd_outscale_size_is_made_even_with_a_note(tmp_path, lut_file, capsys):
    """480x270 at 2.5 would be 1200x675; here 32x18 at 2.5 would be 80x45."""
    src = make_clip(tmp_path / "in.mkv", size=(32, 18), frames=2)
    dst = tmp_path / "out.mkv"
    assert run(src, dst, lut_file, "--outscale", "2.5", quiet=False) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lutsr: note: the output size 80x45 is odd, which yuv420p cannot hold: "
                   "writing 80x44"]
    got = frames_of(dst)
    assert {(f.width, f.height, f.format.name) for f in got} == {(80, 44, "yuv420p")}
    report = upscale_video(src, tmp_path / "api.mkv", lut_file,
                           VideoOptions(backend="reference", outscale=2.5, quiet=True))
    assert report.output_size == (80, 44) and len(report.notes) == 1
    assert capsys.readouterr().err == ""  # quiet: the note is in the report only


def test_odd_size_asked_exactly_is_refused_with_an_even_one(tmp_path, lut_file, capsys):
    src = make_clip(tmp_path / "in.mkv", frames=2)
    assert run(src, tmp_path / "o.mkv", lut_file, "--size", "45x30") == 1
    line = one_line(capsys)
    assert "45x30 is odd" in line and "--size" in line and "44x30" in line
    assert not (tmp_path / "o.mkv").exists()


def test_subsampled_size():
    assert subsampled_size((1200, 675), "yuv420p") == (1200, 674)
    assert subsampled_size((45, 31), "yuv422p10le") == (44, 31)
    assert subsampled_size((45, 31), "yuv444p") == (45, 31)
    assert subsampled_size((1, 1), "nv12") == (2, 2)
    assert subsampled_size((33, 5), "yuv411p") == (32, 5)


# ---------------------------------------------------------------------------
# 14. Factors, sizes and bitrates too large


@pytest.mark.parametrize("opt, words", [
    (("--outscale", "1e9"), "too large"),
    (("--outscale", "1000"), "32000x24000 is too large for a video frame"),
    (("--size", "100000x100000"), "100000x100000 is too large for a video frame"),
    (("--bitrate", "1e30"), "bitrate 1e30 is too large"),
    (("--bitrate", "inf"), "too large"),
    (("--bitrate=-inf",), "must be positive"),
    (("--bitrate", "nan"), "must look like"),
])
def test_too_large_is_one_line(tmp_path, lut_file, capsys, opt, words):
    src = make_clip(tmp_path / "in.mkv", frames=1)
    dst = tmp_path / "o.mkv"
    assert run(src, dst, lut_file, *opt) == 1
    assert words in one_line(capsys)
    assert not dst.exists()


def test_largest_frame_fits():
    check_frame_size((16000, 16000), "size")
    with pytest.raises(ValueError, match="too large"):
        check_frame_size((16384, 16384), "size")
    assert parse_bitrate("1000G") == 10**12
    with pytest.raises(ValueError, match="too large"):
        parse_bitrate("1001G")


# ---------------------------------------------------------------------------
# 18. Inputs FFmpeg refuses in few words


def _stdin(monkeypatch, stream) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stream))


@pytest.mark.parametrize("dims, words", [
    ("W0 H24", "gives the frame size W0 H24"),
    ("W-5 H24", "gives the frame size W-5 H24"),
    ("W100000 H100000", "frame size 100000x100000 is too large"),
    ("W100000 H24", "ends before its first frame is complete"),
])
@pytest.mark.parametrize("pipe", [False, True], ids=["file", "stdin"])
def test_bad_y4m_header_is_named(tmp_path, lut_file, capsys, monkeypatch, dims, words, pipe):
    data = f"YUV4MPEG2 {dims} F25:1 Ip A1:1 C420jpeg\n".encode() + b"FRAME\n" + bytes(1152)
    src = tmp_path / "bad.y4m"
    src.write_bytes(data)
    if pipe:
        _stdin(monkeypatch, io.BufferedReader(io.BytesIO(data)))
    assert run("-" if pipe else src, tmp_path / "o.mkv", lut_file) == 1
    line = one_line(capsys)
    assert words in line and "Device or resource busy" not in line
    assert ("stdin" if pipe else str(src)) in line


def test_raw_input_of_the_wrong_size(tmp_path, lut_file, capsys, monkeypatch):
    raw = bytes(W * H * 3 // 2 * 3 + 100)  # three whole frames and a partial one
    _stdin(monkeypatch, io.BufferedReader(io.BytesIO(raw)))
    assert run("-", tmp_path / "o.mkv", lut_file, "--input-size", f"{W}x{H}") == 1
    line = one_line(capsys)
    assert line.startswith("lutsr: error: stdin: the raw input does not divide into whole "
                           f"{W}x{H} yuv420p frames") and "--input-size" in line
    assert not (tmp_path / "o.mkv").exists()


def _pipe_in(monkeypatch, data: bytes) -> threading.Thread:
    """stdin becomes a real pipe (not seekable) fed with ``data`` by a thread."""
    r, w = os.pipe()

    def feed():
        with open(w, "wb") as f:
            try:
                f.write(data)
            except BrokenPipeError:
                pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    _stdin(monkeypatch, open(r, "rb"))
    return feeder


def test_mp4_with_its_index_last_on_a_pipe(tmp_path, lut_file, capsys, monkeypatch):
    """An MP4 whose moov follows its (large) mdat cannot be read from a pipe: say so."""
    src = make_clip(tmp_path / "late.mp4", size=(64, 48), frames=10, noise=True)
    data = src.read_bytes()
    assert data.find(b"mdat") < data.find(b"moov") and len(data) > 40_000
    _pipe_in(monkeypatch, data)
    assert run("-", tmp_path / "o.mkv", lut_file) == 1
    line = one_line(capsys)
    assert "stdin" in line and "index (moov atom)" in line and "faststart" in line
    # with the index first, the same clip reads from a pipe
    fast = make_clip(tmp_path / "fast.mp4", size=(64, 48), frames=10, noise=True,
                     movflags="faststart")
    data = fast.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    _pipe_in(monkeypatch, data)
    assert run("-", tmp_path / "o.mkv", lut_file) == 0


def test_damaged_mp4_is_named(tmp_path, lut_file, capsys):
    src = make_clip(tmp_path / "in.mp4", frames=5)
    data = bytearray(src.read_bytes())
    start = data.find(b"mdat") + 4 + 8  # past the box header and the first NAL's start
    end = data.find(b"moov") - 4
    data[start:end] = bytes(end - start)  # the coded frames zeroed, the index intact
    src.write_bytes(bytes(data))
    assert run(src, tmp_path / "o.mkv", lut_file) == 1
    line = one_line(capsys)
    assert line.startswith(f"lutsr: error: {src}: ") and "damaged" in line
    assert "avcodec_send_packet" not in line


class _Trickle(io.RawIOBase):
    """A pipe whose reads return at most 12 bytes (a writer that sends a y4m header in pieces)."""

    def __init__(self, data: bytes):
        self._data, self._pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = min(len(buf), 12, len(self._data) - self._pos)
        buf[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


def test_y4m_header_cut_by_the_first_read_is_not_judged(tmp_path, lut_file, monkeypatch):
    """The peeked bytes end inside the header ("YUV4MPEG2 W3"): no false "W3 H" refusal."""
    data = make_y4m(tmp_path / "in.y4m", "420mpeg2").read_bytes()
    _stdin(monkeypatch, io.BufferedReader(_Trickle(data)))
    assert sys.stdin.buffer.peek(4096) == data[:12]
    assert run("-", tmp_path / "out.y4m", lut_file) == 0
    assert len(frames_of(tmp_path / "out.y4m")) == 2
