"""Bounded ``.npy`` reading: a header is checked before any data is read, and nothing unpickles.

A ``.npy`` from the internet may declare any shape and dtype; ``numpy.load``
would allocate whatever it declares (or unpickle objects when allowed).
:func:`read_npy` refuses object and non-numeric dtypes, shapes larger than the
caller can need, and sizes larger than the bytes present, before reading.
"""

from __future__ import annotations

import math
import os

import numpy as np
from numpy.lib import format as npy_format

#: The dtype kinds a table file may hold (bool, integers, floats, complex);
#: anything else (objects, strings, records) is refused before reading data.
_NUMERIC_KINDS = "biufc"


def read_npy(fp, available: int, max_elements: int, what: str) -> np.ndarray:
    """Read one ``.npy`` array from a binary stream, bounded and without pickle.

    Parameters
    ----------
    fp : binary file-like
        Positioned at the start of the ``.npy`` data (a file, or an ``.npz``
        member).
    available : int
        Bytes the stream holds from its current position (its size).
    max_elements : int
        Most elements the caller can ever need; a header declaring more is
        refused before any data is read.
    what : str
        Names the file in error messages.

    Returns
    -------
    numpy.ndarray
        The array, writable, of the dtype and shape its header declares.

    Raises
    ------
    ValueError
        If the stream is not a ``.npy`` of version 1 or 2, declares an object
        or non-numeric dtype, more than ``max_elements`` elements or more bytes
        than ``available``, or ends early.
    """
    start = fp.tell()
    try:
        version = npy_format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, TypeError, SyntaxError) as exc:
        raise ValueError(f"{what}: not a readable .npy file ({exc})") from None
    if dtype.hasobject or dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(f"{what}: dtype {dtype} is refused (numeric arrays only; objects "
                         "would need unpickling)")
    count = math.prod(shape)
    if any(n < 0 for n in shape):
        raise ValueError(f"{what}: declares an invalid shape {shape}")
    if count > max_elements:
        raise ValueError(f"{what}: declares shape {shape} ({count} elements), more than the "
                         f"{max_elements} it can legally hold")
    nbytes = count * dtype.itemsize
    left = available - (fp.tell() - start)
    if nbytes > left:
        raise ValueError(f"{what}: declares {nbytes} bytes of data but only {left} follow "
                         "its header (truncated file?)")
    # Read straight into the result: a large table is held once, not twice.
    array = np.empty(count, dtype)
    buffer = memoryview(array.view(np.uint8))
    got = 0
    while got < nbytes:
        n = fp.readinto(buffer[got:])
        if not n:
            raise ValueError(f"{what}: ends after {got} of its {nbytes} data bytes")
        got += n
    return array.reshape(shape, order="F" if fortran else "C")


def load_npy(path, max_elements: int, what: str) -> np.ndarray:
    """Read a ``.npy`` file with :func:`read_npy`; every failure is a ValueError
    naming ``what`` and the path (``cannot read ...``)."""
    try:
        with open(path, "rb") as fp:
            return read_npy(fp, os.fstat(fp.fileno()).st_size, max_elements, str(path))
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{what}: cannot read {exc}") from None
