"""train.evaluate (tools/evaluate.py) on a tiny generated dataset: scores, reports, errors."""

from __future__ import annotations

import csv
import io
import sys
import types

import numpy as np
import pytest
from conftest import random_lut
from PIL import Image

import lutsr
from lutsr.metrics import psnr_y, ssim_y
from lutsr.resize import imresize, modcrop


@pytest.fixture(scope="module")
def ev():
    from train import evaluate

    return evaluate


@pytest.fixture(scope="module")
def hr_images():
    """Small crops of scikit-image's sample images, sizes not multiples of 4, one gray."""
    data = pytest.importorskip("skimage.data")
    return {
        "astronaut.png": data.astronaut()[100:166, 180:231],
        "camera.png": data.camera()[60:113, 200:262],
        "coffee.png": data.coffee()[150:199, 250:320],
    }


@pytest.fixture
def dataset(tmp_path, hr_images):
    root = tmp_path / "Tiny"
    (root / "HR").mkdir(parents=True)
    for name, img in hr_images.items():
        Image.fromarray(img).save(root / "HR" / name)
    return root


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("luts") / "rand4.lutsr"
    lutsr.save(random_lut(np.random.default_rng(0), interval=5, scale=4), path)
    return path


def expected_bicubic(hr: np.ndarray, scale: int) -> tuple[float, float]:
    hr = modcrop(hr, scale)
    sr = imresize(imresize(hr, 1 / scale), scale)
    return psnr_y(sr, hr, scale), ssim_y(sr, hr, scale)


def test_bicubic_and_lut_scores(ev, dataset, lut_file, hr_images):
    name, lut_fn = ev.lut_method(str(lut_file), 4, backend="reference")
    assert name == "rand4"
    methods = {"bicubic": ev.bicubic_method(4), name: lut_fn}
    results = ev.evaluate(methods, [dataset], 4, progress=False)
    assert [(r.image, r.method) for r in results] == [
        (img, m) for img in sorted(hr_images) for m in ("bicubic", "rand4")]
    lut = lutsr.load(lut_file)
    for r in results:
        hr = modcrop(hr_images[r.image], 4)
        assert r.dataset == "Tiny" and r.lr_source == "imresize" and r.seconds >= 0
        if r.method == "bicubic":
            assert (r.psnr, r.ssim) == pytest.approx(expected_bicubic(hr_images[r.image], 4))
        else:
            sr = lutsr.upscale(imresize(hr, 1 / 4), lut, backend="reference")
            assert r.psnr == pytest.approx(psnr_y(sr, hr, 4))
            assert r.ssim == pytest.approx(ssim_y(sr, hr, 4))
    by = ev.summarize(results)
    # A random table is far worse than bicubic: the methods were not mixed up.
    assert by[("rand4", "Tiny")][0] < by[("bicubic", "Tiny")][0] - 5
    assert by[("bicubic", "Tiny")][2] == 3


def test_command_line_writes_table_csv_and_images(ev, dataset, lut_file, tmp_path, capsys):
    out, table_csv, images = tmp_path / "r.md", tmp_path / "r.csv", tmp_path / "sr"
    code = ev.main(["--bicubic", "--lut", str(lut_file), "--datasets", str(dataset),
                    "--scale", "4", "--out", str(out), "--csv", str(table_csv),
                    "--save-images", str(images), "--backend", "reference"])
    assert code == 0
    table = out.read_text()
    assert table == capsys.readouterr().out
    lines = table.splitlines()
    assert "| method | Tiny PSNR | Tiny SSIM |" in lines
    rows = list(csv.DictReader(table_csv.open()))
    assert len(rows) == 6 and set(rows[0]) == set(ev.CSV_FIELDS)
    for method in ("bicubic", "rand4"):
        mine = [r for r in rows if r["method"] == method]
        psnr = np.mean([float(r["psnr"]) for r in mine])
        ssim = np.mean([float(r["ssim"]) for r in mine])
        assert f"| {method} | {psnr:.2f} | {ssim:.4f} |" in lines
    saved = np.asarray(Image.open(images / "Tiny" / "rand4" / "camera.png"))
    assert saved.shape == (52, 60)  # gray stays gray; 53x62 modcropped to multiples of 4


