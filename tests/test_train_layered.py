"""Training layered stages: the torch network is the runtime exactly; its gradients."""

import dataclasses
import re

import numpy as np
import pytest
from conftest import assert_images_equal, random_layered_stage, sample_images

torch = pytest.importorskip("torch")

import lutsr  # noqa: E402
from lutsr.layered import HIGH_LEVELS, table_entries  # noqa: E402
from lutsr.reference import run_layered_stage  # noqa: E402
from train.build import build  # noqa: E402
from train.config import BuildConfig, BuildError, check, quick  # noqa: E402
from train.layered import LAYER_KINDS, LayeredNet, spread_shifts  # noqa: E402
from train.table_ops import table_sum  # noqa: E402


def _net(rng, blocks, steps, std, seed):
    shifts = [rng.integers(-3, 4, (2, 16)) if b % 2 == 0 else None for b in range(blocks)]
    return LayeredNet.random(4, blocks, shifts=shifts, steps=steps, init_std=std, seed=seed)


@pytest.mark.parametrize("blocks, steps, std", [
    (1, None, 20.0),                                          # every table at every level
    (2, {"depthwise": 4, "pointwise": 2, "up": 8}, 30.0),     # interpolated tables
    (3, {"depthwise": 16, "low": 2, "pointwise": 1}, 60.0),   # saturating: clamps everywhere
])
def test_layered_net_is_the_runtime_exactly(blocks, steps, std):
    """Guards the claim that training optimises exactly what runs."""
    rng = np.random.default_rng(blocks)
    net = _net(rng, blocks, steps, std, seed=blocks)
    stage = net.to_stage()
    lut = lutsr.LUT(stages=(stage,), interval=4, name="t")
    for shape in [(13, 11), (1, 7), (6, 1), (1, 1)]:
        img = rng.integers(0, 256, (2, 1, *shape)).astype(np.float32)
        img[0, 0, :1] = 0
        img[1, 0, -1:] = 255
        with torch.no_grad():
            out = net(torch.from_numpy(img)).numpy()
        assert (out == np.round(out)).all()
        for b in range(2):
            plane = img[b, 0].astype(np.uint8)
            want = run_layered_stage(plane, stage)
            assert_images_equal(out[b, 0].astype(np.uint8), want, f"{shape} torch")
            assert_images_equal(lutsr.upscale(plane, lut), want, f"{shape} numba")


def test_a_runtime_stage_becomes_a_net_and_back_unchanged():
    # Mixed steps per table and saturating tables, as imported ShiftLUT files can have.
    rng = np.random.default_rng(7)
    stage = random_layered_stage(rng, blocks=2, max_shift=2, extreme=0.3)
    net = LayeredNet.from_stage(stage)
    again = net.to_stage()
    for old, new in zip(stage.layers, again.layers, strict=True):
        assert np.array_equal(old.tables, new.tables) and np.array_equal(old.steps, new.steps)
        assert (old.shifts is None) == (new.shifts is None)
        assert old.shifts is None or np.array_equal(old.shifts, new.shifts)
    img = rng.integers(0, 256, (1, 1, 9, 12)).astype(np.float32)
    with torch.no_grad():
        out = net(torch.from_numpy(img))[0, 0].numpy().astype(np.uint8)
    assert_images_equal(out, run_layered_stage(img[0, 0].astype(np.uint8), stage), "from_stage")


@pytest.mark.parametrize("step", [2, 4, 16])
def test_resampled_tables_reproduce_the_net_at_their_samples(step):
    """Sampling a trained network into coarser tables is exact at the sample inputs."""
    net = LayeredNet.random(4, 2, init_std=20.0, seed=step)
    coarse = net.resampled(dict.fromkeys(LAYER_KINDS, step))
    for fine, layer in zip([*net.dw, *net.pw, net.low, net.up],
                           [*coarse.dw, *coarse.pw, coarse.low, coarse.up], strict=True):
        levels = fine.levels
        points = np.arange(0, levels, step)  # the sampled levels
        with torch.no_grad():
            assert torch.equal(fine.expanded()[..., points], layer.expanded()[..., points])
    stage = coarse.to_stage()
    assert {int(s) for layer in stage.layers for s in np.unique(layer.steps)} == {step}
    assert stage.nbytes < net.to_stage().nbytes
    assert max(layer.tables.shape[2] for layer in stage.layers) == table_entries(
        step, HIGH_LEVELS)


