"""Distilled targets (``--teacher``, ``--teacher-mix``): what the trainer is given to fit,
the teacher's cache, that held-out scoring stays against the HR, and the refusals.

A tiny random RLFN saved as a state dict stands in for the published teacher: it
goes through the same loading, and its output is far from the HR, so a target
taken from the wrong source shows.
"""

import dataclasses

import numpy as np
import pytest
from conftest import sample_images

torch = pytest.importorskip("torch")

import lutsr  # noqa: E402
from lutsr.metrics import psnr_y  # noqa: E402
from train import data as tdata  # noqa: E402
from train import fit  # noqa: E402
from train.build import build  # noqa: E402
from train.build_lut import main, parse_args  # noqa: E402
from train.config import BuildConfig, BuildError, check, quick  # noqa: E402
from train.rlfn import RLFN, RLFNShape, load_rlfn, upscale_rlfn  # noqa: E402
from train.teacher import (  # noqa: E402
    TeacherCache,
    mix_target,
    taught_pairs,
    teacher_output,
    teacher_pairs,
)


def _teacher(tmp_path, scale=2, seed=0):
    torch.manual_seed(seed)
    model = RLFN(RLFNShape.uniform(4, blocks=1, esa=2, scale=scale)).eval()
    with torch.no_grad():  # a bias that lifts the output off the clamp at 0
        model.upsampler[0].bias.fill_(100.0)
    path = tmp_path / f"teacher_x{scale}.pth"
    torch.save(model.state_dict(), path)
    return path


def _config(tmp_path, **fields):
    images = sample_images(tmp_path / "imgs", 4, (64, 64))
    return quick(BuildConfig(data=(str(images),), scale=2, layout="layered", val_every=4,
                             teacher=str(_teacher(tmp_path)),
                             checkpoint_dir=str(tmp_path / "ck"), **fields))


def _never(lr):
    raise AssertionError("the teacher ran at mix 0")


def test_mix_target_is_hr_teacher_or_the_weighted_mean():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (8, 6, 3), dtype=np.uint8)
    taught = rng.uniform(0, 255, (8, 6, 3)).astype(np.float32)
    assert np.array_equal(mix_target(hr, taught, 0.0), hr)
    assert np.array_equal(mix_target(hr, taught, 1.0), taught)
    got = mix_target(hr, taught, 0.3)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, 0.3 * taught.astype(np.float64) + 0.7 * hr, rtol=0,
                               atol=1e-4)
    with pytest.raises(ValueError, match="shape"):
        mix_target(hr, taught[:4], 0.5)
    # mix 0 is the ground truth itself: the teacher is not even run
    pairs = [(hr[::2, ::2], hr)]
    assert taught_pairs(pairs, TeacherCache(_never, b"k"), 0.0)[0][1] is hr


def test_teacher_output_is_the_rlfn_unrounded(tmp_path):
    model = load_rlfn(_teacher(tmp_path))
    lr = np.random.default_rng(1).integers(0, 256, (17, 20, 3), dtype=np.uint8)
    out = teacher_output(model, lr)
    assert out.dtype == np.float32 and out.shape == (34, 40, 3)
    assert 0 <= out.min() and out.max() <= 255
    assert not np.array_equal(out, np.round(out))  # kept in float, not rounded to levels
    assert np.array_equal(np.round(out).astype(np.uint8), upscale_rlfn(model, lr))
    # smaller than RLFN's minimum side: padded for the net, cropped back
    assert teacher_output(model, lr[:9, :11]).shape == (18, 22, 3)


def test_cache_returns_identical_arrays_and_survives_a_restart(tmp_path):
    calls = []

    def run(lr):
        calls.append(lr.shape)
        return np.random.default_rng(len(calls)).uniform(0, 255, (4, 4, 3)).astype(np.float32)

    lr = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    memory = TeacherCache(run, b"weights x2")
    assert memory(lr) is memory(lr.copy()) and len(calls) == 1
    first = TeacherCache(run, b"weights x2", tmp_path / "cache")(lr)
    again = TeacherCache(run, b"weights x2", tmp_path / "cache")
    assert np.array_equal(again(lr.copy()), first) and len(calls) == 2
    assert (again.computed, again.reused) == (0, 1)
    # another teacher, or another image, is another entry
    other = TeacherCache(run, b"other weights x2", tmp_path / "cache")
    other(lr)
    again(lr[::-1].copy())
    assert len(calls) == 4 and len(list((tmp_path / "cache").glob("*.npy"))) == 3


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_training_targets_follow_the_mix(tmp_path, alpha):
    """Every training pair, scale-augmentation copies included, against the teacher run
    on that pair's own LR image; a second call (a resumed build) runs nothing."""
    config = dataclasses.replace(_config(tmp_path), teacher_mix=alpha, scale_aug=(0.5,))
    pairs = tdata.load_pairs(tdata.list_images(config.data), 2, 16, config.scale_aug)
    assert len(pairs) == 8  # each image and its half-size copy
    got, record = teacher_pairs(pairs, config, tmp_path / "ck", log=lambda line: None)
    model = load_rlfn(config.teacher)
    for (lr, hr), (lr2, target) in zip(pairs, got, strict=True):
        assert lr2 is lr
        taught = teacher_output(model, lr)
        if alpha == 0:
            assert target is hr
        elif alpha == 1:
            assert np.array_equal(target, taught)
        else:
            np.testing.assert_allclose(target, 0.5 * taught + 0.5 * hr.astype(np.float32),
                                       rtol=0, atol=1e-4)
            assert np.abs(target - hr).mean() > 5  # the stand-in's output is far from the HR
    assert record["computed"] == (0 if alpha == 0 else 8)
    _, resumed = teacher_pairs(pairs, config, tmp_path / "ck", log=lambda line: None)
    assert resumed["computed"] == 0 and resumed["reused"] == record["computed"]


