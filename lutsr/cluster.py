"""Upscale many files over a Dask distributed cluster: one task per file.

``lutsr image DIR -o OUT --cluster ADDRESS`` and ``lutsr video FILES... -o DIR
--cluster ADDRESS`` land here. ``ADDRESS`` is a running scheduler
(``tcp://host:8786``) or ``local:N``, a :class:`distributed.LocalCluster` of
``N`` worker processes on this machine.

What travels to a worker is the file pair, the command's options and the
LUT's ``.lutsr`` bytes (scattered once to every worker), never a compiled
kernel: each worker process loads the LUT and builds its own
:class:`lutsr.Upscaler` once, then runs the very code of a local run
(:func:`lutsr.commands._upscale_image`, :func:`lutsr.commands.cmd_video`), so the files it
writes equal a local run's byte for byte. Workers write through
:func:`lutsr.imageio.atomic_output`: an output exists only when complete, which
is why a rerun can skip every output that exists. Inputs and outputs are
paths, so the workers must see the same file system as the client (one
machine, or a shared mount at the same path).

Dask is an optional extra: ``pip install 'lutsr[cluster]'``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import commands
from .model import LUT

#: What ``--cluster`` accepts, for error messages.
ADDRESS_FORMS = "tcp://HOST:PORT (a running Dask scheduler) or local:N (N worker processes here)"


class ClusterError(RuntimeError):
    """A user-facing problem with ``--cluster``: printed as one line."""


@dataclass(frozen=True)
class Outcome:
    """What became of one file.

    Attributes
    ----------
    src, dst : Path
        The input and its output.
    status : {"done", "skipped", "failed"}
        ``"skipped"``: the output existed (a finished earlier run) and
        ``overwrite`` was not asked.
    error : str
        One line saying why, for ``"failed"``; empty otherwise.
    """

    src: Path
    dst: Path
    status: str
    error: str = ""


def parse_address(address: str) -> str | int:
    """A scheduler address as given, or the worker count of ``local:N``.

    Raises
    ------
    ClusterError
        An empty address, or ``local:`` not followed by a positive integer.
    """
    address = address.strip()
    if address.lower().startswith("local"):
        count = address[len("local"):].lstrip(":")
        if not count.isdigit() or int(count) < 1:
            raise ClusterError(f"--cluster {address!r}: expected {ADDRESS_FORMS}")
        return int(count)
    if not address:
        raise ClusterError(f"--cluster is empty: expected {ADDRESS_FORMS}")
    return address


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError("--cluster needs Dask distributed, which is not installed: "
                           "pip install 'lutsr[cluster]'") from None
    return distributed


class _Connection:
    """A Dask client, and the local cluster it owns for ``local:N``."""

    def __init__(self, address: str):
        distributed = _distributed()
        target = parse_address(address)
        self.cluster = None
        self.workers = target if isinstance(target, int) else None
        try:
            if self.workers is not None:
                # Processes, one task at a time each: the numba kernels are
                # threaded already, and a process per worker keeps their
                # thread pools apart.
                self.cluster = distributed.LocalCluster(
                    n_workers=self.workers, threads_per_worker=1, processes=True,
                    dashboard_address=None, silence_logs=40)  # logging.ERROR
                target = self.cluster
            self.client = distributed.Client(target, timeout="20s")
        except OSError as exc:
            self.close()
            raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from None

    def close(self) -> None:
        for part in (getattr(self, "client", None), self.cluster):
            if part is not None:
                part.close()


# ---------------------------------------------------------------------------
# On the workers: one LUT and one Upscaler per process, whatever the task count.

_cache_lock = threading.Lock()
_luts: dict[str, LUT] = {}
_upscalers: dict[tuple, object] = {}


def _worker_lut(data: bytes, digest: str) -> LUT:
    from .fileformat import from_bytes

    with _cache_lock:
        if digest not in _luts:
            _luts[digest] = from_bytes(data, source=f"the LUT sent by the client ({digest[:12]})")
        return _luts[digest]


def _worker_upscaler(lut: LUT, digest: str, backend: str, threads: int | None):
    from .api import Upscaler

    key = (digest, backend, threads)
    with _cache_lock:
        if key not in _upscalers:
            _upscalers[key] = Upscaler(lut, backend=backend, threads=threads)
        return _upscalers[key]


def _one_line(src: str, exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if src in text else f"{src}: {text}"


def _image_task(lut_data: bytes, digest: str, options: dict, src: str, dst: str) -> str:
    """Upscale one image on a worker; return "" or the one-line error."""
    try:
        args = argparse.Namespace(**options)
        upscaler = None  # no LUT sent: lutsr picks a bundled one per image size, as locally
        if digest:
            args.lut = _worker_lut(lut_data, digest)
            upscaler = _worker_upscaler(args.lut, digest, args.backend, args.threads)
        commands._upscale_image(upscaler, Path(src), Path(dst), args)
    except Exception as exc:  # noqa: BLE001 - reported per file; the other files go on
        return _one_line(src, exc)
    return ""


def _video_task(lut_data: bytes, digest: str, options: dict, src: str, dst: str) -> str:
    """Upscale one video on a worker with ``lutsr video``'s own code; return "" or the error."""
    try:
        args = argparse.Namespace(**options)
        if digest:  # Upscaler takes a LUT as well as a name
            args.lut = _worker_lut(lut_data, digest)
        args.input, args.output, args.more_inputs = src, dst, []
        commands.cmd_video(args)
    except Exception as exc:  # noqa: BLE001 - reported per file; the other files go on
        return _one_line(src, exc)
    return ""


