"""Training code: torch models match the runtime exactly; the build pipeline end to end."""

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    HANG_GUARD_S,
    assert_images_equal,
    random_lut,
    sample_images,
    with_taps,
)

torch = pytest.importorskip("torch")

import lutsr  # noqa: E402
from lutsr.reference import run_lut  # noqa: E402
from train import data as tdata  # noqa: E402
from train.build import build  # noqa: E402
from train.build_lut import FLAGS, in_flags, main, parse_args  # noqa: E402
from train.build_shared import data_names  # noqa: E402
from train.config import BuildConfig, BuildError, check, quick  # noqa: E402
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


def _quick(data, **fields) -> BuildConfig:
    """The CI-sized configuration of ``--quick`` on the folder ``data``, at x2 unless told."""
    return quick(BuildConfig(data=(str(data),), **{"scale": 2, **fields}))


def _build(config: BuildConfig):
    """The LUT of ``config`` and the lines the build logged."""
    logged = []
    return build(config, log=logged.append), logged


def _refused(config: BuildConfig, library: str, cli: str) -> None:
    """``check`` refuses ``config`` naming its fields (``library``), and what the command
    line prints of it names their flags (``cli``): a message in the other's terms fails."""
    with pytest.raises(BuildError, match=re.escape(library)) as exc:
        check(config)
    assert cli in in_flags(str(exc.value)), in_flags(str(exc.value))


def test_build_lut_command_line(tmp_path):
    """The one end-to-end run of tools/build_lut.py: flags in, a loadable .lutsr file out."""
    data = sample_images(tmp_path / "imgs", 3)
    out = tmp_path / "m.lutsr"

    def run(*args):
        return subprocess.run([sys.executable, str(ROOT / "tools" / "build_lut.py"), "--quick",
                               "--data", str(data), "--out", str(out), "--scale", "2", *args],
                              capture_output=True, text=True, timeout=HANG_GUARD_S)

    res = run("--val-every", "3")  # holds out one image of three for validation
    assert res.returncode == 0, res.stderr[-2000:]
    lut = lutsr.load(out)
    assert lut.scale == 2 and len(lut.stages) == 1 and lut.name == "m"
    meta = lut.metadata
    assert set(meta["phases"]) == {"data", "net", "sample", "finetune", "lsq"}
    assert meta["images"] == 2 and meta["validation"]["images"] == 1
    assert 10 < meta["validation"]["psnr_y"] < 60
    assert meta["cpu_seconds_total"] > 0
    assert meta["config"]["net_iters"] == 20 and meta["config"]["val_every"] == 3
    # Provenance names the data relative to its root, never this machine's paths.
    assert meta["data"] == ["imgs"] and str(tmp_path) not in json.dumps(meta)
    img = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    assert lutsr.upscale(img, lut).shape == (20, 24, 3)
    again = run()  # its checkpoints are in m.lutsr.ckpt/: refused without --resume
    assert again.returncode == 2 and "--resume" in again.stderr


def test_build_resumes_and_grows_from_a_lut(tmp_path):
    """A resumed build continues its checkpoints; ``init`` continues from a LUT."""
    data = sample_images(tmp_path / "imgs", 3)
    ckpt = tmp_path / "m.ckpt"
    lut, _ = _build(_quick(data, layout="mulut", checkpoint_dir=str(ckpt), name="m"))
    assert len(lut.stages) == 2 and lut.metadata["images"] == 3
    assert set(lut.metadata["phases"]) == {"data", "net", "sample", "finetune", "lsq"}
    assert "validation" not in lut.metadata
    with pytest.raises(BuildError, match="config.resume"):
        _build(_quick(data, layout="mulut", checkpoint_dir=str(ckpt)))
    resumed, logged = _build(_quick(data, layout="mulut", checkpoint_dir=str(ckpt),
                                    resume=True, name="m"))
    assert "net: resumed at iteration 20 from" in "\n".join(logged)
    for a, b in zip(resumed.stages, lut.stages, strict=True):  # every phase was kept
        assert all(np.array_equal(x, y) for x, y in zip(a.tables, b.tables, strict=True))
    # init: the earlier stages fine-tuned alone, the last stage refitted; with
    # refine_stages 2 a replication stage is inserted before the last.
    lutsr.save(lut, tmp_path / "m.lutsr")
    grown, _ = _build(_quick(data, layout="mulut", init=str(tmp_path / "m.lutsr"),
                             finetune_freeze_last=True, refine_stages=2))
    assert [(s.r, s.bias) for s in grown.stages] == [(1, 127), (1, 128), (2, 0)]
    meta = grown.metadata
    assert meta["init"]["lut"] == "m" and meta["config"]["init"] == "m.lutsr"
    # Its own phases plus the cost of the LUT it started from. A toy run's own
    # phases may all round to 0.0 s.
    assert set(meta["phases"]) == {"data", "finetune", "lsq"}
    assert meta["init"]["cpu_seconds_total"] == lut.metadata["cpu_seconds_total"] > 0
    assert meta["cpu_seconds_total"] == pytest.approx(
        sum(p["cpu_seconds"] for p in meta["phases"].values())
        + lut.metadata["cpu_seconds_total"], abs=0.05)
    lutsr.save(grown, tmp_path / "g.lutsr")
    with pytest.raises(BuildError, match="layout"):  # two stages into the one-stage layout
        _build(_quick(data, init=str(tmp_path / "m.lutsr")))
    with pytest.raises(BuildError, match="layout"):  # three stages into two
        _build(_quick(data, layout="mulut", init=str(tmp_path / "g.lutsr")))