def _gathered(e, x, depthwise):
    """table_sum written with torch's own ops (slow, obviously right)."""
    B, cin, H, W = x.shape
    A, C, L = e.shape
    if depthwise:
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
        v = torch.stack([padded[:, :, dy:dy + H, dx:dx + W].expand(B, C, H, W)
                         for dy in range(3) for dx in range(3)])
    else:
        v = x.transpose(0, 1).unsqueeze(2).expand(A, B, C, H, W)
    table = (torch.arange(A).view(-1, 1) * C + torch.arange(C)).view(A, 1, C, 1, 1)
    index = table * L + v.detach().long()
    slope = torch.cat([e[..., 1:] - e[..., :-1], e[..., -1:] - e[..., -2:-1]], -1)
    return (e.reshape(-1)[index] + (v - v.detach()) * slope.detach().reshape(-1)[index]).sum(0)


@pytest.mark.parametrize("depthwise, cin", [(True, 1), (True, 5), (False, 4)])
def test_table_sum_gradients(depthwise, cin):
    """The numba kernels' forward and gradients against torch's autograd on gathers."""
    g = torch.Generator().manual_seed(cin)
    A, C, L = (9 if depthwise else cin), 5, 8
    x = torch.randint(0, L, (3, cin, 6, 7), generator=g).float()
    e = torch.randn(A, C, L, generator=g)
    weights = torch.randn(3, C, 6, 7, generator=g)
    results = []
    for fn in (table_sum, _gathered):
        xs, es = x.clone().requires_grad_(), e.clone().requires_grad_()
        slope = torch.cat([es[..., 1:] - es[..., :-1], es[..., -1:] - es[..., -2:-1]], -1)
        out = fn(es, slope.detach(), xs, depthwise) if fn is table_sum else fn(es, xs, depthwise)
        (out * weights).sum().backward()
        results.append((out.detach(), es.grad, xs.grad))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    assert results[0][2].abs().sum() > 0  # the inputs do get gradients


