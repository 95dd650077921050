"""Image files beyond the pixels: alpha, EXIF and ICC metadata, and the writing options.

Alpha is upscaled premultiplied (:func:`lutsr.imageio.upscale_premultiplied`)
so that the colour hidden under fully transparent pixels cannot reach the
visible ones; EXIF and ICC travel from input to output; PNG compression and
JPEG subsampling are options. LUTs are small and run on the numpy reference
backend, which is the specification.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from conftest import assert_images_equal, random_lut, with_base

import lutsr
from lutsr import imageio
from lutsr.cli import main
from lutsr.imageio import premultiply, read_image, unpremultiply, upscale_premultiplied, write_image
from lutsr.reference import upscale_reference

Image = pytest.importorskip("PIL.Image")

ARTIST, DATETIME, ORIENTATION = 0x013B, 0x0132, 0x0112
EXIF_IFD, DATETIME_ORIGINAL, PIXEL_X, PIXEL_Y = 0x8769, 0x9003, 0xA002, 0xA003


@pytest.fixture(scope="module")
def smooth_lut():
    """An x2 LUT that interpolates like bicubic (zero tables over a bicubic base).

    An interpolating upscaler is what makes transparent colour bleed: each
    output pixel near an edge mixes input pixels from both sides.
    """
    model = random_lut(np.random.default_rng(0), scale=2)
    stage = dataclasses.replace(model.stages[0], tables=(np.zeros_like(model.stages[0].tables[0]),))
    return with_base(lutsr.LUT((stage,), model.interval, "bicubic"), np.random.default_rng(0), 0)


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory, smooth_lut):
    return lutsr.save(smooth_lut, tmp_path_factory.mktemp("lut") / "x2.lutsr")


def image_cli(lut_file, *args) -> int:
    return main(["image", *map(str, args), "--lut", str(lut_file), "--backend", "reference",
                 "-q"])


def reference_upscaler(lut):
    return lambda pixels: upscale_reference(pixels, lut)


# ---------------------------------------------------------------------------
# Premultiplied alpha


def test_premultiply_rounds_exactly():
    """Every (colour, alpha) pair against float arithmetic: guards the integer rounding."""
    c, a = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    straight = np.stack([c, a], -1).astype(np.uint8)
    pre = premultiply(straight)
    assert_images_equal(pre[..., 0], np.round(c * a / 255).astype(np.uint8), "premultiply")
    assert_images_equal(pre[..., 1], straight[..., 1], "alpha")
    back = unpremultiply(pre)
    exact = pre[..., 0].astype(int) * 255 / np.maximum(a, 1)
    want = np.where(a > 0, np.minimum(255, np.floor(exact + 0.5)), 0)
    assert_images_equal(back[..., 0], want.astype(np.uint8), "unpremultiply")
    # the round trip loses only what the premultiply cannot hold: exact when opaque,
    # within 1 from alpha 128 up
    assert_images_equal(back[a == 255], straight[a == 255], "opaque round trip")
    assert np.abs(back[..., 0].astype(int) - c)[a >= 128].max() <= 1


def test_unpremultiply_clips_overshoot_and_clears_transparent():
    pre = np.array([[[200, 90, 10, 100], [7, 7, 7, 0]]], np.uint8)
    assert unpremultiply(pre).tolist() == [[[255, 230, 26, 100], [0, 0, 0, 0]]]


def test_alpha_helpers_check_layout():
    with pytest.raises(ValueError, match="2 or 4 channels"):
        premultiply(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        unpremultiply(np.zeros((4, 4, 4), np.float32))


def edge_image(hidden: int, channels: int = 4) -> np.ndarray:
    """An opaque colour disc on a transparent field whose hidden colour is ``hidden``.

    The alpha edge is hard (0 or 255) with a few half-transparent pixels, the
    layouts an editor produces around a cut-out object.
    """
    y, x = np.mgrid[:16, :20]
    inside = (y - 8) ** 2 + (x - 9) ** 2 < 30
    alpha = np.where(inside, 255, 0).astype(np.uint8)
    alpha[8, 3] = 128  # a soft pixel next to the hidden colour
    img = np.full((16, 20, channels), hidden, np.uint8)
    colour = (200, 40, 90)[:channels - 1] if channels == 4 else (170,)
    img[alpha > 0, :-1] = colour
    img[..., -1] = alpha
    return img


def composite(rgba: np.ndarray, background) -> np.ndarray:
    """Straight-alpha ``rgba`` over an opaque background, float code values."""
    a = rgba[..., -1:].astype(float) / 255
    return rgba[..., :-1] * a + np.asarray(background, float) * (1 - a)


@pytest.mark.parametrize("channels", [4, 2])
def test_transparent_colour_does_not_bleed(smooth_lut, channels):
    """Transparent black and transparent white give the same picture; straight mode does not.

    Guards against colour fringes: the hidden colour of alpha-0 pixels must
    not change any visible pixel, over any background.
    """
    up = reference_upscaler(smooth_lut)
    black, white = edge_image(0, channels), edge_image(255, channels)
    pre_black, pre_white = upscale_premultiplied(up, black), upscale_premultiplied(up, white)
    straight_black, straight_white = up(black), up(white)
    visible = pre_black[..., -1] > 0
    assert visible.sum() > 100 and (~visible).sum() > 100
    for background in ((0,) * 3, (255,) * 3, (30, 200, 120)):
        background = background[:channels - 1]
        diff = np.abs(composite(pre_black, background) - composite(pre_white, background))
        assert diff[visible].max() <= 1, f"premultiplied over {background}: {diff.max():.2f}"
        fringe = np.abs(composite(straight_black, background)
                        - composite(straight_white, background))
        assert fringe[visible].max() > 40, f"straight mode shows no fringe over {background}"


def test_premultiplied_composite_is_the_premultiplied_upscale(smooth_lut):
    """Over black, the written straight colour times alpha is the upscaled premultiplied
    colour within the un-premultiply rounding (half a code value), wherever it did not clip."""
    up = reference_upscaler(smooth_lut)
    rgba = np.random.default_rng(4).integers(0, 256, (12, 14, 4), dtype=np.uint8)
    pre_up = up(premultiply(rgba))
    out = upscale_premultiplied(up, rgba)
    ok = pre_up[..., :-1] <= pre_up[..., -1:]
    err = np.abs(composite(out, (0, 0, 0)) - pre_up[..., :-1])
    assert err[ok].max() <= 0.5 + 1e-9


def test_opaque_alpha_image_equals_colour_upscale(smooth_lut):
    up = reference_upscaler(smooth_lut)
    rgb = np.random.default_rng(5).integers(0, 256, (10, 11, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((10, 11, 1), 255, np.uint8)], -1)
    out = upscale_premultiplied(up, rgba)
    assert (out[..., 3] == 255).all()
    assert_images_equal(out[..., :3], up(rgb), "opaque RGBA")


def test_cli_alpha_default_and_straight_flag(tmp_path, lut_file):
    for hidden in (0, 255):
        Image.fromarray(edge_image(hidden)).save(tmp_path / f"in{hidden}.png")
        for flag in ((), ("--straight-alpha",)):
            name = f"out{hidden}{'-straight' if flag else ''}.png"
            assert image_cli(lut_file, tmp_path / f"in{hidden}.png", "-o", tmp_path / name,
                             *flag) == 0

    def read(name):
        return np.asarray(Image.open(tmp_path / name))
    assert_images_equal(read("out0.png"), read("out255.png"), "premultiplied")
    assert (read("out0-straight.png") != read("out255-straight.png")).any()


# ---------------------------------------------------------------------------
# Metadata


def exif_block(orientation: int | None = 6, pixel_size: tuple | None = None) -> bytes:
    exif = Image.Exif()
    exif[ARTIST] = "lutsr test"
    exif[DATETIME] = "2026:01:02 03:04:05"
    if orientation is not None:
        exif[ORIENTATION] = orientation
    sub = exif.get_ifd(EXIF_IFD)
    sub[DATETIME_ORIGINAL] = "2025:12:31 23:59:59"
    if pixel_size:
        sub[PIXEL_X], sub[PIXEL_Y] = pixel_size
    return exif.tobytes()


def srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("suffix", ["png", "jpg", "webp", "tif"])
def test_exif_and_icc_survive_and_orientation_applies_once(tmp_path, lut_file, smooth_lut,
                                                           suffix):
    """A sideways photo (orientation 6) comes out upright, tagged 1, its tags kept.

    Guards against the two orientation bugs: not applying it (a sideways
    output) and applying it twice (pixels rotated and the tag still 6).
    """
    y, x = np.mgrid[:10, :14]
    # smooth (JPEG keeps it) and asymmetric (any wrong rotation or flip shows)
    src = np.stack([x * 18, y * 25, 120 + x * 5 - y * 6], -1).astype(np.uint8)
    icc = srgb_profile()
    Image.fromarray(src).save(tmp_path / "in.png", exif=exif_block(6, (14, 10)),
                              icc_profile=icc)
    upright = np.rot90(src, -1)  # orientation 6: display rotated 90 degrees clockwise
    pixels, info = read_image(tmp_path / "in.png")
    assert_images_equal(pixels, np.ascontiguousarray(upright), "read upright")
    assert info.orientation == 6

    out = tmp_path / f"out.{suffix}"
    assert image_cli(lut_file, tmp_path / "in.png", "-o", out) == 0
    with Image.open(out) as im:
        assert im.size == (20, 28)  # upright: 10 wide, 14 tall, x2
        exif = im.getexif()
        assert exif.get(ORIENTATION) == 1
        assert exif.get(ARTIST) == "lutsr test" and exif.get(DATETIME) == "2026:01:02 03:04:05"
        sub = exif.get_ifd(EXIF_IFD)
        assert sub.get(DATETIME_ORIGINAL) == "2025:12:31 23:59:59"
        assert (sub.get(PIXEL_X), sub.get(PIXEL_Y)) == (20, 28)
        assert im.info.get("icc_profile") == icc
        written = np.asarray(im.convert("RGB"))
    want = upscale_reference(np.ascontiguousarray(upright), smooth_lut)
    if suffix in ("png", "tif"):  # lossless: exact, and read back it is not rotated again
        assert_images_equal(written, want, suffix)
        again, info = read_image(out)
        assert_images_equal(again, want, "read back") and info.orientation == 1
    else:  # lossy, but upright: close to the upright result, far from it turned over
        assert np.abs(written.astype(int) - want).mean() < 4
        assert np.abs(written.astype(int) - want[::-1, ::-1]).mean() > 30


def test_camera_jpeg_orientation(tmp_path, lut_file):
    """A camera JPEG tagged orientation 8 (turned 90 degrees anticlockwise) comes out upright."""
    y, x = np.mgrid[:8, :16]
    src = np.stack([x * 15, y * 30, x * 0 + 90], -1).astype(np.uint8)
    Image.fromarray(src).save(tmp_path / "in.jpg", exif=exif_block(8), quality=98)
    assert image_cli(lut_file, tmp_path / "in.jpg", "-o", tmp_path / "out.png") == 0
    with Image.open(tmp_path / "out.png") as im:
        assert im.size == (16, 32)
        assert im.getexif().get(ORIENTATION) == 1 and im.getexif().get(ARTIST) == "lutsr test"
        top_left = np.asarray(im)[:4, :4].astype(int).mean(axis=(0, 1))
    # orientation 8 puts the file's top-right corner (red high) at the top left
    assert top_left[0] > 150 and top_left[1] < 60


def test_tiff_layout_tags_do_not_travel(tmp_path, lut_file):
    """A TIFF's own layout tags (size, strips) are not EXIF and must not reach the output."""
    src = np.random.default_rng(7).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(src).save(tmp_path / "in.tif", tiffinfo={ARTIST: "tiff artist"})
    assert image_cli(lut_file, tmp_path / "in.tif", "-o", tmp_path / "out.jpg") == 0
    exif = Image.open(tmp_path / "out.jpg").getexif()
    assert exif.get(ARTIST) == "tiff artist" and exif.get(ORIENTATION) == 1
    assert not {256, 257, 273, 279} & set(exif)


