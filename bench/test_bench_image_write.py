"""What writing the PNG costs next to the upscale, for choosing ``--png-compression``.

A 1024x680 photo (four of scikit-image's sample photos, 512x340 crops at
their own resolution, so real sensor noise and detail) upscaled x4 with the
bundled ``x4`` LUT to 4096x2720, then encoded as PNG: at level 1 (lutsr's
default) by :func:`lutsr.png.encode_png`, and by Pillow at zlib levels 1, 3 and
6 (``--png-compression 3`` and 6 use Pillow) and at Pillow's default::

    python -m pytest bench/test_bench_image_write.py --benchmark-only      # full
    python -m pytest bench/test_bench_image_write.py --benchmark-disable   # smoke: tiny, once
    python bench/test_bench_image_write.py [--lut NAME|PATH]               # the table

The smoke run checks the cases on a 64x40 crop with the reference backend.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time

import numpy as np
import pytest

import lutsr
from lutsr.imageio import PNG_COMPRESSION, write_image

#: PNG writers measured: a ``--png-compression`` level (1 is lutsr's encoder,
#: others Pillow's), ``"pillow-1"`` Pillow at level 1, None Pillow's default (6).
LEVELS = (1, "pillow-1", 3, 6, None)
SMOKE_SIZE = (40, 64)


def photo_1024x680() -> np.ndarray:
    """Four sample photos, 512x340 crops at native resolution, as one (680, 1024, 3) uint8."""
    from PIL import Image
    from skimage import data

    folder = os.path.dirname(data.__file__)
    motorcycle = np.asarray(Image.open(os.path.join(folder, "motorcycle_left.png")).convert("RGB"))
    top = np.concatenate([data.astronaut()[86:426, :512], data.coffee()[30:370, 44:556]], 1)
    bottom = np.concatenate([motorcycle[80:420, 100:612], data.rocket()[40:380, 64:576]], 1)
    return np.ascontiguousarray(np.concatenate([top, bottom], 0))


def png_bytes(image: np.ndarray, level: int | str | None) -> int:
    """Encode ``image`` as PNG in memory (no disk in the timing); return its size in bytes."""
    buffer = io.BytesIO()
    if level is None or level == "pillow-1":  # Pillow's default, or what lutsr used at 1
        from PIL import Image

        options = {} if level is None else {"compress_level": 1}
        Image.fromarray(image).save(buffer, format="PNG", **options)
    else:
        write_image(buffer, image, "PNG", png_compression=level)
    return buffer.tell()


@pytest.fixture(scope="module")
def case(request):
    smoke = request.config.getoption("benchmark_disable", False)
    if "x4" not in lutsr.bundled_names():
        pytest.skip("no bundled x4 LUT")
    photo = photo_1024x680()
    if smoke:
        photo = np.ascontiguousarray(photo[:SMOKE_SIZE[0], :SMOKE_SIZE[1]])
    upscaler = lutsr.Upscaler("x4", backend="reference" if smoke else "numba")
    upscaled = upscaler.up(photo)  # also loads the kernels, outside the timing
    return {"upscaler": upscaler, "photo": photo, "upscaled": upscaled, "smoke": smoke}


def test_upscale(benchmark, case):
    out = np.empty_like(case["upscaled"])
    benchmark.pedantic(case["upscaler"].up, (case["photo"], out), rounds=1 if case["smoke"] else 5)
    assert (out == case["upscaled"]).all()


@pytest.mark.parametrize("level", LEVELS, ids=lambda v: "pillow-default" if v is None else str(v))
def test_png_write(benchmark, case, level):
    size = benchmark.pedantic(png_bytes, (case["upscaled"], level),
                              rounds=1 if case["smoke"] else 3)
    assert size > 0


def measure(lut: str, repeats: int = 3) -> list[dict]:
    """Best-of-``repeats`` seconds of the upscale and of each PNG write, and the file sizes."""
    photo = photo_1024x680()
    upscaler = lutsr.Upscaler(lut)
    t0 = time.perf_counter()
    upscaled = upscaler.up(photo)
    rows = [{"what": f"first upscale (loads kernels) {lut}",
             "seconds": time.perf_counter() - t0, "bytes": None}]

    def best(fn):
        times, result = [], None
        for _ in range(repeats):
            t0 = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t0)
        return min(times), result

    seconds, _ = best(lambda: upscaler.up(photo))
    rows.append({"what": f"upscale {lut}", "seconds": seconds, "bytes": None})
    for level in LEVELS:
        seconds, size = best(lambda level=level: png_bytes(upscaled, level))
        name = {None: "Pillow default (6)", "pillow-1": "Pillow level 1",
                1: "level 1, lutsr's encoder"}.get(level, f"level {level}, Pillow")
        default = " (lutsr default)" if level == PNG_COMPRESSION else ""
        rows.append({"what": f"PNG write, {name}{default}", "seconds": seconds, "bytes": size})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lut", default="x4")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows = measure(args.lut, args.repeats)
    upscale = rows[1]["seconds"]
    print("| step (1024x680 -> 4096x2720 RGB) | seconds | x warm upscale | file MB |")
    print("|---|---|---|---|")
    for row in rows:
        size = "" if row["bytes"] is None else f"{row['bytes'] / 1e6:.1f}"
        print(f"| {row['what']} | {row['seconds']:.3f} | {row['seconds'] / upscale:.1f} "
              f"| {size} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