def test_lr_bicubic_files_are_used_when_present(ev, dataset, hr_images):
    lr_dir = dataset / "LR_bicubic" / "X4"
    lr_dir.mkdir(parents=True)
    hr = modcrop(hr_images["coffee.png"], 4)
    # A visibly different LR than the generated one: the file must win.
    lr = (255 - imresize(hr, 1 / 4)).astype(np.uint8)
    Image.fromarray(lr).save(lr_dir / "coffee.png")
    results = ev.evaluate({"bicubic": ev.bicubic_method(4)}, [dataset], 4, progress=False)
    by_image = {r.image: r for r in results}
    assert by_image["coffee.png"].lr_source == "file"
    assert by_image["astronaut.png"].lr_source == "imresize"
    assert by_image["coffee.png"].psnr < expected_bicubic(hr_images["coffee.png"], 4)[0] - 10


def test_lr_of_another_scale_is_an_error(ev, dataset, hr_images):
    lr_dir = dataset / "LR_bicubic" / "X4"
    lr_dir.mkdir(parents=True)
    hr = modcrop(hr_images["coffee.png"], 2)
    Image.fromarray(imresize(hr, 1 / 2)).save(lr_dir / "coffee.png")   # an x2 input in X4/
    with pytest.raises(ValueError, match="wrong scale folder"):
        ev.evaluate({"bicubic": ev.bicubic_method(4)}, [dataset], 4, progress=False)


def test_lut_scale_mismatch(ev, tmp_path, dataset, capsys):
    path = tmp_path / "two.lutsr"
    lutsr.save(random_lut(np.random.default_rng(1), interval=6, scale=2), path)
    with pytest.raises(ValueError, match=r"upscales x2, but the evaluation is x4"):
        ev.lut_method(str(path), 4)
    code = ev.main(["--lut", str(path), "--datasets", str(dataset), "--scale", "4"])
    assert code == 2
    assert "upscales x2" in capsys.readouterr().err


def test_method_of_wrong_scale_is_caught(ev, dataset):
    with pytest.raises(ValueError, match="wrong scale"):
        ev.evaluate({"x2 as x4": lambda lr: imresize(lr, 2)}, [dataset], 4, progress=False)
    with pytest.raises(TypeError, match="must return uint8"):
        ev.evaluate({"float": lambda lr: imresize(lr.astype(float), 4)}, [dataset], 4,
                    progress=False)


def test_empty_and_missing_folders(ev, tmp_path):
    (tmp_path / "Empty" / "HR").mkdir(parents=True)
    (tmp_path / "Empty" / "HR" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="no images"):
        ev.evaluate({"bicubic": ev.bicubic_method(2)}, [tmp_path / "Empty"], 2, progress=False)
    with pytest.raises(ValueError, match="does not exist"):
        ev.evaluate({"bicubic": ev.bicubic_method(2)}, [tmp_path / "nope"], 2, progress=False)