def test_no_exif_writes_none(tmp_path, lut_file):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "in.png")
    assert read_image(tmp_path / "in.png")[1].exif is None
    assert image_cli(lut_file, tmp_path / "in.png", "-o", tmp_path / "out.jpg") == 0
    assert not len(Image.open(tmp_path / "out.jpg").getexif())


def test_icc_profile_of_another_colour_space_is_dropped(tmp_path):
    """A CMYK JPEG's profile describes CMYK: the RGB pixels read from it must not carry it."""
    fake_cmyk = bytearray(srgb_profile())
    fake_cmyk[16:20] = b"CMYK"
    cmyk = Image.new("CMYK", (8, 8), (10, 20, 30, 40))
    cmyk.save(tmp_path / "cmyk.jpg", icc_profile=bytes(fake_cmyk))
    pixels, info = read_image(tmp_path / "cmyk.jpg")
    assert pixels.shape == (8, 8, 3) and info.icc_profile is None
    assert "ICC profile dropped" in info.converted
    assert read_image(tmp_path / "cmyk.jpg")[1].mode == "CMYK"


# ---------------------------------------------------------------------------
# Writing options


def test_png_compression_levels(tmp_path, lut_file):
    photo = np.asarray(Image.open(lutsr.__path__[0] + "/samples/astronaut.png").convert("RGB"))
    sizes = {}
    for level in (0, 1, 9):
        buffer = io.BytesIO()
        write_image(buffer, photo, "PNG", png_compression=level)
        sizes[level] = len(buffer.getvalue())
        assert_images_equal(np.asarray(Image.open(buffer)), photo, f"level {level}")
    assert sizes[0] > sizes[1] > sizes[9]
    assert imageio.PNG_COMPRESSION == 1
    Image.fromarray(photo[:8, :8]).save(tmp_path / "in.png")
    for level in ("0", "9"):
        assert image_cli(lut_file, tmp_path / "in.png", "-o", tmp_path / f"o{level}.png",
                         "--png-compression", level) == 0
    assert_images_equal(np.asarray(Image.open(tmp_path / "o0.png")),
                        np.asarray(Image.open(tmp_path / "o9.png")), "levels")


