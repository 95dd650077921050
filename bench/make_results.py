"""Regenerate ``bench/RESULTS.md`` and ``bench/pareto.png``: how fast and how good, in one run.

::

    python -m bench.make_results                  # Set5 + Set14, 30 rounds
    python -m bench.make_results --b100           # and B100
    python -m bench.make_results --no-quality     # speed only
    python -m bench.make_results --quick          # a minute: tiny frames, Set5, 3 rounds;
                                                  # writes to a temporary folder

from the repository root (``bench`` is imported as a package there).

Speed: the cases of :mod:`bench.matrix`, as ``bench/test_bench_matrix.py`` (OpenCV bicubic and
Lanczos, lutsr with each bundled LUT, the numpy reference, the layered LUTs of
the ShiftLUT shapes with random tables, the CNNs: RLFN, RLFN-ntire and the
float nets of the multi-stage bundled LUTs; 1 and 2 threads; 320x180 and
480x270 to x4, 960x540 to x2) on the same photo frames. Within a (size,
thread count) block the cases run in interleaved rounds, so a change in the
machine's load hits all of them alike; the ratio to ``cv2 INTER_CUBIC`` is
taken within the block. Peak memory is measured for each case in a fresh
process (see :func:`memory_probe`).

Quality: :func:`train.evaluate.evaluate` (Y-PSNR / SSIM, the papers'
protocol) on ``../shared/data/test/{Set5,Set14}`` for bicubic (MATLAB
``imresize``, the papers' baseline row), the two OpenCV filters, each LUT at
its scale and the CNNs. The layered LUTs have no trained tables here: their
quality is the published Set5 Y-PSNR (:data:`SHIFTLUT_PUBLISHED_SET5`).

The plot: Set5 and Set14 Y-PSNR of the x4 methods against the time per
1920x1080 output frame (the 480x270 -> 1080p x4 median, the faster of 1 and
2 threads), with the Pareto front of the measured methods; the layered LUTs
stand apart on the Set5 panel at their published PSNR.

The full run takes about 10 minutes on the project's 2-core machine, most of
it in the CNNs (several seconds a frame each).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import lutsr
from bench.helpers import SHIFTLUT_BLOCKS, SIZES, photo_frame, random_shiftlut
from bench.matrix import (
    BICUBIC,
    CNNS,
    CV2_METHODS,
    GROUPS,
    LAYERED_LABEL,
    THREADS,
    Case,
    build,
    check_output,
    cnn_missing,
    layered_missing,
    lut_sources,
    matrix_cases,
    thread_settings,
)
from train.evaluate import RLFN_PREFIX

ROOT = Path(__file__).resolve().parents[1]

DATA = ROOT.parent / "shared" / "data" / "test"
#: A method's time per 1080p frame is its median on this size (x4 to 1920x1080).
PLOT_SIZE = "480x270"
#: Quick mode divides each frame side by this.
QUICK_DIVISOR = 10
BICUBIC_MATLAB = "bicubic (MATLAB imresize)"
#: ShiftLUT's published x4 Set5 Y-PSNR (CVPR 2026; issue 27); Set14 is not published.
SHIFTLUT_PUBLISHED_SET5 = {"ShiftLUT-S": 30.50, "ShiftLUT-M": 30.77, "ShiftLUT-L": 31.33}
#: Kinds that take seconds a frame: one untimed call, and only ``--slow-rounds`` rounds.
SLOW_KINDS = ("cnn", "reference")


# --------------------------------------------------------------------------- machine


def machine_info() -> dict:
    """CPU model, core counts, load average, versions and time, read now."""
    info = {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "cores": None}
    try:
        lscpu = dict(line.split(":", 1) for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines()
            if ":" in line)
        lscpu = {k.strip(): v.strip() for k, v in lscpu.items()}
        info["cpu"] = lscpu.get("Model name", info["cpu"])
        per_socket, sockets = lscpu.get("Core(s) per socket"), lscpu.get("Socket(s)")
        if per_socket and sockets:
            info["cores"] = int(per_socket) * int(sockets)
        info["hypervisor"] = lscpu.get("Hypervisor vendor")
    except (OSError, ValueError, subprocess.SubprocessError):
        pass  # not Linux, or no lscpu: keep what platform knows
    try:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["ram_gib"] = round(pages * page / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        info["ram_gib"] = None
    info["load"] = os.getloadavg()
    info["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = {"python": platform.python_version()}
    for module in ("numpy", "numba", "cv2", "torch"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = "not installed"
    info["versions"] = versions
    return info


# --------------------------------------------------------------------------- memory


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field_name} in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_probe(case: Case, width: int, height: int) -> float | None:
    """Peak extra memory (MiB) of one call of ``case`` on a ``width`` x ``height`` frame.

    Runs inside a fresh process (called through ``--memory-probe``): the case
    is built and called once on a 16x16 crop (numba compiles, thread pools
    start), then built for the full frame (model loaded, output allocated),
    the RSS high-water mark is reset, and the call is made once. The result is
    the high-water mark minus the RSS just before the call: the scratch
    buffers and temporaries the call touches (for lutsr: its per-size scratch,
    allocated on the first call at a size; for the CNN also its output, which
    it allocates itself), excluding the input, the preallocated output, the
    model and the interpreter. :func:`measure_memory` runs it with glibc
    mapping every allocation of 4 KiB or more separately, so none reuses
    pages a freed one left resident; smaller ones may go uncounted. About
    +-0.1 MiB; None where ``/proc/self/clear_refs`` is not available.
    """
    frame = photo_frame(width, height)
    with thread_settings(case.threads, torch_too=case.kind == "cnn"):
        warm = build(case, np.ascontiguousarray(frame[:16, :16]))
        warm()
        del warm
        fn = build(case, frame)
        gc.collect()
        if not _reset_peak_rss():
            return None
        before = _status_kib("VmRSS")
        fn()
        return (_status_kib("VmHWM") - before) / 1024


def measure_memory(case: Case, width: int, height: int) -> float | None:
    """:func:`memory_probe` in a new interpreter; None if it fails (the reason goes to stderr)."""
    cmd = [sys.executable, "-m", "bench.make_results", "--memory-probe",  # run in ROOT
           json.dumps({**asdict(case), "width": width, "height": height})]
    # glibc: allocations of 4 KiB and more get their own mapping, unmapped on free, so an
    # allocation cannot hide in pages an earlier, freed one left resident.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "4096", "MALLOC_TRIM_THRESHOLD_": "0"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT,
                              env=env)
    except subprocess.TimeoutExpired:
        print(f"  memory probe of {case.id} timed out", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(f"  memory probe of {case.id} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    value = json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"]
    return None if value is None else float(value)


# --------------------------------------------------------------------------- speed


@dataclass
class Timing:
    """Wall and process-CPU seconds of each timed call of one case, and its memory."""

    case: Case
    frame_shape: tuple[int, ...]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_mib: float | None = None

    @property
    def median_ms(self) -> float:
        return statistics.median(self.wall) * 1e3


def time_cases(cases: Sequence[Case], frames: dict[str, np.ndarray], rounds: int,
               slow_rounds: int) -> list[Timing]:
    """Time every case in interleaved rounds, block by block (size, thread count).

    Each case is built and called twice untimed (compile, thread pools,
    scratch) before the first round, the CNNs once and the reference not at
    all; the reference and the CNNs (:data:`SLOW_KINDS`) take part in only
    the first ``slow_rounds`` rounds. Thread settings are global in OpenCV
    and torch, hence the blocks.
    """
    timings = {c: Timing(c, frames[c.size].shape) for c in cases}
    blocks: dict[tuple[str, int], list[Case]] = {}
    for c in cases:
        blocks.setdefault((c.size, c.threads), []).append(c)
    for (size, threads), block in blocks.items():
        frame = frames[size]
        print(f"[speed] {size} ({frame.shape[1]}x{frame.shape[0]}), {threads} thread(s): "
              f"{len(block)} cases", file=sys.stderr, flush=True)
        with thread_settings(threads, torch_too=any(c.kind == "cnn" for c in block)):
            fns = {c: build(c, frame) for c in block}
            for c, fn in fns.items():
                if c.kind not in SLOW_KINDS:
                    fn()
                if c.kind != "reference":
                    check_output(c, frame, fn())
            for r in range(rounds):
                for c, fn in fns.items():
                    if c.kind in SLOW_KINDS and r >= slow_rounds:
                        continue
                    cpu0, t0 = time.process_time(), time.perf_counter()
                    result = fn()
                    t1, cpu1 = time.perf_counter(), time.process_time()
                    timings[c].wall.append(t1 - t0)
                    timings[c].cpu.append(cpu1 - cpu0)
                    if c.kind == "reference" and r == 0:
                        check_output(c, frame, result)
            del fns
    return list(timings.values())


def bicubic_ms(timings: Sequence[Timing], case: Case) -> float | None:
    """Median ms of ``cv2 INTER_CUBIC`` in ``case``'s (size, threads) block."""
    for t in timings:
        if (t.case.method, t.case.size, t.case.threads) == (BICUBIC, case.size, case.threads):
            return t.median_ms
    return None


