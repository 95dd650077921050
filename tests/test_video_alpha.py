"""`lutsr video` with alpha (kept premultiplied, or refused, or dropped) and rotated --size.

Clips are made here with PyAV: a few 16x12 frames of random colour under an
alpha that is transparent, opaque and in between (PNG-in-MOV ``rgba``,
QuickTime Animation ``argb``, FFV1 ``yuva420p``, y4m ``C444alpha``). Outputs
are read back with PyAV and compared with lutsr's own image path on the
decoded input frames (:func:`lutsr.imageio.upscale_premultiplied`).
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_GUARD_S, random_lut

import lutsr
from lutsr.cli import main
from lutsr.deep import upscale_deep
from lutsr.imageio import premultiply, unpremultiply, upscale_premultiplied
from lutsr.reference import upscale_reference
from lutsr.video.avutil import has_alpha, plane_array, sws_flags
from lutsr.video.colour import TO_RGB_FLAGS
from lutsr.video.encoding import alpha_pix_fmt
from lutsr.video.frames import resize_frame
from lutsr.video.inputs import quarter_turned

av = pytest.importorskip("av")

W, H, FRAMES = 16, 12, 2


def _rgba(rng: np.random.Generator, size=(W, H)) -> np.ndarray:
    """Random colour under an alpha of 4x4 blocks: 0, 255 and random values."""
    w, h = size
    img = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    blocks = rng.choice([0, 255, 1], size=(h // 4 + 1, w // 4 + 1))
    block = np.kron(blocks, np.ones((4, 4), int))[:h, :w]
    img[..., 3] = np.where(block == 1, img[..., 3], block)
    return img


def make_alpha_clip(path: Path, codec: str, pix_fmt: str, muxer: str | None = None,
                    frames: int = FRAMES) -> Path:
    """A few frames of :func:`_rgba` encoded as ``codec`` in ``pix_fmt``."""
    rng = np.random.default_rng(7)
    options = {"strict": "-1"} if muxer == "yuv4mpegpipe" else None  # C444alpha
    with av.open(str(path), "w", format=muxer, options=options) as out:
        vs = out.add_stream(codec, rate=25)
        vs.width, vs.height, vs.pix_fmt = W, H, pix_fmt
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_rgba(rng), format="rgba").reformat(
                format=pix_fmt)
            frame.pts = i
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    return path


def decoded(path: Path) -> list:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("alpha")
    return {
        "png": make_alpha_clip(folder / "png.mov", "png", "rgba"),
        "qtrle": make_alpha_clip(folder / "qtrle.mov", "qtrle", "argb"),
        "ffv1": make_alpha_clip(folder / "ffv1.mkv", "ffv1", "yuva420p"),
        "y4m": make_alpha_clip(folder / "in.y4m", "wrapped_avframe", "yuva444p",
                               muxer="yuv4mpegpipe"),
    }


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory):
    lut = random_lut(np.random.default_rng(5), scale=2)
    return lutsr.save(lut, tmp_path_factory.mktemp("lut") / "x2.lutsr")


@pytest.fixture(scope="module")
def up(lut_file):
    return lutsr.Upscaler(lutsr.load(lut_file), backend="reference").up


def run(src, dst, lut_file, *extra) -> int:
    return main(["video", str(src), "-o", str(dst), "--lut", str(lut_file),
                 "--backend", "reference", "-q", *extra])


def _rgba_of(frame) -> np.ndarray:
    # as the pipeline converts (the decoded frames here are RGB or BT.601 limited range)
    return frame.reformat(format="rgba", src_colorspace=6, src_color_range=1,
                          interpolation=sws_flags(TO_RGB_FLAGS)).to_ndarray()


def _luma(rgba: np.ndarray) -> np.ndarray:
    """BT.601 limited-range luma, rounded."""
    r, g, b = (rgba[..., c].astype(np.float64) for c in range(3))
    return np.rint(16 + (0.299 * r + 0.587 * g + 0.114 * b) * 219 / 255).astype(int)


# ---------------------------------------------------------------------------
# Alpha kept


@pytest.mark.parametrize("name, extra, pix_fmt", [
    ("png", ("--codec", "png", "--pix-fmt", "rgba"), "rgba"),
    ("png", ("--codec", "png"), "rgba"),  # the alpha format picked by default
    ("qtrle", ("--codec", "qtrle"), "argb"),
])
def test_rgb_alpha_is_the_premultiplied_upscale(tmp_path, clips, lut_file, up, name, extra,
                                                pix_fmt):
    """Lossless RGB in and out: every channel equals the image path's premultiplied upscale."""
    dst = tmp_path / "out.mov"
    assert run(clips[name], dst, lut_file, *extra) == 0
    got = decoded(dst)
    assert len(got) == FRAMES
    for fin, fout in zip(decoded(clips[name]), got, strict=True):
        assert fout.format.name == pix_fmt
        want = upscale_premultiplied(up, fin.to_ndarray(format="rgba"))
        assert np.array_equal(fout.to_ndarray(format="rgba"), want)
        assert want[..., 3].min() == 0 and want[..., 3].max() == 255  # not all opaque