@pytest.mark.parametrize("deflate", ["zlib-ng", "zlib"])
def test_fast_png_encoder_round_trips_in_any_number_of_bands(monkeypatch, deflate):
    # Bands forced small so that several threads each deflate a part; every
    # result must be one valid zlib stream, read back exactly by Pillow and by
    # OpenCV (libpng), which also check the chunks' CRCs and the Adler-32.
    import zlib

    import cv2

    from lutsr import png

    if deflate == "zlib":
        monkeypatch.setattr(png, "_deflate", zlib)
    else:
        assert png._deflate.__name__ == "zlib_ng.zlib_ng"
    monkeypatch.setattr(png, "_MIN_BAND_BYTES", 64)
    rng = np.random.default_rng(3)
    smooth = np.add.outer(np.arange(37), np.arange(23))[..., None] * [3, 5, 7, 11]
    for shape, threads in [((1, 1), 4), ((1, 40), 3), ((40, 1), 3), ((37, 23, 2), 5),
                           ((37, 23, 3), 2), ((37, 23, 4), 7), ((200, 150, 3), 1)]:
        x = rng.integers(0, 256, shape, dtype=np.uint8)
        if shape[:2] == (37, 23):  # smooth rows too, which the Sub filter turns into runs
            x[:20] = smooth[:20, :, :shape[2]].astype(np.uint8)
        data = png.encode_png(x, threads=threads)
        with Image.open(io.BytesIO(data)) as im:
            assert_images_equal(np.asarray(im).reshape(x.shape), x, f"{shape} Pillow")
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if x.ndim == 3:  # OpenCV gives BGR(A), gray and alpha as BGRA
            decoded = decoded[..., {2: [0, 3], 3: [2, 1, 0], 4: [2, 1, 0, 3]}[x.shape[2]]]
        assert_images_equal(decoded.reshape(x.shape), x, f"{shape} OpenCV")
    for bad in (np.zeros((0, 4), np.uint8), np.zeros((4, 4, 5), np.uint8),
                np.zeros((4, 4), np.int16)):  # uint16: 16-bit PNG
        with pytest.raises((TypeError, ValueError)):
            png.encode_png(bad)