def speed_tables(timings: Sequence[Timing]) -> str:
    """One Markdown table per size: ms, fps, ratio to bicubic, CPU, peak memory, rounds."""
    parts = []
    for size in dict.fromkeys(t.case.size for t in timings):
        rows = [t for t in timings if t.case.size == size]
        h, w = rows[0].frame_shape[:2]
        s = rows[0].case.scale
        parts += [f"### x{s} {w}x{h} RGB -> {w * s}x{h * s}", "",
                  "| method | threads | median ms | min ms | fps | x bicubic | CPU ms | "
                  "peak MiB | rounds |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for t in sorted(rows, key=lambda t: (t.case.threads, t.median_ms)):
            ref = bicubic_ms(timings, t.case)
            ratio = f"{t.median_ms / ref:.1f}" if ref else "n/a"
            mem = "n/a" if t.peak_mib is None else f"{t.peak_mib:.1f}"
            parts.append(
                f"| {t.case.method} | {t.case.threads} | {t.median_ms:.2f} | "
                f"{min(t.wall) * 1e3:.2f} | {1e3 / t.median_ms:.1f} | {ratio} | "
                f"{statistics.median(t.cpu) * 1e3:.1f} | {mem} | {len(t.wall)} |")
        parts.append("")
    return "\n".join(parts)


# --------------------------------------------------------------------------- quality


def quality_methods(scale: int, luts: dict[str, tuple[str, int]],
                    cnns: dict[str, tuple[str, int]]) -> dict:
    """``{label: f(lr) -> sr}`` for one scale: bicubic, OpenCV, the LUTs and CNNs of that scale."""
    import cv2

    from train.evaluate import bicubic_method, cnn_method, lut_method

    def opencv(flag):
        def run(lr):
            return cv2.resize(lr, (lr.shape[1] * scale, lr.shape[0] * scale),
                              interpolation=flag)
        return run

    methods = {BICUBIC_MATLAB: bicubic_method(scale)}
    methods.update({label: opencv(getattr(cv2, flag)) for label, flag in CV2_METHODS.items()})
    for label, (source, s) in luts.items():
        if s == scale:
            methods[label] = lut_method(source, scale)[1]
    for label, (spec, s) in cnns.items():
        if s == scale:
            methods[label] = cnn_method(spec, scale)[1]
    return methods


def run_quality(scales: Sequence[int], datasets: Sequence[Path], luts, cnns) -> dict:
    """``{scale: list of train.evaluate.ImageResult}``."""
    from train.evaluate import evaluate

    results = {}
    for scale in scales:
        print(f"[quality] x{scale} on {', '.join(d.name for d in datasets)}", file=sys.stderr,
              flush=True)
        results[scale] = evaluate(quality_methods(scale, luts, cnns), datasets, scale)
    return results


# --------------------------------------------------------------------------- plot


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points on the Pareto front, in increasing time.

    ``points`` are (time, quality): lower time and higher quality are better. A
    point is on the front when no other point is at least as fast and at
    least as good and strictly better in one; of exact duplicates one is kept.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def fastest(timings: Sequence[Timing]) -> dict[str, Timing]:
    """Each method's timing at :data:`PLOT_SIZE` with the lowest median over the thread counts.

    On a loaded machine 2 threads can be slower than 1.
    """
    best: dict[str, Timing] = {}
    for t in timings:
        if t.case.size == PLOT_SIZE and (t.case.method not in best
                                         or t.median_ms < best[t.case.method].median_ms):
            best[t.case.method] = t
    return best


def plot_points(timings: Sequence[Timing], summary: dict, datasets: Sequence[str]) -> dict:
    """``{dataset: [(label, ms per 1080p frame, PSNR, measured)]}`` for the x4 methods.

    Every method with a time (:func:`fastest`; the label says at which thread
    count) and a PSNR on the dataset in ``summary`` (``measured`` True); on
    Set5 also the layered LUTs at their published PSNR (``measured`` False).
    """
    best = fastest(timings)
    points = {}
    for d in datasets:
        points[d] = [(f"{m} ({t.case.threads}T)", t.median_ms, summary[(m, d)][0], True)
                     for m, t in best.items() if (m, d) in summary]
        if d == "Set5":
            points[d] += [(f"{t.case.source} ({t.case.threads}T)", t.median_ms,
                           SHIFTLUT_PUBLISHED_SET5[t.case.source], False)
                          for t in best.values() if t.case.kind == "layered"
                          and t.case.source in SHIFTLUT_PUBLISHED_SET5]
    return points


def _label_positions(ys: Sequence[float], gap: float) -> list[float]:
    """Label heights near ``ys`` (axes fraction) at least ``gap`` apart, order kept."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    placed = [0.0] * len(ys)
    floor = -np.inf
    for i in order:
        placed[i] = max(ys[i], floor + gap)
        floor = placed[i]
    top = max(placed, default=0.0)
    if top > 0.95:  # shift the whole stack down rather than off the axes
        placed = [y - (top - 0.95) for y in placed]
    return placed


def make_plot(points: dict, path: Path, quick: bool) -> dict[str, list[str]]:
    """Write the Pareto picture; returns the methods on each dataset's front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(points), figsize=(6.4 * len(points), 6.6), squeeze=False)
    fronts = {}
    for ax, (dataset, pts) in zip(axes[0], points.items(), strict=True):
        # The front is of the methods measured here; published figures stand apart.
        measured = [i for i, p in enumerate(pts) if p[3]]
        front = [measured[j] for j in pareto_front([pts[i][1:3] for i in measured])]
        fronts[dataset] = [pts[i][0] for i in front]
        xs = [p[1] for p in pts] or [1.0]
        ys = [p[2] for p in pts] or [0.0]
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 3, max(xs) * 3)
        ax.set_ylim(min(ys) - 0.3, max(ys) + 0.5)
        # Labels in axes fractions, just above their points (the front's steps run
        # to the right at a point's height), spread so close points stay readable;
        # points in the right half get their label on the left.
        lo, hi = np.log(ax.get_xlim())
        y0, y1 = ax.get_ylim()
        fy = _label_positions([(y - y0) / (y1 - y0) + 0.03 for y in ys], gap=0.062)
        published_label = "ShiftLUT shapes: published PSNR, random tables for timing"
        for i, (method, x, y, known) in enumerate(pts):
            on = i in front
            if known:
                ax.scatter([x], [y], s=55 if on else 35, zorder=3, edgecolor="black",
                           color="tab:red" if on else "tab:blue", linewidth=0.5)
            else:
                ax.scatter([x], [y], s=45, zorder=3, marker="D", facecolor="white",
                           edgecolor="tab:green", linewidth=1.4, label=published_label)
                published_label = "_nolegend_"  # one legend entry for all of them
            px = (np.log(x) - lo) / (hi - lo)
            right = px < 0.55
            ms = f"{x:.1f}" if x < 100 else f"{x:.0f}"
            ax.annotate(f"{method}\n{ms} ms, {y:.2f} dB" + ("" if known else " (published)"),
                        (x, y),
                        xytext=(px + (0.03 if right else -0.03), fy[i]),
                        textcoords="axes fraction", fontsize=7, va="center",
                        ha="left" if right else "right",
                        arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6})
        if front:
            fx, fy = [pts[i][1] for i in front], [pts[i][2] for i in front]
            ax.step(fx, fy, where="post", color="tab:red", linewidth=1.2, zorder=2,
                    label="Pareto front (nothing measured is both faster and better)")
        ax.set_title(f"{dataset} x4")
        what = "frame (quick run: tiny frames)" if quick else "1920x1080 output frame"
        ax.set_xlabel(f"ms per {what} (log scale; fastest of 1 and 2 threads)")
        ax.set_ylabel("Y-PSNR (dB)")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("x4 upscalers: quality against speed (480x270 -> 1920x1080 RGB)")
    # One legend under the panels, where it hides no point or label.
    legend = {}
    for ax in axes[0]:
        legend.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    if legend:
        fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=len(legend),
                   fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04 if legend else 0, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fronts