def test_build_tap_window(tmp_path):
    """``tap_window`` trains taps with the nets; the LUT and the net checkpoint carry them."""
    from train.checkpoint import load_net

    data = sample_images(tmp_path / "imgs", 2)
    lut, _ = _build(_quick(data, layout="mulut", tap_window=3,
                           checkpoint_dir=str(tmp_path / "ckpt")))
    net = load_net(tmp_path / "ckpt" / "net.pt")
    for stage, spec in zip(lut.stages, net.tapped_layout(), strict=True):
        assert stage.taps.shape == (3, 4, 3, 3)
        np.testing.assert_array_equal(stage.taps, spec.taps)
    trained = lut.stages[0].taps
    assert (trained != np.where(trained > 512, 1024, 0)).any()  # moved off one-hot
    with pytest.raises(BuildError, match="tap window 2"):
        _build(_quick(data, layout="mulut", tap_window=2))
    _refused(_quick(data, layout="mulut", tap_window=3, init="x4-sdy"),
             "config.init keeps", "--tap-window trains new taps with the nets; --init keeps")


def test_build_init_keeps_learned_taps(tmp_path):
    """``init`` of a LUT with learned taps fine-tunes and refits its tables, its taps kept."""
    from train.nets import to_lut

    layout = mulut_layout(2)
    start = with_taps(to_lut(layout, NetModel(layout, 8, 1).sample_tables(6), 6),
                      np.random.default_rng(3), window=3)
    lutsr.save(start, tmp_path / "taps.lutsr")
    data = sample_images(tmp_path / "imgs", 2)
    lut, _ = _build(_quick(data, layout="mulut", init=str(tmp_path / "taps.lutsr")))
    assert set(lut.metadata["phases"]) == {"data", "finetune", "lsq"}
    for before, after in zip(start.stages, lut.stages, strict=True):
        np.testing.assert_array_equal(after.taps, before.taps)
        assert any((a != b).any() for a, b in zip(after.tables, before.tables))
    # finetune_taps moves them too (the quick fine-tuning's 10 steps of 0.5 units: a few steps).
    tuned, _ = _build(_quick(data, layout="mulut", init=str(tmp_path / "taps.lutsr"),
                             finetune_taps=True))
    assert any((a.taps != b.taps).any() for a, b in zip(tuned.stages, start.stages))
    with pytest.raises(BuildError, match="no learned taps"):
        _build(_quick(data, layout="mulut", finetune_taps=True))


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


def test_build_refuses_bad_data(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BuildError, match="no images"):
        _build(_quick(empty))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(BuildError, match="broken.png"):
        _build(_quick(bad))
    small = sample_images(tmp_path / "small", 1, size=(20, 20))
    with pytest.raises(BuildError, match="too small"):
        _build(_quick(small, patch=16))
    with pytest.raises(BuildError, match="does not exist"):
        _build(_quick(tmp_path / "nowhere"))


