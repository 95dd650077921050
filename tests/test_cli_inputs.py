"""What a command reads is never what it writes, and a text output's reader may leave early
(issue 39, follow-ups of items 5 and 6).

- The file ``--lut`` names is an input of ``lutsr image`` (files, folders, pipes, ``--cluster``),
  ``lutsr video`` (and :func:`lutsr.video.upscale_video`'s ``lut``) and ``lutsr demo``, whose
  packaged sample image is an input too: an output that is one of them (by name, symbolic or
  hard link) is refused in one line, exit 1, before anything is written.
- ``lutsr list | head -1`` and the like end quietly with status 141, as a process ended by
  SIGPIPE does; an image on stdout cut short stays an error (tests/test_cli_hostile.py).
"""

from __future__ import annotations

import importlib.resources
import io
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_GUARD_S, random_lut

import lutsr
from lutsr import cli, cluster
from lutsr.cli import READER_LEFT, main
from lutsr.commands import image

Image = pytest.importorskip("PIL.Image")

ROOT = Path(__file__).resolve().parents[1]
REFUSED = "is the --lut file; refusing to overwrite it"


@pytest.fixture()
def lut_png(tmp_path):
    """A LUT stored under an image's name: ``-o`` at it must not replace it."""
    return lutsr.save(random_lut(np.random.default_rng(39), scale=2), tmp_path / "lut.png")


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (6, 5, 3), np.uint8)).save(path)
    return path


def _linked(target: Path, how: str) -> Path:
    """``target`` itself, or a symbolic or hard link to it beside it."""
    if how == "same":
        return target
    link = target.with_name(f"{how}-{target.name}")
    (os.symlink if how == "symlink" else os.link)(target.name if how == "symlink" else target,
                                                 link)
    return link


def _one_error(capsys, needle: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    return err[0]


def _cli(*args) -> int:
    return main([*map(str, args), "--backend", "reference", "-q"])


# ------------------------------------------------------------------ the --lut file is an input


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
@pytest.mark.parametrize("overwrite", [True, False])
def test_image_output_that_is_the_lut_file_is_refused(tmp_path, lut_png, photo, capsys, how,
                                                      overwrite):
    before = lut_png.read_bytes()
    out = _linked(lut_png, how)
    assert _cli("image", photo, "--lut", lut_png, "-o", out,
                *(["--overwrite"] if overwrite else [])) == 1
    # refused as the LUT even without --overwrite: "use --overwrite" would be the wrong advice
    assert _one_error(capsys, REFUSED).startswith(f"lutsr: error: output {out} ")
    assert lut_png.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {"a.png", "lut.png", out.name})  # no temporary file left either


def test_image_folder_output_that_is_the_lut_file_is_refused(tmp_path, lut_png, photo, capsys):
    (tmp_path / "in").mkdir()
    shutil.copy(photo, tmp_path / "in" / "a.png")
    (tmp_path / "out").mkdir()
    lut = shutil.copy(lut_png, tmp_path / "out" / "a.png")  # where in/a.png would be written
    before = Path(lut).read_bytes()
    assert _cli("image", tmp_path / "in", "--lut", lut, "-o", tmp_path / "out",
                "--overwrite") == 1
    _one_error(capsys, REFUSED)
    assert Path(lut).read_bytes() == before
    assert os.listdir(tmp_path / "out") == ["a.png"]


def test_image_from_stdin_to_the_lut_file_is_refused(lut_png, photo, capsys, monkeypatch):
    before = lut_png.read_bytes()
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(photo.read_bytes())))
    assert _cli("image", "-", "--lut", lut_png, "-o", lut_png, "--overwrite") == 1
    _one_error(capsys, REFUSED)
    assert lut_png.read_bytes() == before


def test_image_to_stdout_with_a_lut_file_works(lut_png, photo, capsysbinary):
    assert _cli("image", photo, "--lut", lut_png, "-o", "-", "--format", "png") == 0
    assert capsysbinary.readouterr().out.startswith(b"\x89PNG")


@pytest.mark.parametrize("command", ["image", "video"])
def test_cluster_output_that_is_the_lut_file_is_refused_before_connecting(
        tmp_path, lut_png, photo, capsys, command):
    """Refused on the client: a worker gets the LUT's bytes, not its path, so cannot tell.

    Nothing listens at port 9 here: an attempt to connect would fail with another message.
    """
    pytest.importorskip("distributed")
    (tmp_path / "out").mkdir()
    src = photo if command == "image" else photo.with_name("v.y4m")
    if command == "video":
        src.write_bytes(_y4m())
    lut = Path(shutil.copy(lut_png, tmp_path / "out" / src.name))
    before = lut.read_bytes()
    assert _cli(command, src, "--lut", lut, "-o", tmp_path / "out", "--overwrite",
                "--cluster", "tcp://127.0.0.1:9") == 1
    _one_error(capsys, REFUSED)
    assert lut.read_bytes() == before