def test_training_steps_lower_the_loss():
    # A smooth target the zero-ish start misses: a few Adam steps must help.
    torch.manual_seed(0)
    net = LayeredNet.random(2, 1, init_std=0.5, seed=1)
    y, x = np.mgrid[:24, :24]
    hr = (128 + 90 * np.sin(x / 5.0) * np.cos(y / 7.0)).astype(np.float32)
    lr = hr.reshape(12, 2, 12, 2).mean((1, 3)).round()
    lr_t, hr_t = torch.from_numpy(lr)[None, None], torch.from_numpy(hr)[None, None]
    opt = torch.optim.Adam(net.parameters(), lr=0.5)
    losses = []
    for _ in range(30):
        loss = ((net(lr_t) - hr_t) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def _images(tmp_path):
    return sample_images(tmp_path / "imgs", 3, (40, 32))


def test_quick_layered_build_samples_the_net_exactly(tmp_path):
    """The CI-sized layered build: net trained, sampled every 4 levels (low bits: 2),
    no fine-tuning, so the LUT's tables are the trained net's values at the sampled levels."""
    config = quick(BuildConfig(data=(str(_images(tmp_path)),), scale=2,
                               layout="layered", table_steps=(4, 4, 2, 4), val_every=3,
                               checkpoint_dir=str(tmp_path / "ck")))
    config = dataclasses.replace(config, finetune_iters=0)
    lut = build(config, log=lambda line: None)
    (stage,) = lut.stages
    assert lut.scale == 2 and stage.channels == 4 and len(stage.blocks) == 2
    assert set(lut.metadata["phases"]) == {"data", "net", "sample"}
    assert lut.metadata["validation"]["images"] == 1 and lut.metadata["cpu_seconds_total"] > 0
    net = LayeredNet.random(2, 2, shifts=spread_shifts(2, 4, config.shift_radius))
    net.load_state_dict(torch.load(tmp_path / "ck" / "net.pt", weights_only=True)["model"])
    nets = [*net.dw, *net.pw, net.low, net.up]
    layers = [*(dw for dw, _ in stage.blocks), *(pw for _, pw in stage.blocks), stage.low,
              stage.up]
    for layer_net, layer in zip(nets, layers, strict=True):
        step = int(layer.steps.flat[0])
        points = np.arange(0, layer_net.levels, step)
        want = layer_net.expanded().detach().numpy()[..., points] * 16
        got = lutsr.layered.expanded_tables(layer, layer_net.levels)[..., points]
        assert np.array_equal(got, want)
        assert (layer.shifts is None) == (layer_net.shifts is None)
    # what runs is what the file holds
    img = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    again = lutsr.load(lutsr.save(lut, tmp_path / "l.lutsr"))
    assert np.array_equal(lutsr.upscale(img, again), lutsr.upscale(img, lut, backend="reference"))


def test_layered_build_fine_tunes_an_imported_stage(tmp_path):
    rng = np.random.default_rng(2)
    start = lutsr.LUT(stages=(random_layered_stage(rng, blocks=1, r=2),), name="imported")
    path = lutsr.save(start, tmp_path / "imported.lutsr")
    config = quick(BuildConfig(data=(str(_images(tmp_path)),), scale=2,
                               layout="layered", init=str(path)))
    lut = build(config, log=lambda line: None)
    assert lut.metadata["init"]["lut"] == "imported"
    assert set(lut.metadata["phases"]) == {"data", "finetune"}
    (old,), (new,) = start.stages, lut.stages
    assert all(np.array_equal(a.steps, b.steps) for a, b in zip(old.layers, new.layers))
    assert any(not np.array_equal(a.tables, b.tables) for a, b in zip(old.layers, new.layers))


def test_deepened_net_runs_unchanged_and_grows_by_init(tmp_path):
    # Identity blocks appended: the same output; a build with --init and more
    # --blocks trains them, and fewer blocks than the LUT's is refused.
    rng = np.random.default_rng(3)
    start = lutsr.LUT(stages=(random_layered_stage(rng, blocks=1, r=2, max_shift=1),),
                      name="imported")
    deep = LayeredNet.from_stage(start.stages[0]).deepened(3).to_stage()
    assert len(deep.blocks) == 3
    img = rng.integers(0, 256, (11, 9, 2), dtype=np.uint8)
    assert_images_equal(lutsr.upscale(img, lutsr.LUT(stages=(deep,), name="deep")),
                        lutsr.upscale(img, start), "deepened")
    path = lutsr.save(start, tmp_path / "imported.lutsr")
    config = quick(BuildConfig(data=(str(_images(tmp_path)),), scale=2,
                               layout="layered", init=str(path), blocks=2))
    (grown,) = build(config, log=lambda line: None).stages
    assert len(grown.blocks) == 2 and grown.blocks[1][1].shifts is None
    assert grown.blocks[1][0].tables.any()  # trained away from zero
    with pytest.raises(BuildError, match="would drop"):
        build(quick(BuildConfig(data=config.data, scale=2, layout="layered",
                                init=str(lutsr.save(lutsr.LUT(stages=(deep,), name="d"),
                                                    tmp_path / "d.lutsr")), blocks=2)),
              log=lambda line: None)


@pytest.mark.parametrize("fields, library, cli", [
    ({"base": "linear"}, "combine with config.base='linear'", "combine with --base linear"),
    ({"tap_window": 3}, "config.tap_window", "--tap-window"),
    ({"lsq_iters": 5}, "config.lsq_iters", "--lsq-iters"),
    ({"table_steps": (4, 4, 4)}, "config.table_steps takes four steps", "--table-steps takes"),
    ({"table_steps": (4, 4, 3, 4)}, "four steps", "four steps"),
    ({"blocks": 9}, "config.blocks must", "--blocks must"),
])
def test_layered_build_refuses_what_it_does_not_do(fields, library, cli):
    """``check`` names the fields; the command line (``in_flags``) the flags."""
    from train.build_lut import in_flags

    for config, want, flags in [
            (BuildConfig(data=("d",), layout="layered", **{"lsq_iters": 0, **fields}),
             library, cli),
            (BuildConfig(data=("d",), table_steps=(1, 1, 1, 1)),
             "for config.layout='layered'", "for --layout layered")]:
        with pytest.raises(BuildError, match=re.escape(want)) as exc:
            check(config)
        assert flags in in_flags(str(exc.value))