def test_straight_alpha_upscales_channels_as_stored(tmp_path, clips, lut_file, up):
    dst = tmp_path / "out.mov"
    assert run(clips["png"], dst, lut_file, "--codec", "png", "--straight-alpha") == 0
    for fin, fout in zip(decoded(clips["png"]), decoded(dst), strict=True):
        rgba = fin.to_ndarray(format="rgba")
        assert np.array_equal(fout.to_ndarray(format="rgba"), up(rgba))
        assert not np.array_equal(up(rgba), upscale_premultiplied(up, rgba))


@pytest.mark.parametrize("name, suffix, extra, pix_fmt", [
    ("ffv1", ".mkv", ("--codec", "ffv1", "--pix-fmt", "yuva420p"), "yuva420p"),
    ("ffv1", ".mkv", ("--codec", "ffv1"), "yuva420p"),
    ("y4m", ".y4m", (), "yuva444p"),
    ("png", ".mkv", ("--codec", "ffv1"), "bgra"),
])
def test_yuv_alpha_plane_is_the_premultiplied_upscale(tmp_path, clips, lut_file, up, name,
                                                      suffix, extra, pix_fmt):
    """Alpha planes exactly; colour through YUV within its rounding."""
    dst = tmp_path / f"out{suffix}"
    assert run(clips[name], dst, lut_file, *extra) == 0
    got = decoded(dst)
    assert len(got) == FRAMES
    for fin, fout in zip(decoded(clips[name]), got, strict=True):
        assert fout.format.name == pix_fmt
        want = upscale_premultiplied(up, _rgba_of(fin))
        if pix_fmt.startswith("yuva"):
            assert np.array_equal(plane_array(fout.planes[3]), want[..., 3])
            luma = plane_array(fout.planes[0])
        else:
            assert np.array_equal(fout.to_ndarray(format="rgba")[..., 3], want[..., 3])
            luma = _luma(fout.to_ndarray(format="rgba"))
        # where alpha is high the premultiply loses no colour: the YUV rounding remains
        solid = want[..., 3] >= 128
        diff = np.abs(luma[solid].astype(int) - _luma(want)[solid])
        assert solid.sum() > 50 and diff.max() <= 2 and diff.mean() < 0.7, diff
    if name == "y4m":
        assert b" C444alpha " in dst.read_bytes()[:80]


@pytest.mark.skipif("libvpx-vp9" not in av.codecs_available, reason="no libvpx-vp9")
def test_webm_keeps_alpha_as_vp9_yuva420p(tmp_path, clips, lut_file, up):
    """VP9's alpha (a second 4:2:0 stream): yuva420p, the one layout libvpx opens with alpha."""
    dst = tmp_path / "out.webm"
    assert run(clips["png"], dst, lut_file, "--crf", "4") == 0
    with av.open(str(dst)) as c:
        vp9 = av.CodecContext.create("libvpx-vp9", "r")  # FFmpeg's own vp9 drops alpha
        got = [f for packet in c.demux(video=0) for f in vp9.decode(packet)]
    assert len(got) == FRAMES
    for fin, fout in zip(decoded(clips["png"]), got, strict=True):
        assert fout.format.name == "yuva420p"
        want = upscale_premultiplied(up, fin.to_ndarray(format="rgba"))[..., 3].astype(int)
        diff = np.abs(plane_array(fout.planes[3]).astype(int) - want)
        assert diff.mean() < 6, diff.mean()  # lossy, but the alpha, not 255 everywhere


