"""`lutsr.vapoursynth.upscale`: a VapourSynth clip through the LUT, plane by plane.

Guards against planes read through their padded strides wrongly, planes
mixed up, frames out of order, and lost frame properties. VapourSynth's PyPI
wheels (release 74 on) need Python 3.12+, so this module skips elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_images_equal, random_lut

from lutsr.reference import upscale_reference

vs = pytest.importorskip("vapoursynth")
from lutsr.vapoursynth import upscale  # noqa: E402 - only once VapourSynth is there


@pytest.fixture(scope="module")
def lut():
    return random_lut(np.random.default_rng(13), scale=2)


def random_clip(fmt, width: int, height: int, frames: int, seed: int):
    """A clip whose frames are random planes (width not a multiple of the row alignment)."""
    rng = np.random.default_rng(seed)
    base = vs.core.std.BlankClip(format=fmt, width=width, height=height, length=frames)
    planes = [[rng.integers(0, 256, np.asarray(base.get_frame(0)[p]).shape, np.uint8)
               for p in range(base.format.num_planes)] for _ in range(frames)]

    def fill(n, f):
        out = f.copy()
        for p, plane in enumerate(planes[n]):
            np.copyto(np.asarray(out[p]), plane)
        out.props["Frame"] = n
        return out

    return vs.core.std.ModifyFrame(base, clips=base, selector=fill), planes


@pytest.mark.parametrize("fmt", ["RGB24", "YUV444P8", "GRAY8", "YUV420P8"])
def test_every_plane_is_the_lut_of_the_plane(lut, fmt):
    clip, planes = random_clip(getattr(vs, fmt), 10, 6, frames=3, seed=len(fmt))
    out = upscale(clip, lut=lut, backend="reference")
    assert (out.width, out.height, out.num_frames) == (20, 12, 3)
    assert out.format.id == clip.format.id and out.fps == clip.fps
    for n in (2, 0, 1):  # out of order, as a seeking player asks
        frame = out.get_frame(n)
        assert frame.props["Frame"] == n
        for p, plane in enumerate(planes[n]):
            assert_images_equal(np.asarray(frame[p]), upscale_reference(plane, lut),
                                f"{fmt} frame {n} plane {p}")


def test_refuses_what_it_cannot_upscale(lut):
    deep = vs.core.std.BlankClip(format=vs.YUV420P10, width=8, height=8)
    with pytest.raises(ValueError, match="8-bit integer"):
        upscale(deep, lut=lut)
    with pytest.raises(TypeError, match="VideoNode"):
        upscale(np.zeros((4, 4), np.uint8), lut=lut)
