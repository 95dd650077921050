"""Animated GIF, WebP and APNG upscaled frame by frame; AVIF and JPEG XL in and out.

The frames an animation shows are composites (a GIF or APNG frame may hold only
the region that changed, over the frames before it); each output frame must be
the upscale of the frame as displayed, with its duration and the loop count
kept. Inputs are made here with Pillow, whose writers store partial frames.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import assert_images_equal, random_lut

import lutsr
from lutsr import imageio
from lutsr.animation import Animation, read_animation, write_animation
from lutsr.cli import main
from lutsr.reference import upscale_reference

Image = pytest.importorskip("PIL.Image")

DURATIONS = [100, 250, 70]  # GIF stores centiseconds: multiples of 10 come back exactly


@pytest.fixture(scope="module")
def lut(tmp_path_factory):
    model = random_lut(np.random.default_rng(41), scale=2)
    path = lutsr.save(model, tmp_path_factory.mktemp("lut") / "x2.lutsr")
    return model, path


def image_cli(lut, *args) -> int:
    return main(["image", *map(str, args), "--lut", str(lut[1]), "--backend", "reference",
                 "-q"])


@pytest.fixture(scope="module")
def real_lut():
    """The bundled x2 LUT, for lossy outputs: a random LUT's noise is what lossy codecs drop."""
    if "x2" not in lutsr.bundled_names():
        pytest.skip("bundled x2 LUT not installed")
    return lutsr.load_bundled("x2")


def real_cli(*args) -> int:
    return main(["image", *map(str, args), "--lut", "x2", "-q"])


def expected(frame: np.ndarray, model) -> np.ndarray:
    if frame.shape[2] == 4:
        return imageio.upscale_premultiplied(lambda x: upscale_reference(x, model), frame)
    return upscale_reference(frame, model)


def three_frames(alpha: bool = False) -> list[np.ndarray]:
    """Frames of 16 colours that differ from one another only in a small region."""
    rng = np.random.default_rng(7)
    first = (rng.integers(0, 4, (18, 22, 3)) * 80).astype(np.uint8)
    second = first.copy()
    second[4:8, 5:11] = (250, 10, 10)
    third = second.copy()
    third[10:14, 2:6] = (10, 250, 10)
    frames = [first, second, third]
    if alpha:
        frames = [np.dstack([f, np.full(f.shape[:2], 255, np.uint8)]) for f in frames]
        frames[1][0:6, 0:8, 3] = 0  # transparent where the first frame is opaque
        frames[2][12:18, 14:22, 3] = 0
        frames[2][0:6, 0:8, 3] = 255
    return frames


def smooth_frames() -> list[np.ndarray]:
    """Gradients with a block moving over them: what lossy codecs keep well (4:2:0 chroma
    included), unlike :func:`three_frames`' per-pixel noise."""
    y, x = np.mgrid[0:24, 0:32]
    base = np.stack([x * 8, y * 10, 128 + 0 * x], -1).astype(np.uint8)
    frames = []
    for i in range(3):
        f = base.copy()
        f[6:14, 4 + 8 * i:12 + 8 * i] = (230, 200, 40)
        frames.append(f)
    return frames


def frames_of(path_or_bytes) -> tuple[list[np.ndarray], list[int], object, str]:
    """The displayed frames of a file (Pillow's compositing), their durations, loop, format."""
    with Image.open(path_or_bytes) as im:
        loop, fmt = im.info.get("loop"), im.format
        frames, durations = [], []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGBA")))
            durations.append(int(round(im.info.get("duration", 0))))
    if all(f[..., 3].min() == 255 for f in frames):
        frames = [f[..., :3] for f in frames]
    return frames, durations, loop, fmt


def save_animation(path, frames, fmt, loop=0, **options):
    images = [Image.fromarray(f) for f in frames]
    if loop is not None:
        options["loop"] = loop
    images[0].save(path, format=fmt, save_all=True, append_images=images[1:],
                   duration=DURATIONS, **options)


