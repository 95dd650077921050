"""Training code: torch models match the runtime exactly; build_lut.py end to end."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_images_equal, random_lut, with_taps

torch = pytest.importorskip("torch")

from lutsr.reference import run_lut  # noqa: E402
from train.nets import NetModel, TableModel, layout_of, mulut_layout, srlut_layout  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _run(model, img, **kw):
    with torch.no_grad():
        return model(torch.tensor(img, dtype=torch.float32)[None, None], **kw)[0, 0].numpy()


@pytest.mark.parametrize("layout, interval, scale", [
    ("srlut", 4, 4), ("srlut", 5, 2), ("mulut", 4, 2), ("mulut", 6, 3)])
@pytest.mark.parametrize("shape", [(8, 8), (5, 9)])  # square: rotations batched; else not
@pytest.mark.parametrize("window", [None, 1, 4])  # fixed patterns, or learned taps
def test_table_model_is_bit_exact_with_the_runtime(layout, interval, scale, shape, window):
    """Guards the claim that LUT-aware fine-tuning optimises what runs."""
    rng = np.random.default_rng(interval * 10 + scale)
    lut = random_lut(rng, interval=interval, layout=layout, scale=scale)
    if window:
        lut = with_taps(lut, rng, window)
    model = TableModel(layout_of(lut), [list(s.tables) for s in lut.stages], interval)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    assert_images_equal(_run(model, img).astype(np.uint8), run_lut(img, lut), layout)


@pytest.mark.parametrize("interval", [4, 5])
def test_sampled_net_equals_its_lut_at_grid_points(interval):
    """A net with rounded outputs and its sampled LUT agree exactly on grid-valued images.

    Catches mismatches between the net's and the runtime's tap order, padding,
    rotation, output block layout and sampling grid.
    """
    torch.manual_seed(0)
    net = NetModel(srlut_layout(3), width=16, depth=2)
    for p in net.parameters():  # a random, non-trivial function
        torch.nn.init.normal_(p, std=0.5)
    lut_tables = net.sample_tables(interval)
    from train.nets import to_lut

    lut = to_lut(srlut_layout(3), lut_tables, interval)
    q = 2**interval
    rng = np.random.default_rng(1)
    img = (rng.integers(0, 256 // q, (7, 6)) * q).astype(np.uint8)
    assert_images_equal(_run(net, img, quantize=True).astype(np.uint8), run_lut(img, lut))


def test_untrained_mulut_net_replicates_pixels():
    """Zero-initialised output layers make an untrained model plain pixel replication."""
    net = NetModel(mulut_layout(2), width=8, depth=1)
    img = np.random.default_rng(2).integers(0, 255, (6, 6), dtype=np.uint8)
    expected = np.repeat(np.repeat(img, 2, 0), 2, 1)
    assert_images_equal(_run(net, img).astype(np.uint8), expected)


def _images(folder: Path, n: int, size=(64, 48)):
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for name in ["astronaut", "chelsea", "coffee", "rocket"][:n]:
        Image.fromarray(getattr(data, name)()).resize(size).save(folder / f"{name}.png")
    return folder


def _build(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "build_lut.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("layout", ["srlut", "mulut"])
def test_build_lut_quick_produces_a_loadable_lut(tmp_path, layout):
    import lutsr

    data = _images(tmp_path / "imgs", 3)
    out = tmp_path / "m.lutsr"
    # srlut also holds out one image of three for validation
    val = ["--val-every", 3, "--lsq-reweight", 1] if layout == "srlut" else []
    res = _build("--quick", "--data", data, "--out", out, "--layout", layout, "--scale", 2, *val)
    assert res.returncode == 0, res.stderr[-2000:]
    lut = lutsr.load(out)
    assert lut.scale == 2 and len(lut.stages) == (1 if layout == "srlut" else 2)
    meta = lut.metadata
    assert set(meta["phases"]) >= {"net", "sample", "finetune", "lsq"}
    if val:
        assert meta["images"] == 2 and meta["validation"]["images"] == 1
        assert meta["phases"]["lsq"]["reweight_rounds"] == 1
        assert 10 < meta["validation"]["psnr_y"] < 60
    else:
        assert meta["images"] == 3 and "validation" not in meta
    assert meta["cpu_seconds_total"] > 0
    img = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    assert lutsr.upscale(img, lut).shape == (20, 24, 3)
    # --resume continues from the checkpoints instead of refusing or restarting.
    again = _build("--quick", "--data", data, "--out", out, "--layout", layout, "--scale", 2)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = _build("--quick", "--data", data, "--out", out, "--layout", layout, "--scale", 2,
                     "--resume")
    assert resumed.returncode == 0 and "resumed at iteration 20" in resumed.stdout
    if layout == "mulut":
        # --init continues from a LUT: the earlier stages fine-tuned alone, the last stage
        # refitted; with --refine-stages 2 a replication stage is inserted before the last.
        out2 = tmp_path / "m2.lutsr"
        res = _build("--quick", "--data", data, "--out", out2, "--layout", layout, "--scale", 2,
                     "--init", out, "--finetune-freeze-last", "--lsq-balance", 1,
                     "--refine-stages", 2)
        assert res.returncode == 0, res.stderr[-2000:]
        lut2 = lutsr.load(out2)
        assert [(s.r, s.bias) for s in lut2.stages] == [(1, 127), (1, 128), (2, 0)]
        assert lut2.metadata["init"]["lut"] == lut.name and "net" not in lut2.metadata["phases"]
        # Its own phases plus the cost of the file it started from (``out``, as the
        # --resume run rewrote it). A toy run's own phases may all round to 0.0 s.
        phases2 = lut2.metadata["phases"]
        assert set(phases2) == {"data", "finetune", "lsq"}
        init_total = lutsr.load(out).metadata["cpu_seconds_total"]
        assert lut2.metadata["init"]["cpu_seconds_total"] == init_total > 0
        assert lut2.metadata["cpu_seconds_total"] == pytest.approx(
            sum(p["cpu_seconds"] for p in phases2.values()) + init_total, abs=0.05)
        bad = _build("--quick", "--data", data, "--out", tmp_path / "m3.lutsr", "--scale", 2,
                     "--init", out)  # a two-stage LUT into the one-stage layout
        assert bad.returncode != 0 and "layout" in bad.stderr
        bad = _build("--quick", "--data", data, "--out", tmp_path / "m4.lutsr", "--scale", 2,
                     "--layout", layout, "--init", out2)  # three stages into two
        assert bad.returncode != 0 and "layout" in bad.stderr


def test_net_learned_taps_are_what_the_runtime_reads():
    """A net's learned taps (float weights, rounded as stored) are the reference's taps of
    :meth:`NetModel.tapped_layout`, and they get gradients."""
    from lutsr.reference import learned_taps

    torch.manual_seed(4)
    layout = mulut_layout(2)
    net = NetModel(layout, 8, 1, tap_window=4)
    with torch.no_grad():
        for w in net.tap_weights:
            w.add_(torch.randn_like(w) * 0.3)  # mixes pixels, often past 0 and 255
    img = np.random.default_rng(4).integers(0, 256, (9, 7), dtype=np.uint8)
    x = torch.tensor(img, dtype=torch.float32)[None, None]
    for i, spec in enumerate(net.tapped_layout()):
        assert spec.taps.dtype == np.int16 and spec.taps.shape == (3, 4, 4, 4)
        for p in range(3):
            got = net._taps_of(i)(x, p)[0].detach().numpy()
            np.testing.assert_array_equal(got, learned_taps(img, spec.taps[p], spec.padding))
    net(x).sum().backward()
    assert all(w.grad.abs().sum() > 0 for w in net.tap_weights)
    with pytest.raises(ValueError, match="tap window 2"):
        NetModel(layout, tap_window=2)  # D and Y reach 2 pixels away


def test_build_lut_tap_window(tmp_path):
    """``--tap-window`` trains taps with the nets; the LUT and the net checkpoint carry them."""
    import lutsr
    from train.export import load_net

    data = _images(tmp_path / "imgs", 2)
    out = tmp_path / "t.lutsr"
    res = _build("--quick", "--data", data, "--out", out, "--layout", "mulut", "--scale", 2,
                 "--tap-window", 3)
    assert res.returncode == 0, res.stderr[-2000:]
    lut = lutsr.load(out)
    net = load_net(tmp_path / "t.lutsr.ckpt" / "net.pt")
    for stage, spec in zip(lut.stages, net.tapped_layout()):
        assert stage.taps.shape == (3, 4, 3, 3)
        np.testing.assert_array_equal(stage.taps, spec.taps)
    trained = lut.stages[0].taps
    assert (trained != np.where(trained > 512, 1024, 0)).any()  # moved off one-hot
    res = _build("--quick", "--data", data, "--out", tmp_path / "u.lutsr", "--layout", "mulut",
                 "--tap-window", 2)
    assert res.returncode == 2 and "tap window 2" in res.stderr
    res = _build("--quick", "--data", data, "--out", tmp_path / "v.lutsr", "--layout", "mulut",
                 "--tap-window", 3, "--init", out)
    assert res.returncode == 2 and "--init" in res.stderr


def test_table_model_learned_taps_are_what_the_runtime_reads():
    """Fine-tuned taps (``learn_taps``): bit-exact with the runtime on :meth:`tapped_layout`
    before and after they move, and they get gradients."""
    from train.nets import to_lut

    rng = np.random.default_rng(8)
    lut = with_taps(random_lut(rng, interval=5, layout="mulut", scale=2), rng, 3)
    model = TableModel(layout_of(lut), [list(s.tables) for s in lut.stages], 5, learn_taps=True)
    img = rng.integers(0, 256, (7, 7), dtype=np.uint8)
    assert_images_equal(_run(model, img).astype(np.uint8), run_lut(img, lut))
    x = torch.tensor(img, dtype=torch.float32)[None, None]
    model(x).float().mean().backward()
    assert all(w.grad.abs().sum() > 0 for w in model.tap_steps.values())
    with torch.no_grad():
        for w in model.tap_steps.values():
            w.add_(torch.from_numpy(rng.uniform(-40, 40, w.shape).astype(np.float32)))
    moved = to_lut(model.tapped_layout(), model.int8_tables(), 5)
    assert any((a.taps != b.taps).any() for a, b in zip(moved.stages, lut.stages))
    assert_images_equal(_run(model, img).astype(np.uint8), run_lut(img, moved))


def test_build_lut_init_keeps_learned_taps(tmp_path):
    """``--init`` of a LUT with learned taps fine-tunes and refits its tables, its taps kept."""
    import lutsr
    from train.nets import to_lut

    layout = mulut_layout(2)
    start = with_taps(to_lut(layout, NetModel(layout, 8, 1).sample_tables(6), 6),
                      np.random.default_rng(3), window=3)
    lutsr.save(start, tmp_path / "taps.lutsr")
    out = tmp_path / "m.lutsr"
    res = _build("--quick", "--data", _images(tmp_path / "imgs", 2), "--out", out, "--layout",
                 "mulut", "--scale", 2, "--init", tmp_path / "taps.lutsr")
    assert res.returncode == 0, res.stderr[-2000:]
    lut = lutsr.load(out)
    assert set(lut.metadata["phases"]) == {"data", "finetune", "lsq"}
    for before, after in zip(start.stages, lut.stages):
        np.testing.assert_array_equal(after.taps, before.taps)
        assert any((a != b).any() for a, b in zip(after.tables, before.tables))
    # --finetune-taps moves them too (the quick fine-tuning's 10 steps of 0.5 units: a few steps).
    res = _build("--quick", "--data", tmp_path / "imgs", "--out", tmp_path / "f.lutsr", "--layout",
                 "mulut", "--scale", 2, "--init", tmp_path / "taps.lutsr", "--finetune-taps")
    assert res.returncode == 0, res.stderr[-2000:]
    tuned = lutsr.load(tmp_path / "f.lutsr")
    assert any((a.taps != b.taps).any() for a, b in zip(tuned.stages, start.stages))
    res = _build("--quick", "--data", tmp_path / "imgs", "--out", tmp_path / "g.lutsr", "--layout",
                 "mulut", "--scale", 2, "--finetune-taps")
    assert res.returncode == 2 and "no learned taps" in res.stderr


def test_added_refinement_stage_starts_as_pixel_replication():
    """What ``--refine-stages`` inserts: untrained nets' tables, the identity on 0..240."""
    import lutsr

    for interval in (4, 6):
        _, middle, _ = mulut_layout(2, "SDY", refine_stages=2)
        tables = NetModel([middle], width=1, depth=1).sample_tables(interval)[0]
        stage = lutsr.Stage(1, middle.patterns, tables, middle.divisor, middle.bias, middle.padding)
        img = np.random.default_rng(interval).integers(0, 256 - 2**interval, (9, 11, 3),
                                                       dtype=np.uint8)
        lut = lutsr.LUT(stages=(stage,), interval=interval)
        np.testing.assert_array_equal(lutsr.upscale(img, lut), img)
        # Above the last full grid step the top sample is 255, not 256: off by at most 1.
        top = np.arange(256, dtype=np.uint8).reshape(16, 16)
        assert np.abs(lutsr.upscale(top, lut).astype(int) - top).max() <= 1


