"""The webgpu backend's own contract: adapters, buffer limits and chunks, dispatches, errors.

The kernels run for real on Mesa's software Vulkan (lavapipe: the ``llvmpipe``
adapter, picked by name as the backend asks). Their parity with the reference
and the golden vectors is ``test_parity.py``'s; here is what only this backend
has, each case compared with :func:`lutsr.reference.upscale_reference` (the
spec). Without wgpu or without a llvmpipe adapter (``apt-get install
mesa-vulkan-drivers``) the execution tests skip; the adapter-choice and
error-message tests run anyway.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
from conftest import (
    HANG_GUARD_S,
    assert_images_equal,
    conformance_lut,
    random_layered_lut,
    random_lut,
)

import lutsr
from lutsr import LUT
from lutsr._webgpu import device as wdevice
from lutsr.reference import upscale_reference

SOFTWARE = "llvmpipe"


def _software_adapter() -> str | None:
    """Why the software adapter cannot be used here, or None when it can."""
    try:
        import wgpu  # noqa: F401
    except ImportError:
        return "wgpu is not installed (pip install 'lutsr[webgpu]')"
    try:
        wdevice.device(SOFTWARE)
    except RuntimeError as e:
        return f"no {SOFTWARE} adapter (apt-get install mesa-vulkan-drivers): {e}"
    return None


_SKIP = _software_adapter()
needs_adapter = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")


def runner(lut: LUT, adapter: str = SOFTWARE):
    from lutsr._webgpu import WebGPURunner

    return WebGPURunner(lut, adapter=adapter)


def check(lut: LUT, frames: np.ndarray, what: str = "") -> None:
    """The webgpu runner's output equals the reference's, exactly."""
    want = upscale_reference(np.ascontiguousarray(frames), lut)
    assert_images_equal(runner(lut).up(frames), want, what or lut.name)


def frames_of(rng, n, h, w, c):
    return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)


@needs_adapter
def test_frames_beyond_the_buffer_limit_go_in_chunks():
    """A batch larger than one submission's buffers runs in chunks (the last one shorter),
    overlapped or (timed) one after the other."""
    rng = np.random.default_rng(4)
    lut = random_lut(rng, 5, "mulut", 2)
    run = runner(lut)
    run._limit = 5 * 6 * 3 * 4 * 4 * 2  # two frames' largest buffer (u32 samples at x2)
    frames = frames_of(rng, 5, 5, 6, 3)
    want = upscale_reference(frames, lut)
    # Chunks alternate between two read-back buffers, the next submitted before one is read.
    assert_images_equal(run.up(frames), want, "chunks")
    bufs = run._frames(5, 5, 6, 3)
    assert bufs.chunk == 2 and len(bufs.readback) == 2
    out, times = np.empty_like(want), {}
    run.run(frames, out, times)
    assert_images_equal(out, want, "timed chunks")
    run._limit = 100
    with pytest.raises(RuntimeError, match="storage-buffer limit"):
        run.up(frames_of(rng, 1, 30, 30, 3))


@needs_adapter
def test_buffers_are_kept_per_size_and_reused():
    rng = np.random.default_rng(5)
    lut = random_lut(rng, 5, "srlut", 2)
    run = runner(lut)
    a, b = frames_of(rng, 1, 4, 5, 1), frames_of(rng, 1, 6, 3, 1)
    for frames in (a, b, a, b):  # a stale buffer of the other size would show
        assert_images_equal(run.up(frames), upscale_reference(frames, lut), "sizes")
    assert len(run._sizes) == 2
    kept = run._frames(1, 4, 5, 1)
    assert run._frames(1, 4, 5, 1) is kept


@needs_adapter
def test_layouts_and_out_through_the_api(monkeypatch):
    """``lutsr.upscale(..., backend="webgpu")`` with the adapter from the environment:
    2-D, 3-D and batch layouts, a given (strided) ``out``."""
    monkeypatch.setenv(wdevice.ADAPTER_ENV, SOFTWARE)
    rng = np.random.default_rng(6)
    lut = random_lut(rng, 5, "srlut", 2)
    gray = rng.integers(0, 256, (5, 7), np.uint8)
    assert_images_equal(lutsr.upscale(gray, lut, backend="webgpu"),
                        upscale_reference(gray, lut), "2-D")
    rgb = rng.integers(0, 256, (9, 8, 3), np.uint8)[::2, ::-1]  # a strided view
    out = np.zeros((10, 16, 6), np.uint8)[:, :, ::2]
    got = lutsr.Upscaler(lut, backend="webgpu").up(rgb, out=out)
    assert got is out
    assert_images_equal(out, upscale_reference(rgb, lut), "strided out")


@needs_adapter
def test_layered_batches_and_plane_chunks():
    """A batch, and one whose planes go in several chunks of features (the budget shrunk),
    each chunk's planes at their own frame and channel."""
    rng = np.random.default_rng(12)
    lut = random_layered_lut(rng, 2, r=2, max_shift=2)
    run = runner(lut)
    frames = frames_of(rng, 3, 5, 4, 3)
    frames[1] = 255 - frames[0]
    assert_images_equal(run.up(frames), upscale_reference(frames, lut), "batch")
    # r = 1: one channel in one word, 16 bytes of features a pixel against 4 of output
    # samples; a budget of 24 bytes a pixel takes 2 frames (6 planes) a submission and
    # 1 plane a chunk of features.
    lut = random_layered_lut(rng, 2, r=1, max_shift=2)
    run = runner(lut)
    run._limit = 24 * 5 * 4
    assert_images_equal(run.up(frames), upscale_reference(frames, lut), "plane chunks")
    bufs = run._frames(3, 5, 4, 3)
    assert bufs.chunk == 2 and len(bufs.groups) == 6 * (2 + 3) + 1  # first, 3 layers, up; pack
    # r = 3: 9 channels in 3 words, so one plane's features (48 bytes a pixel) outgrow the
    # frame's output samples (36 bytes a pixel and channel).
    run = runner(random_layered_lut(rng, 1, r=3))
    run._limit = 48 * 5 * 4 - 1
    with pytest.raises(RuntimeError, match="of features, over the adapter"):
        run.up(frames_of(rng, 1, 5, 4, 1))


