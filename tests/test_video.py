"""`lutsr video` and lutsr.video: streams, timestamps, pixels, and no partial output.

Clips are made here with PyAV itself: 32x24 H.264 with an AAC track (and, in
Matroska, SubRip subtitles), tiny so the slow numpy reference backend can be
used and no numba compilation is needed.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_GUARD_S, assert_images_equal, random_lut

import lutsr
from lutsr.cli import main
from lutsr.deep import _upsample_linear, upscale_deep
from lutsr.progress import PlainBar
from lutsr.reference import upscale_reference
from lutsr.video import VideoOptions, upscale_video
from lutsr.video import pipeline as video_pipeline
from lutsr.video.avutil import ffmpeg_log_level, format_depth, plane_array, sws_flags
from lutsr.video.colour import TO_RGB_FLAGS, to_output_format
from lutsr.video.frames import (
    resize_frame,
    upscale_frame_luma,
    upscale_frame_rgb,
)
from lutsr.video.inputs import display_matrix

av = pytest.importorskip("av")

W, H, RATE, FRAMES = 32, 24, 25, 25
ROOT = Path(__file__).resolve().parents[1]
SRT = ("1\n00:00:00,100 --> 00:00:00,400\nfirst line\n\n"
       "2\n00:00:00,500 --> 00:00:00,900\nsecond line\n\n")


def make_clip(path: Path, frames: int = FRAMES, size=(W, H), rotation: float | None = None,
              subtitles: bool = False, pts: list[int] | None = None,
              time_base: Fraction | None = None, audio: bool = True) -> Path:
    """A small H.264 clip of moving colour bars with a sine-tone AAC track."""
    w, h = size
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=RATE)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.options = {"preset": "ultrafast"}
    if time_base is not None:
        vs.codec_context.time_base = time_base
    if rotation is not None:
        vs.set_display_rotation(rotation)
    sub_src = sub_out = None
    if subtitles:
        srt = path.with_suffix(".srt")
        srt.write_text(SRT)
        sub_src = av.open(str(srt))
        sub_out = out.add_stream_from_template(sub_src.streams.subtitles[0])
    if audio:
        aus = out.add_stream("aac", rate=48000)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(frames):
        img = np.stack([(xx * 8 + i * 9) % 256, (yy * 10 + i * 5) % 256,
                        ((xx + yy) * 4 + 128) % 256], axis=-1).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i if pts is None else pts[i]
        if time_base is not None:
            frame.time_base = time_base
        for packet in vs.encode(frame):
            out.mux(packet)
    for packet in vs.encode(None):
        out.mux(packet)
    if audio:
        t = np.arange(48000 * frames // RATE) / 48000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, len(tone) - 1023, 1024):
            af = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp",
                                            layout="mono")
            af.sample_rate, af.pts = 48000, start
            for packet in aus.encode(af):
                out.mux(packet)
        for packet in aus.encode(None):
            out.mux(packet)
    if sub_src is not None:
        for packet in sub_src.demux(sub_src.streams.subtitles[0]):
            if packet.dts is not None:
                packet.stream = sub_out
                out.mux(packet)
        sub_src.close()
    out.close()
    return path


def probe(path: Path) -> dict:
    """Streams, frame timestamps (seconds), frames and rotation of a video file."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {
            "types": sorted(s.type for s in c.streams),
            "codecs": {s.type: s.codec_context.name for s in c.streams},
            "rate": v.average_rate,
            "size": (v.codec_context.width, v.codec_context.height),
            "duration": c.duration / 1e6 if c.duration else None,
        }
        frames = list(c.decode(video=0))
        info["frames"] = len(frames)
        info["times"] = [float(f.pts * f.time_base) for f in frames]
        info["rotation"] = frames[0].rotation
    with av.open(str(path)) as c:
        info["audio_packets"] = [bytes(p) for p in c.demux(audio=0) if p.size] \
            if c.streams.audio else []
    with av.open(str(path)) as c:
        info["subtitles"] = [bytes(p) for p in c.demux(subtitles=0) if p.size] \
            if c.streams.subtitles else []
    return info


def decoded(path: Path) -> list:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {
        "mp4": make_clip(folder / "in.mp4", rotation=90),
        "mkv": make_clip(folder / "in.mkv", subtitles=True),
    }


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory):
    lut = random_lut(np.random.default_rng(5), scale=2)
    return lutsr.save(lut, tmp_path_factory.mktemp("lut") / "x2.lutsr")


def run(src, dst, lut_file, *extra) -> int:
    return main(["video", str(src), "-o", str(dst), "--lut", str(lut_file),
                 "--backend", "reference", "-q", *extra])