def test_build_lut_bad_data(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = _build("--quick", "--data", empty, "--out", tmp_path / "a.lutsr")
    assert res.returncode == 2 and "no images" in res.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    res = _build("--quick", "--data", bad, "--out", tmp_path / "b.lutsr")
    assert res.returncode == 2 and "broken.png" in res.stderr
    small = _images(tmp_path / "small", 1, size=(20, 20))
    res = _build("--quick", "--data", small, "--out", tmp_path / "c.lutsr", "--patch", 16)
    assert res.returncode == 2 and "too small" in res.stderr
    big = _images(tmp_path / "big", 1, size=(64, 64))
    res = _build("--quick", "--data", big, "--out", tmp_path / "d.lutsr", "--shift-aug", "1")
    assert res.returncode == 2 and "DY,DX" in res.stderr
    res = _build("--quick", "--data", big, "--out", tmp_path / "e.lutsr", "--shift-aug", "0,5")
    assert res.returncode == 2 and "shift (0, 5)" in res.stderr
    res = _build("--quick", "--data", big, "--out", tmp_path / "f.lutsr", "--scale", 4,
                 "--patch-margin", 1)  # 16-pixel LR image, 16 + 2 needed
    assert res.returncode == 2 and "at least 18 pixels" in res.stderr
    assert not any(tmp_path.glob("*.lutsr"))


def test_patch_margin_is_context_outside_the_loss():
    from train.fit import PatchSampler, optimise

    rng = np.random.default_rng(1)
    lr = rng.integers(0, 256, (30, 26, 3)).astype(np.float32)
    hr = np.kron(lr, np.ones((2, 2, 1), np.float32))  # nearest-neighbour x2
    small = (lr[:10, :10], hr[:20, :20])  # too small for 8 + 2 * 3: never drawn
    sampler = PatchSampler([(lr, hr), small], scale=2, patch=8, margin=3)
    assert len(sampler.pairs) == 1
    x, y = sampler.batch(5)
    assert x.shape == (5, 1, 14, 14) and y.shape == (5, 1, 16, 16)
    for a, b in zip(x[:, 0].numpy(), y[:, 0].numpy()):  # HR = the upscale of the centre
        np.testing.assert_array_equal(b, np.kron(a[3:-3, 3:-3], np.ones((2, 2))))

    class Nearest(torch.nn.Module):  # exact in the centre, far off in the margin
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            x = x.clone()
            x[..., :3, :] = x[..., -3:, :] = x[..., :3] = x[..., -3:] = 1000.0
            return torch.repeat_interleave(torch.repeat_interleave(x, 2, -1), 2, -2) * self.w

    state = optimise(Nearest(), sampler, iters=1, lr=0.0, batch=4, log=lambda *a: None)
    assert state["loss"] == 0.0


CHECKPOINTS = ROOT / "train" / "checkpoints"


def test_sampled_lut_reproduces_its_net_on_set5():
    """Issue 3's fidelity bar: at 4-bit, sampling costs at most 0.05 dB of Y-PSNR on Set5 x4.

    Uses the committed net checkpoint (600 iterations; see its metadata in the
    README) and the paper protocol's LR inputs.
    """
    from conftest import DATA, need
    from PIL import Image

    from lutsr.metrics import psnr_y
    from lutsr.reference import upscale_reference
    from train.export import load_net
    from train.nets import to_lut

    folder = need(DATA / "test" / "Set5")
    net = load_net(CHECKPOINTS / "srlut-x4-net" / "net.pt")
    lut = to_lut(net.layout, net.sample_tables(4), 4)
    scores = []
    for path in sorted((folder / "HR").glob("*.png")):
        lr = np.asarray(Image.open(folder / "LR_bicubic" / "X4" / path.name).convert("RGB"))
        hr = np.asarray(Image.open(path).convert("RGB"))[:lr.shape[0] * 4, :lr.shape[1] * 4]
        with torch.no_grad():
            planes = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))).float()[:, None]
            by_net = net(planes)[:, 0].numpy().transpose(1, 2, 0).astype(np.uint8)
        scores.append((psnr_y(by_net, hr, 4), psnr_y(upscale_reference(lr, lut), hr, 4)))
    net_db, lut_db = np.mean(scores, axis=0)
    assert net_db > 28.5, f"the checkpoint does not look trained: {net_db:.2f} dB"
    assert abs(net_db - lut_db) <= 0.05, f"net {net_db:.3f} dB vs its LUT {lut_db:.3f} dB"