@needs_adapter
def test_cli_backend_webgpu(tmp_path, monkeypatch):
    Image = pytest.importorskip("PIL.Image")
    from lutsr.cli import main

    monkeypatch.setenv(wdevice.ADAPTER_ENV, SOFTWARE)
    rng = np.random.default_rng(9)
    lut = random_lut(rng, 5, "srlut", 2)
    path = lutsr.save(lut, tmp_path / "x2.lutsr")
    src = rng.integers(0, 256, (6, 5, 3), np.uint8)
    Image.fromarray(src).save(tmp_path / "in.png")
    assert main(["image", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "--lut",
                 str(path), "--backend", "webgpu", "-q"]) == 0
    got = np.asarray(Image.open(tmp_path / "out.png"))
    assert_images_equal(got, upscale_reference(src, lut), "cli")


# --------------------------------------------------------------------------- adapters, errors


@dataclasses.dataclass
class FakeAdapter:
    summary: str
    info: dict


def _fake(name, kind, backend="Vulkan"):
    return FakeAdapter(f"{name} ({kind}) via {backend}", {"adapter_type": kind,
                                                           "backend_type": backend})


def test_default_adapter_is_the_best_hardware_one():
    soft = _fake("llvmpipe (LLVM 15)", "CPU")
    igpu = _fake("Intel UHD", "IntegratedGPU")
    dgpu_gl = _fake("NVIDIA RTX", "DiscreteGPU", "OpenGL")
    dgpu = _fake("NVIDIA RTX", "DiscreteGPU")
    assert wdevice.choose([soft, igpu, dgpu_gl, dgpu], None) is dgpu
    assert wdevice.choose([soft, igpu], None) is igpu
    assert wdevice.choose([soft, igpu, dgpu], "llvm") is soft
    assert wdevice.choose([soft, dgpu_gl, dgpu], "nvidia") is dgpu  # Vulkan before OpenGL


