"""Segmented video runs: one long video cut at its keyframes, upscaled in parallel, resumable.

``lutsr video IN -o OUT --segments auto|N|SECONDS`` lands here
(:func:`upscale_segmented`). The steps:

1. The input's video packets are read without decoding (:func:`read_index`):
   their timestamps, and which are keyframes. The cut points are keyframes
   (:func:`cut_points`), so each segment decodes on its own from its first
   packet.
2. Each segment is upscaled and encoded by :func:`lutsr.video.upscale_video`
   with ``span`` set (:func:`encode_segment`): decoded from its keyframe, its
   frames picked by presentation time in ``[start, next start)`` (B-frames
   reordered across a cut land where they are shown), encoded to a file of
   OUT's container in the work folder ``OUT.lutsr-segments/``, written
   atomically. The segments run in local processes (``jobs``) or on the Dask
   workers of ``--cluster``: any :class:`concurrent.futures.Executor`.
3. A manifest (``manifest.json`` in the work folder) records the input's
   identity (path, size, modification time, a hash of its first and last
   MiB), the options, the LUT's digest, the cut points and every finished
   segment's frame count and SHA-256. A rerun after an interruption or a
   failed worker reuses the segments whose files still match, and encodes the
   rest; a rerun with another input or other options is refused in one line
   (``overwrite`` starts afresh instead).
4. The segments' packets are joined without re-encoding
   (:func:`lutsr.video.join.join_segments`), each keeping the timestamps of
   the input frame it came from, and muxed with the input's audio and subtitle packets (copied,
   or re-encoded where the container needs it, as in a whole run), its
   chapters and its metadata. Then the work folder is removed.

Frames equal to a whole run's: a segment's frames are the input's frames it
covers, upscaled by the same code, so the pictures handed to the encoder are
the same; each segment's encoder starts a closed GOP (an IDR frame) at its
cut. With a lossless or intra-only encoder (``--codec ffv1``, ``--crf 0``)
the decoded frames equal a whole run's exactly; with a lossy inter-frame
encoder (libx264 at its default CRF) the encoder's decisions differ near the
cuts, and so do the decoded pixels, by a few code values (measured in
``bench/RESULTS_video.md``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from .. import __version__
from ..api import Upscaler
from ..progress import progress_bar
from ..safefiles import check_output
from .avutil import import_av
from .encoding import PIPE_FORMATS, output_muxer, pick_encoder
from .inputs import pick_video_stream
from .join import join_segments
from .options import VideoOptions, VideoReport
from .streams import note
from .upscale import upscale_video

#: The length of an ``auto`` segment, in seconds of input, for a long input;
#: a short one is cut into two segments per worker, for an even load.
AUTO_SECONDS = 60.0

#: The manifest's format; a manifest of another version is not reused.
MANIFEST_VERSION = 1

#: Bytes hashed at each end of the input, for its identity in the manifest.
SAMPLE_BYTES = 2**20

#: The work folder's name is OUT's with this appended.
WORK_SUFFIX = ".lutsr-segments"

# The options that do not change what is written (and may differ on a rerun).
_NOT_OUTPUT = ("overwrite", "progress", "quiet")

# Test hook, private: a worker encoding this segment number exits at once (a
# killed worker), to test resuming. Never set outside lutsr's tests.
_EXIT_HOOK = "_LUTSR_TEST_SEGMENT_EXIT"


def parse_segments(text: str) -> str | int | float:
    """``--segments``: ``"auto"``, a count (``"8"``) or a length in seconds (``"30s"``).

    Returns
    -------
    "auto", int or float
        A count is an int >= 1, a length a float > 0 (seconds).

    Raises
    ------
    ValueError
        Anything else, in one line.
    """
    t = text.strip().lower()
    if t == "auto":
        return "auto"
    if re.fullmatch(r"\d+", t) and int(t) >= 1:
        return int(t)
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)s", t)
    if m and 0 < float(m.group(1)) < math.inf:
        return float(m.group(1))
    hint = f"; for {t} seconds write {t}s" if re.fullmatch(r"\d*\.\d+", t) else ""
    raise ValueError(f"--segments must be auto, a count such as 8, or a length in seconds "
                     f"such as 30s; got {text!r}{hint}")


@dataclass(frozen=True)
class Index:
    """The input's video packets, read without decoding.

    Attributes
    ----------
    time_base : Fraction
        Of the video stream; every timestamp here is in it.
    pts : list of int
        Every packet's presentation timestamp, sorted (one per frame).
    keys : list of int
        The keyframes' timestamps, sorted.
    """

    time_base: Fraction
    pts: list[int]
    keys: list[int]

    @property
    def seconds(self) -> float:
        """The span from the first frame to the last."""
        return float((self.pts[-1] - self.pts[0]) * self.time_base) if self.pts else 0.0


def read_index(src: str | os.PathLike) -> Index:
    """The timestamps and keyframes of ``src``'s video stream (demuxed, not decoded).

    Raises
    ------
    ValueError
        No video stream, no frames, or packets without timestamps (a raw
        ``.h264`` stream: put it in a container first).
    """
    av = import_av()
    with av.open(str(src)) as inp:
        vin = pick_video_stream(av, inp)
        pts, keys = [], []
        for packet in inp.demux(vin):
            if not packet.size:  # the demuxer's final flush packet
                continue
            if packet.pts is None:
                raise ValueError(f"{src}: its video packets have no timestamps (a raw "
                                 "stream?), which --segments needs; remux it into .mkv or "
                                 ".mp4 first, or leave out --segments")
            pts.append(packet.pts)
            if packet.is_keyframe:
                keys.append(packet.pts)
        time_base = Fraction(vin.time_base)
    if not pts:
        raise ValueError(f"{src}: the video stream has no frames")
    return Index(time_base, sorted(pts), sorted(keys))


def cut_points(index: Index, spec: str | int | float, workers: int) -> list[int]:
    """The keyframe timestamps where segments start, after the first segment.

    Parameters
    ----------
    index : Index
    spec : "auto", int or float
        From :func:`parse_segments`: ``"auto"`` (segments of about
        :data:`AUTO_SECONDS`, at least two per worker), a count, or a length
        in seconds.
    workers : int
        The processes or Dask workers that will run them.

    Returns
    -------
    list of int
        Sorted, distinct keyframes after the first frame; segment ``i`` is
        ``[cuts[i-1], cuts[i])`` with an open start and end. Fewer cuts than
        asked when the keyframes are sparser: each target time is moved to the
        nearest keyframe.
    """
    first, seconds = index.pts[0], index.seconds
    if spec == "auto":
        count = max(2 * workers, math.ceil(seconds / AUTO_SECONDS))
    elif isinstance(spec, int):
        count = spec
    else:
        count = max(1, math.ceil(seconds / spec - 1e-9))
    candidates = [k for k in index.keys if k > first]
    cuts: set[int] = set()
    if not candidates:
        return []
    for i in range(1, count):
        target = first + Fraction(seconds * i / count) / index.time_base
        cuts.add(min(candidates, key=lambda k: (abs(k - target), k)))
    return sorted(cuts)


def spans(cuts: list[int]) -> list[tuple[int | None, int | None]]:
    """The segments' ``(start, end)`` timestamps: open at both ends of the video."""
    edges = [None, *cuts, None]
    return list(zip(edges[:-1], edges[1:]))