def test_rgb_input_written_as_yuv_gets_a_yuv_matrix(tmp_path, lut_file, up):
    """PNG-in-MOV is tagged RGB (matrix 0); its YUV output must not be (x264 would store GBR)."""
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([xx * 15, yy * 20, np.full_like(xx, 200)], axis=-1).astype(np.uint8)
    src = tmp_path / "in.mov"
    with av.open(str(src), "w") as out:
        vs = out.add_stream("png", rate=25)
        vs.width, vs.height, vs.pix_fmt = W, H, "rgb24"
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = 0
        for packet in [*vs.encode(frame), *vs.encode(None)]:
            out.mux(packet)
    dst = tmp_path / "out.mkv"
    assert run(src, dst, lut_file, "--codec", "libx264", "--crf", "0", "--pix-fmt",
               "yuv444p") == 0
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.colorspace == 6  # BT.601 for SD
        got = next(c.decode(video=0))
    assert got.format.name.startswith("yuv")
    diff = np.abs(got.to_ndarray(format="rgb24").astype(int) - up(img))
    assert diff.mean() < 1.0, diff.mean()


def test_resize_is_inside_the_premultiplied_part(tmp_path, clips, lut_file, up):
    """--size: LUT, swscale resize, then unpremultiply (colour hidden under alpha 0 stays out)."""
    dst = tmp_path / "out.mov"
    assert run(clips["png"], dst, lut_file, "--codec", "png", "--size", "20x30") == 0
    for fin, fout in zip(decoded(clips["png"]), decoded(dst), strict=True):
        big = av.VideoFrame.from_ndarray(up(premultiply(fin.to_ndarray(format="rgba"))),
                                         format="rgba")
        want = unpremultiply(resize_frame(big, (20, 30)).to_ndarray())
        assert (fout.width, fout.height) == (20, 30)
        assert np.array_equal(fout.to_ndarray(format="rgba"), want)


def test_deep_alpha_stays_deep(tmp_path, lut_file):
    """10-bit alpha (as ProRes 4444 has) is kept at 10 bits: the LUT on its top 8 bits."""
    upscaler = lutsr.Upscaler(lutsr.load(lut_file), backend="reference")
    src = make_alpha_clip(tmp_path / "in.mkv", "ffv1", "yuva444p10le")
    dst = tmp_path / "out.mkv"
    assert run(src, dst, lut_file, "--codec", "ffv1") == 0
    for fin, fout in zip(decoded(src), decoded(dst), strict=True):
        assert fout.format.name == "yuva444p10le"
        a16 = fin.reformat(format="rgba64le").to_ndarray()[..., 3]  # as the pipeline reads it
        want = np.rint(upscale_deep(a16, upscaler, 16) * (1023 / 65535))
        assert np.array_equal(plane_array(fout.planes[3], 1, np.uint16), want)
        eight_bit = np.rint(upscaler.up((a16 >> 8).astype(np.uint8)) * (1023 / 255))
        assert not np.array_equal(want, eight_bit)  # the low bits count


@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.uint16, 65535)])
def test_premultiply_rounds_exactly(dtype, top):
    rng = np.random.default_rng(3)
    px = rng.integers(0, top + 1, (64, 64, 4)).astype(dtype)
    px[0, :, 3] = 0
    px[1, :, 3] = top
    pre = premultiply(px)
    c, a = px[..., :3].astype(np.float64), px[..., 3:].astype(np.float64)
    assert np.array_equal(pre[..., :3], np.rint(c * a / top))
    assert np.array_equal(pre[..., 3], px[..., 3])
    back = unpremultiply(pre)
    p, a = pre[..., :3].astype(np.float64), pre[..., 3:].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.where(a == 0, 0, np.minimum(top, np.floor(p * top / a + 0.5)))
    assert np.array_equal(back[..., :3], want)
    assert np.array_equal(back[1], px[1])  # opaque pixels unchanged


# ---------------------------------------------------------------------------
# Luma-only


def test_luma_only_needs_straight_alpha(tmp_path, clips, lut_file, capsys):
    dst = tmp_path / "out.mkv"
    assert run(clips["ffv1"], dst, lut_file, "--codec", "ffv1", "--luma-only") == 1
    err = capsys.readouterr().err.strip()
    assert "--straight-alpha" in err and "\n" not in err
    assert not dst.exists()