def test_software_adapter_only_when_asked():
    soft = _fake("llvmpipe (LLVM 15)", "CPU")
    with pytest.raises(RuntimeError, match="no hardware GPU adapter.*LUTSR_WEBGPU_ADAPTER"):
        wdevice.choose([soft], None)
    with pytest.raises(RuntimeError, match="no WebGPU adapter matches 'radeon'.*llvmpipe"):
        wdevice.choose([soft], "radeon")
    with pytest.raises(RuntimeError, match=r"found: none"):
        wdevice.choose([], None)


def test_missing_wgpu_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "wgpu", None)  # import wgpu raises ImportError
    lut = random_lut(np.random.default_rng(10), 5, "srlut", 2)
    with pytest.raises(RuntimeError) as e:
        lutsr.Upscaler(lut, backend="webgpu")
    assert "pip install 'lutsr[webgpu]'" in str(e.value) and "\n" not in str(e.value)


def test_importing_the_backend_does_not_import_wgpu():
    import subprocess

    code = ("import sys, lutsr, lutsr._webgpu, lutsr.api; "
            "assert 'wgpu' not in sys.modules, 'wgpu imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@needs_adapter
def test_video_end_to_end(tmp_path, monkeypatch):
    """``lutsr video --backend webgpu``: lossless luma is exactly the LUT of the input's luma
    (the output written into FFmpeg's padded planes)."""
    pytest.importorskip("av")
    from test_video import decoded, make_clip  # imported here: that module needs av

    from lutsr.cli import main
    from lutsr.video.avutil import plane_array

    monkeypatch.setenv(wdevice.ADAPTER_ENV, SOFTWARE)
    lut = random_lut(np.random.default_rng(14), 5, "mulut", 2)
    lut_file = lutsr.save(lut, tmp_path / "x2.lutsr")
    src, dst = make_clip(tmp_path / "in.mp4", frames=4, audio=False), tmp_path / "out.mkv"
    assert main(["video", str(src), "-o", str(dst), "--lut", str(lut_file), "--backend",
                 "webgpu", "-q", "--luma-only", "--crf", "0", "--no-audio"]) == 0
    count = 0
    for fin, fout in zip(decoded(src), decoded(dst), strict=True):
        y_in = plane_array(fin.planes[0]).copy()
        assert_images_equal(plane_array(fout.planes[0]), upscale_reference(y_in, lut),
                            "luma plane")
        count += 1
    assert count == 4


@needs_adapter
def test_dispatches_spread_over_two_dimensions():
    """More workgroups than one dimension holds go along y too (the kernels' invocation
    number ``gid.x + gid.y * nwg.x * 64``): forced with a 3-workgroup maximum."""
    rng = np.random.default_rng(15)
    lut = LUT((random_lut(rng, 5, "mulut", 2).stages[0], random_layered_lut(rng, 1, r=2)
               .stages[0]), interval=5)
    run = runner(lut)
    run._max_groups = 3
    frames = frames_of(rng, 2, 9, 7, 3)
    assert_images_equal(run.up(frames), upscale_reference(frames, lut), "2-D dispatch")
    assert max(gy for *_, (gx, gy) in run._frames(2, 9, 7, 3).groups) > 1


@needs_adapter
def test_concurrent_calls_on_one_runner():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(16)
    luts = [random_lut(rng, 5, "srlut", 2), random_layered_lut(rng, 1, r=2)]
    runs = [runner(lut) for lut in luts]  # two runners sharing the device, and one runner
    inputs = [frames_of(rng, 1, 4 + i % 3, 5, 1 + i % 2) for i in range(16)]
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda i: runs[i % 2].up(inputs[i]), range(len(inputs))))
    for i, (frames, got) in enumerate(zip(inputs, outs, strict=True)):
        assert_images_equal(got, upscale_reference(frames, luts[i % 2]), f"thread call {i}")