def frames_in(index: Index, span: tuple[int | None, int | None]) -> int:
    """How many frames have their timestamp in ``span``."""
    start, end = span
    return sum((start is None or p >= start) and (end is None or p < end) for p in index.pts)


def input_identity(src: str | os.PathLike) -> dict:
    """What the manifest knows the input by: path, size, mtime, a hash of its two ends."""
    path = Path(src).resolve()
    st = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(SAMPLE_BYTES))
        f.seek(max(st.st_size - SAMPLE_BYTES, 0))
        digest.update(f.read(SAMPLE_BYTES))
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ends_sha256": digest.hexdigest()}


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def work_folder(dst: str | os.PathLike) -> Path:
    """Where the segments of an output are kept until joined: ``OUT.lutsr-segments``."""
    dst = Path(dst)
    return dst.with_name(dst.name + WORK_SUFFIX)


def _stop_workers(executor: concurrent.futures.ProcessPoolExecutor) -> None:
    """End a local pool's processes now; their unfinished segments leave no file behind."""
    terminate = getattr(executor, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    # Before 3.14 the pool offers no way but its process table; each segment is
    # written through atomic_output, so a process ended mid-write leaves nothing.
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        process.terminate()


# ---------------------------------------------------------------------------
# One segment, in a worker process


@dataclass(frozen=True)
class SegmentTask:
    """What a worker needs to encode one segment; pickled to it.

    Attributes
    ----------
    index : int
        The segment's number, from 0.
    src, part : str
        The input, and the segment's file (absolute paths).
    span : (int or None, int or None)
        Its timestamps (:func:`spans`).
    options : VideoOptions
        The run's, with no audio or subtitles copied (the join copies them).
    lut : str
        The ``.lutsr`` file the client wrote into the work folder (absolute
        path); empty: each worker picks a bundled LUT for the output size, as a
        whole run does. A path, not the bytes: a task stays a few KB, so the
        pool's call queue never fills its pipe (Python 3.10's pool hangs for
        good when a worker dies while a large task is being written to it).
    digest : str
        SHA-256 of that file's bytes, checked by the worker.
    """

    index: int
    src: str
    part: str
    span: tuple[int | None, int | None]
    options: VideoOptions
    lut: bytes
    digest: str


_cache_lock = threading.Lock()
_upscalers: dict[tuple, Upscaler] = {}


def _worker_upscaler(task: SegmentTask) -> Upscaler | None:
    """One :class:`Upscaler` per process and LUT, whatever the segment count."""
    from ..fileformat import from_bytes

    if not task.lut:
        return None
    key = (task.digest, task.options.backend, task.options.threads)
    with _cache_lock:
        if key not in _upscalers:
            data = Path(task.lut).read_bytes()
            if hashlib.sha256(data).hexdigest() != task.digest:
                raise ValueError(f"{task.lut} changed during the run (its SHA-256 is not the "
                                 "client's); rerun the command")
            lut = from_bytes(data, source=task.lut)
            _upscalers[key] = Upscaler(lut, backend=task.options.backend,
                                       threads=task.options.threads)
        return _upscalers[key]


def encode_segment(task: SegmentTask) -> dict:
    """Upscale and encode one segment into ``task.part`` (atomically); run in a worker.

    Returns
    -------
    dict
        ``frames``, ``sha256`` of the file, ``cpu_seconds`` and ``seconds``
        spent, and the report's ``input_size``, ``output_size``, ``turned``
        and ``notes``.
    """
    if os.environ.get(_EXIT_HOOK) == str(task.index):
        os._exit(70)  # the test of a killed worker: no cleanup, no exception
    t0, c0 = time.perf_counter(), time.process_time()
    report = upscale_video(task.src, task.part, options=task.options,
                           upscaler=_worker_upscaler(task), span=task.span)
    return {"frames": report.frames, "sha256": file_sha256(task.part),
            "cpu_seconds": time.process_time() - c0, "seconds": time.perf_counter() - t0,
            "input_size": list(report.input_size), "output_size": list(report.output_size),
            "turned": report.turned, "notes": report.notes}


# ---------------------------------------------------------------------------
# The run, on the client


@dataclass
class SegmentedReport(VideoReport):
    """What :func:`upscale_segmented` did: a :class:`VideoReport`, and its segments.

    Attributes
    ----------
    segments : int
        How many segments the video was cut into.
    encoded, reused : list of int
        The segments encoded by this run, and those a former run had finished.
    cpu_seconds : float
        CPU time of this run's segment encodes, summed over the workers.
    """

    segments: int = 0
    encoded: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    cpu_seconds: float = 0.0


def local_executor(jobs: int) -> concurrent.futures.Executor:
    """``jobs`` worker processes here, started fresh (spawn: no forked numba threads)."""
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))


