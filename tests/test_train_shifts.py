"""Learned shifts of layered stages (``--learn-shifts``): the offsets' gradients, the
rounding to the runtime's integer shifts, and the build phase that learns them."""

import dataclasses
import re

import numpy as np
import pytest
from conftest import assert_images_equal, sample_images

torch = pytest.importorskip("torch")

import lutsr  # noqa: E402
from lutsr.reference import run_layered_stage  # noqa: E402
from train.build import build  # noqa: E402
from train.build_lut import in_flags  # noqa: E402
from train.config import BuildConfig, BuildError, check, quick  # noqa: E402
from train.layered import (  # noqa: E402
    LayeredNet,
    LearnedShift,
    bilinear_shift,
    shift_channels,
    spread_shifts,
)


def test_bilinear_shift_gradients_match_finite_differences():
    """Offsets away from integers (there the gradient is one-sided), float64."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    offsets = torch.tensor([[0.3, -1.2, 2.4], [1.7, -0.4, -2.5]], dtype=torch.float64,
                           requires_grad=True)
    assert torch.autograd.gradcheck(lambda o, v: bilinear_shift(v, o), (offsets, x))


def test_bilinear_shift_at_integer_offsets_is_the_runtime_shift():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.integers(-32, 32, (2, 4, 7, 5)).astype(np.float32))
    shifts = np.array([[0, 2, -3, 1], [-1, 0, 3, -2]])
    assert torch.equal(bilinear_shift(x, torch.from_numpy(shifts).float()),
                       shift_channels(x, shifts))


def test_learned_shift_moves_toward_the_target_offset():
    # Target: each channel shifted by its own integer (dy, dx); from a start 0.6 px or
    # more off, plain gradient steps on the (unrounded) sampling must reach it.
    y, x = np.mgrid[:20, :20]
    plane = np.sin(x / 3.0) * 20 + np.cos(y / 4.0) * 20
    planes = torch.from_numpy(np.stack([plane, plane.T])[None].astype(np.float32))
    want = np.array([[1, -2], [-1, 0]])
    target = shift_channels(planes, want)[..., 4:-4, 4:-4]
    shift = LearnedShift(np.zeros((2, 2)) + [[0.4, -1.3], [-0.2, 0.6]], radius=3, unit=0.1)
    opt = torch.optim.Adam(shift.parameters(), lr=0.5)
    for _ in range(200):
        loss = ((bilinear_shift(planes, shift.offsets())[..., 4:-4, 4:-4] - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    np.testing.assert_allclose(shift.offsets().detach().numpy(), want, atol=0.1)
    assert np.array_equal(shift.rounded(), want)


def test_offsets_stay_within_the_radius():
    shift = LearnedShift([[5.0, -0.4], [-9.0, 2.6]], radius=2, unit=0.5)
    assert np.array_equal(shift.rounded(), [[2, 0], [-2, 2]])
    with pytest.raises(ValueError, match="radius"):
        LearnedShift(np.zeros((2, 2)), radius=16, unit=1.0)


def test_a_net_learning_shifts_passes_gradients_to_them():
    net = LayeredNet.random(2, 2, shifts=spread_shifts(2, 4, 1), init_std=10.0, seed=3)
    net.learning_shifts(radius=2, unit=0.05)
    img = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (2, 1, 9, 8))
                           .astype(np.float32))
    net(img).square().mean().backward()
    for pw in net.pw:
        assert pw.learned.raw.grad is not None and pw.learned.raw.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="round them first"):
        net.to_stage()


@pytest.mark.parametrize("blocks, radius", [(1, 1), (2, 3), (3, 15)])
def test_frozen_shifts_export_the_net_exactly(blocks, radius):
    """After rounding, the runtime stage computes what the net does, pixel for pixel."""
    rng = np.random.default_rng(blocks)
    net = LayeredNet.random(4, blocks, shifts=spread_shifts(blocks, 16, 1), init_std=30.0,
                            seed=blocks)
    net.learning_shifts(radius, unit=0.25)  # a power of two: the ties below stay ties
    offsets = rng.uniform(-radius - 1, radius + 1, (blocks, 2, 16))
    offsets[:, :, :3] = [[-0.5], [0.5]]  # ties: round half to even
    for pw, o in zip(net.pw, offsets, strict=True):
        with torch.no_grad():
            pw.learned.raw.copy_(torch.from_numpy(o / 0.25))
    net.frozen_shifts()
    stage = net.to_stage()
    for (_, pw), o in zip(stage.blocks, offsets, strict=True):
        want = np.clip(np.round(o), -radius, radius)
        assert np.array_equal(pw.shifts, want) and np.abs(pw.shifts).max() <= radius
        assert not pw.shifts[:, :3].any()
    lut = lutsr.LUT(stages=(stage,), name="t")
    img = rng.integers(0, 256, (2, 1, 12, 10)).astype(np.float32)
    with torch.no_grad():
        out = net(torch.from_numpy(img)).numpy()
    for b in range(2):
        plane = img[b, 0].astype(np.uint8)
        want = run_layered_stage(plane, stage)
        assert_images_equal(out[b, 0].astype(np.uint8), want, "torch")
        assert_images_equal(lutsr.upscale(plane, lut), want, "numba")


def test_quick_build_learns_shifts_end_to_end(tmp_path):
    data = sample_images(tmp_path / "imgs", 3, (40, 32))
    config = quick(BuildConfig(data=(str(data),), scale=2, layout="layered", learn_shifts=2,
                               shift_lr=0.5, val_every=3, checkpoint_dir=str(tmp_path / "ck")))
    assert config.shift_iters == 10
    config = dataclasses.replace(config, net_lr=0.5)
    lut = build(config, log=lambda line: None)
    assert list(lut.metadata["phases"]) == ["data", "shifts", "net", "finetune"]
    assert lut.metadata["phases"]["shifts"]["iterations"] == 10
    assert lut.metadata["config"]["learn_shifts"] == 2
    (stage,) = lut.stages
    start = spread_shifts(2, 4, 1)
    assert all(np.abs(pw.shifts).max() <= 2 for _, pw in stage.blocks)
    assert any(not np.array_equal(pw.shifts, s) for (_, pw), s in zip(stage.blocks, start))
    # the shifts phase's checkpoint holds the offsets the stage's shifts were rounded from
    saved = torch.load(tmp_path / "ck" / "shifts.pt", weights_only=True)["model"]
    for b, (_, pw) in enumerate(stage.blocks):
        unit = config.shift_lr / config.net_lr
        offsets = np.clip(saved[f"pw.{b}.learned.raw"].numpy() * unit, -2, 2)
        assert np.array_equal(pw.shifts, np.round(offsets))
    img = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    again = lutsr.load(lutsr.save(lut, tmp_path / "l.lutsr"))
    assert np.array_equal(lutsr.upscale(img, again), lutsr.upscale(img, lut, backend="reference"))
    # resuming finds every phase done and rebuilds the same stage
    resumed = build(dataclasses.replace(config, resume=True), log=lambda line: None)
    for old, new in zip(stage.layers, resumed.stages[0].layers, strict=True):
        assert np.array_equal(old.tables, new.tables)
        assert (old.shifts is None) == (new.shifts is None)
        assert old.shifts is None or np.array_equal(old.shifts, new.shifts)


@pytest.mark.parametrize("fields, library, cli", [
    ({"learn_shifts": 16}, "radius in 1..15", "--learn-shifts takes a radius in 1..15"),
    ({"learn_shifts": 1, "shift_radius": 2}, "at least config.shift_radius",
     "at least --shift-radius"),
    ({"learn_shifts": 2, "init": "x4-layered"}, "config.init keeps", "--init keeps"),
    ({"learn_shifts": 2, "shift_iters": 0}, "config.shift_iters at least 1",
     "--shift-iters at least 1"),
    ({"learn_shifts": 2, "shift_lr": 0.0}, "positive", "positive --shift-lr and --net-lr"),
    ({"shift_iters": 5}, "are for config.learn_shifts", "are for --learn-shifts"),
    ({"shift_lr": 0.1}, "are for config.learn_shifts", "are for --learn-shifts"),
])
def test_learned_shift_options_refused(fields, library, cli):
    """``check`` names the fields; the command line (``in_flags``) the flags."""
    with pytest.raises(BuildError, match=re.escape(library)) as exc:
        check(BuildConfig(data=("d",), layout="layered", lsq_iters=0, **fields))
    assert cli in in_flags(str(exc.value))


def test_learned_shifts_need_a_layered_layout():
    with pytest.raises(BuildError, match=re.escape(
            "config.learn_shifts are for config.layout='layered'")) as exc:
        check(BuildConfig(data=("d",), learn_shifts=2))
    assert "--learn-shifts are for --layout layered" in in_flags(str(exc.value))


def test_command_line_flags(tmp_path, capsys):
    from train.build_lut import parse_args
    config, _ = parse_args(["--data", "d", "--out", str(tmp_path / "o.lutsr"), "--layout",
                            "layered", "--learn-shifts", "3", "--shift-iters", "500",
                            "--shift-lr", "0.05"])
    assert (config.learn_shifts, config.shift_iters, config.shift_lr) == (3, 500, 0.05)
    default, _ = parse_args(["--data", "d", "--out", str(tmp_path / "o.lutsr"), "--layout",
                             "layered"])
    assert default.learn_shifts == 0  # the fixed spread stays the default
    with pytest.raises(SystemExit) as exc:
        parse_args(["--data", "d", "--out", str(tmp_path / "o.lutsr"), "--layout", "layered",
                    "--learn-shifts", "16"])
    assert exc.value.code == 2
    assert "--learn-shifts takes a radius" in capsys.readouterr().err