def test_dispatch_size_covers_every_invocation():
    from lutsr._webgpu.shaders import WORKGROUP, dispatch_size

    for invocations in (1, 63, 64, 65, 10**6, 65535 * 64 + 1, 3 * 10**9):
        gx, gy = dispatch_size(invocations, 65535)
        assert gx <= 65535 and gy <= 65535
        assert gx * gy * WORKGROUP >= invocations > (gx * gy - gx) * WORKGROUP


@needs_adapter
def test_phase_times_are_measured_on_request():
    """``run(..., times=)`` (for benchmarks) adds each phase's seconds; the output is the same."""
    rng = np.random.default_rng(17)
    lut = random_lut(rng, 5, "srlut", 2)
    run = runner(lut)
    frames = frames_of(rng, 2, 5, 6, 3)
    out = np.empty((2, 10, 12, 3), np.uint8)
    times: dict = {}
    for _ in range(2):
        run.run(frames, out, times)
    assert sorted(times) == ["kernels", "readback", "upload"]
    assert all(t > 0 for t in times.values())
    assert_images_equal(out, upscale_reference(frames, lut), "timed")


def test_adapter_report_marks_the_chosen_one(monkeypatch):
    soft = _fake("llvmpipe (LLVM 15)", "CPU")
    dgpu = _fake("NVIDIA RTX", "DiscreteGPU")
    monkeypatch.delenv(wdevice.ADAPTER_ENV, raising=False)
    monkeypatch.setattr(wdevice, "adapters", lambda: [soft, dgpu])
    assert wdevice.report() == ["  llvmpipe (LLVM 15) (CPU) via Vulkan",
                                "* NVIDIA RTX (DiscreteGPU) via Vulkan"]
    monkeypatch.setenv(wdevice.ADAPTER_ENV, "llvm")
    assert wdevice.report()[0].startswith("* llvmpipe")
    monkeypatch.setattr(wdevice, "adapters", lambda: [soft])
    lines = wdevice.report("")
    assert lines[0] == "  llvmpipe (LLVM 15) (CPU) via Vulkan"
    assert "none chosen" in lines[1] and "no hardware GPU adapter" in lines[1]
    monkeypatch.setitem(sys.modules, "wgpu", None)
    monkeypatch.setattr(wdevice, "adapters", lambda: wdevice.import_wgpu() and [])
    assert len(wdevice.report()) == 1 and "needs the wgpu package" in wdevice.report()[0]


@needs_adapter
def test_every_kernel_fits_webgpus_default_limits():
    """Each kernel shape compiles on a device with WebGPU's default limits (8 storage buffers a
    stage, 256 invocations a workgroup), so no adapter needs more than the spec guarantees."""
    from lutsr._webgpu import layered, shaders

    adapter, _ = wdevice.device(SOFTWARE)
    # wgpu hands out the adapter's own limits unless told: ask for the spec's defaults.
    plain = adapter.request_device_sync(required_limits={
        "max-storage-buffers-per-shader-stage": 8, "max-compute-invocations-per-workgroup": 256,
        "max-compute-workgroup-size-x": 256})
    assert plain.limits["max-storage-buffers-per-shader-stage"] == 8
    codes = [shaders.stage_shader(r, p, w, b, k)[0] for r in (1, 8) for p in (1, 3)
             for w in (0, 7) for b in (False, True) for k in (False, True)]
    codes += [shaders.pack_shader(), layered.first_shader(25, True), layered.first_shader(1, False),
              layered.depthwise_shader(25), layered.pointwise_shader(25), layered.up_shader(25, 5),
              layered.up_shader(1, 1)]
    for code in codes:
        plain.create_compute_pipeline(layout="auto", compute={
            "module": plain.create_shader_module(code=code), "entry_point": "main"})


