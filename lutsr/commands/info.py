"""The commands about LUTs and backends: ``info``, ``list``, ``backends``, ``convert``.

``lutsr info`` describes one LUT and prints its metadata, ``lutsr list`` the
bundled LUTs; ``lutsr backends`` says which backends can run here (the numba
CPU kernels picked, CUDA devices, WebGPU adapters) without starting work on
a GPU; ``lutsr convert`` imports published tables (:data:`IMPORTERS`) into a
``.lutsr`` file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .. import bundled
from ..api import resolve_lut
from ..safefiles import atomic_output


def cmd_info(args) -> int:
    lut = resolve_lut(args.lut)
    print(lut.describe())
    if lut.metadata:
        print(json.dumps(lut.metadata, indent=2, sort_keys=True, default=str))
    else:
        print("(no metadata)")
    return 0


def cmd_list(args) -> int:
    names = bundled.names()
    if not names:
        print("no bundled LUTs are installed")
        return 0
    for name in names:
        default = " (default)" if name == bundled.DEFAULT else ""
        try:
            summary = bundled.load_bundled(name).describe().splitlines()[0]
        except ValueError as exc:  # a damaged install: say so, keep listing
            summary = f"cannot load: {exc}"
        print(f"{name}{default}: {summary}")
    return 0


def numba_lines() -> list[str]:
    """``lutsr backends``: the numba backend's CPU kernels for simplex and layered stages."""
    import numba

    from .._cpu import avx512bw_available, vnni_available
    from .._cpu.layered_plan import PreparedLayered
    from ..layered import LayeredStage

    lines = [f"numba: available (numba {numba.__version__}, the default for numpy arrays)"]
    if avx512bw_available():
        simplex = "AVX-512BW kernels" + (", VNNI dot products at r=4" if vnni_available()
                                         else "")
    else:
        simplex = "portable kernels (no AVX-512BW, or LUTSR_PORTABLE_KERNEL=1)"
    lines.append(f"  simplex stages: {simplex}")
    # The layered path depends on the stage as well as the CPU (layers of more than 16
    # inputs run portable): ask the preparation itself, on the bundled layered LUT.
    layered = next((lut for lut in map(bundled.load_bundled, bundled.names())
                    if any(isinstance(s, LayeredStage) for s in lut.stages)), None)
    if layered is None:
        lines.append("  layered stages: not probed (no bundled layered LUT)")
    else:
        plan = PreparedLayered(next(s for s in layered.stages if isinstance(s, LayeredStage)))
        lines.append(f"  layered stages: {plan.path} kernels (for {layered.name}; layers of more "
                     "than 16 inputs run portable)")
    return lines


def cuda_lines() -> list[str]:
    """``lutsr backends``: whether the CUDA backend can run here, and if not why.

    Asks the CUDA driver for its devices (``cuInit``) but creates no context on
    a GPU.
    """
    try:
        from numba import cuda
    except ImportError as exc:
        return [f"cuda: not available: numba.cuda failed to import: {exc}"]
    if cuda.is_available() and getattr(cuda, "simulator", None) is not None:
        return ["cuda: available in numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1; no GPU "
                "is used)"]
    if not cuda.is_available():
        why = next((line.strip() for line in str(cuda.cuda_error() or "").splitlines()
                    if line.strip()), "numba.cuda finds no GPU")
        return [f"cuda: not available: {why}"]
    from numba.cuda.cudadrv.driver import driver

    lines = ["cuda: available (pip install 'lutsr[gpu]' adds CuPy for zero-copy arrays)"]
    for i in range(driver.get_device_count()):
        dev = driver.get_device(i)
        name = dev.name.decode() if isinstance(dev.name, bytes) else dev.name
        lines.append(f"  {i}: {name}, compute capability "
                     f"{'.'.join(map(str, dev.compute_capability))}")
    return lines


def webgpu_lines() -> list[str]:
    """``lutsr backends``: the WebGPU adapters, the one ``backend="webgpu"`` uses marked."""
    from .._webgpu import device

    try:
        wgpu = device.import_wgpu()
    except RuntimeError as exc:
        return [f"webgpu: not available: {exc}"]
    found = device.report()
    chosen = any(line.startswith("*") for line in found)
    named = os.environ.get(device.ADAPTER_ENV)
    choice = f"{device.ADAPTER_ENV}={named}" if named else "best hardware adapter"
    head = (f"webgpu: available (wgpu {wgpu.__version__}); adapters, * = used ({choice}):"
            if chosen else f"webgpu: no usable adapter (wgpu {wgpu.__version__}); adapters:")
    return [head, *(f"  {line}" for line in found)]


def cmd_backends(args) -> int:
    print("reference: available (the numpy specification; slow)")
    for lines in (numba_lines, cuda_lines, webgpu_lines):
        print("\n".join(lines()), flush=True)
    return 0


#: ``lutsr convert`` formats and their importers (each takes the source, scale and name).
IMPORTERS = {"shiftlut": "import_shiftlut", "srlut": "import_srlut", "mulut": "import_mulut"}


def cmd_convert(args) -> int:
    from .. import importers
    from ..fileformat import to_bytes

    importer = getattr(importers, IMPORTERS[args.format])
    lut = importer(args.source, args.scale, name=args.name)
    out = Path(args.output)
    # Every file the import read, not only the folder named: `-o FOLDER/DW0_MSB.json
    # --overwrite` would replace one of the tables it was made from.
    inputs = (args.source, *importers.files_read(IMPORTERS[args.format], args.source))
    with atomic_output(out, overwrite=args.overwrite, inputs=inputs) as pending, \
            open(pending.path, "wb") as fh:
        fh.write(to_bytes(lut))
    print(f"wrote {out}: {lut.describe().splitlines()[0]}")
    return 0