# --------------------------------------------------------------------------- report


def _provenance(metadata: dict) -> str:
    """A short account of how a LUT was made, from whatever its metadata holds."""
    parts = []
    if metadata.get("images"):
        parts.append(f"{metadata['images']} training images")
    for phase, info in (metadata.get("phases") or {}).items():
        if isinstance(info, dict) and info.get("iterations"):
            parts.append(f"{phase} {info['iterations']} iterations")
    if metadata.get("cpu_seconds_total"):
        parts.append(f"{metadata['cpu_seconds_total']:.0f} CPU s")
    return ", ".join(parts) or "no training metadata"


def _describe_luts(luts: dict[str, tuple[str, int]]) -> list[str]:
    lines = []
    for label, (source, _) in luts.items():
        lut = lutsr.api.resolve_lut(source)
        where = "bundled" if source in lutsr.bundled_names() else f"file `{source}`"
        first = lut.describe().splitlines()
        lines.append(f"- `{label}` ({where}): {first[0]}; "
                     + "; ".join(s.strip() for s in first[1:])
                     + f"; made from {_provenance(lut.metadata)}")
    return lines or ["- no LUT is bundled in `lutsr/luts/` yet and none was given with `--lut`"]


def _describe_cnns(cnns: dict[str, tuple[str, int]]) -> list[str]:
    """One line per CNN: what it is, its parameters, how it runs."""
    if not cnns:
        return ["- CNNs: none measured (torch or the weights are missing, or `--cnn` was empty)"]
    import torch

    lines = []
    for label, (spec, _) in cnns.items():
        path = spec.removeprefix(RLFN_PREFIX)
        rel = os.path.relpath(path, ROOT)
        if spec.startswith(RLFN_PREFIX):
            from train.rlfn import load_rlfn

            model = load_rlfn(path)
            params = sum(p.numel() for p in model.parameters())
            lines.append(
                f"- `{label}`: RLFN (Kong et al., CVPR 2022 workshops), the authors' weights "
                f"`{rel}` ({model.shape.features} channels, {len(model.shape.blocks)} blocks, "
                f"{params:,} parameters); `train.rlfn`, run in torch on the CPU on RGB")
            continue
        from train.checkpoint import load_net

        net = load_net(path)
        saved = torch.load(path, weights_only=True)
        config, state = saved.get("config") or {}, saved.get("state") or {}
        params = sum(p.numel() for p in net.parameters())
        layout = " then ".join(f"r={s.r} {''.join(s.patterns)}" for s in net.layout)
        taps = (f", learned {config['tap_window']}x{config['tap_window']} taps"
                if config.get("tap_window") else "")
        trained = f", trained {state['iteration']} iterations" if "iteration" in state else ""
        lines.append(
            f"- `{label}`: the float pattern net of `{rel}` ({layout}{taps}; MLP width "
            f"{config.get('width')}, depth {config.get('depth')}; {params:,} parameters"
            f"{trained}), run in torch on the CPU, each channel through the net as the LUT "
            "does (`train.checkpoint.load_cnn_method`); a LUT's first tables are sampled from such "
            "a net (`net of X`: the net of the bundled LUT X, whose tables were then refitted "
            "and fine-tuned; README, `x4-sdy`)")
    return lines