def test_jpeg_subsampling(tmp_path, lut_file):
    from PIL import JpegImagePlugin

    Image.fromarray(np.random.default_rng(8).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
        tmp_path / "in.png")
    # Pillow's get_sampling: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0
    for option, sampling in (("4:4:4", 0), ("4:2:2", 1), ("4:2:0", 2), (None, 2)):
        out = tmp_path / f"out-{sampling}-{option is None}.jpg"
        flag = ("--jpeg-subsampling", option) if option else ()
        assert image_cli(lut_file, tmp_path / "in.png", "-o", out, *flag) == 0
        assert JpegImagePlugin.get_sampling(Image.open(out)) == sampling, option


@pytest.mark.parametrize("args", [("--png-compression", "10"), ("--png-compression", "x"),
                                  ("--jpeg-subsampling", "4:1:1")])
def test_bad_writing_options_are_usage_errors(tmp_path, lut_file, capsys, args):
    with pytest.raises(SystemExit) as exit_info:
        image_cli(lut_file, tmp_path / "in.png", "-o", tmp_path / "out.png", *args)
    assert exit_info.value.code == 2
    assert args[0] in capsys.readouterr().err


def test_write_image_checks_options():
    img = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(ValueError, match="0..9"):
        write_image(io.BytesIO(), img, "PNG", png_compression=10)
    with pytest.raises(ValueError, match="subsampling"):
        write_image(io.BytesIO(), img, "JPEG", jpeg_subsampling="4:1:1")
