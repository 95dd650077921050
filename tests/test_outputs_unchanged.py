"""Outputs recorded once and checked since: every bundled LUT on fixed images, and a video's luma.

The guard for moves and splits that must not change what lutsr writes (issue 41): the exactness
suites compare backends with the reference, this compares today's output with the recorded one.
A mismatch means a bundled LUT's output or the video path's luma changed. When that is on purpose
(a retrained LUT, say), re-record and say why in the commit::

    python -m tests.test_outputs_unchanged --record
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import lutsr

RECORD = Path(__file__).with_name("output_hashes.json")
SAMPLE = Path(lutsr.__file__).with_name("samples") / "astronaut.png"


def _images() -> list[np.ndarray]:
    """An odd-sized RGB crop of the bundled sample, one of its planes, and a 1xN row."""
    from PIL import Image

    with Image.open(SAMPLE) as im:
        rgb = np.asarray(im.convert("RGB"))[40:71, 60:97]
    return [np.ascontiguousarray(rgb), np.ascontiguousarray(rgb[..., 1]), rgb[:1, :, 0].copy()]


def image_hashes() -> dict[str, str]:
    """SHA-256 of each bundled LUT's outputs on :func:`_images` (the default backend)."""
    images = _images()
    return {name: hashlib.sha256(b"".join(lutsr.upscale(img, name).tobytes() for img in images))
            .hexdigest() for name in lutsr.bundled_names()}


def video_luma_hash(folder: Path) -> str:
    """SHA-256 of the luma planes ``lutsr video --luma-only --lut x2`` writes (FFV1, lossless) for a
    lossless 4-frame 4:2:0 input: the LUT's work on Y alone, as the video path delivers it."""
    import av

    from lutsr.cli import main

    src, dst = folder / "in.mkv", folder / "out.mkv"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        rng = np.random.default_rng(41)
        for _ in range(4):
            planes = rng.integers(0, 256, (36, 32), dtype=np.uint8)  # Y 24 rows, U and V below
            out.mux(stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")))
        out.mux(stream.encode())
    assert main(["video", str(src), "-o", str(dst), "--lut", "x2", "--luma-only",
                 "--codec", "ffv1", "-q"]) == 0
    digest = hashlib.sha256()
    with av.open(str(dst)) as c:
        for frame in c.decode(video=0):
            digest.update(frame.to_ndarray(format="gray").tobytes())
    return digest.hexdigest()


def _recorded() -> dict:
    if not RECORD.exists():
        pytest.fail(f"{RECORD.name} missing: python -m tests.test_outputs_unchanged --record")
    return json.loads(RECORD.read_text())


def test_bundled_luts_outputs_unchanged():
    recorded, now = _recorded()["images"], image_hashes()
    assert set(now) == set(recorded), "bundled LUTs changed: re-record (see the module docstring)"
    changed = [name for name in now if now[name] != recorded[name]]
    assert not changed, f"outputs of {changed} differ from the recorded ones"


def test_video_luma_unchanged(tmp_path):
    pytest.importorskip("av")
    assert video_luma_hash(tmp_path) == _recorded()["video_luma_x2"]


if __name__ == "__main__":
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help=f"write {RECORD.name}")
    if parser.parse_args().record:
        with tempfile.TemporaryDirectory() as tmp:
            record = {"images": image_hashes(), "video_luma_x2": video_luma_hash(Path(tmp))}
        RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"wrote {RECORD}")