@pytest.mark.parametrize("luma", [False, True], ids=["rgb", "luma"])
def test_mp4_frames_size_duration_audio_rotation(tmp_path, clips, lut_file, luma):
    dst = tmp_path / "out.mp4"
    assert run(clips["mp4"], dst, lut_file, *(["--luma-only"] if luma else [])) == 0
    src, out = probe(clips["mp4"]), probe(dst)
    assert out["frames"] == src["frames"] == FRAMES
    assert out["size"] == (2 * W, 2 * H)
    assert out["times"] == pytest.approx(src["times"], abs=1e-6)
    assert out["rate"] == RATE
    assert out["duration"] == pytest.approx(src["duration"], abs=0.03)
    assert out["codecs"]["audio"] == "aac" and len(src["audio_packets"]) > 40
    assert out["audio_packets"] == src["audio_packets"]  # copied bit for bit
    assert out["rotation"] == src["rotation"] == 90


@pytest.mark.parametrize("name", ["mp4", "mkv"])
def test_display_matrix_among_other_side_data(tmp_path, clips, lut_file, name):
    # x264 writes its version in an unregistered SEI, which reaches every first
    # frame as side data; only the mp4 also has a display matrix (a 90-degree turn).
    # PyAV 19 iterates over the side data's types where older releases gave the data.
    first = decoded(clips[name])[0]
    types = {getattr(e, "type", e).name for e in first.side_data}
    assert "SEI_UNREGISTERED" in types
    matrix = display_matrix(first)
    if name == "mp4":
        assert types == {"SEI_UNREGISTERED", "DISPLAYMATRIX"}
        # 16.16 fixed point cos/sin of the turn, then the 2.30 fixed-point w = 1
        assert matrix == [0, -65536, 0, 65536, 0, 0, 0, 0, 1 << 30]
    else:
        assert "DISPLAYMATRIX" not in types and matrix is None
    dst = tmp_path / f"out.{name}"
    assert run(clips[name], dst, lut_file) == 0
    assert probe(dst)["rotation"] == (90 if name == "mp4" else 0)


@pytest.mark.parametrize("luma", [False, True], ids=["rgb", "luma"])
def test_encoder_chooses_its_own_frame_types(tmp_path, clips, lut_file, luma):
    """The input (x264 ultrafast) has no B-frames; the output (preset fast) must have some.

    Guards against the decoded frames' picture types reaching the encoder,
    which would force the input's GOP structure onto it.
    """
    assert {f.pict_type for f in decoded(clips["mp4"])} == {1, 2}  # I and P only
    dst = tmp_path / "out.mp4"
    assert run(clips["mp4"], dst, lut_file, "--no-audio", *(["--luma-only"] if luma else [])) \
        == 0
    assert 3 in {f.pict_type for f in decoded(dst)}  # B


def test_colour_tags(tmp_path, clips, lut_file):
    """An untagged SD input is BT.601 to players; its HD output is tagged so, not left to guess.

    A tagged input keeps its tags, full range included.
    """
    def tags(path):
        with av.open(str(path)) as c:
            cc = c.streams.video[0].codec_context
            return (int(cc.colorspace), int(cc.color_range), int(cc.color_primaries),
                    int(cc.color_trc))
    assert run(clips["mp4"], tmp_path / "sd.mp4", lut_file, "--no-audio") == 0
    assert tags(tmp_path / "sd.mp4") == (6, 1, 6, 6)  # SMPTE 170M, limited range
    src = tmp_path / "709.mp4"
    out = av.open(str(src), "w")
    vs = out.add_stream("libx264", rate=RATE)
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    cc = vs.codec_context
    cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = 1, 2, 1, 1
    for i in range(3):
        frame = av.VideoFrame(W, H, "yuv420p")
        for plane in frame.planes:
            plane_array(plane)[:] = 40 * i + 20
        frame.pts, frame.colorspace, frame.color_range = i, 1, 2
        for packet in vs.encode(frame):
            out.mux(packet)
    for packet in vs.encode(None):
        out.mux(packet)
    out.close()
    for luma in ([], ["--luma-only"]):
        dst = tmp_path / f"out{len(luma)}.mp4"
        assert run(src, dst, lut_file, *luma) == 0
        assert tags(dst) == (1, 2, 1, 1)


def test_mkv_subtitles_and_audio_copied(tmp_path, clips, lut_file):
    dst = tmp_path / "out.mkv"
    assert run(clips["mkv"], dst, lut_file, "--luma-only") == 0
    src, out = probe(clips["mkv"]), probe(dst)
    assert out["types"] == ["audio", "subtitle", "video"]
    assert out["subtitles"] == src["subtitles"] and b"second line" in out["subtitles"][1]
    assert out["audio_packets"] == src["audio_packets"]


def test_container_that_cannot_hold_a_stream(tmp_path, clips, lut_file, capsys):
    dst = tmp_path / "out.mp4"  # MP4 cannot hold SubRip
    assert run(clips["mkv"], dst, lut_file) == 1
    assert "--no-subtitles" in capsys.readouterr().err and not dst.exists()
    assert run(clips["mkv"], dst, lut_file, "--no-subtitles", "--no-audio") == 0
    assert probe(dst)["types"] == ["video"]


