"""Numba CPU backend: one LUT stage per pass over row bands, all rotations fused.

The spec is :mod:`lutsr.reference`; this module reproduces it bit for bit, fast.

How a stage runs (see :class:`NumbaRunner`):

* A rotation is never materialised. Rotating the plane, padding it at the
  bottom and right and rotating back is the same as reading the *unrotated*
  plane, padded by 2 pixels on all four sides, at rotated tap offsets
  (:func:`rotated_offsets`): padding at the bottom of the plane rotated by 180
  degrees is padding at the top of the original. ``np.pad`` on each axis is an
  index map, so the all-sides padded plane equals every rotation's own padding
  (the tests check this against :func:`tap_indices` for all small sizes).
* The image is split into bands of rows; each band pads its own window of the
  source (per channel, contiguous rows) and, for each row, channel and chunk of
  :data:`CHUNK` pixels, runs two passes:

  1. *vertices* (:func:`_vertices`): for every (pattern, rotation) and pixel,
     the base table row, the four simplex steps and the five weights, 16
     pixels per vector: contiguous tap loads and a branchless 4-element
     sorting network on packed ``fraction << sh | stride`` keys;
  2. *accumulate* (:func:`_accumulate`): per pixel, the weighted sum of 5
     table rows per (pattern, rotation). Portable path: one ``r*r``
     accumulator per rotation in registers (a stack buffer, see
     :func:`_stack_buffer`), rows loaded as whole ``<r*r x i8>`` vectors
     (:func:`_add_rows`), the four rotations added through their block
     permutations (constant shuffles). On AVX-512 VNNI CPUs and ``r = 4``,
     :func:`_dot_rotations` does a vertex's four rotations in one byte
     permute and one dot product. For ``r`` = 1 and 2 (short rows),
     :func:`_accumulate_lanes` gathers 16 pixels at a time instead
     (AVX-512BW CPUs).

  The sum is an integer ``s`` (the reference's float total times ``q``), so
  ``clip(round(s / q / divisor + bias), 0, 255)`` is a lookup table computed
  by numpy from the reference's own expression: exact by construction. When
  it is a rounding shift (:func:`power_of_two_rounding`, checked against the
  lookup over every reachable sum) it is computed in vector registers
  instead, and each row of the block is one store. Pass 2 writes each output
  row of the source row contiguously per channel; :func:`_write_rows` then
  interleaves them into the output (vector shuffles for RGB and RGBA).

  A stage with a linear base (see :class:`~lutsr.model.Stage`) adds its
  weighted sum of the input pixels around each pixel (:func:`_add_base`, in
  pass 2, pairs of int16 products per instruction; for ``r`` = 1 and 2
  :func:`_add_base_lanes`, 16 pixels per vector) to ``s * 2**(BASE_BITS -
  m)`` and rounds with a shift by ``BASE_BITS``: still integers, still exact
  (:func:`lutsr.model.sum_shift`).

  A stage with learned taps first writes, per band, the planes of every
  (pattern, rotation)'s taps (:func:`_learned_tap_band`: pairs of window
  pixels per ``vpmaddwd``, :func:`_tap_lanes`); pass 1 then reads its four
  taps there, at the pixel's own position, instead of in the window.

  The 16-lane pass 1 and :func:`_accumulate_lanes` need AVX-512BW
  (:func:`avx512bw_available`); without it the portable pass 1
  (:func:`_vertices_portable`) and pass 2 run.

* Bands run on a thread pool; the kernels release the GIL. A stage needs the
  previous stage complete for all rows (its taps reach into neighbouring
  bands), so stages are separated by a barrier.

The code is split by what it is:

* :mod:`lutsr.indexmaps` (outside this package, since the CUDA backend uses
  it too): index maps, plain numpy; :mod:`lutsr.rounding`: the rounding lookup, and :mod:`.rounding`
  its shift form;
* :mod:`.kernels`: the jitted kernels and the LLVM intrinsics they inline.
  They share one file on purpose: numba's on-disk cache of a jitted function
  is invalidated only when *its own* source file changes, so an intrinsic
  kept in another file could be edited without the kernels that inline it
  being recompiled;
* :mod:`.runner`: :class:`NumbaRunner`, which plans a frame and runs the
  stages' bands on a thread pool.

Layered stages (:class:`~lutsr.layered.LayeredStage`, the ShiftLUT family)
have their own kernels in :mod:`.layered` (how they run is told there) and
their preparation and per-frame plan in :mod:`.layered_plan`; the runner runs
them, and LUTs that mix them with the stages above, stage by stage.
"""

from __future__ import annotations

import importlib.util
import sys
import types as pytypes


def _import_numba_without_scipy_probe() -> None:
    """Import numba's numpy support without its SciPy BLAS probe.

    The first numba compile or cache load in a process imports
    ``numba.np.arraymath``, whose module body runs ``import
    scipy.linalg.cython_blas`` only to learn whether ``np.dot`` can be
    supported: 0.4-0.6 s of a new process's first upscale, for a feature lutsr
    never uses. When SciPy is installed (so the probe's answer is "yes"
    anyway), a placeholder stands in for that one module while arraymath is
    imported, and is removed right after, so a later real ``import
    scipy.linalg`` (by the user, or by numba when it compiles ``np.dot``)
    loads SciPy normally.
    """
    name = "scipy.linalg.cython_blas"
    if name in sys.modules or "numba.np.arraymath" in sys.modules:
        return
    if importlib.util.find_spec("scipy") is None:
        return  # the probe fails fast without SciPy: nothing to avoid
    placeholder = pytypes.ModuleType(name)
    sys.modules[name] = placeholder
    try:
        import numba.np.arraymath  # noqa: F401 - runs the probe against the placeholder
    finally:
        if sys.modules.get(name) is placeholder:
            del sys.modules[name]


_import_numba_without_scipy_probe()

from .kernels import avx512bw_available, vnni_available  # noqa: E402 - after the probe above
from .rounding import power_of_two_rounding  # noqa: E402
from .runner import NumbaRunner  # noqa: E402

__all__ = [
    "NumbaRunner",
    "avx512bw_available",
    "power_of_two_rounding",
    "vnni_available",
]
