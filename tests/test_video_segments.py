"""`lutsr video --segments`: cut at keyframes, encoded apart, joined, resumed.

Clips are made with the ffmpeg command (testsrc2 and a sine tone, H.264 with
B-frames and a keyframe every second, AAC), 4 s at 160x90, upscaled by the
bundled x2 LUT. A segmented run must write what a whole run writes: the same
frame count and timestamps (the input's), the same decoded frames with a
lossless encoder, the audio, chapters and metadata; and a rerun after a
killed worker must encode only the segments that had not finished.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_GUARD_S

from lutsr import Upscaler
from lutsr.cli import main
from lutsr.video import VideoOptions, upscale_video
from lutsr.video.segments import (
    Index,
    cut_points,
    frames_in,
    parse_segments,
    read_index,
    spans,
    upscale_segmented,
    work_folder,
)

av = pytest.importorskip("av")

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command")

CHAPTERS = (";FFMETADATA1\ntitle=segment test\n"
            "[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=2000\ntitle=one\n"
            "[CHAPTER]\nTIMEBASE=1/1000\nSTART=2000\nEND=4000\ntitle=two\n")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """4 s of 160x90 H.264 (B-frames, a keyframe each second) and AAC, with two chapters."""
    folder = tmp_path_factory.mktemp("clips")
    (folder / "chapters.txt").write_text(CHAPTERS)
    path = folder / "clip.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=160x90:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
                    "-i", str(folder / "chapters.txt"), "-map", "0:v", "-map", "1:a",
                    "-map_metadata", "2", "-map_chapters", "2", "-t", "4", "-g", "25",
                    "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-c:a", "aac",
                    str(path)], check=True, timeout=HANG_GUARD_S)
    return path


def decoded(path: Path) -> list[tuple[Fraction, np.ndarray]]:
    """Every frame of ``path``'s video: its time in seconds and its planes."""
    with av.open(str(path)) as c:
        return [(f.pts * f.time_base, f.to_ndarray()) for f in c.decode(video=0)]


def audio_packets(path: Path) -> list[tuple[int, bytes]]:
    with av.open(str(path)) as c:
        return [(p.pts, bytes(p)) for p in c.demux(audio=0) if p.size]


def assert_same_video(actual: Path, expected: Path) -> None:
    """Same frame count, timestamps and decoded pixels; on failure, where and by how much."""
    a, b = decoded(actual), decoded(expected)
    assert len(a) == len(b), f"{len(a)} frames, expected {len(b)}"
    assert [t for t, _ in a] == [t for t, _ in b], "timestamps differ"
    bad = [(i, int(np.abs(x.astype(int) - y.astype(int)).max()))
           for i, ((_, x), (_, y)) in enumerate(zip(a, b)) if not np.array_equal(x, y)]
    assert not bad, f"{len(bad)} frames differ (frame, max abs): {bad[:5]}"


def input_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as c:
        return sorted(p.pts * p.time_base for p in c.demux(video=0) if p.size)


def lutsr_x2():
    return Upscaler("x2")


OPTS = VideoOptions(codec="ffv1", quiet=True)


@pytest.fixture(scope="module")
def whole(clip, tmp_path_factory) -> Path:
    """The unsegmented run the segmented ones must equal."""
    out = tmp_path_factory.mktemp("whole") / "whole.mkv"
    upscale_video(clip, out, "x2", OPTS)
    return out


def test_segmented_equals_whole_run(clip, whole, tmp_path):
    out = tmp_path / "out.mkv"
    report = upscale_segmented(clip, out, OPTS, segments=4, upscaler=lutsr_x2(), workers=2)
    assert report.segments == 4 and report.encoded == [0, 1, 2, 3] and not report.reused
    assert report.frames == 100 and report.output_size == (320, 180)
    assert report.copied_streams == ["audio:aac"]
    assert_same_video(out, whole)
    # the input's timestamps (Matroska in whole milliseconds, both shifted alike by the AAC delay)
    got = [t for t, _ in decoded(out)]
    want = input_times(clip)
    assert [round((t - got[0]) * 1000) for t in got] == [round((t - want[0]) * 1000)
                                                         for t in want]
    assert audio_packets(out) == audio_packets(whole)
    with av.open(str(out)) as c:
        assert [ch["metadata"].get("title") for ch in c.chapters()] == ["one", "two"]
        assert c.metadata.get("title") == "segment test"
    assert not work_folder(out).exists()