@pytest.mark.parametrize("layout", ["srlut", "mulut"])
def test_least_squares_recovers_a_stage_from_its_outputs(layout):
    """The CG solver recovers a known stage from its unrounded outputs.

    Guards the forward/adjoint kernels (a wrong vertex, weight or block
    permutation makes the targets unreachable) and the solver. Interval 7 keeps
    the problem overdetermined, so the least-squares solution is the truth.
    """
    from train import lsq

    rng = np.random.default_rng(5)
    lut = random_lut(rng, interval=7, layout=layout, scale=2)
    stage = lut.stages[-1]
    planes = [(rng.integers(0, 256, (12, 9), dtype=np.uint8), np.zeros((24, 18))) for _ in range(6)]
    samples = lsq.collect(stage, 7, planes)
    true = np.stack(stage.tables).astype(np.float64)
    samples.target[:] = lsq.predict(samples, true, stage, 7)
    fitted = lsq.fit(samples, stage, 7, prior=np.zeros_like(true), prior_weight=1e-9,
                     smooth_weight=0, iters=80, log=None)
    err = lsq.predict(samples, fitted, stage, 7) - samples.target
    assert np.sqrt((err**2).mean()) < 0.01, np.sqrt((err**2).mean())


def test_least_squares_clip_rounds_fit_what_the_runtime_clips():
    """Targets made by a stage *and the runtime's clipping* are reached only with ``clip_rounds``.

    A stage overshooting 0..255 on a few percent of its outputs, like photos'
    highlights: the plain fit must also match the clipped values there and so
    misses elsewhere; the clip rounds leave those outputs free and recover the
    stage's clipped output.
    """
    from train import lsq

    rng = np.random.default_rng(14)
    stage = random_lut(rng, interval=7, layout="srlut", scale=2).stages[0]
    true = 0.6 * np.stack(stage.tables) + 32  # outputs about -60 .. 320
    planes = [(rng.integers(0, 256, (12, 9), dtype=np.uint8), np.zeros((24, 18))) for _ in range(8)]
    samples = lsq.collect(stage, 7, planes)
    samples.target[:] = np.clip(lsq.predict(samples, true, stage, 7), 0, 255)
    saturated = np.isin(samples.target, (0, 255)).mean()
    assert 0.005 < saturated < 0.1, saturated

    def clipped_rmse(clip_rounds):
        fitted = lsq.fit(samples, stage, 7, prior=np.zeros_like(true), prior_weight=1e-9,
                         smooth_weight=0, iters=60, log=None, clip_rounds=clip_rounds)
        err = np.clip(lsq.predict(samples, fitted, stage, 7), 0, 255) - samples.target
        return np.sqrt((err**2).mean())

    assert clipped_rmse(4) < 0.05 < 0.5 < clipped_rmse(0)