def test_unreadable_image(ev, dataset, capsys):
    (dataset / "HR" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(ValueError, match=r"broken\.png: cannot read image"):
        ev.evaluate({"bicubic": ev.bicubic_method(4)}, [dataset], 4, progress=False)
    assert ev.main(["--bicubic", "--datasets", str(dataset), "--scale", "4"]) == 2
    assert "broken.png" in capsys.readouterr().err


def test_nothing_to_evaluate_and_duplicate_names(ev, dataset, lut_file, capsys):
    assert ev.main(["--datasets", str(dataset), "--scale", "4"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert ev.main(["--lut", str(lut_file), str(lut_file), "--datasets", str(dataset),
                    "--scale", "4", "--backend", "reference"]) == 2
    assert "two methods are named 'rand4'" in capsys.readouterr().err


def test_cnn_hook(ev, dataset, monkeypatch, capsys):
    """--cnn calls train.checkpoint.load_cnn_method; without it the error says what is missing."""
    monkeypatch.setitem(sys.modules, "train.checkpoint", None)   # makes the import fail
    assert ev.main(["--cnn", "ckpt.pt", "--datasets", str(dataset), "--scale", "4"]) == 2
    assert "--cnn needs torch" in capsys.readouterr().err

    fake = types.ModuleType("train.checkpoint")
    fake.load_cnn_method = lambda path: ("cnn", 4 if path == "x4.pt" else 2,
                                         lambda lr: imresize(lr, 4))
    monkeypatch.setitem(sys.modules, "train.checkpoint", fake)
    assert ev.main(["--cnn", "x4.pt", "--datasets", str(dataset), "--scale", "4"]) == 0
    assert "| cnn |" in capsys.readouterr().out
    assert ev.main(["--cnn", "x2.pt", "--datasets", str(dataset), "--scale", "4"]) == 2
    assert "upscales x2" in capsys.readouterr().err


# Set5 Y-PSNR of each shipped LUT as measured with tools/evaluate.py (README, "Bundled LUTs"),
# less 0.005 dB for rounding of the printed figure: a wrong or damaged file bundled fails here.
BUNDLED_SET5 = {"x2": (2, 36.016), "x2-s": (2, 35.655), "x4": (4, 30.108), "x4-s": (4, 29.857),
                "x4-sdy": (4, 30.424), "x4-sdy-taps": (4, 30.522), "x3": (3, 32.275),
                "x4-real": (4, 30.000), "x2-real": (2, 35.617), "x4-layered": (4, 30.526)}


@pytest.mark.parametrize("name", sorted(BUNDLED_SET5))
def test_bundled_luts_keep_their_measured_set5_quality(name):
    from conftest import DATA, need

    if name not in lutsr.bundled_names():
        pytest.skip(f"{name} is not bundled")
    scale, floor = BUNDLED_SET5[name]
    hr_dir = need(DATA / "test" / "Set5" / "HR")
    scores = []
    for path in sorted(hr_dir.glob("*.png")):
        hr = np.asarray(Image.open(path).convert("RGB"))
        lr = np.asarray(Image.open(hr_dir.parent / "LR_bicubic" / f"X{scale}" / path.name)
                        .convert("RGB"))
        scores.append(psnr_y(lutsr.upscale(lr, name), modcrop(hr, scale), scale))
    assert len(scores) == 5 and np.mean(scores) >= floor, np.mean(scores)


# --------------------------------------------------------------------------- degraded inputs

def test_degradations_are_deterministic_and_keep_shape_and_brightness():
    """JPEG and H.264 round trips: same output twice, any size, gray stays gray, no drift."""
    from train.degrade import parse

    rgb = pytest.importorskip("skimage.data").astronaut()[:53, :47]  # odd sides: padded inside
    gray = rgb[..., 1].copy()
    for spec in ("jpeg:30", "jpeg:90", "h264:23", "h264:33"):
        deg = parse(spec)
        for img in (rgb, gray):
            out = deg(img)
            assert out.dtype == np.uint8 and out.shape == img.shape, spec
            assert np.array_equal(out, deg(img)), f"{spec} is not deterministic"
            assert 0 < np.abs(out.astype(int) - img).mean() < 12, spec
            # Compression noise, no colour shift (h264:0 below checks the conversion exactly;
            # on this tiny dark crop the codecs themselves move the mean by up to ~1 level).
            assert abs(out.mean() - img.mean()) < 1.5, spec
    # Harder compression loses more.
    err = {s: np.abs(parse(s)(rgb).astype(int) - rgb).mean() for s in ("jpeg:20", "jpeg:90",
                                                                       "h264:18", "h264:40")}
    assert err["jpeg:20"] > err["jpeg:90"] and err["h264:40"] > err["h264:18"]


def test_degradations_are_what_they_say():
    """jpeg:Q is Pillow's own JPEG round trip; h264:0 (lossless x264) loses only the rounding."""
    from train.degrade import jpeg, parse, rgb_to_yuv420, yuv420_to_rgb

    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=50)
    assert np.array_equal(jpeg(img, 50), np.asarray(Image.open(buf).convert("RGB")))
    # The lossless codec: exactly the YUV 4:2:0 round trip.
    y, cb, cr = rgb_to_yuv420(img)
    assert np.array_equal(parse("h264:0")(img), yuv420_to_rgb(y, cb, cr))
    gray = rng.integers(0, 256, (21, 17), dtype=np.uint8)
    assert np.abs(parse("h264:0")(gray).astype(int) - gray).max() <= 1  # 219 levels for 256
    # Flat chroma survives 4:2:0, so grays come back within a level.
    flat = np.repeat(rng.integers(0, 256, (8, 8, 1), dtype=np.uint8), 3, axis=2)
    assert np.abs(yuv420_to_rgb(*rgb_to_yuv420(flat)).astype(int) - flat).max() <= 1


@pytest.mark.parametrize("spec, message", [
    ("jpeg", "KIND:LEVEL"), ("jpeg:high", "KIND:LEVEL"), ("webp:50", "not one of"),
    ("jpeg:0", "1..95"), ("jpeg:100", "1..95"), ("h264:52", "0..51")])
def test_bad_degradation_specs(ev, dataset, spec, message, capsys):
    with pytest.raises(ValueError, match=message):
        ev.degradation(spec)
    assert ev.main(["--bicubic", "--datasets", str(dataset), "--scale", "4",
                    "--degrade", spec]) == 2
    assert message in capsys.readouterr().err


def test_evaluate_degraded_lr(ev, dataset, hr_images):
    """The methods see the degraded LR; the reference stays the clean HR."""
    deg = ev.degradation("jpeg:30")
    seen = []

    def recorder(lr):
        seen.append(lr.copy())
        return imresize(lr, 4)
    results = ev.evaluate({"bicubic": recorder}, [dataset], 4, progress=False, warmup=False,
                          degrade=deg)
    assert [r.degrade for r in results] == ["jpeg:30"] * 3
    for r, lr in zip(results, seen):
        hr = modcrop(hr_images[r.image], 4)
        assert np.array_equal(lr, deg(imresize(hr, 1 / 4)))
        assert r.psnr == pytest.approx(psnr_y(imresize(lr, 4), hr, 4))
        assert r.psnr < expected_bicubic(hr_images[r.image], 4)[0]
    assert ev.degradation("clean") is None


def test_command_line_degrade_tables_and_csv(ev, dataset, lut_file, tmp_path, capsys):
    table_csv, images = tmp_path / "r.csv", tmp_path / "sr"
    code = ev.main(["--bicubic", "--lut", str(lut_file), "--datasets", str(dataset),
                    "--scale", "4", "--backend", "reference", "--csv", str(table_csv),
                    "--degrade", "clean", "jpeg:40", "--degrade", "h264:30",
                    "--save-images", str(images)])
    assert code == 0
    out = capsys.readouterr().out
    assert "LR degraded by jpeg:40." in out and "LR degraded by h264:30." in out
    assert "| method | clean | jpeg:40 | h264:30 |" in out.splitlines()
    rows = list(csv.DictReader(table_csv.open()))
    assert len(rows) == 3 * 2 * 3
    for method in ("bicubic", "rand4"):
        cells = []
        for spec in ("clean", "jpeg:40", "h264:30"):
            mine = [float(r["psnr"]) for r in rows
                    if r["method"] == method and r["degrade"] == spec]
            assert len(mine) == 3
            cells.append(f"{np.mean(mine):.2f}")
        assert f"| {method} | " + " | ".join(cells) + " |" in out.splitlines()
    assert (images / "Tiny" / "rand4" / "h264:30" / "camera.png").is_file()
    assert (images / "Tiny" / "bicubic" / "camera.png").is_file()  # clean: where it always was