def test_cli_x264_lossless_mp4_keeps_input_timestamps(clip, tmp_path, capsys):
    """libx264 at --crf 0 is lossless: the segments' frames equal a whole run's exactly."""
    common = ["--lut", "x2", "--crf", "0", "-q"]
    assert main(["video", str(clip), "-o", str(tmp_path / "whole.mp4"), *common]) == 0
    assert main(["video", str(clip), "-o", str(tmp_path / "seg.mp4"), *common,
                 "--segments", "1.5s", "--jobs", "2"]) == 0
    assert_same_video(tmp_path / "seg.mp4", tmp_path / "whole.mp4")
    assert [t for t, _ in decoded(tmp_path / "seg.mp4")] == input_times(clip)
    assert audio_packets(tmp_path / "seg.mp4") == audio_packets(tmp_path / "whole.mp4")


def test_resume_after_killed_worker(clip, whole, tmp_path, monkeypatch, capsys):
    """Segment 2's worker dies; a rerun encodes only the unfinished segments."""
    out = tmp_path / "out.mkv"
    args = ["video", str(clip), "-o", str(out), "--lut", "x2", "--codec", "ffv1",
            "--segments", "4", "--jobs", "1"]
    monkeypatch.setenv("_LUTSR_TEST_SEGMENT_EXIT", "2")
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "segment 2 failed" in err and "worker process died" in err and "rerun" in err
    assert not out.exists()
    work = work_folder(out)
    manifest = json.loads((work / "manifest.json").read_text())
    finished = sorted(int(i) for i in manifest["segments"])
    assert finished == [0, 1]  # one process: segments in order, stopped at the killed one
    monkeypatch.delenv("_LUTSR_TEST_SEGMENT_EXIT")

    # other options: refused in one line, nothing encoded, the finished segments kept
    assert main([*args, "--luma-only"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other options: luma_only" in err, err
    assert sorted(json.loads((work / "manifest.json").read_text())["segments"]) == ["0", "1"]

    assert main(args) == 0
    said = capsys.readouterr().out
    assert "segments: 4 (2 encoded, 2 reused)" in said, said
    assert_same_video(out, whole)
    assert not work.exists()

    # through the API, counting the encodes: a kill before any segment is finished leaves
    # nothing behind; a kill at segment 1 of 3 keeps segment 0, and the rerun encodes 1 and 2
    out2 = tmp_path / "out2.mkv"
    for hook, said in (("0", r"segment 0 failed: its worker process died \(\w+\)$"),
                       ("1", "segment 1 failed.* 1 finished segments are kept")):
        monkeypatch.setenv("_LUTSR_TEST_SEGMENT_EXIT", hook)
        with pytest.raises(ValueError, match=said):
            upscale_segmented(clip, out2, OPTS, segments="1.4s", upscaler=lutsr_x2(), workers=1)
        assert work_folder(out2).exists() == (hook == "1")
    monkeypatch.delenv("_LUTSR_TEST_SEGMENT_EXIT")
    report = upscale_segmented(clip, out2, OPTS, segments="1.4s", upscaler=lutsr_x2(),
                               workers=1)
    assert report.encoded == [1, 2] and report.reused == [0]
    assert_same_video(out2, whole)


def test_killed_worker_lets_the_process_exit(clip, tmp_path):
    """A dead worker must not leave the pool's threads blocked: the command exits.

    Python 3.10's pool hung at exit when a worker died while a task larger
    than the pipe's buffer was being written to it (the LUT's bytes were in
    the task); each run here is a fresh process, so a hang shows as a timeout.
    """
    out = tmp_path / "out.mkv"
    args = ["video", str(clip), "-o", str(out), "--lut", "x4", "--codec", "ffv1",
            "--segments", "4", "--jobs", "1", "--quiet"]
    env = {**os.environ, "_LUTSR_TEST_SEGMENT_EXIT": "0"}
    done = subprocess.run([sys.executable, "-m", "lutsr", *args], env=env, capture_output=True,
                          text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 1 and "segment 0 failed" in done.stderr, done.stderr
    assert not out.exists() and not work_folder(out).exists()


def test_interrupted_run_says_what_it_kept(clip, tmp_path, monkeypatch, capsys):
    """Ctrl-C or SIGTERM after a finished segment keeps it for a rerun, and says so;
    before any, the work folder goes too."""
    from lutsr.video import segments

    out = tmp_path / "out.mkv"
    args = ["video", str(clip), "-o", str(out), "--lut", "x2", "--codec", "ffv1",
            "--segments", "4", "--jobs", "1"]
    write = segments._write_manifest
    calls = []

    def write_then_interrupt(work, manifest):
        write(work, manifest)
        calls.append(len(manifest["segments"]))
        if calls[-1] == 1:  # recorded the first finished segment
            raise KeyboardInterrupt

    monkeypatch.setattr(segments, "_write_manifest", write_then_interrupt)
    assert main(args) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("lutsr: error: interrupted; 1 finished segments are kept in") and \
        "rerun the same command" in err and len(err.splitlines()) == 1, err
    monkeypatch.setattr(segments, "_write_manifest", write)
    assert main(args) == 0
    assert "segments: 4 (3 encoded, 1 reused)" in capsys.readouterr().out

    def interrupted(futures):
        raise KeyboardInterrupt
        yield

    out2 = tmp_path / "out2.mkv"
    monkeypatch.setattr(segments.concurrent.futures, "as_completed", interrupted)
    assert main([*args[:3], str(out2), *args[4:]]) == 130
    assert capsys.readouterr().err.strip() == ("lutsr: error: interrupted; no partial output "
                                               "was written")
    assert not out2.exists() and not work_folder(out2).exists()


def test_changed_input_refused_overwrite_starts_afresh(clip, tmp_path, capsys):
    src = tmp_path / "in.mkv"
    shutil.copy(clip, src)
    out = tmp_path / "out.mkv"
    work = work_folder(out)
    work.mkdir()
    (work / "manifest.json").write_text(json.dumps({"version": 1, "input": {"path": "x"},
                                                    "segments": {"0": {"sha256": "0"}}}))
    args = ["video", str(src), "-o", str(out), "--lut", "x2", "--codec", "ffv1",
            "--segments", "2", "--jobs", "2"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another input" in err and "--overwrite" in err, err
    assert main([*args, "--overwrite"]) == 0
    assert "segments: 2 (2 encoded)" in capsys.readouterr().out
    assert len(decoded(out)) == 100


@pytest.mark.parametrize("text, value", [("auto", "auto"), ("AUTO", "auto"), ("8", 8),
                                         ("1", 1), ("30s", 30.0), ("2.5s", 2.5),
                                         (".5s", 0.5)])
def test_parse_segments(text, value):
    assert parse_segments(text) == value


@pytest.mark.parametrize("text, said", [("0", "must be auto"), ("-3", "must be auto"),
                                        ("2.5", "write 2.5s"), ("0s", "must be auto"),
                                        ("ten", "must be auto"), ("", "must be auto"),
                                        ("infs", "must be auto")])
def test_segments_usage_errors_one_line(text, said, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["video", "in.mp4", "-o", str(tmp_path / "o.mkv"), "--segments", text])
    assert exit.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "--segments" in errors[0] and said in errors[0], errors


@pytest.mark.parametrize("extra, said", [
    (["-o", "-", "--format", "mkv"], "needs files, not pipes"),
    (["-o", "{tmp}/o.y4m"], "cannot write y4m"),
    (["-o", "{tmp}/o.mkv", "--input-size", "16x16"], "raw input"),
    (["{clip}", "-o", "{tmp}/dir"], "one input video"),
])
def test_segment_refusals_one_line(extra, said, clip, tmp_path, capsys):
    args = [a.format(tmp=tmp_path, clip=clip) for a in extra]
    (tmp_path / "dir").mkdir()
    assert main(["video", str(clip), *args, "--segments", "2", "--lut", "x2"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and said in err, err


def test_jobs_needs_segments(clip, tmp_path, capsys):
    assert main(["video", str(clip), "-o", str(tmp_path / "o.mkv"), "--jobs", "2"]) == 1
    assert "--jobs is for --segments" in capsys.readouterr().err


def test_cut_points_snap_to_keyframes():
    tb = Fraction(1, 25)
    index = Index(tb, list(range(250)), [0, 30, 100, 110, 200])  # 10 s, uneven keyframes
    assert cut_points(index, 2, workers=1) == [110]  # 4.98 s: the nearest keyframe, 4.4 s
    assert cut_points(index, 4, workers=1) == [30, 110, 200]
    assert cut_points(index, 100, workers=1) == [30, 100, 110, 200]  # no more keyframes
    assert cut_points(index, 1, workers=1) == []
    assert cut_points(index, 4.0, workers=1) == [100, 200]  # about every 4 s
    assert cut_points(index, "auto", workers=2) == [30, 110, 200]  # 2 per worker
    parts = spans(cut_points(index, 4, workers=1))
    assert parts[0] == (None, 30) and parts[-1] == (200, None)
    assert sum(frames_in(index, s) for s in parts) == 250


def test_read_index(clip):
    index = read_index(clip)
    assert len(index.pts) == 100
    assert len(index.keys) == 4  # -g 25: one a second
    assert index.pts == sorted(index.pts)


def test_cluster_local(clip, whole, tmp_path, capsys):
    pytest.importorskip("distributed")
    out = tmp_path / "out.mkv"
    assert main(["video", str(clip), "-o", str(out), "--lut", "x2", "--codec", "ffv1",
                 "--segments", "3", "--cluster", "local:2"]) == 0
    assert "segments: 3 (3 encoded)" in capsys.readouterr().out
    assert_same_video(out, whole)
    assert main(["video", str(clip), "-o", str(tmp_path / "o2.mkv"), "--segments", "3",
                 "--cluster", "local:2", "--jobs", "2"]) == 1
    assert "--jobs is for local processes" in capsys.readouterr().err


def test_input_without_an_index(clip, whole, tmp_path):
    """MPEG-TS: a seek lands after the keyframe; the segment is decoded from the start instead."""
    ts = tmp_path / "clip.ts"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-c", "copy", str(ts)],
                   check=True, timeout=HANG_GUARD_S)
    out = tmp_path / "out.mkv"
    upscale_segmented(ts, out, OPTS, segments=3, upscaler=lutsr_x2(), workers=2)
    a, b = decoded(out), decoded(whole)
    assert len(a) == len(b) == 100
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(a, b))


def test_x264_b_frames_joined_into_matroska(clip, tmp_path):
    """Matroska stores no decoding times: the join gives B-frame streams monotonic ones
    (without them the muxer refused the second segment's first packets: EINVAL)."""
    out = tmp_path / "seg.mkv"
    assert main(["video", str(clip), "-o", str(out), "--lut", "x2", "-q", "--codec", "libx264",
                 "--segments", "4", "--jobs", "2"]) == 0
    with av.open(str(out)) as c:
        pts = [p.pts for p in c.demux(video=0) if p.size]
    assert pts != sorted(pts), "no B-frames: the case is not exercised"
    got = [t for t, _ in decoded(out)]
    want = input_times(clip)
    assert [round((t - got[0]) * 1000) for t in got] == [round((t - want[0]) * 1000)
                                                         for t in want]