TASKS = {"image": _image_task, "video": _video_task}


# ---------------------------------------------------------------------------
# On the client


def run(address: str, kind: str, pairs: list[tuple[Path, Path]], lut: LUT | None,
        options: dict, *,
        overwrite: bool = False, on_outcome=None) -> list[Outcome]:
    """Upscale ``pairs`` (input, output) over a Dask cluster, one task per file.

    Parameters
    ----------
    address : str
        ``tcp://host:port`` of a running scheduler, or ``local:N``.
    kind : {"image", "video"}
        Which command's code the workers run.
    pairs : list of (Path, Path)
        Input and output files, already checked (see
        :func:`lutsr.commands.plan_images`); outputs that exist are skipped unless
        ``overwrite``.
    lut : LUT or None
        The model; its ``.lutsr`` bytes are sent to every worker once. None
        (with ``--outscale``/``--size`` and no ``--lut``): each worker picks
        a bundled LUT per file, as a local run does.
    options : dict
        The command's parsed options (``vars(args)`` of ``lutsr image`` or
        ``lutsr video``): the workers rebuild the namespace from it.
    overwrite : bool
        Redo and replace existing outputs.
    on_outcome : callable, optional
        Called with each :class:`Outcome` as it arrives (skips first).

    Returns
    -------
    list of Outcome
        In the order of ``pairs``.

    Raises
    ------
    ClusterError
        Dask is not installed, a bad address, or the scheduler cannot be reached.
    """
    from .fileformat import to_bytes

    if kind not in TASKS:
        raise ValueError(f"kind must be one of {sorted(TASKS)}, got {kind!r}")
    outcomes: dict[int, Outcome] = {}
    todo = []
    for i, (src, dst) in enumerate(pairs):
        if not overwrite and os.path.lexists(dst):
            outcomes[i] = Outcome(Path(src), Path(dst), "skipped")
            if on_outcome:
                on_outcome(outcomes[i])
        else:
            todo.append(i)
    if not todo:
        return [outcomes[i] for i in range(len(pairs))]
    data = b"" if lut is None else to_bytes(lut)
    digest = hashlib.sha256(data).hexdigest() if data else ""
    options = {k: v for k, v in options.items() if k != "func"}
    options.update(quiet=True, overwrite=overwrite, cluster=None)
    conn = _Connection(address)
    futures: dict = {}
    try:
        distributed = _distributed()
        if conn.workers is not None and options.get("threads") is None:
            # local:N shares this machine's cores among its N workers.
            options["threads"] = max(1, (os.cpu_count() or 1) // conn.workers)
        lut_future = conn.client.scatter(data, broadcast=True)
        for i in todo:
            src, dst = (str(Path(p).absolute()) for p in pairs[i])
            future = conn.client.submit(TASKS[kind], lut_future, digest, options, src, dst,
                                        pure=False, key=f"lutsr-{kind}-{i}-"
                                        f"{time.time_ns()}")
            futures[future] = i
        for future in distributed.as_completed(futures):
            i = futures[future]
            src, dst = pairs[i]
            if future.status == "error":  # the worker died (or the task could not run)
                error = _one_line(str(src), future.exception())
            else:  # the worker saw the absolute path; say it as the user did
                error = future.result().replace(str(Path(src).absolute()), str(src))
            outcomes[i] = Outcome(Path(src), Path(dst), "failed" if error else "done", error)
            if on_outcome:
                on_outcome(outcomes[i])
    except BaseException:  # Ctrl-C included: a remote scheduler must drop the queued tasks
        if futures:
            conn.client.cancel(list(futures))
        raise
    finally:
        conn.close()
    return [outcomes[i] for i in range(len(pairs))]


# ---------------------------------------------------------------------------
# The command line (called from lutsr.cli)


def _report(outcomes: list[Outcome], noun: str, where, seconds: float, quiet: bool) -> int:
    done = sum(o.status == "done" for o in outcomes)
    skipped = sum(o.status == "skipped" for o in outcomes)
    failed = sum(o.status == "failed" for o in outcomes)
    if not quiet:
        extra = "".join([f"; {skipped} skipped (output exists)" if skipped else "",
                         f"; {failed} failed" if failed else ""])
        print(f"wrote {done} {noun}{'s' * (done != 1)} to {where} in {seconds:.2f} s "
              f"on the cluster{extra}")
    return 1 if failed else 0


def _lut(args) -> LUT | None:
    """The LUT a local run uses; None when it picks a bundled one per file size."""
    sized = getattr(args, "outscale", None) is not None or getattr(args, "size", None) is not None
    return commands._upscaler(args).lut if args.lut is not None or not sized else None


def _show(args, total: int):
    """A progress bar on a terminal, and per-file error lines as they arrive."""
    bar = commands._bar(total, commands._show_progress(args) and total > 1)

    def on_outcome(outcome: Outcome) -> None:
        if outcome.status == "failed":
            commands._error(outcome.error)
        bar.update(1)
    return bar, on_outcome


def _run_and_report(args, kind: str, pairs, lut, where: Path) -> int:
    """Run ``pairs`` on ``args.cluster`` with a progress bar; report; return the exit status."""
    bar, on_outcome = _show(args, len(pairs))
    t0 = time.perf_counter()
    try:
        outcomes = run(args.cluster, kind, pairs, lut, vars(args), overwrite=args.overwrite,
                       on_outcome=on_outcome)
    finally:
        bar.close()
    return _report(outcomes, kind, where, time.perf_counter() - t0, args.quiet)


def cli_images(args) -> int:
    """``lutsr image ... --cluster ADDRESS``: return the exit status."""
    parse_address(args.cluster)  # a bad address or no Dask fails before any work
    _distributed()
    # Existing outputs are refused as in a local run; --skip-existing resumes a run.
    pairs = commands.plan_images(args.inputs, args.output,
                                 overwrite=args.overwrite or args.skip_existing, ext=args.ext,
                                 recursive=args.recursive)
    if not 1 <= args.quality <= 100:
        raise commands.CLIError(f"--quality must be in 1..100, got {args.quality}")
    lut = _lut(args)
    if pairs[0][1] != Path(args.output):  # folder mode: the output folder may be new
        Path(args.output).mkdir(parents=True, exist_ok=True)
    where = pairs[0][1] if len(pairs) == 1 else Path(args.output)
    return _run_and_report(args, "image", pairs, lut, where)


def plan_videos(inputs: list[str], output: str) -> list[tuple[Path, Path]]:
    """Pair every input video with ``output/<its name>``, checking the pairs first.

    Raises
    ------
    ClusterError
        A missing input or one that is not a file (``-`` included), two inputs
        with one name, an output folder that is a file, an output suffix that
        is not a video container, an input that is also an output.
    """
    from .video import container_format

    out = Path(output)
    if out.exists() and not out.is_dir():
        raise ClusterError(f"output {out} must be a folder with --cluster")
    pairs, names = [], {}
    for name in inputs:
        src = Path(name)
        if name == "-" or not src.is_file():
            raise ClusterError(f"no such video file: {name} (--cluster takes files)")
        dst = out / src.name
        if dst in names:
            raise ClusterError(f"{names[dst]} and {src} would both be written to {dst}")
        names[dst] = src
        try:
            container_format(dst)
        except ValueError as exc:
            raise ClusterError(str(exc)) from None
        if dst.exists() and os.path.samefile(src, dst):
            raise ClusterError(f"output {dst} is an input file; refusing to overwrite it")
        pairs.append((src, dst))
    return pairs


def cli_videos(args, inputs: list[str]) -> int:
    """``lutsr video FILES... -o DIR --cluster ADDRESS``: return the exit status."""

    parse_address(args.cluster)
    _distributed()
    if getattr(args, "format", None) is not None:
        raise ClusterError("--format is for pipes; with --cluster each output keeps its "
                           "input's name and suffix, which picks the container")
    pairs = plan_videos(inputs, args.output)
    if not (args.overwrite or args.skip_existing):  # as a local run, and as images
        commands.refuse_existing([dst for _, dst in pairs])
    lut = _lut(args)
    Path(args.output).mkdir(parents=True, exist_ok=True)
    return _run_and_report(args, "video", pairs, lut, Path(args.output))