def test_config_checks_what_the_pipeline_does_not_do():
    check(BuildConfig(data=("d",)))
    for fields, library, cli in [
            ({"layout": "mulut", "base": "linear", "net_iters": 0},
             "config.layout='mulut' without config.init", "--layout mulut without --init"),
            ({"base": "linear"}, "config.net_iters", "--net-iters"),  # no nets over a base
            ({"base": "linear", "net_iters": 0, "lsq_iters": 0}, "config.lsq_iters=0",
             "--base linear is fitted by least squares alone, on the last stage (--layout "
             "srlut with --net-iters 0, or --init for the stages before it); it does not "
             "combine with --lsq-iters 0"),
            ({"refine_stages": 2}, "config.refine_stages needs config.layout='mulut'",
             "--refine-stages needs --layout mulut"),
            ({"layout": "mulut", "refine_stages": 5}, "1..4", "1..4"),
            ({"scale": 8}, "config.scale=8", "--scale 8"),
            ({"resume": True}, "checkpoint folder", "--resume needs")]:
        _refused(BuildConfig(data=("d",), **fields), library, cli)
    # quick: the least squares alone over a base, so that --quick --base linear runs.
    check(quick(BuildConfig(data=("d",), base="linear")))


def test_data_names_are_relative_to_the_data_root(tmp_path):
    """What a LUT records of its training folders: paths below their common parent."""
    root = tmp_path / "data"
    assert data_names([root / "train" / "T91", root / "train" / "BSD200"]) == ["T91", "BSD200"]
    assert data_names([root / "train" / "T91"]) == ["T91"]
    assert data_names([root / "train", root / "extra" / "x"]) == ["train", "extra/x"]
    assert data_names([root / "train", root / "train" / "T91"]) == ["train", "train/T91"]


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
    from train.checkpoint import load_net
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


def test_least_squares_samples_are_sorted_in_place_without_loss():
    """``collect`` sorts all sample arrays by one permutation, in place; uint8 targets stay."""
    from train import lsq

    rng = np.random.default_rng(9)
    stage = random_lut(rng, interval=6, layout="mulut", scale=2).stages[-1]
    planes = [(rng.integers(0, 256, (7, 9), dtype=np.uint8),
               rng.integers(0, 256, (14, 18), dtype=np.uint8)) for _ in range(3)]
    plain = lsq.collect(stage, 6, planes, sort=False)
    ordered = lsq.collect(stage, 6, planes)
    assert ordered.target.dtype == np.uint8
    order = np.argsort(lsq.first_rows(plain, 6), kind="stable")
    assert (np.diff(lsq.first_rows(ordered, 6)) >= 0).all()
    for name in ("taps", "target"):
        np.testing.assert_array_equal(getattr(ordered, name), getattr(plain, name)[order], name)


def test_least_squares_mse_is_the_error_of_the_clipped_prediction():
    """``lsq.mse`` (no array of predictions) equals the error of ``predict``'s output, clipped.

    Rounded or not; and a sample holds its taps, not its vertices: 64 bytes
    for 3 patterns at x4 (48 of taps, 16 of targets).
    """
    from train import lsq

    rng = np.random.default_rng(15)
    stage = random_lut(rng, interval=4, layout="mulut", scale=4).stages[-1]
    planes = [(rng.integers(0, 256, (9, 8), dtype=np.uint8),
               rng.integers(0, 256, (36, 32), dtype=np.uint8)) for _ in range(3)]
    samples = lsq.collect(stage, 4, planes)
    tables = 1.7 * np.stack(stage.tables) + rng.normal(0, 3, (3, 17**4, 16))  # outputs overshoot
    pred = lsq.predict(samples, tables, stage, 4)
    assert (pred < 0).any() and (pred > 255).any()
    for rounded in (False, True):
        err = (np.clip(np.round(pred) if rounded else pred, 0, 255) - samples.target) ** 2
        assert lsq.mse(samples, tables, stage, 4, rounded=rounded) == pytest.approx(
            err.mean(), rel=1e-9)
    held = sum(a.nbytes for a in (samples.taps, samples.target))
    assert held == 64 * len(samples) == 64 * 3 * 72
    with pytest.raises(ValueError, match="not"):  # an RGB image where planes are due
        lsq.collect(stage, 4, [(np.zeros((4, 4, 3), np.uint8), np.zeros((16, 16, 3)))])


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
    np.testing.assert_array_equal(fit_linear_base(iter(planes), 3, "edge"), want)  # streamed
    with pytest.raises(ValueError, match="planes"):
        fit_linear_base([], 3, "edge")