@pytest.mark.parametrize("window", [None, 3])  # fixed pattern, or learned taps
def test_least_squares_forward_matches_the_runtime(window):
    """``lsq.predict`` on integer tables, rounded, is the runtime's output (divisor 1: exact)."""
    from lutsr import LUT
    from train import lsq

    rng = np.random.default_rng(6)
    lut = random_lut(rng, interval=5, layout="srlut", scale=3)
    if window:
        lut = with_taps(lut, rng, window)
    img = rng.integers(0, 256, (7, 10), dtype=np.uint8)
    samples = lsq.collect(lut.stages[0], 5, [(img, np.zeros((21, 30)))], sort=False)
    pred = lsq.predict(samples, np.stack(lut.stages[0].tables), lut.stages[0], 5)
    got = np.clip(np.round(pred), 0, 255).astype(np.uint8)
    ref = run_lut(img, LUT(lut.stages, 5))
    assert_images_equal(got, ref.reshape(7, 3, 10, 3).transpose(0, 2, 1, 3).reshape(70, 9))


def test_least_squares_luma_mix_is_the_mix_of_the_channels():
    """Channel-mixed samples predict the mix of the per-channel outputs; the fit recovers a stage.

    Guards ``collect(mix=...)`` (``--lsq-luma``): every channel's vertices
    must index the same table, carry its mix weight, and the gain must undo
    the weights' sum.
    """
    from train import lsq

    rng = np.random.default_rng(12)
    stage = random_lut(rng, interval=7, layout="mulut", scale=2).stages[-1]
    true = np.stack(stage.tables).astype(np.float64)
    images = [(rng.integers(0, 256, (8, 9, 3), dtype=np.uint8), np.zeros((16, 18, 3)))
              for _ in range(4)]
    mixed = lsq.collect(stage, 7, images, sort=False, mix=lsq.LUMA_MIX)
    assert mixed.taps.shape[:2] == (4 * 72, 3 * len(stage.patterns)) and mixed.gain == 17
    channels = [lsq.predict(lsq.collect(stage, 7, [(lr[:, :, c], hr[:, :, c]) for lr, hr in images],
                                        sort=False), true, stage, 7) for c in range(3)]
    want = sum(m * (ch - stage.bias) for m, ch in zip(lsq.LUMA_MIX, channels)) / 17 + stage.bias
    np.testing.assert_allclose(lsq.predict(mixed, true, stage, 7), want, atol=1e-9)

    images = [(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), np.zeros((24, 24, 3)))
              for _ in range(12)]
    mixed = lsq.collect(stage, 7, images, mix=lsq.LUMA_MIX)
    mixed.target[:] = lsq.predict(mixed, true, stage, 7)
    fitted = lsq.fit(mixed, stage, 7, prior=np.zeros_like(true), prior_weight=1e-9,
                     smooth_weight=0, iters=80, log=None)
    err = lsq.predict(mixed, fitted, stage, 7) - mixed.target
    assert np.sqrt((err**2).mean()) < 0.01, np.sqrt((err**2).mean())
    with pytest.raises(ValueError, match="mix"):
        lsq.collect(stage, 7, images, mix=(0, 1, 1))
    with pytest.raises(ValueError, match="not"):  # planes where images are due, and back
        lsq.collect(stage, 7, [(lr[:, :, 0], hr[:, :, 0]) for lr, hr in images], mix=(1, 1, 1))
    with pytest.raises(ValueError, match="not"):
        lsq.collect(stage, 7, images)