def _describe_layered(layered: Sequence[str]) -> list[str]:
    """One line per layered LUT: its shape, and where its quality comes from."""
    if not layered:
        return ["- layered LUTs: not measured (" + (layered_missing() or "left out") + ")"]
    return [f"- `{LAYERED_LABEL.format(name)}`: {random_shiftlut(name).stages[0].describe()}; "
            "random tables, steps and shifts within +-2 (`bench/helpers.py`: the time depends "
            "on the shape only); quality: the published Set5 Y-PSNR, "
            f"{SHIFTLUT_PUBLISHED_SET5[name]:.2f} dB (ShiftLUT, CVPR 2026), not measured here"
            for name in layered]


def write_report(path: Path, *, args, command: str, start: dict, end_load, luts, cnns,
                 layered, timings, quality, fronts, elapsed: float) -> None:
    """Write RESULTS.md."""
    from train.evaluate import markdown_table, summarize

    v = start["versions"]
    load0, load1 = start["load"], end_load
    busy = load0[0] > 0.5 * (start["cpus"] or 1)
    lines = [
        "# Speed and quality: lutsr beside OpenCV and CNNs",
        "",
        "Generated by `bench/make_results.py` (issue 4); do not edit by hand, re-run:",
        "",
        f"    {command}",
        "",
    ]
    if args.quick:
        lines += ["**QUICK RUN**: frames 1/10 of the stated sizes, few rounds, Set5 only. "
                  "It checks the script; its numbers mean nothing.", ""]
    lines += [
        "## Machine and run",
        "",
        f"- date: {start['date']}; wall time of the whole run {elapsed / 60:.1f} min",
        f"- CPU: {start['cpu']}, {start['cpus']} logical CPUs, {start['cores']} cores"
        + (f" ({start['hypervisor']} guest)" if start.get("hypervisor") else "")
        + (f", {start['ram_gib']} GiB RAM" if start.get("ram_gib") else ""),
        f"- load average (1/5/15 min) at start {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}, "
        f"at end {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f}",
        f"- Python {v['python']}, numpy {v['numpy']}, numba {v['numba']}, OpenCV {v['cv2']}, "
        f"torch {v['torch']}, lutsr {lutsr.__version__}",
        *_describe_luts(luts),
        *_describe_layered(layered),
        *_describe_cnns(cnns),
        "",
    ]
    if busy:
        lines += [
            f"**The machine was busy** (load {load0[0]:.1f} on {start['cpus']} CPUs at the start: "
            "other jobs were running). Times are upper bounds, and 2-thread rows may show no "
            "gain, or a loss (torch's thread pool waits on a descheduled core). Re-run on a "
            "quiet machine before quoting them.",
            "",
        ]
    lines += [
        "## Speed",
        "",
        "Same frame for every method: scikit-image's `astronaut`, centre-cropped to 16:9 and "
        "resized (`bench/helpers.py`), uint8 RGB. lutsr (numba backend) and OpenCV write into "
        "a preallocated output; the CNNs allocate their own. Each case is called twice untimed "
        "first (numba compile or cache load, thread pools; the CNNs once, the reference not "
        "at all). Within each (size, threads) block all cases run in interleaved rounds "
        f"({args.rounds} rounds; the CNNs and the numpy reference only the first "
        f"{min(args.slow_rounds, args.rounds)}).",
        "",
        "- **median ms / min ms**: wall time per frame; **fps** = 1000 / median ms;",
        f"- **x bicubic**: median / median of `{BICUBIC}` at the same size and thread count;",
        "- **CPU ms**: process CPU time per frame (all threads), median; well below the wall "
        "time, it means the process waited for a core (other load);",
        "- **peak MiB**: extra resident memory one call needs at this size (scratch and "
        "temporaries; lutsr's per-size scratch is allocated in this call), measured in a fresh "
        "process as the RSS high-water mark (`/proc/self/clear_refs`, `VmHWM`) minus the RSS "
        "just before the call, after a warm-up on a 16x16 crop, with glibc told to map every "
        "allocation of 4 KiB or more on its own (`MALLOC_MMAP_THRESHOLD_=4096`) so that none "
        "hides in pages an earlier one freed; the input, the preallocated output, the model and "
        "the interpreter are excluded (a CNN's output is included: it allocates it);",
        "- threads: `Upscaler(threads=n)`, `cv2.setNumThreads(n)`, `torch.set_num_threads(n)`; "
        "the reference is single-threaded numpy.",
        "",
        speed_tables(timings),
    ]
    if quality:
        summary4 = summarize(quality.get(4, []))
        names = list(dict.fromkeys(r.method for r in quality.get(4, [])))
        dsets = list(dict.fromkeys(r.dataset for r in quality.get(4, [])))
        lines += ["### Time per 1080p frame against quality (x4)", "",
                  f"Time: the {PLOT_SIZE} -> 1920x1080 medians above. Quality: the tables below.",
                  "",
                  "| method | "
                  + " | ".join(f"ms, {n} thread{'s' * (n > 1)}" for n in THREADS) + " | "
                  + " | ".join(f"{d} PSNR" for d in dsets) + " |",
                  "|---|" + "---:|" * (len(THREADS) + len(dsets))]
        def ms_cells(method):
            cells = []
            for n in THREADS:
                hit = [t.median_ms for t in timings if t.case.method == method
                       and t.case.size == PLOT_SIZE and t.case.threads == n]
                cells.append(f"{hit[0]:.1f}" if hit else "-")
            return " | ".join(cells)

        for m in names:
            lines.append(f"| {m} | {ms_cells(m)} | "
                         + " | ".join(f"{summary4[(m, d)][0]:.2f}" for d in dsets) + " |")
        for name in layered:
            published = [f"{SHIFTLUT_PUBLISHED_SET5[name]:.2f} (published)" if d == "Set5"
                         else "-" for d in dsets]
            lines.append(f"| {LAYERED_LABEL.format(name)} | {ms_cells(LAYERED_LABEL.format(name))}"
                         f" | " + " | ".join(published) + " |")
        lines += ["", f"`{BICUBIC_MATLAB}` is the papers' baseline (quality only: it is "
                  "`lutsr.resize.imresize`, a numpy reimplementation not tuned for speed); "
                  "the numpy reference gives bit-identical output to lutsr, so it has the "
                  "quality of its LUT."]
        if layered:
            lines += ["", "The ShiftLUT rows are timed here with random tables of the published "
                      "shapes; their PSNR is the paper's Set5 figure, not measured here (no "
                      "Set14 figure is published)."]
        if any(not spec.startswith(RLFN_PREFIX) for spec, _ in cnns.values()):
            lines += ["", "The nets' rows are the float networks the multi-stage LUTs were "
                      "sampled from, before the LUTs' refits and fine-tuning."]
        lines.append("")
        lines += ["## Quality", "",
                  "`train.evaluate.evaluate` on `../shared/data/test`: LR from "
                  "`LR_bicubic/X<s>`, Y-PSNR with `s` pixels shaved and SSIM (11x11 Gaussian, "
                  "sigma 1.5) on the BT.601 Y channel, gray images replicated to RGB "
                  "(`../shared/README.md`).", ""]
        for scale, results in quality.items():
            lines += [markdown_table(results, scale), ""]
        lines += ["## The picture", "",
                  "![Y-PSNR against ms per 1080p frame](pareto.png)", "",
                  f"`pareto.png`: Set5 and Set14 Y-PSNR of the x4 methods against the time per "
                  f"1920x1080 output frame ({PLOT_SIZE} x4; each method at its faster thread "
                  "count, marked 1T or 2T; log scale); red points and line: the Pareto "
                  "front, the measured methods nothing else measured beats on both speed and "
                  "quality."
                  + (" Green diamonds (Set5 only): the ShiftLUT shapes, timed here with random "
                     "tables, at their published Set5 PSNR; they are not on the front, and not "
                     "on the Set14 panel (no published figure)." if layered else "")]
        for dataset, front in fronts.items():
            lines.append(f"- {dataset} front, fastest first: " + ", ".join(front))
        lines.append("")
    else:
        lines += ["Quality was not measured in this run (`--no-quality`); no plot.", ""]
    path.write_text("\n".join(lines) + _kept_sections(path))