def test_build_linear_base(tmp_path):
    """base="linear": a one-stage LUT with a base whose table fits the residual."""
    data = sample_images(tmp_path / "imgs", 3)
    lut, _ = _build(_quick(data, base="linear"))
    stage = lut.stages[0]
    assert stage.base is not None
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
    lutsr.save(lut, tmp_path / "b.lutsr")
    with pytest.raises(BuildError, match="linear base"):  # later phases would take the
        _build(_quick(data, init=str(tmp_path / "b.lutsr")))  # residual table for a plain one


def test_build_linear_base_over_earlier_stages(tmp_path):
    """base="linear" with ``init`` of a two-stage LUT: stage 1 kept, the last stage refitted
    over a base, its divisor 3 raised to 4 (a base needs q * divisor a power of two)."""
    data = sample_images(tmp_path / "imgs", 3)
    start, _ = _build(_quick(data, layout="mulut"))
    lutsr.save(start, tmp_path / "m.lutsr")
    lut, _ = _build(_quick(data, layout="mulut", init=str(tmp_path / "m.lutsr"),
                           base="linear"))
    assert all(np.array_equal(a, b) for a, b in zip(lut.stages[0].tables,
                                                    start.stages[0].tables, strict=True))
    assert start.stages[1].divisor == 3
    assert lut.stages[1].divisor == 4 and lut.stages[1].base is not None
    assert set(lut.metadata["phases"]) == {"data", "base", "lsq"}
    err = {"start": 0.0, "based": 0.0}
    for lr, hr in tdata.load_pairs(tdata.list_images([data]), 2):
        err["start"] += np.mean((lutsr.upscale(lr, start) - hr.astype(np.float64)) ** 2)
        err["based"] += np.mean((lutsr.upscale(lr, lut) - hr.astype(np.float64)) ** 2)
    assert err["based"] < err["start"], err


def test_net_one_hot_taps_are_the_fixed_patterns():
    """``NetModel(tap_window=...)`` starts as the fixed patterns: a ``tap_window`` build
    starts from the standard model."""
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



# --------------------------------------------------------------------------- degraded LR

def _tables(lut) -> list[np.ndarray]:
    return [t for s in lut.stages for t in (*s.tables, *([s.base] if s.base is not None else []))]


def test_degrade_mix_draws_a_seeded_spread():
    """Each LR image's degradation depends on the seed and its index alone; the share holds."""
    from train.degrade import DegradeMix

    mix = DegradeMix(jpeg=(30, 90), h264=(23, 33), share=0.75, seed=5)
    draws = [mix.draw(i) for i in range(400)]
    assert draws == [DegradeMix((30, 90), (23, 33), 0.75, 5).draw(i) for i in range(400)]
    assert draws != [DegradeMix((30, 90), (23, 33), 0.75, 6).draw(i) for i in range(400)]
    degraded = [d for d in draws if d is not None]
    assert 0.68 < len(degraded) / len(draws) < 0.82
    jpeg = {d.level for d in degraded if d.kind == "jpeg"}
    h264 = {d.level for d in degraded if d.kind == "h264"}
    assert min(jpeg) == 30 and max(jpeg) == 90 and len(jpeg) > 30
    assert h264 == set(range(23, 34))
    assert 0.4 < len([d for d in degraded if d.kind == "jpeg"]) / len(degraded) < 0.6
    # Inactive: no range, or no share. Then the pairs are returned as they are.
    from train.degrade import degrade_pairs

    pairs = [(np.zeros((4, 4, 3), np.uint8), np.zeros((8, 8, 3), np.uint8))]
    for off in (DegradeMix(), DegradeMix(jpeg=(30, 40), share=0.0)):
        assert not off.active
        same, counts = degrade_pairs(pairs, off)
        assert same[0][0] is pairs[0][0] and counts == {"clean": 1}