def test_least_squares_weights_count_like_repeated_samples():
    """A plane of weight 2 pulls the fit exactly as two copies of it do; weight 0 drops it.

    Guards the weighted normal equations (diagonal, right-hand side and
    operator must all carry the weights) of ``--lsq-balance``.
    """
    from train import data as tdata
    from train import lsq

    rng = np.random.default_rng(8)
    stage = random_lut(rng, interval=6, layout="srlut", scale=2).stages[0]
    a, b = ((rng.integers(0, 256, (10, 11), dtype=np.uint8),
             rng.integers(0, 256, (20, 22)).astype(np.float64)) for _ in range(2))
    noise = (rng.integers(0, 256, (6, 5), dtype=np.uint8), np.zeros((12, 10)))
    prior = np.zeros((1, 5**4, 4))  # interval 6: L = 5

    def solve(planes, weights=None):
        samples = lsq.collect(stage, 6, planes, weights=weights)
        return lsq.fit(samples, stage, 6, prior, iters=30, log=None)

    weighted = solve([a, b, noise], weights=[2.0, 1.0, 0.0])
    np.testing.assert_allclose(weighted, solve([a, a, b]), atol=1e-5)  # CG rounding: ~3e-6
    assert np.abs(weighted - solve([a, b])).max() > 0.1  # the weight did change the fit
    # balance_weights: alpha 1 gives every image the same total weight.
    small, big = (np.zeros((4, 4, 3)), None), (np.zeros((8, 8, 3)), None)
    groups = [[small], [big, small]]
    w = tdata.balance_weights(groups, 1.0)
    assert w[0] * 16 == pytest.approx(w[1] * 64) and w[1] == w[2]
    assert tdata.balance_weights(groups, 0.0) == [1.0, 1.0, 1.0]