def test_luma_only_straight_alpha_runs_the_lut_on_alpha(tmp_path, clips, lut_file):
    lut = lutsr.load(lut_file)
    dst = tmp_path / "out.mkv"
    assert run(clips["ffv1"], dst, lut_file, "--codec", "ffv1", "--luma-only",
               "--straight-alpha") == 0
    for fin, fout in zip(decoded(clips["ffv1"]), decoded(dst), strict=True):
        assert fout.format.name == "yuva420p"
        for p in (0, 3):  # luma and alpha: the LUT's, exactly
            want = upscale_reference(plane_array(fin.planes[p]), lut)
            assert np.array_equal(plane_array(fout.planes[p]), want)


def test_luma_only_deep_alpha(tmp_path, lut_file):
    """10-bit YUV + alpha: luma and alpha through :func:`lutsr.deep.upscale_deep`."""
    upscaler = lutsr.Upscaler(lutsr.load(lut_file), backend="reference")
    src = make_alpha_clip(tmp_path / "in.mkv", "ffv1", "yuva420p10le")
    dst = tmp_path / "out.mkv"
    assert run(src, dst, lut_file, "--codec", "ffv1", "--luma-only", "--straight-alpha") == 0
    for fin, fout in zip(decoded(src), decoded(dst), strict=True):
        assert fout.format.name == "yuva420p10le"
        for p in (0, 3):
            want = upscale_deep(plane_array(fin.planes[p], 1, np.uint16),
                                      upscaler, 10)
            assert np.array_equal(plane_array(fout.planes[p], 1, np.uint16), want)


def test_y4m_alpha_through_pipes(lut_file, up):
    """``ffmpeg -pix_fmt yuva444p -f yuv4mpegpipe - | lutsr video - -o - --format y4m``."""
    with tempfile.TemporaryDirectory() as tmp:
        src = make_alpha_clip(Path(tmp) / "in.y4m", "wrapped_avframe", "yuva444p",
                              muxer="yuv4mpegpipe")
        stream = src.read_bytes()
        frames = decoded(src)
    done = subprocess.run([sys.executable, "-m", "lutsr.cli", "video", "-", "-o", "-",
                           "--format", "y4m", "--lut", str(lut_file), "--backend",
                           "reference", "-q"], input=stream, capture_output=True,
                          timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.startswith(b"YUV4MPEG2 W32 H24 ") and b" C444alpha" in done.stdout[:80]
    with av.open(io.BytesIO(done.stdout)) as c:
        got = list(c.decode(video=0))
    assert len(got) == FRAMES
    for fin, fout in zip(frames, got, strict=True):
        want = upscale_premultiplied(up, _rgba_of(fin))
        assert np.array_equal(plane_array(fout.planes[3]), want[..., 3])


# ---------------------------------------------------------------------------
# Refused, or dropped on request


@pytest.mark.parametrize("name, dst_name, extra, words", [
    ("png", "out.mp4", (), "libx264"),
    ("ffv1", "out.mkv", ("--codec", "ffv1", "--pix-fmt", "yuv420p"), "--pix-fmt yuva420p"),
    ("ffv1", "out.y4m", ("--pix-fmt", "yuva420p"), "y4m output holds only as yuva444p"),
    ("y4m", "out.mkv", ("--codec", "libx264"), "libx264"),
    ("png", "out.webm", ("--pix-fmt", "yuva444p"), "libvpx-vp9 keeps alpha only as yuva420p"),
])
def test_output_without_alpha_is_refused(tmp_path, clips, lut_file, capsys, name, dst_name,
                                         extra, words):
    dst = tmp_path / dst_name
    assert run(clips[name], dst, lut_file, *extra) == 1
    err = capsys.readouterr().err.strip()
    assert words in err and "--no-alpha" in err and "\n" not in err, err
    assert not dst.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, dst_name, extra, pix_fmt", [
    ("png", "out.mkv", ("--codec", "libx264"), "yuvj420p"),  # PNG is full range
    ("ffv1", "out.mkv", ("--codec", "ffv1"), "yuv420p"),
    ("y4m", "out.y4m", (), "yuv444p"),
])
def test_no_alpha_drops_it(tmp_path, clips, lut_file, up, name, dst_name, extra, pix_fmt):
    dst = tmp_path / dst_name
    assert run(clips[name], dst, lut_file, "--no-alpha", *extra) == 0
    got = decoded(dst)
    assert len(got) == FRAMES and {f.format.name for f in got} == {pix_fmt}


