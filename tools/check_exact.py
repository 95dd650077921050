"""Every bundled LUT and the layered golden vectors bit-exact here: numba against the reference.

Run on a machine (or an emulated CPU, ``tools/arm64_check.sh``) to check that the kernels
compiled there reproduce :mod:`lutsr.reference` exactly. Prints one line per case and which
layered CPU path ran; exits 1 on any difference::

    python tools/check_exact.py [--shared ../shared] [--size 23x31]
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np

import lutsr
from lutsr._cpu import layered_plan


def _layered_path() -> str:
    """Which kernels a layered stage runs on this CPU (the plan's choice for ``x4-layered``)."""
    return layered_plan.PreparedLayered(lutsr.load_bundled("x4-layered").stages[0]).path


def _frames(rng: np.random.Generator, height: int, width: int) -> list[np.ndarray]:
    """A random RGB frame, its extremes, and 1x1 / 1xN gray edge cases."""
    noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    extremes = np.where(rng.random((height, width, 3)) < 0.5, 0, 255).astype(np.uint8)
    return [noise, extremes, noise[:1, :1, 0].copy(), noise[:1, :, 1].copy()]


def _compare(label: str, lut, frames) -> bool:
    ok = True
    for i, frame in enumerate(frames):
        fast = lutsr.upscale(frame, lut, backend="numba")
        spec = lutsr.upscale(frame, lut, backend="reference")
        if not np.array_equal(fast, spec):
            bad = np.argwhere(fast != spec)
            print(f"FAIL {label} frame {i} {frame.shape}: {len(bad)} samples differ, first at "
                  f"{tuple(bad[0])}")
            ok = False
    if ok:
        print(f"ok   {label}: {len(frames)} frames")
    return ok


def _golden(folder: Path) -> bool:
    vectors = np.load(folder / "vectors.npz")
    lut = lutsr.LUT((lutsr.import_shiftlut(folder, scale=int(vectors["scale"])).stages[0],),
                    name=folder.name)
    ok = True
    for key in sorted(k for k in vectors.files if k.startswith("input_")):
        got = lutsr.upscale(vectors[key], lut, backend="numba")
        if not np.array_equal(got, vectors["expected_" + key[6:]]):
            print(f"FAIL golden {folder.name} {key}")
            ok = False
    if ok:
        print(f"ok   golden {folder.name}")
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(__file__).resolve().parents[1].parent / "shared"
    parser.add_argument("--shared", default=str(shared),
                        help="the shared folder holding conformance/ (default: ../shared)")
    parser.add_argument("--size", default="23x31", help="HxW of the random frames")
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.split("x"))
    print(f"machine {platform.machine()}, layered CPU path: {_layered_path()}")
    rng = np.random.default_rng(0)
    frames = _frames(rng, height, width)
    ok = all([_compare(name, lutsr.load_bundled(name), frames) for name in lutsr.bundled_names()])
    golden = Path(args.shared) / "conformance" / "shiftlut"
    if golden.is_dir():
        folders = sorted(f for f in golden.iterdir() if (f / "vectors.npz").exists())
        ok = all([_golden(f) for f in folders]) and ok
    else:
        print(f"skip golden vectors: {golden} not present")
    print("all exact" if ok else "DIFFERENCES FOUND")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
