"""CUDA backend (numba.cuda): the runner behind ``backend="cuda"``.

The arithmetic is :mod:`lutsr.reference`'s, bit for bit. The code is split
as :mod:`lutsr._cpu`'s is:

* :mod:`.simplex`: the kernel of a simplex stage (one thread per input
  sample, one launch per stage), its device tables and its launch;
* :mod:`.layered`: the kernels of a layered stage
  (:class:`~lutsr.layered.LayeredStage`), a few launches per stage;
* :mod:`.arrays`: array kinds: numba device views of CuPy arrays, torch CUDA
  tensors, numba's own arrays, DLPack CUDA arrays and, under
  ``NUMBA_ENABLE_CUDASIM=1``, the simulator's arrays (how the tests run these
  kernels without a GPU); the device and stream each belongs to;
* :mod:`.runner`: :class:`CudaRunner`, which uploads a LUT's tables once per
  device and enqueues its stages on the caller's stream.

Plain numpy helpers shared with the other backends live outside this package:
index maps in :mod:`lutsr.indexmaps`, the rounding lookup in
:mod:`lutsr.rounding`, host array checks and the DLPack device codes in
:mod:`lutsr.arrays`.

Importing this package imports ``numba.cuda``; :mod:`lutsr.api` imports it
only when a device array or ``backend="cuda"`` is used.
"""

from __future__ import annotations

from .runner import CudaRunner

__all__ = ["CudaRunner"]