def test_opaque_input_is_unchanged_by_the_alpha_options(tmp_path, lut_file):
    """No alpha in: --no-alpha and --straight-alpha change nothing."""
    src = make_alpha_clip(tmp_path / "in.mkv", "ffv1", "yuv444p")
    outs = []
    for i, extra in enumerate([(), ("--no-alpha",), ("--straight-alpha",)]):
        outs.append(tmp_path / f"out{i}.mkv")
        assert run(src, outs[-1], lut_file, "--codec", "ffv1", *extra) == 0
    frames = [[f.to_ndarray() for f in decoded(p)] for p in outs]
    assert all(np.array_equal(a, b) for other in frames[1:]
               for a, b in zip(frames[0], other, strict=True))


def test_alpha_pix_fmt_choices():
    assert alpha_pix_fmt("yuva420p", ["yuv420p", "yuva420p", "yuva444p"], "matroska") \
        == "yuva420p"
    assert alpha_pix_fmt("rgba", ["rgb24", "rgba", "rgb48be", "rgba64be", "ya8"],
                               "mov") == "rgba"
    assert alpha_pix_fmt("yuva444p10le", ["rgb24", "rgba", "rgba64be", "ya8"],
                               "mov") == "rgba64be"
    assert alpha_pix_fmt("rgba", ["yuva420p", "yuva444p", "bgra"], "matroska") == "bgra"
    assert alpha_pix_fmt("yuva420p", [], "yuv4mpegpipe") == "yuva444p"
    assert alpha_pix_fmt("rgba", ["yuv420p", "yuv444p"], "mp4") is None
    assert [has_alpha(n) for n in ("rgba", "ya8", "yuva420p", "bgr0", "pal8", "gray")] \
        == [True, True, True, False, False, False]


# ---------------------------------------------------------------------------
# --size and --outscale on a rotated video: the displayed size, as for images


def make_rotated_clip(path: Path, rotation: float | None, size=(32, 24)) -> Path:
    """Two H.264 frames stored ``size``, with a display rotation (counter-clockwise degrees)."""
    w, h = size
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"preset": "ultrafast"}
        if rotation is not None:
            vs.set_display_rotation(rotation)
        for i in range(2):
            img = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    return path


def _stored_and_rotation(path: Path):
    frames = decoded(path)
    return (frames[0].width, frames[0].height), frames[0].rotation, len(frames)


@pytest.mark.parametrize("rotation, opt, stored", [
    (90, ("--size", "48x64"), (64, 48)),   # displayed 24x32 -> 48x64
    (-90, ("--size", "48x64"), (64, 48)),
    (180, ("--size", "48x64"), (48, 64)),  # a half turn swaps nothing
    (None, ("--size", "48x64"), (48, 64)),
    (90, ("--outscale", "1.5"), (48, 36)),
])
def test_size_is_the_displayed_size(tmp_path, lut_file, capsys, rotation, opt, stored):
    src = make_rotated_clip(tmp_path / "in.mp4", rotation)
    dst = tmp_path / "out.mp4"
    assert main(["video", str(src), "-o", str(dst), "--lut", str(lut_file), "--backend",
                 "reference", "--luma-only", *opt]) == 0
    size, turned, frames = _stored_and_rotation(dst)
    assert size == stored and frames == 2
    assert turned == _stored_and_rotation(src)[1]
    out = capsys.readouterr().out
    assert f"32x24 -> {stored[0]}x{stored[1]}" in out
    assert (f"displayed 24x32 -> {stored[1]}x{stored[0]}" in out) == (rotation in (90, -90))


@pytest.mark.parametrize("matrix_rotation, turned", [(0, False), (90, True), (-90, True),
                                                      (180, False), (270, True)])
def test_quarter_turned(matrix_rotation, turned):
    theta = np.radians(matrix_rotation)
    c, s = np.cos(theta), np.sin(theta)
    matrix = [round(c * 65536), round(-s * 65536), 0, round(s * 65536), round(c * 65536), 0,
              0, 0, 1 << 30]
    assert quarter_turned(matrix, {}) is turned
    assert quarter_turned(None, {"rotate": str(matrix_rotation % 360)}) is turned
    assert quarter_turned(None, {}) is False