@needs_adapter
def test_opengl_adapter_too():
    """wgpu's OpenGL backend (WGSL compiled to GLSL, llvmpipe's GL here) where present: GLSL
    leaves dividing negative integers undefined, which once broke the layered rounding."""
    gl = "llvmpipe"
    found = [a for a in wdevice.adapters() if gl in wdevice.describe(a)
             and a.info.get("backend_type") == "OpenGL"]
    if not found:
        pytest.skip("no llvmpipe OpenGL adapter")
    name = wdevice.describe(found[0])
    lut, z = conformance_lut("mulut_sdy_x2_q32")
    assert_images_equal(runner(lut, name).up(z["input"]), z["expected"], "simplex on GL")
    rng = np.random.default_rng(18)
    lut = random_layered_lut(rng, 2, r=2, max_shift=2, extreme=0.5)
    frames = frames_of(rng, 1, 6, 5, 2)
    assert_images_equal(runner(lut, name).up(frames), upscale_reference(frames, lut),
                        "layered on GL")


@needs_adapter
def test_cli_error_without_a_matching_adapter_is_one_line(tmp_path):
    """No libwayland "XDG_RUNTIME_DIR" noise from probing the OpenGL backend on a headless
    machine: stderr is the one error line."""
    import os
    import subprocess

    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "in.png")
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env[wdevice.ADAPTER_ENV] = "no-such-adapter"
    done = subprocess.run([sys.executable, "-m", "lutsr", "image", str(tmp_path / "in.png"),
                           "-o", str(tmp_path / "out.png"), "--lut", "x2", "--backend",
                           "webgpu"], env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith("lutsr: error: no WebGPU adapter matches 'no-such-adapter'")


def test_adapter_probe_drops_only_the_wayland_noise(monkeypatch, capfd):
    import os
    import types

    def enumerate_adapters_sync():
        os.write(2, b"error: XDG_RUNTIME_DIR is invalid or not set in the environment.\n")
        os.write(2, b"driver: something else\n")
        return ["adapter"]

    fake = types.SimpleNamespace(gpu=types.SimpleNamespace(
        enumerate_adapters_sync=enumerate_adapters_sync))
    monkeypatch.setitem(sys.modules, "wgpu", fake)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert wdevice.adapters() == ["adapter"]
    err = capfd.readouterr().err
    assert "XDG_RUNTIME_DIR" not in err and "driver: something else" in err


@needs_adapter
def test_tables_beyond_the_buffer_limit_are_refused(monkeypatch):
    from lutsr._webgpu import runner as wrunner

    lut = random_lut(np.random.default_rng(19), 4, "srlut", 2)  # 17**4 words of tables
    monkeypatch.setattr(wrunner, "buffer_limit", lambda device: 17**4 * 4 - 4)
    with pytest.raises(RuntimeError, match="table exceeds the adapter's 334080 bytes"):
        runner(lut)
    monkeypatch.setattr(wrunner, "buffer_limit", lambda device: 17**4 * 4)
    check(lut, frames_of(np.random.default_rng(20), 1, 3, 2, 1))


def test_buffer_limit_is_the_smaller_of_binding_and_buffer():
    from types import SimpleNamespace

    from lutsr._webgpu.runner import buffer_limit

    def dev(binding, size):
        return SimpleNamespace(limits={"max-storage-buffer-binding-size": binding,
                                       "max-buffer-size": size})

    assert buffer_limit(dev(2**27, 2**31)) == 2**27
    assert buffer_limit(dev(2**31, 2**28)) == 2**28
    assert buffer_limit(dev(2**40, 2**40)) == 2**32 - 4