def test_inputs_hold_partial_frames(tmp_path):
    """The inputs test compositing: Pillow stores the later frames as changed regions only."""
    save_animation(tmp_path / "a.gif", three_frames(), "GIF")
    save_animation(tmp_path / "a.png", three_frames(), "PNG")
    for name in ("a.gif", "a.png"):
        with Image.open(tmp_path / name) as im:
            im.seek(1)
            extents = im.tile[0][1] if im.tile else None
            assert extents is not None and tuple(extents) != (0, 0, 22, 18), (name, extents)


@pytest.mark.parametrize("src_fmt, suffix", [("GIF", "gif"), ("PNG", "png"),
                                             ("WEBP", "webp")])
def test_read_animation_gives_displayed_frames(tmp_path, src_fmt, suffix):
    frames = three_frames()
    options = {"lossless": True} if src_fmt == "WEBP" else {}
    save_animation(tmp_path / f"a.{suffix}", frames, src_fmt, loop=3, **options)
    anim, info = read_animation(tmp_path / f"a.{suffix}")
    assert info.format == src_fmt and anim.loop == 3 and anim.durations == DURATIONS
    for i, (got, want) in enumerate(zip(anim.frames, frames)):
        assert_images_equal(got, want, f"{src_fmt} frame {i}")


@pytest.mark.parametrize("suffix", ["gif", "png", "webp"])
def test_animated_to_apng_every_frame_exact(tmp_path, lut, suffix):
    """Any animated input to .png: an APNG whose frames are the upscales, timing kept."""
    model, _ = lut
    frames = three_frames()
    fmt = {"gif": "GIF", "png": "PNG", "webp": "WEBP"}[suffix]
    save_animation(tmp_path / f"in.{suffix}", frames, fmt, loop=2,
                   **({"lossless": True} if fmt == "WEBP" else {}))
    assert image_cli(lut, tmp_path / f"in.{suffix}", "-o", tmp_path / "out.png") == 0
    got, durations, loop, out_fmt = frames_of(tmp_path / "out.png")
    assert out_fmt == "PNG" and len(got) == 3 and durations == DURATIONS and loop == 2
    for i, frame in enumerate(frames):
        assert_images_equal(got[i], expected(frame, model), f"{suffix} -> APNG frame {i}")


def test_apng_with_alpha_upscaled_premultiplied(tmp_path, lut):
    model, _ = lut
    frames = three_frames(alpha=True)
    save_animation(tmp_path / "in.png", frames, "PNG")
    assert image_cli(lut, tmp_path / "in.png", "-o", tmp_path / "out.png") == 0
    got, durations, loop, _ = frames_of(tmp_path / "out.png")
    assert durations == DURATIONS and loop == 0
    for i, frame in enumerate(frames):
        assert_images_equal(got[i], expected(frame, model), f"RGBA APNG frame {i}")


def test_gif_output_is_pillows_quantisation_of_each_frame(tmp_path, lut):
    """GIF out: each frame as displayed equals the quantised upscale (Pillow's, one palette
    per frame); transparency on or off at alpha 128, never showing the frame before."""
    model, _ = lut
    for alpha in (False, True):
        frames = three_frames(alpha)
        save_animation(tmp_path / "in.png", frames, "PNG")
        assert image_cli(lut, tmp_path / "in.png", "-o", tmp_path / "out.gif",
                         "--overwrite") == 0
        got, durations, loop, fmt = frames_of(tmp_path / "out.gif")
        assert fmt == "GIF" and durations == DURATIONS and loop == 0 and len(got) == 3
        for i, frame in enumerate(frames):
            up = expected(frame, model)
            im, _ = imageio.gif_frame(up)
            want = np.asarray(im.convert("RGB"))
            if alpha:
                opaque = up[..., 3] >= 128
                assert_images_equal(got[i][..., 3], np.where(opaque, 255, 0).astype(np.uint8),
                                    f"frame {i} transparency")
                assert_images_equal(got[i][..., :3][opaque], want[opaque], f"frame {i} colour")
            else:
                assert_images_equal(got[i], want, f"frame {i}")