#: Sections after this line of RESULTS.md come from other bench scripts (each says which)
#: and survive a regeneration.
KEPT_MARKER = "<!-- Sections below: written by other bench scripts, kept by make_results.py -->"


def _kept_sections(path: Path) -> str:
    """The marker and what follows it in the existing ``path`` (empty if none)."""
    old = path.read_text() if path.exists() else ""
    at = old.find(KEPT_MARKER)
    return "" if at < 0 else "\n" + old[at:]


# --------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="tiny frames, few rounds, Set5 only: tests the script in a minute")
    p.add_argument("--no-quality", action="store_true", help="speed only (no plot)")
    p.add_argument("--b100", action="store_true", help="also evaluate quality on B100")
    p.add_argument("--rounds", type=int, default=None,
                   help="timed rounds per case (default 30, quick 3)")
    p.add_argument("--slow-rounds", type=int, default=None,
                   help="timed rounds of the CNNs and the numpy reference (default 3, quick 1)")
    p.add_argument("--lut", nargs="+", action="extend", default=[], metavar="PATH",
                   help="extra .lutsr files to measure beside the bundled LUTs")
    p.add_argument("--cnn", nargs="*", default=None, metavar="SPEC",
                   help="x4 CNNs to measure instead of RLFN, RLFN-ntire and the nets of x4-sdy "
                        "and x4-sdy-taps: tools/evaluate.py --cnn specs (a net checkpoint or "
                        "rlfn:PATH); --cnn alone for none")
    p.add_argument("--data", type=Path, default=DATA, help="folder holding Set5, Set14, B100")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="where RESULTS.md and pareto.png go (default bench/, quick: a temp dir)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    p.add_argument("--memory-probe", help=argparse.SUPPRESS)  # internal: one probe, JSON out
    args = p.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 30)
    if args.slow_rounds is None:
        args.slow_rounds = 1 if args.quick else 3
    if args.rounds < 1 or args.slow_rounds < 1:
        p.error("--rounds and --slow-rounds must be positive")
    if args.out_dir is None:
        args.out_dir = (Path(tempfile.gettempdir()) / "lutsr-bench-quick" if args.quick
                        else ROOT / "bench")
    return args