@pytest.mark.parametrize("layout", ["layered", "srlut"])
def test_build_trains_on_the_teacher_and_scores_against_hr(tmp_path, monkeypatch, layout):
    """The sampler is handed the teacher's targets; the held-out PSNR is against the HR."""
    seen = []

    class Recording(fit.PatchSampler):
        def __init__(self, pairs, *args, **kw):
            seen.append(list(pairs))
            super().__init__(pairs, *args, **kw)

    monkeypatch.setattr(fit, "PatchSampler", Recording)
    config = _config(tmp_path, teacher_mix=1.0)
    if layout == "srlut":
        config = quick(dataclasses.replace(config, layout="srlut", lsq_iters=40))
    lut = build(config, log=lambda line: None)
    files = tdata.list_images(config.data)
    model = load_rlfn(config.teacher)
    (pairs,) = seen
    train_pairs = tdata.load_pairs([f for f in files if f not in files[::4]], 2)
    assert len(pairs) == len(train_pairs) == 3
    for (lr, target), (lr_want, _) in zip(pairs, train_pairs, strict=True):
        assert np.array_equal(lr, lr_want)
        assert np.array_equal(target, teacher_output(model, lr))
    held = tdata.load_pairs(files[::4], 2)
    want = np.mean([psnr_y(lutsr.upscale(lr, lut), hr, 2) for lr, hr in held])
    assert lut.metadata["validation"]["psnr_y"] == pytest.approx(want, abs=1e-3)
    assert lut.metadata["teacher"]["weights"] == "teacher_x2.pth"
    assert lut.metadata["config"]["teacher"] == "teacher_x2.pth"  # no path of the machine
    assert lut.metadata["teacher"]["computed"] == 3


@pytest.mark.parametrize("flags, message", [
    (["--teacher-mix", "1.5"], "--teacher-mix must be in 0..1"),
    (["--teacher-mix", "-0.1"], "--teacher-mix must be in 0..1"),
    (["--teacher-mix", "nan"], "--teacher-mix must be in 0..1"),
    (["--teacher", "MISSING"], "no such file"),
])
def test_flags_are_checked(tmp_path, capsys, flags, message):
    teacher = ["--teacher", str(_teacher(tmp_path))] if "--teacher" not in flags else []
    flags = [f.replace("MISSING", str(tmp_path / "none.pth")) for f in flags]
    with pytest.raises(SystemExit) as exc:
        parse_args(["--data", "d", "--out", str(tmp_path / "o.lutsr"), *teacher, *flags])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(BuildError, match="needs config.teacher"):
        check(BuildConfig(data=("d",), teacher_mix=0.5))
    check(BuildConfig(data=("d",), teacher=str(_teacher(tmp_path)), teacher_mix=0.0))


def _garbage(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"\x80\x02not a zip file at all" * 10)
    return path


def _other_dict(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, path)
    return path


def _shapes_off(tmp_path):
    sd = torch.load(_teacher(tmp_path), weights_only=True)
    sd["conv_2.weight"] = sd["conv_2.weight"][:, :, :1, :1].clone()
    path = tmp_path / "shapes.pth"
    torch.save(sd, path)
    return path


@pytest.mark.parametrize("make, message", [
    (_garbage, "not a usable RLFN state dict"), (_other_dict, "not a usable RLFN state dict"),
    (_shapes_off, "not a usable RLFN state dict"),
    (lambda p: _teacher(p, scale=3), "an x3 RLFN, the build is x2"),
])
def test_a_teacher_that_is_not_an_rlfn_of_the_scale_is_refused_in_one_line(
        tmp_path, capsys, make, message):
    config = _config(tmp_path)
    argv = ["--data", *config.data, "--out", str(tmp_path / "o.lutsr"), "--quick",
            "--scale", "2", "--layout", "layered", "--teacher", str(make(tmp_path))]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert "config." not in err  # told as the command line's flags