def test_least_squares_margin_drops_the_border_ring():
    """``margin`` zeroes the weight of exactly the pixels within it of each plane's edge."""
    from train import lsq

    rng = np.random.default_rng(13)
    stage = random_lut(rng, interval=6, layout="srlut", scale=2).stages[0]
    planes = [(rng.integers(0, 256, (5, 7), dtype=np.uint8), np.zeros((10, 14))),
              (rng.integers(0, 256, (3, 4), dtype=np.uint8), np.zeros((6, 8)))]
    samples = lsq.collect(stage, 6, planes, sort=False, weights=[2.0, 3.0], margin=1)
    want = np.zeros(35 + 12, np.float32)
    want[:35].reshape(5, 7)[1:4, 1:6] = 2
    want[35:].reshape(3, 4)[1:2, 1:3] = 3
    np.testing.assert_array_equal(samples.weight, want)


def test_least_squares_samples_are_sorted_in_place_without_loss():
    """``collect`` sorts all sample arrays by one permutation, in place; uint8 targets stay."""
    from train import lsq

    rng = np.random.default_rng(9)
    stage = random_lut(rng, interval=6, layout="mulut", scale=2).stages[-1]
    planes = [(rng.integers(0, 256, (7, 9), dtype=np.uint8),
               rng.integers(0, 256, (14, 18), dtype=np.uint8)) for _ in range(3)]
    plain = lsq.collect(stage, 6, planes, sort=False, weights=[1.0, 2.0, 3.0])
    ordered = lsq.collect(stage, 6, planes, weights=[1.0, 2.0, 3.0])
    assert ordered.target.dtype == np.uint8
    order = np.argsort(lsq.first_rows(plain, 6), kind="stable")
    assert (np.diff(lsq.first_rows(ordered, 6)) >= 0).all()
    for name in ("taps", "target", "weight"):
        np.testing.assert_array_equal(getattr(ordered, name), getattr(plain, name)[order], name)


def test_least_squares_mse_is_the_error_of_the_clipped_prediction():
    """``lsq.mse`` (no array of predictions) equals the error of ``predict``'s output, clipped.

    Rounded or not, weighted or not; and a sample holds its taps, not its
    vertices: 68 bytes for 3 patterns at x4 (48 of taps, 16 of targets, 4 of weight).
    """
    from train import lsq

    rng = np.random.default_rng(15)
    stage = random_lut(rng, interval=4, layout="mulut", scale=4).stages[-1]
    planes = [(rng.integers(0, 256, (9, 8), dtype=np.uint8),
               rng.integers(0, 256, (36, 32), dtype=np.uint8)) for _ in range(3)]
    samples = lsq.collect(stage, 4, planes, weights=[1.0, 0.5, 2.0])
    tables = 1.7 * np.stack(stage.tables) + rng.normal(0, 3, (3, 17**4, 16))  # outputs overshoot
    pred = lsq.predict(samples, tables, stage, 4)
    assert (pred < 0).any() and (pred > 255).any()
    for rounded in (False, True):
        err = (np.clip(np.round(pred) if rounded else pred, 0, 255) - samples.target) ** 2
        per_sample = err.mean(1)
        assert lsq.mse(samples, tables, stage, 4, rounded=rounded) == pytest.approx(
            per_sample @ samples.weight / samples.weight.sum(), rel=1e-9)
        assert lsq.mse(samples, tables, stage, 4, rounded=rounded, weighted=False) == (
            pytest.approx(per_sample.mean(), rel=1e-9))
    held = sum(a.nbytes for a in (samples.taps, samples.target, samples.weight))
    assert held == 68 * len(samples) == 68 * 3 * 72


def test_shift_augmentation_cuts_the_hr_image_at_an_offset(tmp_path):
    from PIL import Image

    from train import data as tdata

    rng = np.random.default_rng(10)
    hr = rng.integers(0, 256, (37, 41, 3), dtype=np.uint8)
    Image.fromarray(hr).save(tmp_path / "a.png")
    (group,) = tdata.load_groups([tmp_path / "a.png"], 4, shift_aug=[(1, 3), (2, 0)])
    assert len(group) == 3
    for (lr, hr_pair), (dy, dx) in zip(group, [(0, 0), (1, 3), (2, 0)], strict=True):
        want_lr, want_hr = tdata.make_pairs(hr[dy:, dx:], 4)
        np.testing.assert_array_equal(lr, want_lr)
        np.testing.assert_array_equal(hr_pair, want_hr)
    with pytest.raises(ValueError, match="shift"):
        tdata.load_groups([tmp_path / "a.png"], 4, shift_aug=[(4, 0)])


def test_invert_augmentation_adds_the_negative_of_every_pair(tmp_path):
    from PIL import Image

    from train import data as tdata

    rng = np.random.default_rng(11)
    hr = rng.integers(0, 256, (37, 41, 3), dtype=np.uint8)
    Image.fromarray(hr).save(tmp_path / "a.png")
    (group,) = tdata.load_groups([tmp_path / "a.png"], 4, scale_aug=[0.5], invert_aug=True)
    assert len(group) == 4
    for (lr, hr_pair), (lr_neg, hr_neg) in zip(group[:2], group[2:], strict=True):
        np.testing.assert_array_equal(hr_neg, 255 - hr_pair)
        np.testing.assert_array_equal(lr_neg, tdata.make_pairs(255 - hr_pair, 4)[0])
        # The downscale is linear: the negative's LR is the LR's negative up to rounding.
        assert np.abs(lr_neg.astype(int) - (255 - lr.astype(int))).max() <= 1