def cnn_entries(specs: Sequence[str] | None) -> dict[str, tuple[str, int]]:
    """``{label: (spec, scale)}`` of the CNNs to measure that can run here.

    ``specs`` None means :data:`CNNS`; otherwise each ``tools/evaluate.py
    --cnn`` spec, an x4 CNN, is labelled by its loader. A CNN whose weights
    or torch are missing is left out, with the reason printed.
    """
    wanted = dict(CNNS) if specs is None else {spec: (spec, 4) for spec in specs}
    found = {}
    for label, (spec, scale) in wanted.items():
        if why := cnn_missing(spec):
            print(f"[cnn] {label}: {why}: no rows", file=sys.stderr)
            continue
        if specs is not None:
            from train.evaluate import cnn_method

            label = cnn_method(spec, scale)[0]
        found[label] = (spec, scale)
    return found


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_probe:
        spec = json.loads(args.memory_probe)
        width, height = spec.pop("width"), spec.pop("height")
        print(json.dumps({"peak_mib": memory_probe(Case(**spec), width, height)}))
        return 0

    started = time.perf_counter()
    start = machine_info()
    command = "python -m bench.make_results" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    print(f"[start] {start['date']}, load average {start['load'][0]:.2f}", file=sys.stderr)

    datasets = []
    if not args.no_quality:
        names = ["Set5"] if args.quick else ["Set5", "Set14"] + (["B100"] if args.b100 else [])
        datasets = [args.data / n for n in names]
        missing = [str(d) for d in datasets if not d.is_dir()]
        if missing:
            print(f"make_results.py: error: dataset folder(s) missing: {', '.join(missing)} "
                  "(give --data, or --no-quality)", file=sys.stderr)
            return 2
    try:
        luts = lut_sources(args.lut)
    except (ValueError, OSError) as exc:
        print(f"make_results.py: error: {exc}", file=sys.stderr)
        return 2
    cnns = cnn_entries(args.cnn)
    if why := layered_missing():
        print(f"[layered] {why}: no layered rows", file=sys.stderr)
    layered = [] if why else list(SHIFTLUT_BLOCKS)
    cases = matrix_cases(luts, cnns, layered)
    frames = {}
    for size, _ in GROUPS:
        w, h = SIZES[size]
        if args.quick:
            w, h = w // QUICK_DIVISOR, h // QUICK_DIVISOR
        frames[size] = photo_frame(w, h)

    timings = time_cases(cases, frames, args.rounds, args.slow_rounds)
    if not args.no_memory:
        for t in timings:
            if args.quick and t.case.size != GROUPS[0][0]:
                continue  # quick: enough to exercise the probe
            h, w = t.frame_shape[:2]
            print(f"[memory] {t.case.id}", file=sys.stderr, flush=True)
            t.peak_mib = measure_memory(t.case, w, h)

    quality, fronts = {}, {}
    if datasets:
        scales = sorted({4} | {s for _, s in luts.values()}, reverse=True)
        quality = run_quality(scales, datasets, luts, cnns)
        if 4 in quality:
            from train.evaluate import summarize

            summary = summarize(quality[4])
            plot_sets = [d.name for d in datasets if d.name in ("Set5", "Set14")]
            args.out_dir.mkdir(parents=True, exist_ok=True)
            fronts = make_plot(plot_points(timings, summary, plot_sets),
                               args.out_dir / "pareto.png", args.quick)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    report = args.out_dir / "RESULTS.md"
    write_report(report, args=args, command=command, start=start, end_load=os.getloadavg(),
                 luts=luts, cnns=cnns, layered=layered, timings=timings, quality=quality,
                 fronts=fronts, elapsed=time.perf_counter() - started)
    print(f"[done] wrote {report}" + (f" and {args.out_dir / 'pareto.png'}" if fronts else "")
          + f" in {(time.perf_counter() - started) / 60:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