def test_variable_timestamps_kept(tmp_path, lut_file):
    pts = [0, 40, 80, 200, 240, 400, 440, 480]  # milliseconds, with gaps
    src = make_clip(tmp_path / "vfr.mkv", frames=len(pts), pts=pts,
                    time_base=Fraction(1, 1000), audio=False)
    assert run(src, tmp_path / "out.mkv", lut_file, "--luma-only") == 0
    assert probe(tmp_path / "out.mkv")["times"] == pytest.approx([p / 1000 for p in pts])


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_luma_only_pixels_lossless(tmp_path, clips, lut_file, backend):
    """With lossless x264, Y is exactly the LUT of the input's Y and chroma is bicubic.

    The numba backend writes straight into the padded rows of FFmpeg's planes.
    """
    dst = tmp_path / "out.mkv"
    assert main(["video", str(clips["mp4"]), "-o", str(dst), "--lut", str(lut_file),
                 "--backend", backend, "-q", "--luma-only", "--crf", "0", "--no-audio"]) == 0
    lut = lutsr.load(lut_file)
    for fin, fout in zip(decoded(clips["mp4"]), decoded(dst), strict=True):
        y_in = plane_array(fin.planes[0]).copy()
        assert_images_equal(plane_array(fout.planes[0]), upscale_reference(y_in, lut),
                            "luma plane")
        bicubic = fin.reformat(2 * W, 2 * H, interpolation="BICUBIC")
        for p in (1, 2):
            assert_images_equal(plane_array(fout.planes[p]),
                                plane_array(bicubic.planes[p]), f"chroma plane {p}")


def test_rgb_frames_are_the_lut_of_the_decoded_rgb(tmp_path, clips, lut_file):
    lut = lutsr.load(lut_file)
    upscaler = lutsr.Upscaler(lut, backend="reference")
    frames = decoded(clips["mp4"])[:3]
    def to_rgb(frame):  # untagged SD: BT.601, limited range, accurate swscale
        return frame.reformat(format="rgb24", src_colorspace=6, src_color_range=1,
                              interpolation=sws_flags(TO_RGB_FLAGS)).to_ndarray()

    for frame in frames:
        out = upscale_frame_rgb(frame, upscaler)
        assert (out.width, out.height, out.pts) == (2 * W, 2 * H, frame.pts)
        assert_images_equal(out.to_ndarray(), upscale_reference(to_rgb(frame), lut), "rgb frame")
    # End to end through 4:4:4 lossless YUV: only the YUV<->RGB rounding remains.
    dst = tmp_path / "out.mkv"
    assert run(clips["mp4"], dst, lut_file, "--crf", "0", "--pix-fmt", "yuv444p",
               "--no-audio") == 0
    for fin, fout in zip(frames, decoded(dst)[:3], strict=True):
        want = upscale_reference(to_rgb(fin), lut).astype(int)
        diff = np.abs(to_rgb(fout).astype(int) - want)
        assert diff.mean() < 1.0 and diff.max() <= 6, (diff.mean(), diff.max())


def test_refuses_existing_output_and_input_as_output(tmp_path, clips, lut_file, capsys):
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"precious")
    assert run(clips["mp4"], dst, lut_file) == 1
    assert "--overwrite" in capsys.readouterr().err and dst.read_bytes() == b"precious"
    assert run(clips["mp4"], dst, lut_file, "--overwrite") == 0
    assert probe(dst)["frames"] == FRAMES
    src = tmp_path / "same.mp4"
    src.write_bytes(clips["mp4"].read_bytes())
    before = src.read_bytes()
    assert run(src, src, lut_file, "--overwrite") == 1
    assert "is the input" in capsys.readouterr().err and src.read_bytes() == before


def test_not_a_video(tmp_path, lut_file, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(2000))
    assert run(bad, tmp_path / "out.mp4", lut_file) == 1
    assert "bad.mp4" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["bad.mp4"]


