"""train.rlfn: RLFN written from the paper loads the authors' weights and reproduces their score."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, SHARED, need

torch = pytest.importorskip("torch")

from train.rlfn import (  # noqa: E402
    MIN_SIDE,
    RLFN,
    BlockWidths,
    RLFNShape,
    load_rlfn,
    load_rlfn_method,
    upscale_rlfn,
)

ROOT = Path(__file__).resolve().parents[1]
MODELS = SHARED / "models" / "rlfn"

# file -> (scale, parameters, blocks, conv_1 width); the counts are the README's.
PUBLISHED = {
    "rlfn_x4.pth": (4, 543_740, 6, 52),
    "rlfn_s_x4.pth": (4, 470_208, 6, 48),
    "rlfn_ntire_x4.pth": (4, 317_218, 4, 46),
    "rlfn_x2.pth": (2, None, 6, 52),
    "rlfn_s_x2.pth": (2, None, 6, 48),
}


def _state_dict(path: Path) -> dict:
    return torch.load(path, weights_only=True, map_location="cpu")


@pytest.mark.data
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_state_dicts_load_strict(name):
    """Guards the parameter names and per-layer widths against the authors' files."""
    path = need(MODELS / name)
    sd = _state_dict(path)
    model = RLFN.from_state_dict(sd)
    model.load_state_dict(sd, strict=True)
    scale, params, blocks, features = PUBLISHED[name]
    assert (model.scale, len(model.shape.blocks), model.shape.features) == (scale, blocks,
                                                                             features)
    if params is not None:
        assert sum(p.numel() for p in model.parameters()) == params
    loaded = load_rlfn(path)
    assert not loaded.training
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, sd[key]), key


def test_ntire_widths_are_read_per_layer():
    """The pruned entry's c1_r/c2_r are wider (48) than its features (46)."""
    sd = RLFN(RLFNShape.uniform(46, mid=48, blocks=4, scale=4)).state_dict()
    model = RLFN.from_state_dict(sd)
    assert model.shape == RLFNShape.uniform(46, mid=48, blocks=4, scale=4)
    model.load_state_dict(sd, strict=True)


def test_random_model_shape_dtype_and_uint8_round_trip():
    """Without the weights: output shape and dtype, gray handling, clamping and rounding."""
    torch.manual_seed(0)
    model = RLFN(RLFNShape.uniform(8, blocks=2, esa=4, scale=3)).eval()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (MIN_SIDE, 21, 3), dtype=np.uint8)

    out = upscale_rlfn(model, img, threads=1)
    assert out.dtype == np.uint8 and out.shape == (3 * MIN_SIDE, 63, 3)
    assert out.flags.c_contiguous
    with torch.no_grad():
        raw = model(torch.from_numpy(img.transpose(2, 0, 1).copy())[None].float())[0]
    want = raw.clamp(0, 255).round().to(torch.uint8).numpy().transpose(1, 2, 0)
    np.testing.assert_array_equal(out, want)

    gray = upscale_rlfn(model, img[..., 1])
    assert gray.dtype == np.uint8 and gray.shape == (3 * MIN_SIDE, 63)

    # A net that passes the input straight through (conv_1 an identity, the blocks'
    # and conv_2's weights zero, the upsampler copying each colour to its r*r
    # sub-pixels) must give back every uint8 value exactly: guards the 0..255
    # range (no /255 scaling) and the pixel-shuffle channel order.
    ident = RLFN(RLFNShape.uniform(4, blocks=1, esa=2, scale=2)).eval()
    with torch.no_grad():
        for p in ident.parameters():
            p.zero_()
        ident.conv_1.weight[:3, :3, 1, 1] = torch.eye(3)
        for c in range(3):
            ident.upsampler[0].weight[4 * c:4 * c + 4, c, 1, 1] = 1.0
    np.testing.assert_array_equal(upscale_rlfn(ident, img), np.repeat(np.repeat(img, 2, 0), 2, 1))


def test_threads_setting_is_restored():
    model = RLFN(RLFNShape.uniform(4, blocks=1, esa=2, scale=2)).eval()
    before = torch.get_num_threads()
    upscale_rlfn(model, np.zeros((16, 16, 3), np.uint8), threads=1)
    assert torch.get_num_threads() == before


def test_bad_inputs_are_refused():
    model = RLFN(RLFNShape.uniform(4, blocks=1, esa=2, scale=2)).eval()
    with pytest.raises(ValueError, match="at least 15x15"):
        upscale_rlfn(model, np.zeros((14, 40, 3), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        upscale_rlfn(model, np.zeros((16, 16, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(h, w, 3\)"):
        upscale_rlfn(model, np.zeros((16, 16, 4), np.uint8))
    with pytest.raises(ValueError, match="block_1 takes 6 channels but receives 8"):
        RLFNShape(8, RLFNShape.uniform(6).blocks, 4)
    with pytest.raises(ValueError, match="conv_2 expects 8"):
        RLFNShape(8, (BlockWidths(8, 8, 8, 6, 4),), 4)


def test_load_errors_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        load_rlfn(tmp_path / "missing.pth")
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="no 'conv_1.weight'"):
        load_rlfn(path)
    sd = RLFN(RLFNShape.uniform(4, blocks=1, esa=2, scale=2)).state_dict()
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, path)
    with pytest.raises(ValueError, match="extra.weight"):
        load_rlfn(path)


@pytest.mark.data
def test_rlfn_x4_reproduces_published_set5():
    """RLFN x4 scores the README's 32.24 dB (Set5, paper protocol) within 0.02 dB.

    The tolerance covers the printed figure's rounding and float differences
    between torch builds; a wrong input range (0..1) or activation slope
    costs whole dB.
    """
    from train import evaluate as ev

    folder = need(DATA / "test" / "Set5")
    name, scale, fn = load_rlfn_method(need(MODELS / "rlfn_x4.pth"))
    results = ev.evaluate({name: fn}, [folder], scale, progress=False, warmup=False)
    psnr, _, count = ev.summarize(results)[(name, "Set5")]
    assert count == 5
    assert abs(psnr - 32.24) <= 0.02, f"RLFN x4 on Set5: {psnr:.3f} dB, published 32.24"


@pytest.mark.data
def test_evaluate_cli_takes_rlfn_prefix():
    model = need(MODELS / "rlfn_x4.pth")
    folder = need(DATA / "test" / "Set5")
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "evaluate.py"), "--cnn",
                          f"rlfn:{model}", "--datasets", str(folder), "--scale", "2",
                          "--no-progress"], capture_output=True, text=True)
    assert run.returncode == 2 and "upscales x4" in run.stderr, run.stderr


def test_runtime_package_does_not_import_torch():
    code = ("import sys, lutsr, lutsr.api, lutsr.cli; "
            "print('torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert run.stdout.strip() == "False"
