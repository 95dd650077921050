"""Upscale many files over a Dask distributed cluster: one task per file.

``lutsr image DIR -o OUT --cluster ADDRESS`` and ``lutsr video FILES... -o DIR
--cluster ADDRESS`` land here. ``ADDRESS`` is a running scheduler
(``tcp://host:8786``) or ``local:N``, a :class:`distributed.LocalCluster` of
``N`` worker processes on this machine.

What travels to a worker is the file pair, the command's options and the
LUT's ``.lutsr`` bytes (scattered once to every worker), never a compiled
kernel: each worker process loads the LUT and builds its own
:class:`lutsr.Upscaler` once, then runs the very code of a local run
(:func:`lutsr.commands.image.upscale_image`, :func:`lutsr.commands.video.cmd_video`), so the images
it writes equal a local run's byte for byte, and the videos frame for frame (a video
encoder's bytes may vary from process to process). Workers write through
:func:`lutsr.safefiles.atomic_output`: an output exists only when complete, which
is why a rerun with ``--skip-existing`` can skip every output that exists (without
it, existing outputs are refused before any work, as in a local run; with
``--overwrite`` they are redone). Inputs and outputs are
paths, so the workers must see the same file system as the client (one
machine, or a shared mount at the same path).

``lutsr video IN -o OUT --segments ... --cluster ADDRESS`` spreads the segments
of one video over the workers instead (:func:`cli_video_segments`): each task
is :func:`lutsr.video.segments.encode_segment`, given the LUT as a file in the
segments' work folder.

Dask is an optional extra: ``pip install 'lutsr[cluster]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .commands.common import (
    CLIError,
    print_error,
    refuse_existing,
    refuse_lut_output,
    show_progress,
    upscaler_from_args,
)
from .commands.image import image_bar, plan_images, upscale_image
from .commands.video import cmd_video, cmd_video_segments
from .model import LUT

#: What ``--cluster`` accepts, for error messages.
ADDRESS_FORMS = "tcp://HOST:PORT (a running Dask scheduler) or local:N (N worker processes here)"

#: Seconds a scheduler has to answer, from the first connection attempt to a
#: ready client (the handshake included).
CONNECT_TIMEOUT = 20.0

#: The most bytes a scheduler's first message may take: its handshake is under
#: a hundred bytes; a longer length prefix is another service's banner.
_HANDSHAKE_LIMIT = 64 * 1024


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


def _service(address: str, first: bytes) -> str:
    """One line saying the peer at ``address`` is not Dask, quoting its first line if text."""
    line = first.split(b"\n", 1)[0].rstrip(b"\r")[:40].decode("ascii", "replace")
    said = (f"it sent {line!r}" if line and line.isprintable() else
            "what it sent is not a Dask handshake")
    return (f"cannot reach a Dask scheduler at {address}: the service there does not speak "
            f"Dask's protocol ({said})")


def _handshake() -> bytes:
    """A Dask comm handshake: one msgpack frame, length-prefixed (see :func:`_check_handshake`)."""
    import pickle

    import msgpack  # a dependency of distributed

    frame = msgpack.packb({"compression": None, "python": tuple(sys.version_info[:3]),
                           "pickle-protocol": pickle.HIGHEST_PROTOCOL})
    prelude = struct.pack("<QQ", 1, len(frame))
    return struct.pack("<Q", len(prelude) + len(frame)) + prelude + frame


def _recv_exactly(sock: socket.socket, count: int, deadline: float) -> bytes:
    """``count`` bytes from ``sock`` before ``deadline`` (``time.monotonic``), or fewer at EOF."""
    data = bytearray()
    while len(data) < count:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = sock.recv(min(count - len(data), 65536))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _check_handshake(address: str, data: bytes) -> None:
    """Raise ClusterError unless ``data`` is a Dask comm message that msgpack decodes to a dict.

    A message is an 8-byte length, then the frame count and each frame's length
    (8 bytes each), then the frames; the first frame is msgpack.
    """
    import msgpack  # a dependency of distributed

    body = data[8:]
    try:
        (count,) = struct.unpack_from("<Q", body)
        if not 1 <= count <= 64:
            raise ValueError(count)
        lengths = struct.unpack_from(f"<{count}Q", body, 8)
        start = 8 * (1 + count)
        if start + sum(lengths) != len(body):
            raise ValueError(lengths)
        message = msgpack.unpackb(body[start:start + lengths[0]])
    except (ValueError, struct.error, msgpack.UnpackException):
        raise ClusterError(_service(address, data)) from None
    if not isinstance(message, dict):
        raise ClusterError(_service(address, data))


def probe(address: str, timeout: float) -> None:
    """Check that a Dask scheduler answers at ``tcp://HOST:PORT`` within ``timeout`` seconds.

    Both ends of a Dask connection send a handshake at once, a short
    length-prefixed message: this connects, sends one, reads the peer's with
    every read bounded in size and time, and hangs up. distributed itself
    waits for the peer's handshake forever, and takes another service's banner
    for a length of exabytes. A refused connection is retried until the
    timeout, as distributed does (the scheduler may be starting). Addresses of
    other schemes (``tls://`` and the like) are not probed.

    Parameters
    ----------
    address : str
        The scheduler's address, as for :class:`distributed.Client`.
    timeout : float
        Seconds for the whole probe.

    Raises
    ------
    ClusterError
        Nothing answers, the peer sends nothing or hangs up, or what it sends is
        not a Dask handshake: one line naming the address.
    """
    from distributed.comm.addressing import parse_address as split_scheme
    from distributed.comm.addressing import parse_host_port

    deadline = time.monotonic() + timeout
    try:
        scheme, location = split_scheme(address)
        if scheme != "tcp":
            return
        host, port = parse_host_port(location)
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is not in 1..65535")
    except ValueError as exc:
        raise ClusterError(f"--cluster {address!r}: {exc}; expected {ADDRESS_FORMS}") from None
    prefix = f"cannot reach a Dask scheduler at {address}"
    pause = 0.05
    while True:
        try:
            sock = socket.create_connection(
                (host, port), timeout=max(deadline - time.monotonic(), 0.001))
            break
        except ConnectionRefusedError:
            if time.monotonic() + pause >= deadline:
                raise ClusterError(f"{prefix}: connection refused for {timeout:g} s "
                                   "(is the scheduler running?)") from None
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        except TimeoutError:
            raise ClusterError(f"{prefix}: no connection within {timeout:g} s") from None
        except OSError as exc:
            raise ClusterError(f"{prefix}: {exc.strerror or exc}") from None
    with sock:
        try:
            # Ours first, as distributed's client does: a scheduler then sees a
            # whole handshake (no log line), and an HTTP server answers with its
            # status line rather than waiting for a request.
            sock.sendall(_handshake())
            head = _recv_exactly(sock, 8, deadline)
            if len(head) == 8:
                (size,) = struct.unpack("<Q", head)
                if not 8 < size <= _HANDSHAKE_LIMIT:
                    # A banner: read a little more of it (briefly) to quote its first line.
                    sock.settimeout(0.2)
                    with contextlib.suppress(OSError):
                        head += sock.recv(64)
                    raise ClusterError(_service(address, head))
                head += _recv_exactly(sock, size, deadline)
        except TimeoutError:
            raise ClusterError(f"{prefix}: the service there sent no Dask handshake within "
                               f"{timeout:g} s") from None
        except OSError as exc:
            raise ClusterError(f"{prefix}: {exc.strerror or exc}") from None
    if len(head) < 8 or len(head) < 8 + struct.unpack("<Q", head[:8])[0]:
        if not head:
            raise ClusterError(f"{prefix}: the service there hung up without a Dask handshake")
        raise ClusterError(_service(address, head))
    _check_handshake(address, head)


def _within(seconds: float, what: str, make):
    """``make()`` run in a thread and given up after ``seconds``: a hard deadline.

    distributed bounds most of a client's start by its ``timeout``, not all of
    it (the handshake read has no bound); whatever ``make`` raises comes back
    as it is. A result that arrives after the deadline is closed.
    """
    box: dict = {}
    lock = threading.Lock()

    def target():
        try:
            value = make()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            with lock:
                box.setdefault("error", exc)
            return
        with lock:
            late = "error" in box
            box.setdefault("value", value)
        if late:  # nobody will close it
            with contextlib.suppress(Exception):
                value.close()

    thread = threading.Thread(target=target, name="lutsr-cluster-connect", daemon=True)
    thread.start()
    try:
        thread.join(seconds + 0.5)  # a moment's grace: distributed's timeout should say it first
    finally:  # Ctrl-C included: a client made from now on is closed by the thread
        with lock:
            box.setdefault("error", ClusterError(f"{what}: no answer within {seconds:g} s"))
    if "value" in box:
        return box["value"]
    raise box["error"]


class _Connection:
    """A Dask client, and the local cluster it owns for ``local:N``."""

    def __init__(self, address: str):
        distributed = _distributed()
        target = parse_address(address)
        timeout = CONNECT_TIMEOUT
        self.cluster = None
        self.client = None
        self.workers = target if isinstance(target, int) else None
        if self.workers is not None:
            try:
                # Processes, one task at a time each: the numba kernels are
                # threaded already, and a process per worker keeps their
                # thread pools apart.
                # Quiet: lutsr reports every file's failure itself, and a worker's
                # heartbeat cut off by the shutdown is logged as an error with a
                # traceback. The scheduler's HTTP server, needed or not, gets any
                # free loopback port: a busy 8787 (a second run) is not a warning.
                self.cluster = distributed.LocalCluster(
                    n_workers=self.workers, threads_per_worker=1, processes=True,
                    dashboard_address=None, silence_logs=logging.CRITICAL,
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
                self.client = distributed.Client(self.cluster, timeout=f"{timeout}s")
            except OSError as exc:
                self.close()
                raise ClusterError(f"cannot start a local Dask cluster ({address}): "
                                   f"{exc}") from None
            return
        self.client = self._remote(distributed, target, timeout)

    @staticmethod
    def _remote(distributed, address: str, timeout: float):
        """A client of the scheduler at ``address``, or one line saying why not, in ``timeout``."""
        what = f"cannot reach a Dask scheduler at {address}"
        deadline = time.monotonic() + timeout

        def connect():
            probe(address, timeout)
            left = max(deadline - time.monotonic(), 0.1)
            return distributed.Client(address, timeout=f"{left}s")

        try:
            return _within(timeout, what, connect)
        except ClusterError:
            raise
        except MemoryError:  # a length prefix read as exabytes: not a Dask peer
            raise ClusterError(f"{what}: the service there does not speak Dask's protocol") \
                from None
        except Exception as exc:  # noqa: BLE001 - whatever distributed raises, one line
            text = " ".join(str(exc).split())
            reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
            if isinstance(exc, TimeoutError) or "timed out" in text.lower():
                reason = f"no answer within {timeout:g} s"
            elif isinstance(exc, distributed.comm.CommClosedError):
                reason = "the connection was closed while connecting"
            raise ClusterError(f"{what}: {reason}") from None

    def close(self) -> None:
        """Close the client, then the cluster it owns, with distributed's loggers silenced.

        Shutting down races the workers' heartbeats and the client's own
        comms; distributed logs the losers as errors with tracebacks, and none
        of them means a file was lost (each has its outcome already).
        """
        with _silenced(_SHUTDOWN_LOGGERS):
            try:
                if self.client is not None:
                    self.client.close()
            finally:
                if self.cluster is not None:
                    self.cluster.close()


#: The loggers that report distributed's shutdown races.
_SHUTDOWN_LOGGERS = ("distributed", "tornado", "asyncio")


@contextlib.contextmanager
def _silenced(names):
    """Drop every record of the loggers ``names`` (and their children) for the ``with`` body."""
    # distributed's logging config gives some children levels of their own
    # (distributed.client), which a parent's level does not override.
    known = [name for name in logging.root.manager.loggerDict
             if any(name == n or name.startswith(n + ".") for n in names)]
    loggers = [logging.getLogger(name) for name in {*names, *known}]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


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
        upscale_image(upscaler, Path(src), Path(dst), args)
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
        cmd_video(args)
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
        :func:`lutsr.commands.image.plan_images`); outputs that exist are skipped unless
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
    return upscaler_from_args(args).lut if args.lut is not None or not sized else None


def _show(args, total: int):
    """A progress bar on a terminal, and per-file error lines as they arrive."""
    bar = image_bar(total, show_progress(args) and total > 1)

    def on_outcome(outcome: Outcome) -> None:
        if outcome.status == "failed":
            print_error(outcome.error)
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
    pairs = plan_images(args.inputs, args.output,
                        overwrite=args.overwrite or args.skip_existing, ext=args.ext,
                        recursive=args.recursive, lut=args.lut)
    if not 1 <= args.quality <= 100:
        raise CLIError(f"--quality must be in 1..100, got {args.quality}")
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
    from .video.encoding import container_format

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
    refuse_lut_output(args.lut, [dst for _, dst in pairs])
    if not (args.overwrite or args.skip_existing):  # as a local run, and as images
        refuse_existing([dst for _, dst in pairs])
    lut = _lut(args)
    Path(args.output).mkdir(parents=True, exist_ok=True)
    return _run_and_report(args, "video", pairs, lut, Path(args.output))


@contextlib.contextmanager
def segment_executor(address: str):
    """The cluster at ``address`` as a :class:`concurrent.futures.Executor`, and its worker count.

    Yields
    ------
    (executor, int)
        Dask's ``Client.get_executor`` (every task run, none cached as pure),
        and how many workers the cluster has now (at least 1). The client, and
        a ``local:N`` cluster, are closed on leaving.
    """
    parse_address(address)
    _distributed()
    conn = _Connection(address)
    try:
        workers = conn.workers or len(conn.client.scheduler_info().get("workers", {})) or 1
        yield conn.client.get_executor(pure=False), workers
    finally:
        conn.close()


def cli_video_segments(args) -> int:
    """``lutsr video IN -o OUT --segments ... --cluster ADDRESS``: return the exit status."""
    if args.jobs is not None:
        raise ClusterError("--jobs is for local processes; with --cluster the cluster's "
                           "workers run the segments")
    with segment_executor(args.cluster) as (executor, workers):
        return cmd_video_segments(args, executor, workers)