@pytest.mark.parametrize("fields", [{}, {"base": "linear"}])
def test_build_without_degradation_is_unchanged(tmp_path, fields):
    """Degradation off gives the very tables of a build that never heard of it (share 0 too).

    (Checked against the code before degradation existed on these quick builds and a mulut
    one: the tables were byte for byte the same.)
    """
    data = sample_images(tmp_path / "imgs", 3)
    plain, logged = _build(_quick(data, threads=1, **fields))
    zero, _ = _build(_quick(data, threads=1, degrade_jpeg=(30, 40), degrade_share=0.0, **fields))
    assert "degrade" not in plain.metadata and not any("degraded" in line for line in logged)
    for a, b in zip(_tables(plain), _tables(zero), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_build_on_degraded_lr(tmp_path):
    """Degraded LR reaches the fit (other tables), is recorded, and the held-out scores it."""
    data = sample_images(tmp_path / "imgs", 4)
    config = _quick(data, base="linear", val_every=4, scale_aug=(0.75,),
                    val_degrade=("jpeg:30", "h264:28"))
    clean, _ = _build(config)
    lut, logged = _build(dataclasses.replace(config, degrade_jpeg=(20, 40),
                                             degrade_h264=(30, 35), degrade_share=1.0))
    meta = lut.metadata
    counts = meta["degrade"]["counts"]
    assert sum(counts.values()) == meta["training_pairs"] == 6
    assert "clean" not in counts and any("degraded training LR" in x for x in logged)
    assert set(meta["degrade"]["libraries"]) == {"pillow", "pyav", "libavcodec"}
    assert meta["config"]["degrade_jpeg"] == (20, 40) and meta["config"]["degrade_share"] == 1.0
    assert not all(np.array_equal(a, b) for a, b in zip(_tables(clean), _tables(lut)))
    for m in (clean.metadata, meta):
        scores = m["validation"]["psnr_y_degraded"]
        assert set(scores) == {"jpeg:30", "h264:28"}
        assert all(10 < v < m["validation"]["psnr_y"] for v in scores.values())


def test_config_checks_degradations():
    mix = "--degrade-jpeg, --degrade-h264, --degrade-share: "
    for fields, library, cli in [
            ({"degrade_jpeg": (90, 30)}, "LO <= HI", mix),
            ({"degrade_jpeg": (0, 30)}, "1..95", mix),
            ({"degrade_h264": (23, 60)}, "0..51", mix),
            ({"degrade_h264": (23,)}, "two levels", mix),
            ({"degrade_jpeg": (30, 90), "degrade_share": 1.5}, "0..1", mix),
            ({"val_degrade": ("jpeg:30",), "val_every": 10, "degrade_share": 0.5}, None, None),
            ({"val_degrade": ("gif:30",), "val_every": 10}, "not one of", "--val-degrade: "),
            ({"val_degrade": ("jpeg:30",)}, "it needs config.val_every",
             "--val-degrade scores the held-out images: it needs --val-every")]:
        if library is None:
            check(BuildConfig(data=("d",), **fields))
            continue
        _refused(BuildConfig(data=("d",), **fields), library, cli)


def test_every_field_has_its_flag(capsys):
    """``FLAGS`` (what ``in_flags`` writes) names options the command line has."""
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    usage = capsys.readouterr().out
    assert set(FLAGS) == {f.name for f in dataclasses.fields(BuildConfig)}
    missing = [flag for flag in FLAGS.values()
               if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", usage)]
    assert not missing, f"in_flags would name flags the command line lacks: {missing}"


def test_in_flags_rewrites_fields_alone():
    """Fields become flags, quoted values bare; paths and unknown names stay as they are."""
    assert in_flags("config.layout='mulut' without config.init") == "--layout mulut without --init"
    assert in_flags("(config.lsq_iters=0, config.tap_window)") == "(--lsq-iters 0, --tap-window)"
    assert in_flags("config.init='a b.lutsr': no such file") == "--init a b.lutsr: no such file"
    untouched = "/tmp/config.init holds checkpoints; myconfig.seed, config.nothing"
    assert in_flags(untouched) == untouched


def test_command_line_names_flags_in_build_errors(tmp_path, capsys):
    """A refusal from inside the build (not from ``check``) reaches the user in flags."""
    data = sample_images(tmp_path / "imgs", 2)
    missing = tmp_path / "config.none.lutsr"
    assert main(["--quick", "--data", str(data), "--out", str(tmp_path / "o.lutsr"),
                 "--scale", "2", "--init", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"error: --init {missing}: " in err and "config.init" not in err, err


def test_build_lut_degrade_flags():
    """The command line's degradation flags set the fields of the same name."""
    config, _ = parse_args(["--data", "d", "--out", "o.lutsr", "--degrade-jpeg", "30",
                                      "90", "--degrade-h264", "23", "33", "--degrade-share",
                                      "0.7", "--val-every", "10", "--val-degrade", "jpeg:50"])
    assert (config.degrade_jpeg, config.degrade_h264, config.degrade_share,
            config.val_degrade) == ((30, 90), (23, 33), 0.7, ("jpeg:50",))
    off, _ = parse_args(["--data", "d", "--out", "o.lutsr"])
    assert (off.degrade_jpeg, off.degrade_h264, off.val_degrade) == ((), (), ())
