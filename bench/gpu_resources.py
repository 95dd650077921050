#!/usr/bin/env python
"""Registers, local memory and spills of every CUDA kernel, read off its compiled code.

No GPU is needed: each kernel is compiled to PTX by numba (NVVM) with the
argument types the runner passes, for a compute capability (default 9.0,
H100), and ``ptxas -v`` reports what the hardware would allocate::

    python bench/gpu_resources.py [--cc 9.0]       # a Markdown table (bench/GPU.md)

The compile tests (``tests/test_cuda*.py``) use these signatures; ``tests/test_cuda.py``
runs the report where NVVM and ``ptxas`` are present. A stack
frame above 0 bytes is local memory (an array indexed at run time, e.g. an
accumulator), which every access pays for in L1/L2 traffic.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def kernel_signatures(layout: str = "A") -> dict:
    """Kernel name -> (python function, numba argument types) as the runner calls them
    (``layout`` "A": strided CuPy/torch views; "C": contiguous arrays)."""
    from numba import types as t

    from lutsr._cuda import layered as L
    from lutsr._cuda import simplex

    image, i64 = t.Array(t.uint8, 4, layout), t.int64
    stage = (image, image, t.Array(t.int32, 3, "C"), t.Array(t.int32, 4, "C"),
             t.Array(t.int32, 4, "C"), t.Array(t.uint8, 1, "C"), i64, i64, i64,
             t.Array(t.int32, 1, "C"), t.Array(t.int32, 2, "C"), t.Array(t.int32, 2, "C"),
             i64, i64, t.Array(t.int32, 3, "C"))
    tables, small = t.Array(t.int16, 3, "C"), t.Array(t.int32, 2, "C")
    return {
        **{f"simplex stage, r = {r}": (simplex.stage_kernel(r).py_func, stage)
           for r in (1, 2, 3, 4, 8)},
        "layered: first": (L._first_kernel.py_func, (image, image, tables, tables, i64, i64)),
        "layered: depthwise": (L._depthwise_kernel.py_func, (image, image, tables, i64, i64, i64)),
        "layered: pointwise": (L._pointwise_kernel.py_func,
                               (image, image, tables, small, i64, i64, i64)),
        "layered: up": (L._up_kernel.py_func, (image, image, tables, small, i64, i64, i64)),
    }


def ptxas_report(ptx: str, cc: tuple[int, int], ptxas: str = "ptxas") -> dict:
    """Registers, stack frame, spill stores and loads that ``ptxas -v`` reports for ``ptx``."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        proc = subprocess.run([ptxas, "-v", f"--gpu-name=sm_{cc[0]}{cc[1]}", str(src),
                               "-o", str(Path(tmp) / "k.cubin")],
                              capture_output=True, text=True, check=True)
    text = proc.stderr + proc.stdout

    def number(pattern: str) -> int:
        found = re.search(pattern, text)
        if found is None:
            raise ValueError(f"ptxas -v printed no {pattern!r}:\n{text}")
        return int(found.group(1))

    return {"registers": number(r"Used (\d+) registers"),
            "stack_frame_bytes": number(r"(\d+) bytes stack frame"),
            "spill_store_bytes": number(r"(\d+) bytes spill stores"),
            "spill_load_bytes": number(r"(\d+) bytes spill loads")}


def measure(cc: tuple[int, int] = (9, 0)) -> dict:
    """Kernel name -> :func:`ptxas_report`; raises RuntimeError without NVVM or ptxas."""
    from numba import cuda
    from numba.cuda.cudadrv import nvvm

    ptxas = shutil.which("ptxas")
    if not nvvm.is_available() or ptxas is None:
        raise RuntimeError("needs NVVM (numba's CUDA compiler) and ptxas on the PATH")
    return {name: ptxas_report(cuda.compile_ptx(fn, sig, cc=cc)[0], cc, ptxas)
            for name, (fn, sig) in kernel_signatures().items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cc", default="9.0", help="compute capability (default 9.0)")
    args = parser.parse_args(argv)
    cc = tuple(int(v) for v in args.cc.split("."))
    print(f"| kernel (sm_{cc[0]}{cc[1]}) | registers | stack frame (B) | spill stores (B) "
          "| spill loads (B) |")
    print("|---|---|---|---|---|")
    for name, r in measure(cc).items():
        print(f"| {name} | {r['registers']} | {r['stack_frame_bytes']} | "
              f"{r['spill_store_bytes']} | {r['spill_load_bytes']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