def test_webp_output_keeps_timing_and_quality_applies(tmp_path, real_lut):
    frames = smooth_frames()
    save_animation(tmp_path / "in.gif", frames, "GIF", loop=None)  # a GIF that plays once
    sizes = {}
    for quality in (30, 95):
        out = tmp_path / f"q{quality}.webp"
        assert real_cli(tmp_path / "in.gif", "-o", out, "--quality", quality) == 0
        got, durations, loop, fmt = frames_of(out)
        assert fmt == "WEBP" and durations == DURATIONS and loop == 1 and len(got) == 3
        sizes[quality] = out.stat().st_size
        if quality == 95:
            for i, frame in enumerate(frames):
                err = np.abs(got[i].astype(int) - lutsr.upscale(frame, real_lut)).mean()
                assert err < 6, (i, err)  # lossy WebP
    assert sizes[30] < sizes[95]


def test_gif_without_loop_stays_so(tmp_path, lut):
    save_animation(tmp_path / "in.gif", three_frames(), "GIF", loop=None)
    assert image_cli(lut, tmp_path / "in.gif", "-o", tmp_path / "out.gif") == 0
    *_, loop, _ = frames_of(tmp_path / "out.gif")
    assert loop is None


def test_still_output_refused_unless_first_frame(tmp_path, lut, capsys):
    model, _ = lut
    frames = three_frames()
    save_animation(tmp_path / "in.gif", frames, "GIF")
    for suffix in ("jpg", "bmp", "tif", "avif"):
        assert image_cli(lut, tmp_path / "in.gif", "-o", tmp_path / f"out.{suffix}") == 1
        err = capsys.readouterr().err
        assert "has 3 frames (animated GIF)" in err and "--first-frame" in err
        assert err.count("\n") == 1  # one line (-q: no summary)
        assert not (tmp_path / f"out.{suffix}").exists()
    assert image_cli(lut, tmp_path / "in.gif", "-o", tmp_path / "first.bmp",
                     "--first-frame") == 0
    assert_images_equal(np.asarray(Image.open(tmp_path / "first.bmp")),
                        expected(frames[0], model), "first frame")
    # --first-frame to an animated format: one still image
    assert image_cli(lut, tmp_path / "in.gif", "-o", tmp_path / "first.png",
                     "--first-frame") == 0
    with Image.open(tmp_path / "first.png") as im:
        assert getattr(im, "n_frames", 1) == 1


def test_folder_default_names_and_pipe(tmp_path, lut, capfdbinary):
    """In a folder a GIF becomes PNG (an APNG when animated); - as output writes the input's
    format (an animated GIF) unless --format says otherwise."""
    model, _ = lut
    src = tmp_path / "in"
    src.mkdir()
    frames = three_frames()
    save_animation(src / "anim.gif", frames, "GIF")
    assert image_cli(lut, src, "-o", tmp_path / "out") == 0
    got, durations, *_ = frames_of(tmp_path / "out" / "anim.png")
    assert len(got) == 3 and durations == DURATIONS
    capfdbinary.readouterr()
    assert image_cli(lut, src / "anim.gif", "-o", "-") == 0
    out = capfdbinary.readouterr().out
    got, durations, loop, fmt = frames_of(io.BytesIO(out))
    assert fmt == "GIF" and len(got) == 3 and durations == DURATIONS
    assert image_cli(lut, src / "anim.gif", "-o", "-", "--format", "png") == 0
    got, *_ = frames_of(io.BytesIO(capfdbinary.readouterr().out))
    assert_images_equal(got[2], expected(frames[2], model), "pipe APNG frame 2")