def upscale_segmented(src: str | os.PathLike, dst: str | os.PathLike,
                      options: VideoOptions | None = None, *, segments="auto",
                      upscaler: Upscaler | None = None,
                      executor: concurrent.futures.Executor | None = None,
                      workers: int | None = None) -> SegmentedReport:
    """Upscale a video in segments cut at its keyframes, in parallel; resume a former run.

    Parameters
    ----------
    src, dst : path
        Files (not pipes); ``dst``'s suffix picks the container, as for
        :func:`lutsr.video.upscale_video`.
    options : VideoOptions, optional
        As for :func:`lutsr.video.upscale_video` (``format``, raw input, and
        pipes are refused). ``threads`` None: the cores split among the
        workers.
    segments : "auto", int, float or str
        See :func:`parse_segments` (a string is parsed).
    upscaler : Upscaler, optional
        Its LUT is sent to the workers; None: the bundled LUT picked for the
        output size (``outscale``/``size``), or the default one.
    executor : concurrent.futures.Executor, optional
        Runs :func:`encode_segment` (a Dask client's ``get_executor()`` for
        ``--cluster``); default: :func:`local_executor` with ``workers``
        processes, shut down at the end.
    workers : int, optional
        How many segments run at once (default: the cores here).

    Returns
    -------
    SegmentedReport

    Raises
    ------
    ValueError
        Bad options, a work folder holding another run's segments (unless
        ``overwrite``), a segment that failed (the finished ones are kept
        for a rerun).
    FileExistsError
        ``dst`` exists and ``options.overwrite`` is false.
    """
    from ..fileformat import to_bytes

    opts = VideoOptions() if options is None else options
    av = import_av()
    t0 = time.perf_counter()
    spec = parse_segments(segments) if isinstance(segments, str) else segments
    src, dst = Path(src), Path(dst)
    muxer = _check_request(av, src, dst, opts)
    workers = workers or os.cpu_count() or 1
    if upscaler is None and opts.outscale is None and opts.size is None and opts.box is None:
        upscaler = Upscaler(None, backend=opts.backend, threads=opts.threads)
    lut = to_bytes(upscaler.lut) if upscaler is not None else b""
    digest = hashlib.sha256(lut).hexdigest() if lut else ""
    index = read_index(src)
    cuts = cut_points(index, spec, workers)
    parts = spans(cuts)
    work = work_folder(dst)
    identity = {"version": MANIFEST_VERSION, "lutsr": __version__, "input": input_identity(src),
                "options": _options_key(opts, spec), "lut_sha256": digest, "cuts": cuts}
    done = _resume(work, identity, opts.overwrite)
    threads = opts.threads or max(1, (os.cpu_count() or 1) // min(workers, len(parts)))
    part_opts = dataclasses.replace(opts, audio=False, subtitles=False, overwrite=True,
                                    progress=False, quiet=True, threads=threads)
    lut_file = (work / "lut.lutsr").absolute()
    if lut:
        _replace_file(lut_file, lut)
    tasks = [SegmentTask(i, str(src.absolute()), str((work / _part_name(i, dst)).absolute()),
                         span, part_opts, str(lut_file) if lut else "", digest)
             for i, span in enumerate(parts)]
    reused = sorted(i for i in done if _still_good(work, dst, i, done[i]))
    for i in set(done) - set(reused):
        del done[i]
    manifest = {**identity, "segments": {str(i): done[i] for i in reused}}
    _write_manifest(work, manifest)
    todo = [t for t in tasks if t.index not in done]
    cpu = _run_tasks(todo, executor, workers, work, manifest, opts)
    results = [manifest["segments"][str(i)] for i in range(len(parts))]
    for i, (span, result) in enumerate(zip(parts, results, strict=True)):
        if result["frames"] != frames_in(index, span):  # a frame lost or gained at a cut
            raise ValueError(f"{src}: segment {i} decoded {result['frames']} frames where the "
                             f"input has {frames_in(index, span)} (a damaged file?); run "
                             "without --segments")
    copied = join_segments(av, src, [t.part for t in tasks], dst, opts, muxer)
    shutil.rmtree(work, ignore_errors=True)
    notes = sorted({n for r in results for n in r["notes"]})
    for text in notes:
        note(text, opts.quiet)
    first = results[0]
    return SegmentedReport(
        frames=sum(r["frames"] for r in results), seconds=time.perf_counter() - t0,
        input_size=tuple(first["input_size"]), output_size=tuple(first["output_size"]),
        copied_streams=copied, luma_only=opts.luma_only, turned=first["turned"], notes=notes,
        segments=len(parts), encoded=[t.index for t in todo], reused=reused, cpu_seconds=cpu)


def _check_request(av, src: Path, dst: Path, opts: VideoOptions) -> str:
    """Refuse what segments cannot do (pipes, raw input, y4m), a bad output or encoder; the muxer.

    The other options are checked by each segment's :func:`upscale_video`.
    """
    if str(src) == "-" or str(dst) == "-":
        raise ValueError("--segments needs files, not pipes (-): the input is read once "
                         "per segment, and the output is joined from files")
    if opts.input_size is not None:
        raise ValueError("--segments cannot cut raw input (--input-size): it has no "
                         "keyframes or timestamps; leave out --segments")
    if not src.is_file():
        raise FileNotFoundError(f"no such video file: {src}")
    muxer = output_muxer(dst, None if opts.format is None else opts.format)
    if muxer == PIPE_FORMATS["y4m"]:
        raise ValueError("--segments cannot write y4m (it has no timestamps to join by); "
                         "choose .mkv or .mp4, or leave out --segments")
    check_output(dst, opts.overwrite, (src,))
    pick_encoder(av, muxer, opts.codec, crf=opts.crf, preset=opts.preset)  # fail before work
    return muxer


def _options_key(opts: VideoOptions, spec) -> dict:
    """The options that decide what is written, as the manifest records them."""
    key = {k: v for k, v in dataclasses.asdict(opts).items() if k not in _NOT_OUTPUT}
    key["segments"] = spec
    return json.loads(json.dumps(key))  # tuples as lists, as read back


def _part_name(i: int, dst: Path) -> str:
    return f"part-{i:05d}{dst.suffix.lower()}"


def _resume(work: Path, identity: dict, overwrite: bool) -> dict[int, dict]:
    """The finished segments of a former run in ``work``; refuse another run's segments."""
    path = work / "manifest.json"
    if not work.exists():
        work.mkdir()
        return {}
    if not work.is_dir():
        raise ValueError(f"{work} is in the way of the segments' work folder; move it")
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = None
    differs = _differs(old, identity)
    if differs and not (isinstance(old, dict) and old.get("segments")):
        overwrite = True  # nothing finished to keep: start afresh
    if differs and not overwrite:
        raise ValueError(f"{work} holds the segments of another run ({differs}); rerun with "
                         "the same input and options to resume it, or pass --overwrite to "
                         "start afresh (or delete the folder)")
    if differs:
        shutil.rmtree(work)
        work.mkdir()
        return {}
    return {int(i): seg for i, seg in old.get("segments", {}).items()}


def _differs(old: dict | None, new: dict) -> str:
    """What makes a former manifest another run's, in a few words; "" when it is this run's."""
    if not isinstance(old, dict) or old.get("version") != new["version"]:
        return "no manifest of this lutsr"
    if old.get("input") != new["input"]:
        return "another input, or the input has changed"
    changed = sorted(k for k in new["options"].keys() | old.get("options", {}).keys()
                     if old.get("options", {}).get(k) != new["options"].get(k))
    if changed:
        return f"other options: {', '.join(changed)}"
    for key, what in (("lut_sha256", "another LUT"), ("lutsr", "another lutsr version"),
                      ("cuts", "other cut points")):
        if old.get(key) != new[key]:
            return what
    return ""


def _still_good(work: Path, dst: Path, i: int, seg: dict) -> bool:
    """Whether a finished segment's file is still there, unchanged."""
    path = work / _part_name(i, dst)
    try:
        return path.is_file() and file_sha256(path) == seg.get("sha256")
    except OSError:
        return False


def _write_manifest(work: Path, manifest: dict) -> None:
    _replace_file(work / "manifest.json", json.dumps(manifest, indent=1).encode())


def _replace_file(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically (a run killed while writing it keeps the former file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _run_tasks(todo: list[SegmentTask], executor, workers: int, work: Path, manifest: dict,
               opts: VideoOptions) -> float:
    """Run ``todo`` on ``executor`` (or local processes), recording each finished segment.

    Returns the CPU seconds the encodes took. Raises one line when a segment
    failed, after the others have finished (and are recorded).
    """
    if not todo:
        return 0.0
    own = executor is None
    if own:
        executor = local_executor(min(workers, len(todo)))
    cpu, failed = 0.0, []
    bar = progress_bar(len(todo), enabled=opts.progress and not opts.quiet, unit="segment",
                       desc=work.name.removesuffix(WORK_SUFFIX), plain=True)
    futures = {}
    try:
        futures = {executor.submit(encode_segment, t): t for t in todo}
        for future in concurrent.futures.as_completed(futures):
            task = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - every segment's fate is recorded
                failed.append((task.index, exc))
                continue
            cpu += result["cpu_seconds"]
            manifest["segments"][str(task.index)] = result
            _write_manifest(work, manifest)
            bar.update(1)
    except BaseException as exc:
        for future in futures:
            future.cancel()
        if own:  # Ctrl-C, SIGTERM: do not wait for the segments being encoded
            _stop_workers(executor)
        if isinstance(exc, KeyboardInterrupt):  # the CLI prints "interrupted; <this>"
            raise KeyboardInterrupt(_leftover(work, manifest)
                                    or "no partial output was written") from None
        raise
    finally:
        bar.close()
        if own:
            broken = any(isinstance(exc, concurrent.futures.process.BrokenProcessPool)
                         for _, exc in failed)
            if broken:  # Python 3.10's shutdown(wait=True) of a broken pool can hang for good
                _stop_workers(executor)
            executor.shutdown(wait=not broken, cancel_futures=True)
    if failed:
        i, exc = min(failed, key=lambda f: f[0])
        why = (f"its worker process died ({type(exc).__name__})"
               if isinstance(exc, concurrent.futures.process.BrokenProcessPool)
               else " ".join(str(exc).split()) or type(exc).__name__)
        leftover = _leftover(work, manifest)
        raise ValueError(f"segment {i} failed: {why}" + (f"; {leftover}" if leftover else ""))
    return cpu


def _leftover(work: Path, manifest: dict) -> str:
    """After a run that stopped early: remove ``work`` if it holds no finished segment,
    else say where they are kept."""
    kept = len(manifest["segments"])
    if not kept:
        shutil.rmtree(work, ignore_errors=True)
        return ""
    return (f"{kept} finished segments are kept in {work}: rerun the same command to "
            "encode only the rest")


def describe(report: SegmentedReport) -> str:
    """``"segments: 8 (5 encoded, 3 reused), 412.3 CPU s"``, for the command's summary."""
    reused = f", {len(report.reused)} reused" if report.reused else ""
    return (f"segments: {report.segments} ({len(report.encoded)} encoded{reused}), "
            f"{report.cpu_seconds:.1f} CPU s in the workers")

