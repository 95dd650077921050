"""`--cluster` against peers that are not a Dask scheduler, and a quiet shutdown.

A ``tcp://`` address may be any TCP service: one that never answers, an HTTP or
SSH server, one that sends a frame header no scheduler would. distributed waits
for a handshake forever and reads a banner as a length of exabytes; lutsr must
fail in one line naming the address, within its timeout. Every peer here is a
small fake server on loopback, and the timeout is 2 s.

A ``local:N`` run must also end without distributed's shutdown races on stderr
(a worker's heartbeat cut off by the shutdown is logged with a traceback).
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import HANG_GUARD_S, random_lut

import lutsr
from lutsr import cluster
from lutsr.cli import main

distributed = pytest.importorskip("distributed")
Image = pytest.importorskip("PIL.Image")

TIMEOUT = 2.0  # seconds given to connect (cluster.CONNECT_TIMEOUT)
BOUND = 30.0  # what "within the timeout" is checked against: generous, for a busy machine

#: A real scheduler's handshake (distributed 2026.8, Python 3.11): a length, the
#: frame count and length, one msgpack frame.
HANDSHAKE = (b":\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00*\x00\x00\x00"
             b"\x00\x00\x00\x00\x83\xabcompression\xc0\xa6python\x93\x03\x0b\x07"
             b"\xafpickle-protocol\x05")


def _greet(kind: str, conn: socket.socket, count: int) -> None:
    """What a fake server of ``kind`` does with its ``count``-th connection."""
    if kind == "ssh":
        conn.sendall(b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n")
    elif kind == "http":  # speaks when spoken to
        conn.settimeout(10)
        if conn.recv(4096):
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    elif kind == "frame":  # a length that fits, then 2**40 frames
        conn.sendall(struct.pack("<QQ", 40, 2**40) + b"x" * 32)
    elif kind == "handshake-then-silent":  # looks like Dask once, then never answers
        if count == 1:
            conn.sendall(HANDSHAKE)
    elif kind == "handshake-then-close":
        conn.sendall(HANDSHAKE)
        conn.close()
    # "silent": accepts and never sends


@pytest.fixture
def fake_server():
    """Start fake servers on loopback: ``fake_server(kind)`` returns its ``tcp://`` address."""
    stop = threading.Event()
    sockets: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(kind: str) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.1)
        sockets.append(listener)

        def serve():
            count = 0
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                sockets.append(conn)
                count += 1
                worker = threading.Thread(target=_greet_quietly, args=(kind, conn, count),
                                          daemon=True)
                worker.start()
                threads.append(worker)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return f"tcp://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    stop.set()
    for sock in sockets:
        sock.close()
    for thread in threads:
        thread.join(5)


def _greet_quietly(kind, conn, count):
    try:
        _greet(kind, conn, count)
    except OSError:  # the client hung up first
        pass


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory):
    model = random_lut(np.random.default_rng(5), scale=2)
    return lutsr.save(model, tmp_path_factory.mktemp("lut") / "x2.lutsr")


@pytest.fixture
def one_image(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (6, 5, 3), np.uint8)).save(folder / "a.png")
    return folder


def _bounded(fn, *args):
    """``fn(*args)`` and its seconds, run in a thread: a hang past BOUND fails the test."""
    box = {}

    def target():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - raised again in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), f"still running after {BOUND:g} s"
    if "error" in box:
        raise box["error"]
    return box["value"], time.monotonic() - start