def test_prefilter_is_the_least_squares_inverse_of_the_bicubic_upscale():
    from skimage import data

    from lutsr.resize import imresize, modcrop
    from train.data import prefilter

    rng = np.random.default_rng(12)
    z0 = rng.integers(20, 236, (9, 13, 3)).astype(np.uint8)
    for img in (z0, z0[:, :, 0]):  # an exact upscale gives its source back
        np.testing.assert_array_equal(prefilter(imresize(img.astype(np.float64), 4), 4), img)
    hr = modcrop(data.astronaut()[::2, ::2], 4).astype(np.float64)
    for scale in (2, 3, 4):
        hr_s = modcrop(hr, scale)
        # Among LR images it is the one whose upscale is closest (up to its rounding):
        # on this photo 10-15 % closer than the downscale's.
        err_z = np.mean((imresize(prefilter(hr_s, scale).astype(np.float64), scale) - hr_s) ** 2)
        err_lr = np.mean((imresize(imresize(hr_s, 1 / scale), scale) - hr_s) ** 2)
        assert err_z < 0.92 * err_lr
    with pytest.raises(ValueError, match="multiple"):
        prefilter(hr[:-1], 4)


def test_build_lut_first_stage_prefilter(tmp_path):
    import lutsr
    from train import data as tdata

    data = _images(tmp_path / "imgs", 3)
    out = tmp_path / "p.lutsr"
    res = _build("--quick", "--data", data, "--out", out, "--layout", "mulut", "--scale", 2,
                 "--first-stage", "prefilter", "--interval", 4, "--lsq-iters", 8,
                 "--first-divisor", 6)
    assert res.returncode == 0, res.stderr[-2000:]
    lut = lutsr.load(out)
    assert lut.stages[0].divisor == 6 and lut.stages[1].divisor == 3
    assert "lsq_stage1" in lut.metadata["phases"]
    # Stage 1 now maps each training LR image close to its prefiltered target,
    # far closer than pixel replication (its starting point) does.
    first = lutsr.LUT(stages=lut.stages[:1], interval=lut.interval)
    err_fit = err_lr = 0.0
    for lr, hr in tdata.load_pairs(tdata.list_images([data]), 2):
        target = tdata.prefilter(hr, 2).astype(np.float64)
        err_fit += np.mean((lutsr.upscale(lr, first) - target) ** 2)
        err_lr += np.mean((lr - target) ** 2)
    assert err_fit < 0.5 * err_lr
    # --base linear on a two-stage LUT: stage 1 kept from --init, the last stage refitted
    # over a base, its divisor 3 raised to 4 (a base needs q * divisor a power of two).
    based = tmp_path / "pb.lutsr"
    res = _build("--quick", "--data", data, "--out", based, "--layout", "mulut", "--scale", 2,
                 "--first-divisor", 6, "--init", out, "--finetune-iters", 0, "--base", "linear")
    assert res.returncode == 0, res.stderr[-2000:]
    lut_b = lutsr.load(based)
    assert all(np.array_equal(a, b) for a, b in zip(lut_b.stages[0].tables, lut.stages[0].tables))
    assert lut_b.stages[1].divisor == 4 and lut_b.stages[1].base is not None
    assert set(lut_b.metadata["phases"]) == {"data", "base", "lsq"}
    err = {"init": 0.0, "based": 0.0}
    for lr, hr in tdata.load_pairs(tdata.list_images([data]), 2):
        err["init"] += np.mean((lutsr.upscale(lr, lut) - hr.astype(np.float64)) ** 2)
        err["based"] += np.mean((lutsr.upscale(lr, lut_b) - hr.astype(np.float64)) ** 2)
    assert err["based"] < err["init"], err
    bad = _build("--quick", "--data", data, "--out", tmp_path / "s.lutsr", "--scale", 2,
                 "--first-stage", "prefilter")
    assert bad.returncode == 2 and "two stages" in bad.stderr
    bad = _build("--quick", "--data", data, "--out", tmp_path / "s.lutsr", "--scale", 2,
                 "--first-divisor", 6)
    assert bad.returncode == 2 and "--layout mulut" in bad.stderr


def test_error_weights_are_the_mean_mse_over_each_images_mse():
    """One IRLS step toward the mean PSNR: an image with 4x the MSE counts a quarter."""
    import lutsr
    from train.data import error_weights

    rng = np.random.default_rng(3)
    lut = random_lut(rng, interval=6, layout="srlut", scale=2)
    lr = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    out = lutsr.upscale(lr, lut).astype(np.int16)
    # HR images off the LUT's output by exactly 2, 4 and 0 (floored to mse 1) levels.
    offsets = [np.where(rng.random(out.shape) < 0.5, -d, d) for d in (2, 4, 0)]
    pairs = [(lr, out + off) for off in offsets]
    mse = np.array([4.0, 16.0, 1.0])
    assert error_weights(pairs, lut) == pytest.approx(list(mse.mean() / mse))


