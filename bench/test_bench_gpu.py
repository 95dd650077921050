"""GPU benchmark of the cuda backend: one 480x270 RGB frame to 1920x1080 (x4), CuPy in and out.

Needs CuPy and a CUDA GPU; the module is skipped otherwise (so it costs nothing
in CI's ``--benchmark-disable`` smoke run on machines without one). By hand::

    python -m pytest bench/test_bench_gpu.py --benchmark-only

The timed function enqueues the upscale into a preallocated CuPy ``out`` and
waits for the stream, so a round is the full GPU time of one frame (all
stages), without host transfers. Kernel compilation and the table upload
happen in an untimed warm-up call. ``bench/GPU.md`` holds the roofline
estimate these numbers are to be read against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lutsr
from lutsr import LUT, Stage
from lutsr.reference import upscale_reference

cupy = pytest.importorskip("cupy", reason="the cuda backend benchmark needs CuPy")


def _gpu_count() -> int:
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except Exception:  # CuPy installed without a driver or device
        return 0


if _gpu_count() == 0:
    pytest.skip("no CUDA GPU", allow_module_level=True)

SHARED = Path(__file__).resolve().parents[2] / "shared"
CONFORMANCE = SHARED / "conformance"
FRAME_SOURCE = SHARED / "data" / "test" / "B100" / "HR" / "103070.png"  # 480x320 landscape


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def _golden_tables(name: str) -> LUT:
    """A model with the golden vectors' interval-4 tables: real sizes (1.3 / 4.3 MB), x4."""
    z = dict(np.load(_need(CONFORMANCE / f"{name}.npz")))
    if "table" in z:
        stages = [Stage(4, ("S",), (z["table"],), 1, 0, "reflect")]
    else:
        stages = [Stage(1, "SDY", [z[f"table_s1_{p}"] for p in "sdy"], 12, 127, "edge"),
                  Stage(4, "SDY", [z[f"table_s2_{p}"] for p in "sdy"], 3, 0, "edge")]
    return LUT(tuple(stages), interval=int(z["interval"]), name=name)


def _model(name: str) -> LUT:
    if name in ("srlut_s_x4_q16", "mulut_sdy_x4_q16"):
        return _golden_tables(name)
    lut = lutsr.load_bundled(name)
    if lut.scale != 4:
        pytest.skip(f"bundled {name} is x{lut.scale}, this benchmark is x4")
    return lut


def _frame() -> np.ndarray:
    from PIL import Image

    rgb = np.asarray(Image.open(_need(FRAME_SOURCE)).convert("RGB"))
    return np.ascontiguousarray(rgb[:270, :480])


@pytest.mark.parametrize("model", ["srlut_s_x4_q16", "mulut_sdy_x4_q16", *lutsr.bundled_names()])
def test_cuda_480x270_rgb_to_1080p(benchmark, model):
    lut = _model(model)
    host = _frame()
    frame = cupy.asarray(host)
    out = cupy.empty((1080, 1920, 3), cupy.uint8)
    up = lutsr.Upscaler(lut, backend="cuda")
    stream = cupy.cuda.get_current_stream()

    # Untimed: compile the kernels, upload tables and index maps; and check a
    # crop bit-exact against the spec (the full frame would take the numpy
    # reference minutes).
    crop = host[:24, :40]
    got = up(cupy.asarray(crop))
    assert isinstance(got, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(got), upscale_reference(crop, lut))
    up(frame, out=out)
    stream.synchronize()

    def one_frame():
        up(frame, out=out)
        stream.synchronize()

    benchmark(one_frame)
    benchmark.extra_info["device"] = cupy.cuda.runtime.getDeviceProperties(
        cupy.cuda.Device().id)["name"].decode()
    benchmark.extra_info["model"] = model
