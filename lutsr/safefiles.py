"""Writing output files safely: all at once or not at all, and never over an input.

Output files are created by :func:`atomic_output`: the data is written to a
file with no name (Linux ``O_TMPFILE``) or a hidden temporary name beside the
target, and only appears under the target name once it is complete. A failed,
interrupted or killed run never leaves a partial file at the target.
:func:`check_output` refuses a target before any work is done (an input, a
folder, an existing file without ``overwrite``); :func:`lut_inputs` names the
LUT file a command reads, so that it counts as an input too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file (existing or not)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def lut_inputs(lut) -> tuple:
    """The file a ``lut`` argument is read from, as ``inputs`` of :func:`check_output`.

    Parameters
    ----------
    lut : LUT, str, path or None
        What a command's ``--lut`` (or an API's ``lut``) was given.

    Returns
    -------
    tuple
        ``(lut,)`` when it names an existing file (or other non-folder entry),
        else ``()``: a bundled name, a loaded LUT or None reads no file of the
        user's. A name that is both bundled and a file here counts too: never
        writing over it is the safe side.
    """
    if isinstance(lut, (str, os.PathLike)) and os.path.exists(lut) and not os.path.isdir(lut):
        return (lut,)
    return ()


@dataclass
class PendingOutput:
    """An output being written; see :func:`atomic_output`.

    Attributes
    ----------
    path : str
        A path to write the data to (ffmpeg and Pillow open it by name). It is
        ``/proc/self/fd/N`` for a nameless ``O_TMPFILE`` file, else a hidden
        temporary file beside the target.
    target : pathlib.Path
        Where the file appears on success.
    """

    path: str
    target: Path
    _fd: int = -1
    _temp_name: str | None = None


def _make_pending(target: Path) -> PendingOutput:
    folder = target.parent
    mode = 0o666  # the umask applies, as for any file the user creates
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        try:
            fd = os.open(folder, os.O_TMPFILE | os.O_RDWR, mode)
        except OSError:  # filesystem without O_TMPFILE support: use a named temp
            pass
        else:
            return PendingOutput(path=f"/proc/self/fd/{fd}", target=target, _fd=fd)
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.",
                                suffix=f".lutsr-partial{target.suffix}")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, mode & ~umask)
    return PendingOutput(path=name, target=target, _fd=fd, _temp_name=name)


def _commit(pending: PendingOutput, overwrite: bool) -> None:
    os.fsync(pending._fd)
    target = pending.target
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if pending._temp_name is None:
            src = pending.path
            if overwrite:
                # link under a fresh hidden name, then rename over the target
                tmp = f".{target.name}.{secrets.token_hex(6)}.lutsr-partial"
                os.link(src, tmp, dst_dir_fd=dir_fd, follow_symlinks=True)
                os.replace(tmp, target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:
                # linkat fails if the target exists: no-clobber without a race
                os.link(src, target.name, dst_dir_fd=dir_fd, follow_symlinks=True)
        elif overwrite:
            os.replace(pending._temp_name, target)
        else:
            try:
                os.link(pending._temp_name, target)
            except FileExistsError:
                raise
            except OSError:  # no hard links on this filesystem
                if target.exists():
                    raise FileExistsError(f"{target} exists") from None
                os.replace(pending._temp_name, target)
            else:
                os.unlink(pending._temp_name)
    except FileExistsError:
        raise FileExistsError(f"{target} appeared while it was being written; "
                              "not overwritten (use --overwrite)") from None
    finally:
        os.close(dir_fd)


def check_output(target: str | os.PathLike, overwrite: bool,
                 inputs: tuple = ()) -> Path:
    """Validate an output path before any work is done.

    Raises
    ------
    FileExistsError
        ``target`` exists and ``overwrite`` is false.
    ValueError
        ``target`` is one of ``inputs``, is a directory, or its folder does
        not exist.
    """
    target = Path(target)
    for source in inputs:
        if same_file(source, target):
            raise ValueError(f"output {target} is the input file; refusing to overwrite it")
    if target.is_dir():
        raise ValueError(f"output {target} is a directory")
    if not target.parent.is_dir():
        raise ValueError(f"output folder {target.parent} does not exist")
    if os.path.lexists(target) and not overwrite:
        dangling = " (a dangling symbolic link)" if not target.exists() else ""
        raise FileExistsError(f"{target} exists{dangling}; use --overwrite to replace it")
    return target


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike, *, overwrite: bool = False,
                  inputs: tuple = ()) -> Iterator[PendingOutput]:
    """Create ``target`` all at once, or not at all.

    Yields a :class:`PendingOutput` whose ``path`` the caller writes (and
    closes) inside the ``with`` block. When the block ends without an
    exception the file appears at ``target``; on any exception, Ctrl-C
    included, it is discarded. A process killed outright leaves nothing behind
    when the filesystem supports ``O_TMPFILE`` (Linux ext4, xfs, btrfs, tmpfs),
    else at worst a hidden ``.NAME.*.lutsr-partial*`` file, never the target.

    Parameters
    ----------
    target : path
    overwrite : bool
        Replace an existing ``target`` (atomically) instead of refusing.
    inputs : tuple of paths
        Files that must never be the target.

    Raises
    ------
    FileExistsError, ValueError
        See :func:`check_output`.
    """
    target = check_output(target, overwrite, inputs)
    pending = _make_pending(target)
    try:
        yield pending
        _commit(pending, overwrite)
    finally:
        os.close(pending._fd)
        if pending._temp_name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pending._temp_name)
