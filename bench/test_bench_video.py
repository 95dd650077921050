"""End-to-end `lutsr video` speed, and what luma-only mode costs in quality.

Speed (pytest-benchmark): a 480x270 H.264 clip of natural images panning by
(made here from scikit-image's sample photos) upscaled x4 to 1920x1080 and
encoded with libx264 (preset fast, CRF 18), in RGB and luma-only mode::

    python -m pytest bench/test_bench_video.py --benchmark-only      # full: 120 frames
    python -m pytest bench/test_bench_video.py --benchmark-disable   # smoke: tiny clip, seconds

The same as a table, with the stage costs that explain it, and the quality
cost of luma-only mode on Set5/Set14 x4 (for ``bench/RESULTS_video.md``)::

    python bench/test_bench_video.py speed [--lut NAME|PATH] [--frames 120]
    python bench/test_bench_video.py quality [--lut NAME|PATH]

The LUT is the bundled default ``x4`` when installed, else an SR-LUT-S-shaped
model of the same cost (one stage, S, r = 4, 17**4 x 16 int8) imported from
``../shared/conformance/srlut_s_x4_q16.npz``. Speed does not depend on the
table values; quality does, so ``quality`` needs a trained LUT (``--lut``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import lutsr
from lutsr.video import VideoOptions, upscale_video
from lutsr.video.avutil import plane_array
from lutsr.video.colour import to_output_format
from lutsr.video.frames import upscale_frame_luma, upscale_frame_rgb

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CONFORMANCE_X4 = SHARED / "conformance" / "srlut_s_x4_q16.npz"
FULL = {"size": (480, 270), "frames": 120}
SMOKE = {"size": (64, 36), "frames": 4}


def default_x4():
    """The bundled default x4 LUT, else an SR-LUT-S x4 model of identical cost (or None)."""
    if "x4" in lutsr.bundled_names():
        return lutsr.load_bundled("x4")
    if CONFORMANCE_X4.exists():
        lut = lutsr.import_srlut(np.load(CONFORMANCE_X4)["table"], 4)
        return lutsr.LUT(lut.stages, lut.interval, "srlut-s-x4 (conformance tables)")
    return None


def panorama(height: int) -> np.ndarray:
    """scikit-image's sample photos side by side, ``height`` rows, RGB uint8."""
    from PIL import Image
    from skimage import data

    parts = []
    for image in (data.astronaut(), data.coffee(), data.chelsea(), data.rocket()):
        im = Image.fromarray(image)
        width = round(im.width * height / im.height)
        parts.append(np.asarray(im.resize((width, height), Image.Resampling.LANCZOS)))
    return np.concatenate(parts, axis=1)