def test_fit_linear_base_recovers_a_linear_target():
    """Targets made by a known base are fitted back to it, up to the int16 rounding."""
    from conftest import bicubic_base

    from lutsr.reference import base_term
    from train.base import fit_linear_base

    rng = np.random.default_rng(4)
    want = (bicubic_base(3) + rng.integers(-300, 300, (3, 3, 5, 5))).astype(np.int16)
    planes = [(lr, base_term(lr, want, "edge"))
              for lr in rng.integers(0, 256, (4, 9, 11), dtype=np.uint8)]
    np.testing.assert_array_equal(fit_linear_base(planes, 3, "edge"), want)
    with pytest.raises(ValueError, match="planes"):
        fit_linear_base(planes, 3, "edge", weights=[1.0])


def test_build_lut_linear_base(tmp_path):
    """--base linear: a one-stage LUT with a base whose table fits the residual."""
    import lutsr
    from train import data as tdata

    data = _images(tmp_path / "imgs", 3)
    out = tmp_path / "b.lutsr"
    res = _build("--quick", "--data", data, "--out", out, "--scale", 2, "--base", "linear",
                 "--lsq-iters", 8)
    assert res.returncode == 0, res.stderr[-2000:]
    lut = lutsr.load(out)
    stage = lut.stages[0]
    assert stage.base is not None and "base" in lut.metadata["phases"]
    assert set(lut.metadata["phases"]) == {"data", "base", "sample", "lsq"}
    # On its training images the model beats its linear term alone, which beats
    # pixel replication: the table adds to the base, the base to nothing.
    only_base = lutsr.LUT((dataclasses.replace(stage, tables=tuple(
        np.zeros_like(t) for t in stage.tables)),), lut.interval)
    err = {"lut": 0.0, "base": 0.0, "nearest": 0.0}
    for lr, hr in tdata.load_pairs(tdata.list_images([data]), 2):
        hr = hr.astype(np.float64)
        err["lut"] += np.mean((lutsr.upscale(lr, lut) - hr) ** 2)
        err["base"] += np.mean((lutsr.upscale(lr, only_base) - hr) ** 2)
        err["nearest"] += np.mean((lr.repeat(2, 0).repeat(2, 1) - hr) ** 2)
    assert err["lut"] < err["base"] < err["nearest"]
    bad = _build("--quick", "--data", data, "--out", tmp_path / "c.lutsr", "--base", "linear",
                 "--layout", "mulut")
    assert bad.returncode == 2 and "--layout mulut without --init" in bad.stderr
    bad = _build("--quick", "--data", data, "--out", tmp_path / "d.lutsr", "--scale", 2,
                 "--init", out)  # later phases would take the residual table for a plain one
    assert bad.returncode == 2 and "linear base" in bad.stderr


def test_net_one_hot_taps_are_the_fixed_patterns():
    """``NetModel(tap_window=...)`` starts as the fixed patterns: the controls of
    train/experiments/learned_taps.py (``--fixed``) are the standard model."""
    torch.manual_seed(1)
    layout = mulut_layout(4)
    model = NetModel(layout, 32, 3, tap_window=3)
    for param in model.nets.parameters():  # not the zero output layer: no replication
        torch.nn.init.normal_(param, std=0.3)
    plain = NetModel(layout, 32, 3)
    plain.nets.load_state_dict(model.nets.state_dict())
    rng = np.random.default_rng(5)
    for shape in [(8, 8), (6, 9)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(_run(model, img, quantize=True),
                                      _run(plain, img, quantize=True))


def test_channel_experiment_control_is_the_standard_model(monkeypatch):
    """train/experiments/channels.py: a widened model whose extra planes are unread
    computes what the shipped model class computes, so its C = 1 run is the control."""
    monkeypatch.syspath_prepend(str(ROOT / "train" / "experiments"))
    from channels import ChannelNetModel

    torch.manual_seed(2)
    layout = mulut_layout(4, refine_stages=2)
    wide = ChannelNetModel(layout, 2, 16, 2, 5)
    for param in wide.nets.parameters():
        torch.nn.init.normal_(param, std=0.3)
    plain = NetModel(layout, 16, 2, tap_window=5)
    state = wide.nets.state_dict()
    for key, value in plain.nets.state_dict().items():  # plane 0 of widened output layers
        value.copy_(state[key][:value.shape[0]])
    for mine, theirs in zip(plain.tap_weights, wide.tap_weights):
        assert not theirs[:, 1:].any()  # the extra plane starts unread
        mine.data.copy_(theirs[:, :1])
    img = np.random.default_rng(3).integers(0, 256, (7, 9), dtype=np.uint8)
    np.testing.assert_array_equal(_run(wide, img, quantize=True), _run(plain, img, quantize=True))
    with torch.no_grad():  # and reading it changes the output: the plane is really there
        wide.tap_weights[3][:, 1] += 0.5  # stage 2's first table reads plane 1
    assert not np.array_equal(_run(wide, img, quantize=True), _run(plain, img, quantize=True))
