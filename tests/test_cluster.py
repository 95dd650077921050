"""`lutsr image|video ... --cluster`: one task per file on a Dask cluster.

Guards against a distributed run that differs from the local one (a worker
loading another LUT, options lost on the way), a failure that stops the other
files, and a rerun that redoes (or clobbers) finished outputs. Everything is
tiny and runs on the numpy reference backend; each cluster start costs a few
seconds, so the tests share one scheduler and only one test starts ``local:2``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from conftest import random_lut

import lutsr
from lutsr import cluster
from lutsr.cli import main

distributed = pytest.importorskip("distributed")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory):
    model = random_lut(np.random.default_rng(11), scale=2)
    return lutsr.save(model, tmp_path_factory.mktemp("lut") / "x2.lutsr")


@pytest.fixture(scope="module")
def scheduler():
    """A running scheduler with two worker processes, reached by its tcp:// address."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as lc:
        yield lc.scheduler_address


def lutsr_cli(lut_file, command, *args) -> int:
    return main([command, *map(str, args), "--lut", str(lut_file), "--backend", "reference",
                 "-q"])


def image_folder(folder):
    """Four small images of different layouts and one truncated PNG."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (9, 7, 3), np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (6, 8), np.uint8)).save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 256, (5, 6, 4), np.uint8)).save(folder / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(folder / "photo.jpg")
    whole = (folder / "rgb.png").read_bytes()
    (folder / "broken.png").write_bytes(whole[: len(whole) // 2])
    return folder


def test_folder_on_local_cluster_equals_local_run_and_rerun_skips(tmp_path, lut_file, capsys):
    src = image_folder(tmp_path / "in")
    assert lutsr_cli(lut_file, "image", src, "-o", tmp_path / "local") == 1
    capsys.readouterr()

    out = tmp_path / "cluster"
    assert lutsr_cli(lut_file, "image", src, "-o", out, "--cluster", "local:2") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.png" in err[0] and "cannot read image" in err[0], err
    names = sorted(os.listdir(out))
    assert names == ["gray.png", "photo.jpg", "rgb.png", "rgba.png"]  # the others completed
    for name in names:  # the very bytes of the local run
        assert (out / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name

    # A rerun with --skip-existing skips finished outputs: no rewrite, and the one missing
    # output is redone (without it, existing outputs are refused as in a local run).
    (src / "broken.png").unlink()
    before = {n: (out / n).stat().st_mtime_ns for n in names}
    (out / "gray.png").unlink()
    assert main(["image", str(src), "-o", str(out), "--lut", str(lut_file), "--backend",
                 "reference", "--cluster", "local:2", "--skip-existing"]) == 0
    text = capsys.readouterr().out
    assert "wrote 1 image " in text and "3 skipped" in text, text
    for name in names:
        if name != "gray.png":
            assert (out / name).stat().st_mtime_ns == before[name], name
    assert (out / "gray.png").read_bytes() == (tmp_path / "local" / "gray.png").read_bytes()


def test_rerun_summary_counts_skips(tmp_path, lut_file, scheduler, capsys):
    src = image_folder(tmp_path / "in")
    (src / "broken.png").unlink()
    out = tmp_path / "out"
    args = ["image", str(src), "-o", str(out), "--lut", str(lut_file), "--backend", "reference",
            "--cluster", scheduler]
    assert main(args) == 0
    assert "wrote 4 images" in capsys.readouterr().out
    assert main([*args, "--skip-existing"]) == 0
    assert "wrote 0 images" in (text := capsys.readouterr().out) and "4 skipped" in text
    assert main([*args, "--overwrite"]) == 0  # --overwrite redoes them all
    assert "wrote 4 images" in capsys.readouterr().out


def test_videos_on_a_scheduler_equal_local_runs(tmp_path, lut_file, scheduler, capsys):
    pytest.importorskip("av")
    from test_video import decoded, make_clip

    clips = [make_clip(tmp_path / "a.mp4", frames=5), make_clip(tmp_path / "b.mkv", frames=4,
                                                                audio=False)]
    (tmp_path / "c.mp4").write_bytes(b"not a video")
    (tmp_path / "local").mkdir()
    # Lossless x264 (CRF 0): the decoded frames are the upscaler's, whatever the encoder's
    # choices (x264's bytes once differed between two processes in a full, loaded run).
    lossless = ("--crf", "0")
    for clip in clips:
        assert lutsr_cli(lut_file, "video", clip, "-o", tmp_path / "local" / clip.name,
                         *lossless) == 0
    out = tmp_path / "out"
    assert lutsr_cli(lut_file, "video", *clips, tmp_path / "c.mp4", "-o", out,
                     "--cluster", scheduler, *lossless) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "c.mp4" in err[0], err
    assert sorted(os.listdir(out)) == ["a.mp4", "b.mkv"]
    for name, count in (("a.mp4", 5), ("b.mkv", 4)):
        mine, local = decoded(out / name), decoded(tmp_path / "local" / name)
        assert len(mine) == len(local) == count
        for a, b in zip(mine, local):
            assert np.array_equal(a.to_ndarray(), b.to_ndarray()), name


def test_usage_errors_are_one_line(tmp_path, lut_file, capsys, monkeypatch):
    src = image_folder(tmp_path / "in")
    for address in ("local:0", "local:x", ""):
        assert lutsr_cli(lut_file, "image", src, "-o", tmp_path / "o", "--cluster", address) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "local:N" in err[0], err
    assert not (tmp_path / "o").exists()
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    assert lutsr_cli(lut_file, "video", video, video, "-o", tmp_path / "o") == 1
    assert "--cluster" in capsys.readouterr().err  # several videos need a cluster
    assert lutsr_cli(lut_file, "video", video, "-", "-o", tmp_path / "o",
                     "--cluster", "local:1") == 1
    assert "--cluster takes files" in capsys.readouterr().err

    monkeypatch.setitem(sys.modules, "distributed", None)  # Dask not installed
    assert lutsr_cli(lut_file, "image", src, "-o", tmp_path / "o", "--cluster", "local:2") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lutsr[cluster]" in err[0], err


def test_parse_address():
    assert cluster.parse_address("local:3") == 3
    assert cluster.parse_address(" tcp://10.0.0.5:8786 ") == "tcp://10.0.0.5:8786"
    with pytest.raises(cluster.ClusterError, match="local:N"):
        cluster.parse_address("local")


def test_outscale_on_a_scheduler_equals_local_run(tmp_path, lut_file, scheduler, capsys):
    """The command's other options reach the workers (here the resample after the LUT)."""
    src = image_folder(tmp_path / "in")
    (src / "broken.png").unlink()
    for out, extra in (("local", []), ("cluster", ["--cluster", scheduler])):
        assert lutsr_cli(lut_file, "image", src, "-o", tmp_path / out, "--outscale", "3",
                         *extra) == 0
    names = sorted(os.listdir(tmp_path / "local"))
    assert names == sorted(os.listdir(tmp_path / "cluster")) and len(names) == 4
    for name in names:
        assert (tmp_path / "cluster" / name).read_bytes() == \
            (tmp_path / "local" / name).read_bytes(), name
    with Image.open(tmp_path / "cluster" / "rgb.png") as im:
        assert im.size == (21, 27)  # 3x of 7x9