EXPECTED = {  # what the one line says, besides the address
    "silent": "sent no Dask handshake within 2 s",
    "ssh": "does not speak Dask's protocol (it sent 'SSH-2.0-OpenSSH_9.6p1",
    "http": "does not speak Dask's protocol (it sent 'HTTP/1.1 400 Bad Request')",
    "frame": "does not speak Dask's protocol (what it sent is not a Dask handshake)",
    "handshake-then-silent": "no answer within 2 s",
    "handshake-then-close": "closed",
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_not_a_scheduler_fails_in_one_line_within_the_timeout(
        kind, fake_server, lut_file, one_image, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", TIMEOUT)
    address = fake_server(kind)
    out = tmp_path / "out"
    status, _ = _bounded(main, ["image", str(one_image), "-o", str(out), "--lut", str(lut_file),
                                "--backend", "reference", "--cluster", address])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert status == 1 and not captured.out
    assert len(err) == 1 and address in err[0] and EXPECTED[kind] in err[0], err
    assert "internal error" not in err[0] and "out of memory" not in err[0]
    assert not out.exists() or not any(out.iterdir())


def test_refused_is_retried_then_one_line(monkeypatch, lut_file, one_image, tmp_path, capsys):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", TIMEOUT)
    address = f"tcp://127.0.0.1:{_closed_port()}"
    status, seconds = _bounded(main, ["image", str(one_image), "-o", str(tmp_path / "o"),
                                      "--lut", str(lut_file), "--cluster", address])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1 and address in err[0], err
    assert "connection refused" in err[0]
    assert seconds >= TIMEOUT * 0.5  # retried (a scheduler may be starting), not given up at once


@pytest.mark.parametrize("kind", ["silent", "ssh", "http", "frame"])
def test_probe_is_bounded(kind, fake_server):
    address = fake_server(kind)
    with pytest.raises(cluster.ClusterError) as info:
        _bounded(cluster.probe, address, TIMEOUT)
    assert address in str(info.value) and "\n" not in str(info.value)


def test_probe_accepts_a_scheduler_and_checks_the_address(fake_server):
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as lc:
        assert _bounded(cluster.probe, lc.scheduler_address, 20.0)[0] is None
    for address, why in (("tcp://127.0.0.1", "missing port"), ("tcp://127.0.0.1:99999", "port")):
        with pytest.raises(cluster.ClusterError, match=why):
            cluster.probe(address, TIMEOUT)


def test_a_client_made_after_the_deadline_is_closed():
    made, closed = threading.Event(), threading.Event()

    class Slow:
        def close(self):
            closed.set()

    def make():
        made.wait(BOUND)  # the deadline passes first
        return Slow()

    with pytest.raises(cluster.ClusterError, match="no answer within 0.1 s"):
        cluster._within(0.1, "here", make)
    made.set()
    assert closed.wait(BOUND)


#: Preload (scheduler and workers alike) that provokes the shutdown race every
#: time: each worker sends its first heartbeat at once and the scheduler never
#: answers it, so every worker has a heartbeat in flight when the cluster closes.
HELD_HEARTBEAT = '''
import asyncio


def dask_setup(server):
    if "heartbeat_worker" in server.handlers:  # the scheduler
        async def held(*args, **kwargs):
            await asyncio.sleep(3600)
        server.handlers["heartbeat_worker"] = held
    else:  # a worker
        server.periodic_callbacks["heartbeat"].callback_time = 10  # ms
'''


def test_local_cluster_shuts_down_quietly(tmp_path, lut_file, one_image):
    """No traceback, no log line on stderr however the shutdown races the heartbeats."""
    preload = tmp_path / "held_heartbeat.py"
    preload.write_text(HELD_HEARTBEAT)
    env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__PRELOAD=f"['{preload}']",
               DASK_DISTRIBUTED__WORKER__PRELOAD=f"['{preload}']")
    busy = socket.socket()  # distributed's default HTTP port, taken: no warning either
    try:
        busy.bind(("127.0.0.1", 8787))
        busy.listen()
    except OSError:  # taken already
        pass
    try:
        out = tmp_path / "out"
        done = subprocess.run(
            [sys.executable, "-m", "lutsr.cli", "image", str(one_image), "-o", str(out),
             "--lut", str(lut_file), "--backend", "reference", "--cluster", "local:2", "-q"],
            capture_output=True, text=True, env=env, timeout=HANG_GUARD_S)
    finally:
        busy.close()
    assert done.returncode == 0, done.stderr
    for noise in ("Traceback", "distributed.", "8787"):
        assert noise not in done.stderr, done.stderr
    assert (out / "a.png").is_file()