def make_clip(path: Path, size=(480, 270), frames: int = 120, rate: int = 25) -> Path:
    """An H.264 clip of a window panning over :func:`panorama` (camera-like motion)."""
    import av

    w, h = size
    pano = panorama(round(h * 4 / 3))
    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.options = {"crf": "20", "preset": "medium"}
    step = max(1, (pano.shape[1] - w) // max(frames, 1))
    for i in range(frames):
        y = int((pano.shape[0] - h) * (0.5 + 0.5 * np.sin(i / 15)))
        crop = np.ascontiguousarray(pano[y:y + h, i * step:i * step + w])
        frame = av.VideoFrame.from_ndarray(crop, format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)
    out.close()
    return path


# ---------------------------------------------------------------------------
# pytest-benchmark


@pytest.fixture(scope="module")
def setup(request, tmp_path_factory):
    pytest.importorskip("av")
    pytest.importorskip("skimage")
    smoke = request.config.getoption("benchmark_disable", False)
    lut = default_x4()
    if lut is None:
        pytest.skip("no x4 LUT: neither a bundled one nor ../shared/conformance")
    shape = SMOKE if smoke else FULL
    # The smoke run checks the pipeline, not the speed: the reference backend
    # needs no numba compilation.
    upscaler = lutsr.Upscaler(lut, backend="reference" if smoke else "numba")
    upscaler.up(np.zeros((8, 8, 3), np.uint8))  # load the compiled kernels outside the timing
    clip = make_clip(tmp_path_factory.mktemp("clip") / "in.mp4", shape["size"], shape["frames"])
    return {"upscaler": upscaler, "clip": clip, "frames": shape["frames"], "smoke": smoke,
            "size": shape["size"]}


@pytest.mark.parametrize("mode", ["rgb", "luma"])
def test_video_fps(benchmark, setup, tmp_path, mode):
    dst = tmp_path / "out.mp4"

    def run():
        options = VideoOptions(luma_only=mode == "luma", preset="fast", overwrite=True)
        return upscale_video(setup["clip"], dst, options=options, upscaler=setup["upscaler"])

    report = benchmark.pedantic(run, rounds=1 if setup["smoke"] else 3, iterations=1)
    w, h = setup["size"]
    assert report.frames == setup["frames"] and report.output_size == (4 * w, 4 * h)
    benchmark.extra_info.update(fps=round(report.fps, 2), frames=report.frames,
                                input=f"{w}x{h}", output=f"{4 * w}x{4 * h}")


# ---------------------------------------------------------------------------
# Tables for RESULTS_video.md


def _median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _cpu_seconds() -> float:
    """CPU time of this process, all threads (FFmpeg's and numba's included)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serial_run(clip: Path, dst: Path, upscaler, preset: str, luma: bool) -> float:
    """Decode, upscale and encode one frame after another in one thread; return fps.

    The same work as :func:`lutsr.video.upscale_video` without its pipeline:
    the baseline that shows what the overlap of the three stages gains.
    """
    import av

    t0 = time.perf_counter()
    with av.open(str(clip)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        s = upscaler.scale
        stream = out.add_stream("libx264", rate=vin.average_rate)
        stream.width, stream.height = vin.codec_context.width * s, vin.codec_context.height * s
        stream.pix_fmt, stream.codec_context.time_base = "yuv420p", vin.time_base
        stream.options = {"preset": preset, "crf": "18"}
        n = 0
        for frame in inp.decode(vin):
            if luma:
                big = upscale_frame_luma(frame, upscaler)
            else:
                big = to_output_format(upscale_frame_rgb(frame, upscaler, 6),
                                             "yuv420p", 6, False)
            big.pict_type = 0
            for packet in stream.encode(big):
                out.mux(packet)
            n += 1
        for packet in stream.encode(None):
            out.mux(packet)
    return n / (time.perf_counter() - t0)


def speed_table(lut, frames: int, presets: list[str], rounds: int) -> str:
    """Stage costs and end-to-end fps at 480x270 -> 1920x1080, as Markdown.

    Besides wall time, the CPU time of the whole process per frame is
    reported: on a shared machine it is the steadier figure, and
    ``2 cores / CPU time per frame`` bounds the fps the pipeline could reach
    with both cores to itself.
    """
    import tempfile

    import av

    upscaler = lutsr.Upscaler(lut)
    upscaler.up(np.zeros((8, 8, 3), np.uint8))
    rows = ["| what | wall per frame | fps (median / best) | CPU per frame | 2-core bound (fps) |",
            "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "in.mp4", (480, 270), frames)
        with av.open(str(clip)) as c:
            first = next(c.decode(video=0))
        rgb = first.to_ndarray(format="rgb24")
        y = np.ascontiguousarray(plane_array(first.planes[0]))
        stages = {
            "LUT on RGB 480x270 (3 planes)": lambda: upscaler.up(rgb),
            "LUT on Y 480x270 (1 plane)": lambda: upscaler.up(y),
            "luma-only frame (LUT on Y + swscale bicubic chroma)":
                lambda: upscale_frame_luma(first, upscaler),
            "RGB frame (YUV->RGB, LUT, no YUV conversion back)":
                lambda: upscale_frame_rgb(first, upscaler, 6),
        }
        for name, fn in stages.items():
            ms = _median_ms(fn, 20)
            rows.append(f"| {name} | {ms:.1f} ms | {1e3 / ms:.0f} | | |")
        big = upscale_frame_luma(first, upscaler)
        rgb_big = upscale_frame_rgb(first, upscaler, 6)
        ms = _median_ms(lambda: to_output_format(rgb_big, "yuv420p", 6, False), 20)
        rows.append(f"| RGB->yuv420p 1920x1080 (swscale) | {ms:.1f} ms | {1e3 / ms:.0f} | | |")
        for preset in presets:
            out = av.open(str(Path(tmp) / "enc.mp4"), "w")
            stream = out.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
            stream.options = {"preset": preset, "crf": "18"}
            with av.open(str(clip)) as c:
                hd = [upscale_frame_luma(f, upscaler) for f in c.decode(video=0)]
            t0, c0 = time.perf_counter(), _cpu_seconds()
            for i, frame in enumerate(hd):
                frame.pts, frame.pict_type = i, 0  # the encoder picks frame types
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
            out.close()
            fps = len(hd) / (time.perf_counter() - t0)
            cpu = (_cpu_seconds() - c0) / len(hd)
            rows.append(f"| libx264 {preset} CRF 18, encoding alone (1080p) | "
                        f"{1e3 / fps:.1f} ms | {fps:.1f} | {cpu * 1e3:.0f} ms | {2 / cpu:.1f} |")
        del big
        for preset in presets:
            for luma in (False, True):
                fps, cpus, serial = [], [], []
                for _ in range(rounds):  # pipelined and serial runs alternate: same load
                    c0 = _cpu_seconds()
                    options = VideoOptions(luma_only=luma, preset=preset, overwrite=True)
                    report = upscale_video(clip, Path(tmp) / "out.mp4", options=options,
                                           upscaler=upscaler)
                    cpus.append((_cpu_seconds() - c0) / report.frames)
                    fps.append(report.fps)
                    serial.append(serial_run(clip, Path(tmp) / "serial.mp4", upscaler, preset,
                                             luma))
                med, cpu = statistics.median(fps), statistics.median(cpus)
                mode = "luma-only" if luma else "RGB"
                rows.append(f"| **end to end, {mode}, libx264 {preset}** ({frames} frames, "
                            f"{rounds} runs) | {1e3 / med:.1f} ms | **{med:.1f}** / {max(fps):.1f} "
                            f"| {cpu * 1e3:.0f} ms | {2 / cpu:.1f} |")
                med = statistics.median(serial)
                rows.append(f"| same, serial in one thread (no pipeline) | {1e3 / med:.1f} ms | "
                            f"{med:.1f} / {max(serial):.1f} | | |")
    return "\n".join(rows)


def quality_table(lut, sets: list[str], backend: str = "auto") -> str:
    """Mean Y-PSNR (dB, x4, 4 px shaved) of each way to upscale, as Markdown.

    Every LR image is first turned into a yuv420p frame the way a video
    carries it (swscale, BT.601 limited range), then upscaled as the video
    path does; the Y plane handed to the encoder is scored against the HR
    image's protocol Y. The image-protocol row (LUT on the LR RGB, no YUV)
    is the number the evaluation tables report.
    """
    import av
    from PIL import Image

    from lutsr.metrics import psnr_y, rgb_to_y

    upscaler = lutsr.Upscaler(lut, backend=backend)
    s = upscaler.scale
    rows = ["| method | " + " | ".join(sets) + " |", "|---" * (len(sets) + 1) + "|"]
    results: dict[str, list[float]] = {}
    for name in sets:
        hr_dir = SHARED / "data" / "test" / name / "HR"
        lr_dir = SHARED / "data" / "test" / name / "LR_bicubic" / f"X{s}"
        scores: dict[str, list[float]] = {}
        for lr_path in sorted(lr_dir.glob("*.png")):
            lr = np.asarray(Image.open(lr_path).convert("RGB"))
            hr = np.asarray(Image.open(hr_dir / lr_path.name).convert("RGB"))
            hr = hr[: lr.shape[0] * s, : lr.shape[1] * s]
            hr_y = rgb_to_y(hr)

            def y_psnr(plane, hr_y=hr_y):
                d = plane.astype(np.float64)[s:-s, s:-s] - hr_y[s:-s, s:-s]
                return 10 * np.log10(255.0**2 / np.mean(d * d))

            frame = av.VideoFrame.from_ndarray(lr, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=6, dst_color_range=1)
            frame.colorspace, frame.color_range = 6, 1
            bicubic = frame.reformat(frame.width * s, frame.height * s,
                                     interpolation="BICUBIC")
            luma = upscale_frame_luma(frame, upscaler)
            rgb = to_output_format(upscale_frame_rgb(frame, upscaler, 6),
                                         "yuv420p", 6, False)
            for key, value in [
                ("LUT on RGB, image protocol (no YUV)", psnr_y(upscaler.up(lr), hr, s)),
                ("video path, swscale bicubic (all planes)",
                 y_psnr(plane_array(bicubic.planes[0]))),
                ("video path, RGB mode", y_psnr(plane_array(rgb.planes[0]))),
                ("video path, luma-only mode", y_psnr(plane_array(luma.planes[0]))),
            ]:
                scores.setdefault(key, []).append(value)
        for key, values in scores.items():
            results.setdefault(key, []).append(float(np.mean(values)))
    for key, means in results.items():
        rows.append(f"| {key} | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    cost = np.array(results["video path, RGB mode"]) - np.array(
        results["video path, luma-only mode"])
    rows.append("| **luma-only cost (RGB mode minus luma-only)** | "
                + " | ".join(f"**{c:+.2f}**" for c in cost) + " |")
    return "\n".join(rows)


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["speed", "quality"])
    parser.add_argument("--lut", default=None, help="LUT name or path (default: see module doc)")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--presets", default="fast", help="comma-separated libx264 presets")
    parser.add_argument("--sets", default="Set5,Set14")
    parser.add_argument("--backend", default="auto", help="for quality: auto or reference")
    args = parser.parse_args(argv)
    lut = lutsr.api.resolve_lut(args.lut) if args.lut else default_x4()
    if lut is None:
        parser.error("no x4 LUT available: pass --lut")
    print(f"LUT: {lut.describe().splitlines()[0]}")
    if args.what == "speed":
        print(speed_table(lut, args.frames, args.presets.split(","), args.rounds))
    else:
        print(quality_table(lut, args.sets.split(","), args.backend))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
