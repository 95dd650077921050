"""Training layered stages: the torch network is the runtime exactly; its gradients."""

import numpy as np
import pytest
from conftest import assert_images_equal, random_layered_stage

torch = pytest.importorskip("torch")

import lutsr  # noqa: E402
from lutsr.layered import HIGH_LEVELS, table_entries  # noqa: E402
from lutsr.reference import run_layered_stage  # noqa: E402
from train.layered import LAYER_KINDS, LayeredNet  # noqa: E402
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