def test_multi_page_tiff_is_not_an_animation(tmp_path, lut, capsys):
    """Pages are not frames: a multi-page TIFF is refused even to .png, unless --first-frame."""
    model, _ = lut
    frames = three_frames()
    pages = [Image.fromarray(f) for f in frames]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    assert image_cli(lut, tmp_path / "pages.tif", "-o", tmp_path / "out.png") == 1
    err = capsys.readouterr().err
    assert "has 3 frames (TIFF pages)" in err and "--first-frame" in err
    assert image_cli(lut, tmp_path / "pages.tif", "-o", tmp_path / "out.png",
                     "--first-frame") == 0
    assert_images_equal(np.asarray(Image.open(tmp_path / "out.png")),
                        expected(frames[0], model), "first page")


def test_write_animation_refuses_mixed_shapes_and_still_formats():
    frames = three_frames()
    with pytest.raises(imageio.ImageError, match="one shape"):
        write_animation(io.BytesIO(), Animation([frames[0], frames[1][:4]], [1, 1], 0), "GIF")
    with pytest.raises(imageio.ImageError, match="not written as an animation"):
        write_animation(io.BytesIO(), Animation(frames, DURATIONS, 0), "JPEG")


# ------------------------------------------------------------------ AVIF and JPEG XL


def test_avif_in_and_out(tmp_path, real_lut):
    if not imageio.has_format("AVIF"):
        pytest.skip("this Pillow has no AVIF")
    src = np.dstack([smooth_frames()[1], np.full((24, 32), 255, np.uint8)])
    src[:4, :4, 3] = 0
    Image.fromarray(src).save(tmp_path / "in.png")
    sizes = {}
    for quality in (20, 90):
        out = tmp_path / f"q{quality}.avif"
        assert real_cli(tmp_path / "in.png", "-o", out, "--quality", quality) == 0
        with Image.open(out) as im:
            assert im.format == "AVIF" and im.size == (64, 48) and im.mode == "RGBA"
            got = np.asarray(im)
        sizes[quality] = out.stat().st_size
    assert sizes[20] < sizes[90]
    want = imageio.upscale_premultiplied(lambda x: lutsr.upscale(x, real_lut), src)
    visible = want[..., 3] == 255
    assert np.abs(got.astype(int) - want)[visible].mean() < 6  # lossy AVIF
    assert got[:4, :4, 3].max() < 8  # the transparent corner stays transparent
    # AVIF in: read by Pillow, upscaled as any 8-bit image
    assert real_cli(tmp_path / "q90.avif", "-o", tmp_path / "back.png") == 0
    assert_images_equal(np.asarray(Image.open(tmp_path / "back.png")),
                        imageio.upscale_premultiplied(lambda x: lutsr.upscale(x, real_lut), got),
                        "AVIF in")


def test_jxl_refused_in_one_line_without_the_plugin(tmp_path, lut, capsys, monkeypatch):
    monkeypatch.setattr(imageio, "has_format", lambda fmt: fmt != "JXL")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "in.png")
    (tmp_path / "in.jxl").write_bytes(b"\xff\x0a" + bytes(30))
    for src, dst in (("in.png", "out.jxl"), ("in.jxl", "out.png")):
        assert image_cli(lut, tmp_path / src, "-o", tmp_path / dst) == 1
        err = capsys.readouterr().err
        assert "JXL" in err and "pip install 'lutsr[jxl]'" in err and err.count("\n") == 1
        assert not (tmp_path / dst).exists()


def test_jxl_round_trip_with_the_plugin(tmp_path, real_lut):
    pytest.importorskip("pillow_jxl")
    src = smooth_frames()[2]
    Image.fromarray(src).save(tmp_path / "in.png")
    assert real_cli(tmp_path / "in.png", "-o", tmp_path / "out.jxl") == 0
    with Image.open(tmp_path / "out.jxl") as im:
        assert im.format == "JXL" and im.size == (64, 48)
        got = np.asarray(im.convert("RGB"))
    assert np.abs(got.astype(int) - lutsr.upscale(src, real_lut)).mean() < 6
    assert real_cli(tmp_path / "out.jxl", "-o", tmp_path / "back.png") == 0
    assert_images_equal(np.asarray(Image.open(tmp_path / "back.png")),
                        lutsr.upscale(got, real_lut), "JPEG XL in")