def _y4m(w: int = 8, h: int = 6, frames: int = 2) -> bytes:
    """A tiny 4:2:0 YUV4MPEG2 stream (no encoder needed to make it)."""
    rng = np.random.default_rng(2)
    head = f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\n".encode()
    size = w * h + 2 * (w // 2) * (h // 2)
    return head + b"".join(b"FRAME\n" + rng.integers(0, 256, size, np.uint8).tobytes()
                           for _ in range(frames))


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_video_output_that_is_the_lut_file_is_refused(tmp_path, capsys, how):
    pytest.importorskip("av")
    src = tmp_path / "v.y4m"
    src.write_bytes(_y4m())
    lut = lutsr.save(random_lut(np.random.default_rng(3), scale=2), tmp_path / "l.y4m")
    before = lut.read_bytes()
    out = _linked(lut, how)
    assert _cli("video", src, "--lut", lut, "-o", out, "--overwrite") == 1
    _one_error(capsys, REFUSED)
    assert lut.read_bytes() == before


def test_upscale_video_never_writes_over_its_lut_file(tmp_path):
    pytest.importorskip("av")
    from lutsr.video import VideoOptions, upscale_video

    src = tmp_path / "v.y4m"
    src.write_bytes(_y4m())
    lut = lutsr.save(random_lut(np.random.default_rng(4), scale=2), tmp_path / "l.y4m")
    before = lut.read_bytes()
    with pytest.raises(ValueError, match="is the input file"):
        upscale_video(src, lut, lut, VideoOptions(backend="reference", overwrite=True))
    assert lut.read_bytes() == before


@pytest.fixture()
def package_copy(tmp_path, monkeypatch):
    """``lutsr demo`` reading its sample from a copy of the package's samples folder.

    A copy, so that the code before the fix (which wrote over the sample) cannot damage the
    checkout's own file.
    """
    root = tmp_path / "pkg"
    shutil.copytree(importlib.resources.files("lutsr") / "samples", root / "samples")
    monkeypatch.setattr(image, "resources", types.SimpleNamespace(
        files=lambda package: root, as_file=importlib.resources.as_file))
    return root / "samples" / image.SAMPLE


@pytest.mark.parametrize("how", ["same", "symlink"])
def test_demo_never_writes_over_its_sample_image(package_copy, capsys, how):
    before = package_copy.read_bytes()
    out = _linked(package_copy, how)
    assert _cli("demo", "-o", out, "--overwrite") == 1
    _one_error(capsys, "is lutsr's sample image; refusing to overwrite it")
    assert package_copy.read_bytes() == before


def test_demo_output_that_is_the_lut_file_is_refused(lut_png, capsys):
    before = lut_png.read_bytes()
    assert _cli("demo", "--lut", lut_png, "-o", lut_png, "--overwrite") == 1
    _one_error(capsys, REFUSED)
    assert lut_png.read_bytes() == before


# --------------------------------------------------------- a text output's reader leaving early


def _closed_reader(argv: list[str], unbuffered: str) -> subprocess.CompletedProcess:
    """Run ``lutsr ARGV`` with stdout a pipe whose read end is closed before it starts."""
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", "lutsr", *argv], stdout=write,
                              stderr=subprocess.PIPE, env=env, timeout=HANG_GUARD_S)
    finally:
        os.close(write)


@pytest.mark.parametrize("unbuffered", ["1", ""])
@pytest.mark.parametrize("argv", [["list"], ["--help"], ["image", "--help"], ["--version"],
                                  ["info", "x2"]], ids=" ".join)
def test_text_output_to_a_closed_reader_ends_quietly(argv, unbuffered):
    """``lutsr list | head -1``: buffered, Python's exit flush printed "Exception ignored" and
    exited 120; unbuffered, the print raised and lutsr said "[Errno 32] Broken pipe"; argparse's
    help gave up silently with status 0."""
    done = _closed_reader(argv, unbuffered)
    assert (done.returncode, done.stderr.decode()) == (READER_LEFT, "")


def test_a_broken_pipe_that_is_not_stdout_is_still_an_error(monkeypatch, capsys):
    def cmd_list(args):
        raise BrokenPipeError(32, "Broken pipe")  # as a socket or a child's pipe would

    monkeypatch.setattr(cli, "cmd_list", cmd_list)  # the parser is built by each main()
    assert main(["list"]) == 1
    _one_error(capsys, "Broken pipe")


# ------------------------------------------------------------------------- lutsr.cluster docs


def test_cluster_docs_say_reruns_skip_only_with_skip_existing():
    text = " ".join(cluster.__doc__.split())
    assert "a rerun with ``--skip-existing`` can skip every output that exists" in text