def _no_lutsr_threads():
    deadline = time.monotonic() + HANG_GUARD_S
    while any(t.name.startswith("lutsr-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "pipeline threads still running"
        time.sleep(0.05)


@pytest.mark.parametrize("where", ["upscale", "encode", "interrupt"])
def test_failure_mid_video_leaves_nothing(tmp_path, clips, lut_file, monkeypatch, where):
    """An exception in any stage, or Ctrl-C, ends the run with no output file at all."""
    calls = {"n": 0}

    def failing(real, exc):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 10:
                raise exc
            return real(*args, **kwargs)
        return wrapper

    if where == "encode":
        monkeypatch.setattr(video_pipeline, "to_output_format",
                            failing(to_output_format, RuntimeError("encoder broke")))
    else:
        exc = KeyboardInterrupt() if where == "interrupt" else RuntimeError("LUT broke")
        monkeypatch.setattr(video_pipeline, "upscale_frame_rgb", failing(upscale_frame_rgb, exc))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises((RuntimeError, KeyboardInterrupt)):
        upscale_video(clips["mp4"], out_dir / "x.mp4", lutsr.load(lut_file),
                      VideoOptions(backend="reference"))
    assert calls["n"] == 10
    assert os.listdir(out_dir) == []
    _no_lutsr_threads()


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "lutsr.cli", *map(str, args)]


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")])}


def test_subprocess_run(tmp_path, clips, lut_file):
    dst = tmp_path / "out.mp4"
    done = subprocess.run(_cli("video", clips["mp4"], "-o", dst, "--lut", lut_file,
                               "--backend", "reference", "--luma-only"),
                          capture_output=True, text=True, env=_env(), timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    assert "25 frames 32x24 -> 64x48" in done.stdout
    assert probe(dst)["frames"] == FRAMES


def _wait_for_written_output(proc: subprocess.Popen, folder: Path) -> None:
    """Block until ``proc`` holds an output file in ``folder`` open with some frames written
    in it (it is mid-run): a condition, not a time, however loaded the machine."""
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        with contextlib.suppress(OSError):  # an fd closed meanwhile
            for fd in os.listdir(f"/proc/{proc.pid}/fd"):
                path = f"/proc/{proc.pid}/fd/{fd}"
                if os.readlink(path).startswith(str(folder)) and os.stat(path).st_size > 0:
                    return
        time.sleep(0.05)
    raise AssertionError("the run never wrote to its output")


def _has_tmpfile(folder: Path) -> bool:
    try:
        os.close(os.open(folder, os.O_TMPFILE | os.O_RDWR))
    except (AttributeError, OSError):
        return False
    return True


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killed_subprocess_leaves_nothing(tmp_path, lut_file, sig):
    src = make_clip(tmp_path / "long.mp4", frames=400, size=(64, 48), audio=False)
    before = src.read_bytes()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # A run started in the background by a script (`pytest &`) inherits SIGINT ignored, and
    # Python keeps it so: the child would not stop. Give it Ctrl-C's handler back.
    cli = [sys.executable, "-c", "import signal, sys; from lutsr.cli import main; "
           "signal.signal(signal.SIGINT, signal.default_int_handler); sys.exit(main())"]
    proc = subprocess.Popen([*cli, "video", src, "-o", out_dir / "x.mp4", "--lut", lut_file,
                             "--backend", "reference"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    try:
        _wait_for_written_output(proc, out_dir)
        proc.send_signal(sig)
        code = proc.wait(timeout=HANG_GUARD_S)  # ends as soon as the run does
    finally:
        proc.kill()
    left = os.listdir(out_dir)
    if sig == signal.SIGKILL and not _has_tmpfile(out_dir):
        # Without O_TMPFILE a killed process cannot remove its hidden temporary.
        left = [n for n in left if not (n.startswith(".x.mp4.") and "lutsr-partial" in n)]
    assert left == []
    assert src.read_bytes() == before
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL  # killed mid-run, not finished
    else:
        assert code == 130 and "no partial output" in proc.stderr.read()


@pytest.mark.parametrize("with_tqdm", [True, False])
def test_progress_shows_frames_and_fps(tmp_path, clips, lut_file, capsys, monkeypatch,
                                       with_tqdm):
    if not with_tqdm:
        monkeypatch.setitem(sys.modules, "tqdm", None)  # import fails: plain fallback
    monkeypatch.setattr(PlainBar, "update", _every_update(PlainBar.update))
    upscale_video(clips["mp4"], tmp_path / "o.mp4", lutsr.load(lut_file),
                  VideoOptions(backend="reference", progress=True, luma_only=True))
    err = capsys.readouterr().err
    assert f"{FRAMES}/{FRAMES}" in err and ("frame/s" in err or " fps" in err)


def _every_update(update):
    """Make the plain progress line print on every frame, not twice a second."""
    def wrapper(self, n=1):
        self._last = -1e9
        update(self, n)
    return wrapper


# ---------------------------------------------------------------------------
# Colour and bit depth


class _Replicate:
    """An upscaler that repeats each pixel s x s times: it keeps every mean exactly.

    With it, any change of mean luma through ``upscale_video`` comes from the
    colour conversions alone, which is what the drift tests measure.
    """

    scale = 2

    def up(self, img, out=None):
        big = np.repeat(np.repeat(img, 2, axis=0), 2, axis=1)
        if out is None:
            return big
        out[...] = big
        return out


def _photo(size=(64, 48)) -> np.ndarray:
    from PIL import Image
    with Image.open(ROOT / "lutsr" / "samples" / "astronaut.png") as im:
        return np.asarray(im.convert("RGB").resize(size, Image.BOX))


def make_photo_clip(path: Path, pix_fmt: str, colorspace: int, color_range: int,
                    frames: int = 2) -> Path:
    """A lossless (x264 ``qp=0``) clip of a photo, converted with the tagged matrix and range."""
    img = _photo()
    h, w = img.shape[:2]
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=RATE)
    vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
    vs.options = {"qp": "0", "preset": "ultrafast"}
    vs.codec_context.colorspace, vs.codec_context.color_range = colorspace, color_range
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(np.roll(img, 5 * i, axis=1), format="rgb24")
        frame = to_output_format(frame, pix_fmt, colorspace, color_range == 2)
        frame.pts = i
        for packet in vs.encode(frame):
            out.mux(packet)
    for packet in vs.encode(None):
        out.mux(packet)
    out.close()
    return path


def _plane_means(path: Path) -> np.ndarray:
    """Mean Y, Cb, Cr over all frames, in 8-bit code values (deeper formats scaled down)."""
    means = []
    for frame in decoded(path):
        bits = format_depth(frame.format.name)
        dtype = np.uint8 if bits == 8 else np.uint16
        means.append([plane_array(p, 1, dtype).mean() / 2 ** (bits - 8)
                      for p in frame.planes])
    return np.mean(means, axis=0)


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv444p", "yuv420p10le"])
@pytest.mark.parametrize(("colorspace", "color_range"), [(6, 1), (1, 1), (6, 2), (1, 2)],
                         ids=["bt601-limited", "bt709-limited", "bt601-full", "bt709-full"])
def test_rgb_mode_keeps_brightness_and_colour(tmp_path, pix_fmt, colorspace, color_range):
    """RGB mode leaves mean luma and chroma within 0.15 code values on a lossless photo clip.

    Guards against the YUV -> RGB -> YUV round trip shifting the picture: the
    wrong matrix or range, truncating instead of rounding, or swscale's fast
    4:2:0 -> RGB path (which darkened this clip by 0.7 to 1.1 code values).
    Pixel replication keeps means exactly (and an area downscale of its output
    is its input), so all the drift measured is the conversions'.
    """
    src = make_photo_clip(tmp_path / "in.mkv", pix_fmt, colorspace, color_range)
    dst = tmp_path / "out.mkv"
    upscale_video(src, dst, options=VideoOptions(crf=0), upscaler=_Replicate())
    with av.open(str(dst)) as c:
        cc = c.streams.video[0].codec_context
        # the decoder names full-range 8-bit formats yuvj*
        assert (cc.format.name.replace("yuvj", "yuv"), int(cc.colorspace),
                int(cc.color_range)) == (pix_fmt, colorspace, color_range)
    drift = _plane_means(dst) - _plane_means(src)
    assert np.abs(drift).max() <= 0.15, f"mean Y, Cb, Cr drift {drift.round(3)}"


def test_rgb_frames_use_the_tagged_matrix_and_range():
    """4:4:4 frames convert to RGB as the BT.601/BT.709 equations say, to within one code value."""
    rng = np.random.default_rng(1)
    planes = rng.integers(16, 236, (3, 16, 16)).astype(np.uint8)
    for colorspace, (kr, kb) in ((6, (0.299, 0.114)), (1, (0.2126, 0.0722))):
        for full in (False, True):
            frame = av.VideoFrame(16, 16, "yuv444p")
            for p, values in zip(frame.planes, planes, strict=True):
                plane_array(p)[:] = values
            frame.color_range = 2 if full else 1
            out = upscale_frame_rgb(frame, _Replicate(), colorspace)
            y, u, v = planes.astype(float)
            if full:
                y, u, v = y / 255, (u - 128) / 255, (v - 128) / 255
            else:
                y, u, v = (y - 16) / 219, (u - 128) / 224, (v - 128) / 224
            r, b = y + 2 * (1 - kr) * v, y + 2 * (1 - kb) * u
            g = (y - kr * r - kb * b) / (1 - kr - kb)
            want = np.clip(np.rint(np.stack([r, g, b], -1) * 255), 0, 255)
            got = out.to_ndarray()[::2, ::2].astype(float)
            assert np.abs(got - want).max() <= 1, (colorspace, full)


def test_upsample_linear():
    """Constants stay constant, ramps stay ramps, and each row matches np.interp."""
    rng = np.random.default_rng(2)
    img = rng.random((5, 7, 3)).astype(np.float32)
    for s in (2, 3, 4):
        up = _upsample_linear(img, s)
        assert up.shape == (5 * s, 7 * s, 3)
        xs = np.clip((np.arange(7 * s) + 0.5) / s - 0.5, 0, 6)
        ys = np.clip((np.arange(5 * s) + 0.5) / s - 0.5, 0, 4)
        rows = np.stack([np.interp(xs, np.arange(7), img[i, :, 0]) for i in range(5)])
        want = np.stack([np.interp(ys, np.arange(5), rows[:, j]) for j in range(7 * s)], 1)
        np.testing.assert_allclose(up[..., 0], want, atol=1e-5)
        const = np.full((4, 3), 2.0, np.float32)
        assert np.all(np.rint(_upsample_linear(const, s)) == 2)


def test_upscale_deep_is_lut_on_top_bits_plus_low_bits():
    lut = random_lut(np.random.default_rng(6), scale=2)
    upscaler = lutsr.Upscaler(lut, backend="reference")
    rng = np.random.default_rng(3)
    hi = rng.integers(0, 256, (12, 10)).astype(np.uint16)
    for low in (0, 1, 3):  # constant low bits come back exactly
        got = upscale_deep(hi * 4 + low, upscaler, 10)
        want = upscale_reference(hi.astype(np.uint8), lut).astype(np.uint16) * 4 + low
        assert_images_equal(got, want, f"10-bit, low bits {low}")
    img = rng.integers(0, 1024, (12, 10)).astype(np.uint16)
    got = upscale_deep(img, upscaler, 10)
    lo_up = _upsample_linear((img & 3).astype(np.float32), 2)
    want = upscale_reference((img >> 2).astype(np.uint8), lut).astype(float) * 4 + lo_up
    assert got.dtype == np.uint16 and got.max() <= 1023
    assert np.abs(got - want).max() <= 0.5


def make_10bit_clip(path: Path, low: int = 2, frames: int = 2) -> Path:
    """Lossless 10-bit x264 of moving bars whose luma samples all end in the bits ``low``."""
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=RATE)
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p10le"
    vs.options = {"qp": "0", "preset": "ultrafast"}
    yy, xx = np.mgrid[0:H, 0:W]
    for i in range(frames):
        frame = av.VideoFrame(W, H, "yuv420p10le")
        y = ((xx * 7 + yy * 3 + 11 * i) % 220 + 16) * 4 + low
        plane_array(frame.planes[0], 1, np.uint16)[:] = y
        for p, base in ((1, 300), (2, 700)):
            plane_array(frame.planes[p], 1, np.uint16)[:] = base + xx[::2, ::2] * 5
        frame.pts = i
        for packet in vs.encode(frame):
            out.mux(packet)
    for packet in vs.encode(None):
        out.mux(packet)
    out.close()
    return path


def test_10bit_luma_only_stays_10bit_and_exact(tmp_path, lut_file):
    """Frames: Y is the LUT of the top 8 bits, the constant low bits come back exactly.

    End to end (x264 10-bit has no lossless CRF) the output is 10-bit and close to that.
    """
    src = make_10bit_clip(tmp_path / "in10.mkv", low=2)
    lut = lutsr.load(lut_file)
    upscaler = lutsr.Upscaler(lut, backend="reference")
    wants = []
    for fin in decoded(src):
        out = upscale_frame_luma(fin, upscaler, deep=True)
        assert out.format.name == "yuv420p10le"
        y = plane_array(fin.planes[0], 1, np.uint16)
        wants.append(upscale_reference((y >> 2).astype(np.uint8), lut).astype(np.uint16) * 4 + 2)
        assert_images_equal(plane_array(out.planes[0], 1, np.uint16), wants[-1],
                            "10-bit Y")
    dst = tmp_path / "out.mkv"
    assert run(src, dst, lut_file, "--luma-only", "--crf", "0") == 0
    for fout, want in zip(decoded(dst), wants, strict=True):
        assert fout.format.name == "yuv420p10le"
        diff = np.abs(plane_array(fout.planes[0], 1, np.uint16).astype(int) - want)
        assert diff.mean() < 4, diff.mean()  # CRF 0 at 10 bits is lossy: under one 8-bit code


def test_10bit_rgb_stays_10bit(tmp_path, lut_file):
    src = make_10bit_clip(tmp_path / "in10.mkv")
    dst = tmp_path / "out.mkv"
    assert run(src, dst, lut_file) == 0
    frames = decoded(dst)
    assert {f.format.name for f in frames} == {"yuv420p10le"}
    assert (frames[0].width, frames[0].height) == (2 * W, 2 * H)
    low = plane_array(frames[0].planes[0], 1, np.uint16) & 3
    assert len(np.unique(low)) == 4  # the low bits carry information, not zeros


def test_10bit_never_silently_8bit(tmp_path, lut_file, capsys):
    src = make_10bit_clip(tmp_path / "in10.mkv")
    dst = tmp_path / "out.mkv"
    assert run(src, dst, lut_file, "--pix-fmt", "yuv420p") == 1
    err = capsys.readouterr().err
    assert "10-bit" in err and "--allow-8bit" in err and not dst.exists()
    webm = tmp_path / "out.webm"
    assert run(src, webm, lut_file, "--codec", "libvpx-vp9") == 1
    assert "libvpx-vp9" in capsys.readouterr().err and not webm.exists()
    assert run(src, dst, lut_file, "--pix-fmt", "yuv420p", "--allow-8bit") == 0
    assert {f.format.name for f in decoded(dst)} == {"yuv420p"}


# ---------------------------------------------------------------------------
# Any output size, and pipes


def make_y4m(frames: int = 5, size=(W, H)) -> bytes:
    """An uncompressed YUV4MPEG2 stream made by PyAV (no ffmpeg binary needed)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="yuv4mpegpipe") as out:
        vs = out.add_stream("wrapped_avframe", rate=RATE)
        vs.width, vs.height, vs.pix_fmt = *size, "yuv420p"
        rng = np.random.default_rng(3)
        for i in range(frames):
            img = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    return buf.getvalue()


@pytest.mark.parametrize("opt, size", [(("--outscale", "3"), (96, 72)),
                                       (("--size", "50x40"), (50, 40)),
                                       (("--outscale", "0.5"), (16, 12))])
def test_outscale_and_size(tmp_path, clips, lut_file, opt, size):
    dst = tmp_path / "out.mkv"
    assert run(clips["mkv"], dst, lut_file, "--luma-only", *opt) == 0
    info = probe(dst)
    assert info["size"] == size and info["frames"] == FRAMES


def test_outscale_frames_are_the_lut_then_resized(tmp_path, clips, lut_file):
    """x3 from an x2 LUT: the x2 upscale, resized by swscale (lossless output to compare)."""
    dst, ref = tmp_path / "x3.mkv", tmp_path / "x2.mkv"
    extra = ("--luma-only", "--codec", "ffv1", "--no-audio", "--no-subtitles")
    assert run(clips["mkv"], dst, lut_file, "--outscale", "3", *extra) == 0
    assert run(clips["mkv"], ref, lut_file, *extra) == 0
    for got, x2 in zip(decoded(dst), decoded(ref), strict=True):
        want = resize_frame(x2, (3 * W, 3 * H))
        # The luma is the LUT's, resized; the chroma (bicubic from swscale, whose
        # siting depends on frame tags a decoded file and a pipeline frame do not
        # share) only has to be close.
        luma = (slice(0, 3 * H),)
        assert np.array_equal(got.to_ndarray()[luma], want.to_ndarray()[luma])
        chroma = got.to_ndarray()[3 * H:].astype(int) - want.to_ndarray()[3 * H:]
        assert np.abs(chroma).max() <= 8 and abs(chroma.mean()) < 0.5


def test_odd_output_size_refused_in_one_line(tmp_path, clips, lut_file, capsys):
    assert run(clips["mkv"], tmp_path / "o.mkv", lut_file, "--size", "51x40") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "odd" in err[0] and "yuv444p" in err[0]


def test_y4m_pipe_round_trip(lut_file):
    stream = make_y4m(frames=5)
    done = subprocess.run(_cli("video", "-", "-o", "-", "--format", "y4m", "--lut", lut_file,
                               "--backend", "reference", "--outscale", "3"),
                          input=stream, capture_output=True, env=_env(), timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.startswith(b"YUV4MPEG2 W96 H72 ")
    assert b"5 frames 32x24 -> 96x72" in done.stderr  # the summary stays off the data
    with av.open(io.BytesIO(done.stdout)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 5
    assert {(f.width, f.height, f.format.name) for f in frames} == {(96, 72, "yuv420p")}


def test_y4m_file_output(tmp_path, lut_file):
    src = tmp_path / "in.y4m"
    src.write_bytes(make_y4m(frames=2))
    dst = tmp_path / "out.y4m"
    assert run(src, dst, lut_file) == 0
    assert probe(dst)["size"] == (2 * W, 2 * H) and probe(dst)["frames"] == 2


def test_stdout_needs_a_format(lut_file, capsys):
    assert main(["video", "-", "-o", "-", "--lut", str(lut_file)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lutsr: error: writing video to stdout needs --format (e.g. --format y4m)"]


def test_broken_output_pipe_ends_in_one_line(lut_file):
    """The reader of stdout goes away: no traceback, one line, no flush error at exit."""
    stream = make_y4m(frames=25)  # 25 x 128x96 frames: far more than a pipe buffer
    proc = subprocess.Popen(_cli("video", "-", "-o", "-", "--format", "y4m", "--lut",
                                 lut_file, "--outscale", "4", "--backend", "reference"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env())
    feeder = threading.Thread(target=lambda: _feed(proc.stdin, stream), daemon=True)
    feeder.start()
    assert proc.stdout.read(100).startswith(b"YUV4MPEG2")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=HANG_GUARD_S) in (0, 1)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = err.strip().splitlines()
    assert lines == ["lutsr: error: the output pipe was closed by its reader before the end"]


def _feed(pipe, data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.close()
    except BrokenPipeError:
        pass


def test_raw_video_pipe(lut_file):
    """Headerless frames (as ``ffmpeg -f rawvideo -pix_fmt yuv420p -`` writes) in, y4m out."""
    with av.open(io.BytesIO(make_y4m(frames=3))) as c:
        raw = b"".join(bytes(p) for p in c.demux(video=0) if p.size)
    assert len(raw) == 3 * W * H * 3 // 2
    done = subprocess.run(_cli("video", "-", "-o", "-", "--format", "y4m", "--input-size",
                               f"{W}x{H}", "--input-pix-fmt", "yuv420p", "--input-rate", "30",
                               "--lut", lut_file, "--backend", "reference", "-q"),
                          input=raw, capture_output=True, env=_env(), timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.startswith(b"YUV4MPEG2 W64 H48 F30:1 ")
    with av.open(io.BytesIO(done.stdout)) as c:
        assert len(list(c.decode(video=0))) == 3


def test_raw_video_bad_pix_fmt(lut_file, capsys):
    assert main(["video", "-", "-o", "-", "--format", "y4m", "--input-size", "4x4",
                 "--input-pix-fmt", "nonsense", "--lut", str(lut_file)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lutsr: error: unknown input pixel format 'nonsense'"]


# ---------------------------------------------------------------------------
# Containers, encoders and logs (issue 31, item 5)


def test_mpegts_holds_h264_and_aac(tmp_path, clips, lut_file):
    # FFmpeg's MPEG-TS muxer answers the codec query only for MPEG-2/MP2
    assert run(clips["mp4"], tmp_path / "o.ts", lut_file) == 0
    info = probe(tmp_path / "o.ts")
    assert info["codecs"] == {"video": "h264", "audio": "aac"}
    assert info["frames"] == FRAMES and info["size"] == (2 * W, 2 * H)


def test_avi_header_has_the_input_frame_rate(tmp_path, clips, lut_file):
    assert run(clips["mp4"], tmp_path / "o.avi", lut_file) == 0
    with av.open(str(tmp_path / "o.avi")) as c:
        v = c.streams.video[0]
        assert v.average_rate == RATE and v.time_base == Fraction(1, RATE)
        assert v.frames == FRAMES  # frame-counted: one index entry per frame, no 600 fps slots
    assert probe(tmp_path / "o.avi")["frames"] == FRAMES


@pytest.mark.skipif(not {"libvpx-vp9", "libopus"} <= av.codecs_available,
                    reason="needs libvpx-vp9 and libopus")
def test_webm_defaults_to_vp9_and_opus(tmp_path, clips, lut_file, capsys):
    assert main(["video", str(clips["mp4"]), "-o", str(tmp_path / "o.webm"), "--lut",
                 str(lut_file), "--backend", "reference"]) == 0
    assert "audio:aac -> libopus" in capsys.readouterr().out
    info = probe(tmp_path / "o.webm")
    assert info["codecs"] == {"video": "vp9", "audio": "opus"}
    assert info["frames"] == FRAMES
    with av.open(str(tmp_path / "o.webm")) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    assert abs(samples - 48000 * FRAMES // RATE) < 2000  # about one second of sound


def test_webm_without_its_encoders_is_one_line(tmp_path, clips, lut_file, capsys, monkeypatch):
    monkeypatch.setattr(av, "codecs_available", av.codecs_available - {"libopus"})
    assert run(clips["mp4"], tmp_path / "o.webm", lut_file) == 1
    err = capsys.readouterr().err.strip()
    assert "libopus" in err and "--no-audio" in err and "\n" not in err
    monkeypatch.setattr(av, "codecs_available", av.codecs_available - {"libvpx-vp9"})
    assert run(clips["mp4"], tmp_path / "o.webm", lut_file, "--no-audio") == 1
    err = capsys.readouterr().err.strip()
    assert "libvpx-vp9" in err and "\n" not in err
    assert not (tmp_path / "o.webm").exists()


@pytest.mark.parametrize("codec", ["h264_nvenc", "no_such_encoder"])
def test_unusable_encoder_is_one_clear_line(tmp_path, clips, lut_file, capsys, codec):
    assert run(clips["mp4"], tmp_path / "o.mp4", lut_file, "--codec", codec) == 1
    err = capsys.readouterr().err.strip()
    assert codec in err and "libx264" in err and "Errno" not in err and "\n" not in err
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.skipif("libx265" not in av.codecs_available, reason="needs libx265")
def test_quiet_silences_encoder_logs(tmp_path, clips, lut_file, capfd):
    args = ["video", str(clips["mp4"]), "--lut", str(lut_file), "--backend", "reference",
            "--codec", "libx265", "--no-audio"]
    assert main([*args, "-o", str(tmp_path / "loud.mkv")]) == 0
    assert "x265 [info]" in capfd.readouterr().err  # the test can see the log at all
    assert main([*args, "-o", str(tmp_path / "quiet.mkv"), "-q"]) == 0
    assert capfd.readouterr().err == ""


def test_ffmpeg_log_level_lowered_and_restored(monkeypatch):
    levels = []
    monkeypatch.setattr(av.logging, "get_level", lambda: levels[-1] if levels else
                        av.logging.INFO)
    monkeypatch.setattr(av.logging, "set_level", levels.append)
    with ffmpeg_log_level(av, quiet=True):
        assert levels == [av.logging.ERROR]
    assert levels[-1] == av.logging.INFO
    levels.clear()
    with ffmpeg_log_level(av, quiet=False):
        pass
    assert levels == []


@pytest.mark.parametrize("estimate", [27, None], ids=["wrong", "unknown"])
@pytest.mark.parametrize("with_tqdm", [True, False])
def test_progress_ends_at_the_real_frame_count(tmp_path, clips, lut_file, capsys,
                                               monkeypatch, estimate, with_tqdm):
    # MKV and MPEG-TS have no frame count: the total is estimated from the duration
    if not with_tqdm:
        monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setattr(video_pipeline, "estimate_frames", lambda *_: estimate)
    upscale_video(clips["mkv"], tmp_path / "o.mkv", lutsr.load(lut_file),
                  VideoOptions(backend="reference", progress=True, luma_only=True))
    last = capsys.readouterr().err.rstrip().split("\r")[-1]
    assert f"{FRAMES}/{FRAMES}" in last
    assert "/27" not in last and (not with_tqdm or "100%" in last)
