"""Bounded ``.npy`` reading: a header is checked before any data is read, and nothing unpickles.

A ``.npy`` from the internet may declare any shape and dtype; ``numpy.load``
would allocate whatever it declares (or unpickle objects when allowed).
:func:`read_npy` refuses object and non-numeric dtypes, shapes larger than the
caller can need, and sizes larger than the bytes present, before reading.
"""

from __future__ import annotations

import math
import os
import stat
import tokenize

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
    except (ValueError, TypeError, SyntaxError, OverflowError, tokenize.TokenError,
            RecursionError, MemoryError) as exc:
        # The header is at most numpy's 10,000 bytes; a MemoryError or RecursionError here
        # is Python's parser refusing its nesting (thousands of "-" or "("), not a real
        # shortage of memory. numpy retokenizes a header it cannot parse (TokenError).
        why = ("its header is nested too deeply" if isinstance(exc, (RecursionError, MemoryError))
               else str(exc))  # Python's own words for that vary by version
        raise ValueError(f"{what}: not a readable .npy file ({why})") from None
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


_FILE_TYPES = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a named pipe (FIFO)",
               stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFSOCK: "a socket"}


def open_regular(path, max_bytes: int | None = None):
    """Open ``path`` for binary reading if it is a regular file of at most ``max_bytes``.

    A table file from the internet may be a symbolic link to ``/dev/zero`` (read
    forever) or a FIFO (``open`` blocks until a writer comes): the file is
    opened without blocking and checked on its descriptor, so nothing is read
    from anything but a regular file, and nothing changes between check and read.

    Parameters
    ----------
    path : str or path
    max_bytes : int or None
        Largest size accepted; None for no limit (the caller bounds its reads).

    Returns
    -------
    tuple of (binary file object, int)
        The open file (the caller closes it) and its size in bytes.

    Raises
    ------
    ValueError
        Naming ``path``: it cannot be opened, is not a regular file, or is
        larger than ``max_bytes``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = _FILE_TYPES.get(stat.S_IFMT(info.st_mode), "not a regular file")
            raise ValueError(f"{path}: is {kind}, not a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise ValueError(f"{path}: {info.st_size} bytes, more than the {max_bytes} "
                             "such a file can need")
        return os.fdopen(fd, "rb"), info.st_size
    except BaseException:
        os.close(fd)
        raise


def load_npy(path, max_elements: int, what: str) -> np.ndarray:
    """Read a regular ``.npy`` file (see :func:`open_regular`) with :func:`read_npy`; every
    failure is a ValueError naming ``what`` and the path (``cannot read ...``)."""
    try:
        fp, size = open_regular(path)
    except ValueError as exc:
        raise ValueError(f"{what}: cannot read {exc}") from None
    try:
        with fp:
            return read_npy(fp, size, max_elements, str(path))
    except OSError as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{what}: cannot read {exc}") from None
