"""16-bit images: read all 16 bits (PNG, TIFF), upscale by the video's 10-bit method, write 16 bits.

The method (:func:`lutsr.deep.upscale_deep`): the LUT on the top 8 bits, the low
8 bits upscaled by linear interpolation and added. The oracle is the reference
backend on the top bits plus :func:`lutsr.deep._upsample_linear` on the low
bits; files are made here (a naive PNG encoder with every row filter and
Adam7, tifffile, Pillow), none is committed.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from conftest import assert_images_equal, random_lut

import lutsr
from lutsr import imageio
from lutsr.cli import main
from lutsr.deep import _upsample_linear, upscale_deep
from lutsr.png import PNGError, decode_png16, encode_png
from lutsr.reference import upscale_reference

Image = pytest.importorskip("PIL.Image")
tifffile = pytest.importorskip("tifffile")


@pytest.fixture(scope="module")
def lut(tmp_path_factory):
    model = random_lut(np.random.default_rng(31), scale=2)
    path = lutsr.save(model, tmp_path_factory.mktemp("lut") / "x2.lutsr")
    return model, path


def image_cli(lut, *args) -> int:
    return main(["image", *map(str, args), "--lut", str(lut[1]), "--backend", "reference",
                 "-q"])


def deep_expected(src: np.ndarray, model) -> np.ndarray:
    """What `lutsr image` makes of a 16-bit image: reference LUT on hi, linear on lo."""
    upscaler = lutsr.Upscaler(model, backend="reference")
    if src.ndim == 3 and src.shape[2] in (2, 4):
        return imageio.unpremultiply(upscale_deep(imageio.premultiply(src), upscaler, 16))
    hi = (src >> 8).astype(np.uint8)
    lo = (src & 255).astype(np.float32)
    want = upscale_reference(hi, model).astype(np.uint16) << 8
    return want + np.rint(_upsample_linear(lo, model.scale)).astype(np.uint16)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data))


def naive_png16(array: np.ndarray, interlace: bool = False, trns: bytes | None = None) -> bytes:
    """A 16-bit PNG written the slow, obvious way: rows cycle through all five filters."""
    c = 1 if array.ndim == 2 else array.shape[2]
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    h, w = array.shape[:2]
    bpp = 2 * c

    def filtered(rows: np.ndarray) -> bytes:
        out, prev = bytearray(), [0] * rows.shape[1]
        for y, row in enumerate(rows.tolist()):
            kind = y % 5
            out.append(kind)
            for x, v in enumerate(row):
                a = row[x - bpp] if x >= bpp else 0
                b = prev[x]
                cc = prev[x - bpp] if x >= bpp else 0
                if kind == 4:
                    p = a + b - cc
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else cc
                else:
                    pred = (0, a, b, (a + b) // 2)[kind]
                out.append((v - pred) % 256)
            prev = row
        return bytes(out)

    big = array.astype(">u2").reshape(h, w, c).view(np.uint8).reshape(h, w, bpp)
    if interlace:
        passes = [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2),
                  (0, 1, 2, 2), (1, 0, 2, 1)]
        raw = b"".join(filtered(big[y0::dy, x0::dx].reshape(len(range(y0, h, dy)), -1))
                       for y0, x0, dy, dx in passes
                       if len(range(y0, h, dy)) and len(range(x0, w, dx)))
    else:
        raw = filtered(big.reshape(h, -1))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, int(interlace))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + (png_chunk(b"tRNS", trns) if trns else b"")
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def ramp16(rng, *shape) -> np.ndarray:
    return rng.integers(0, 65536, size=shape, dtype=np.uint16)


# ------------------------------------------------------------------ the PNG decoder and encoder


@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_decoder_undoes_every_filter_and_adam7(channels, interlace):
    rng = np.random.default_rng(channels)
    for h, w in [(1, 1), (3, 2), (11, 13)]:  # small sizes leave some Adam7 passes empty
        shape = (h, w) if channels == 1 else (h, w, channels)
        x = ramp16(rng, *shape)
        assert_images_equal(decode_png16(naive_png16(x, interlace)), x, f"{shape} {interlace}")


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_encoder_round_trips_16_bits(channels):
    rng = np.random.default_rng(40 + channels)
    shape = (37, 23) if channels == 1 else (37, 23, channels)
    x = ramp16(rng, *shape)
    data = encode_png(x, threads=3)
    assert data[24] == 16  # IHDR bit depth
    assert_images_equal(decode_png16(data), x, "lutsr's decoder")
    if channels == 1:  # the one 16-bit layout Pillow keeps whole
        assert_images_equal(np.asarray(Image.open(io.BytesIO(data))).astype(np.uint16), x,
                            "Pillow")


def test_trns_colour_becomes_alpha():
    x = np.array([[[1, 2, 3], [4, 5, 6]]], np.uint16)
    got = decode_png16(naive_png16(x, trns=struct.pack(">HHH", 4, 5, 6)))
    assert_images_equal(got[..., 3], np.array([[65535, 0]], np.uint16), "alpha")
    assert_images_equal(got[..., :3], x, "colour")


def test_decoder_refuses_damage_and_8_bit():
    data = naive_png16(np.zeros((4, 4), np.uint16))
    with pytest.raises(PNGError, match="CRC"):
        decode_png16(data[:40] + bytes([data[40] ^ 1]) + data[41:])
    with pytest.raises(PNGError):
        decode_png16(data[:-20])
    with pytest.raises(PNGError, match="bit depth 8"):
        decode_png16(encode_png(np.zeros((4, 4), np.uint8)))
    good = naive_png16(np.zeros((4, 4), np.uint16))
    idat = good.index(b"IDAT")
    body = zlib.compress(b"\x07" + bytes(8) + b"\x00" * 27)  # filter type 7 does not exist
    bad = good[:idat - 4] + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")
    with pytest.raises(PNGError, match="filter"):
        decode_png16(bad)


# ------------------------------------------------------------------ reading


def test_read_image_keeps_16_bits_only_when_asked(tmp_path):
    rng = np.random.default_rng(5)
    x = ramp16(rng, 6, 7, 3)
    (tmp_path / "a.png").write_bytes(naive_png16(x))
    with pytest.raises(imageio.ImageError, match="16-bit images are not supported"):
        imageio.read_image(tmp_path / "a.png")  # 8-bit readers (training) still refuse
    pixels, info = imageio.read_image(tmp_path / "a.png", deep=True)
    assert info.bits == 16 and info.format == "PNG"
    assert_images_equal(pixels, x, "PNG RGB 16")


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_tiff_16_bit_read(tmp_path, channels):
    rng = np.random.default_rng(6)
    shape = (6, 7) if channels == 1 else (6, 7, channels)
    x = ramp16(rng, *shape)
    tifffile.imwrite(tmp_path / "a.tif", x, photometric="minisblack" if channels < 3 else "rgb",
                     extrasamples=("unassalpha",) if channels in (2, 4) else None)
    if channels == 2:  # Pillow does not open gray + alpha TIFF at all: a clear refusal
        with pytest.raises(imageio.ImageError, match="cannot read image"):
            imageio.read_image(tmp_path / "a.tif", deep=True)
        return
    pixels, info = imageio.read_image(tmp_path / "a.tif", deep=True)
    assert info.bits == 16
    assert_images_equal(pixels, x, f"TIFF {channels}")


def test_gray_16_by_pillow(tmp_path):
    x = ramp16(np.random.default_rng(7), 5, 9)
    Image.fromarray(x).save(tmp_path / "g.tif")  # Pillow's own I;16 writer
    assert_images_equal(imageio.read_image(tmp_path / "g.tif", deep=True)[0], x, "I;16 TIFF")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_as_pillow_does(tmp_path, orientation):
    """The 16-bit path turns the array itself; it must agree with Pillow's exif_transpose."""
    from PIL import ImageOps

    x = ramp16(np.random.default_rng(8), 3, 5, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    (tmp_path / "o.png").write_bytes(encode_png(x, exif=exif.tobytes()))
    pixels, info = imageio.read_image(tmp_path / "o.png", deep=True)
    assert info.orientation == orientation
    as8 = Image.fromarray((x >> 8).astype(np.uint8))
    as8.info["exif"] = exif.tobytes()
    as8.getexif()[0x0112] = orientation
    want = np.asarray(ImageOps.exif_transpose(as8))
    assert_images_equal((pixels >> 8).astype(np.uint8), want, f"orientation {orientation}")


# ------------------------------------------------------------------ upscaling


def test_low_bits_zero_gives_the_8_bit_result_shifted_by_8(tmp_path, lut):
    """A 16-bit image ``v << 8`` comes out as the 8-bit image ``v``'s result ``<< 8``, exactly.

    ``<< 8``, not ``* 257``: the LUT maps the top byte and the low byte is
    interpolated from the input's low bytes, all 0 here, so the output's low
    byte is 0. (``v * 257``, the usual 8-to-16 widening, has low byte ``v`` and
    gets ``LUT(v) << 8`` plus ``v`` interpolated.)
    """
    model, _ = lut
    rng = np.random.default_rng(9)
    for shape in [(9, 11), (9, 11, 3)]:
        v = rng.integers(0, 256, size=shape, dtype=np.uint8)
        Image.fromarray(v).save(tmp_path / "v8.png")
        (tmp_path / "v16.png").write_bytes(encode_png(v.astype(np.uint16) << 8))
        assert image_cli(lut, tmp_path / "v8.png", "-o", tmp_path / "o8.png", "--overwrite") == 0
        assert image_cli(lut, tmp_path / "v16.png", "-o", tmp_path / "o16.png",
                         "--overwrite") == 0
        out8 = np.asarray(Image.open(tmp_path / "o8.png"))
        out16 = decode_png16((tmp_path / "o16.png").read_bytes())
        assert_images_equal(out16, out8.astype(np.uint16) << 8, f"{shape}")


@pytest.mark.parametrize("channels", [1, 3])
def test_png_and_tiff_round_trip_in_16_bits(tmp_path, lut, channels):
    model, _ = lut
    rng = np.random.default_rng(10)
    shape = (7, 9) if channels == 1 else (7, 9, channels)
    x = ramp16(rng, *shape)
    (tmp_path / "in.png").write_bytes(naive_png16(x))
    want = deep_expected(x, model)
    assert image_cli(lut, tmp_path / "in.png", "-o", tmp_path / "out.png") == 0
    assert_images_equal(decode_png16((tmp_path / "out.png").read_bytes()), want, "PNG")
    assert image_cli(lut, tmp_path / "in.png", "-o", tmp_path / "out.tif") == 0
    assert_images_equal(tifffile.imread(tmp_path / "out.tif"), want, "TIFF")
    # the TIFF read back and upscaled again: its 16 bits are read, not Pillow's 8
    assert image_cli(lut, tmp_path / "out.tif", "-o", tmp_path / "again.png") == 0
    assert_images_equal(decode_png16((tmp_path / "again.png").read_bytes()),
                        deep_expected(want, model), "TIFF in")
    # an 8-bit format gets the 16-bit result rounded once
    assert image_cli(lut, tmp_path / "in.png", "-o", tmp_path / "out.bmp") == 0
    assert_images_equal(np.asarray(Image.open(tmp_path / "out.bmp")), imageio.to_8bit(want),
                        "BMP")


def test_gradient_keeps_more_than_256_levels(tmp_path):
    """A smooth 16-bit ramp is not banded to 8 bits by the upscale (a real, bundled LUT)."""
    if "x2" not in lutsr.bundled_names():
        pytest.skip("bundled x2 LUT not installed")
    ramp = np.linspace(0, 65535, 2048).round().astype(np.uint16)
    img = np.repeat(ramp[None, :, None], 4, axis=0).repeat(3, axis=2)
    (tmp_path / "ramp.png").write_bytes(encode_png(img))
    assert main(["image", str(tmp_path / "ramp.png"), "-o", str(tmp_path / "up.png"),
                 "--lut", "x2", "-q"]) == 0
    out = decode_png16((tmp_path / "up.png").read_bytes())
    row = out[4, :, 1].astype(np.int64)
    assert len(np.unique(row)) > 256, len(np.unique(row))
    # no step of an 8-bit band (a level, 256) between neighbours: the LUT's own error on
    # the top byte shows as steps up to 145 where the top byte changes (input steps 32)
    assert np.abs(np.diff(row)).max() < 256, np.abs(np.diff(row)).max()
    assert abs(int(row[0])) < 512 and abs(int(row[-1]) - 65535) < 512


@pytest.mark.parametrize("channels", [2, 4])
def test_alpha_upscaled_premultiplied_in_16_bits(tmp_path, lut, channels):
    model, _ = lut
    rng = np.random.default_rng(11)
    x = ramp16(rng, 8, 10, channels)
    x[2:5, 3:6, -1] = 0  # transparent: whatever colour they hold must not show
    hidden = x.copy()
    hidden[2:5, 3:6, :-1] = 65535 - hidden[2:5, 3:6, :-1]
    for name, img in (("a.png", x), ("b.png", hidden)):
        (tmp_path / name).write_bytes(encode_png(img))
        assert image_cli(lut, tmp_path / name, "-o", tmp_path / f"out-{name}") == 0
    a = decode_png16((tmp_path / "out-a.png").read_bytes())
    b = decode_png16((tmp_path / "out-b.png").read_bytes())
    assert_images_equal(a, deep_expected(x, model), "premultiplied 16-bit")
    assert_images_equal(a, b, "hidden colour of transparent pixels")
    if channels == 4:
        assert image_cli(lut, tmp_path / "a.png", "-o", tmp_path / "out.tif") == 0
        assert_images_equal(tifffile.imread(tmp_path / "out.tif"), a, "RGBA TIFF")


def test_premultiply_16_bit_is_exact():
    """The 16-bit premultiply of images and of video frames with alpha (one function)."""
    rng = np.random.default_rng(12)
    x = ramp16(rng, 50, 40, 4)
    x[:5, :, 3] = 65535
    x[5:10, :, 3] = 0
    pre = imageio.premultiply(x)
    want = np.rint(x[..., :3].astype(np.float64) * x[..., 3:] / 65535)
    assert_images_equal(pre[..., :3], want.astype(np.uint16), "premultiply")
    assert_images_equal(pre[:5], x[:5], "opaque unchanged")
    assert_images_equal(imageio.unpremultiply(pre)[:5], x[:5], "opaque round trip")
    assert not imageio.unpremultiply(pre)[5:10, :, :3].any()


def test_icc_kept_and_outscale_refused(tmp_path, lut, capsys):
    x = ramp16(np.random.default_rng(13), 6, 6, 3)
    icc = b"\0" * 16 + b"RGB " + b"\0" * 108  # only its colour space is checked
    (tmp_path / "icc.png").write_bytes(encode_png(x, icc_profile=icc))
    assert image_cli(lut, tmp_path / "icc.png", "-o", tmp_path / "out.png") == 0
    with Image.open(tmp_path / "out.png") as im:
        assert im.info.get("icc_profile") == icc
    assert image_cli(lut, tmp_path / "icc.png", "-o", tmp_path / "big.png",
                     "--outscale", "3") == 1
    err = capsys.readouterr().err
    assert "16-bit" in err and err.count("\n") == 1 and not (tmp_path / "big.png").exists()
