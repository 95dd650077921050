"""What the ``lutsr`` commands share: errors, refusals, resize options and stdout.

:class:`CLIError` (a user error, printed as one line) and the error and
warning printers; the :class:`lutsr.api.Upscaler` the arguments ask for;
the refusals of outputs that are the ``--lut`` file or already exist; what
``--outscale``/``--size``/``--fit``/``--pad``/``--crop`` ask
(:func:`resize_plan`); and writing an image or video to stdout, with the
reader of the pipe leaving early (:func:`broken_pipe`).
"""

from __future__ import annotations

import contextlib
import os
import select
import sys

from .. import bundled
from ..api import Upscaler
from ..outsize import (
    BOX_MODES,
    ResizePlan,
    box_geometry,
    plan_resize,
)
from ..safefiles import lut_inputs, same_file


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


def print_error(message: str) -> None:
    """One line on stderr about what failed (``lutsr: error: ...``)."""
    print(f"lutsr: error: {message}", file=sys.stderr)


def print_warning(message: str) -> None:
    """One line on stderr about something done anyway (printed with ``-q`` too)."""
    print(f"lutsr: warning: {message}", file=sys.stderr)


def upscaler_from_args(args) -> Upscaler:
    """The :class:`lutsr.api.Upscaler` of ``--lut``/``--backend``/``--threads``.

    Raises
    ------
    CLIError
        No ``--lut`` and no bundled default LUT installed.
    """
    if args.lut is None and not bundled.names():
        raise CLIError("no bundled default LUT is installed yet; pass --lut NAME|PATH")
    return Upscaler(args.lut, backend=args.backend, threads=args.threads)


def some_paths(paths: list, shown: int = 3) -> str:
    """The first few of ``paths`` and how many more, for a one-line message."""
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(map(str, paths[:shown])) + more


def refuse_lut_output(lut, outputs: list) -> None:
    """Raise :class:`CLIError` when one of ``outputs`` is the file ``--lut`` names.

    The same file through a symbolic or hard link counts, as for the other
    inputs (:func:`lutsr.safefiles.check_output`). Checked before existing
    outputs, so the message never suggests ``--overwrite`` for a LUT.
    """
    for source in lut_inputs(lut):
        for dst in outputs:
            if same_file(source, dst):
                raise CLIError(f"output {dst} is the --lut file; refusing to overwrite it")


def refuse_existing(outputs: list) -> None:
    """Raise :class:`CLIError` naming the ``outputs`` that exist (with or without ``--cluster``).

    The caller skips this with ``--overwrite`` (redo them) or ``--skip-existing``
    (keep them: resume an earlier run).
    """
    existing = [dst for dst in outputs if os.path.lexists(dst)]
    if existing:
        raise CLIError(f"output exists: {some_paths(existing)}; use --overwrite to replace, or "
                       "--skip-existing to keep what exists and do the rest")


def box_asked(args) -> tuple[str | None, tuple[int, int] | None]:
    """The ``--fit``/``--pad``/``--crop`` asked, as ``(mode, (width, height))``, or (None, None)."""
    for mode in BOX_MODES:
        if getattr(args, mode, None) is not None:
            return mode, getattr(args, mode)
    return None, None


def resize_asked(args) -> bool:
    """Whether ``--outscale``, ``--size`` or a box (``--fit``/``--pad``/``--crop``) was given."""
    return args.outscale is not None or args.size is not None or box_asked(args)[0] is not None


def resize_plan(upscaler: Upscaler | None, args, in_size: tuple[int, int],
                out_size: tuple[int, int], align: int = 1) -> ResizePlan:
    """What ``--outscale``/``--size``/``--fit``/``--pad``/``--crop`` does to one input: the LUT
    (as ``--lut`` named it), then the resample (then the box). ``upscaler`` None: the bundled
    LUT :func:`lutsr.outsize.pick_lut` picks. ``out_size``: the size written; ``align``: as
    :func:`lutsr.outsize.box_geometry` (2 for video)."""
    mode, box = box_asked(args)
    geometry = None
    if mode is not None:
        geometry = box_geometry(in_size, box, mode, align=align)
        out_size = geometry.scaled
    if upscaler is None:
        return plan_resize(in_size, out_size, box=geometry)
    name = args.lut if isinstance(args.lut, str) else upscaler.lut.name or "(unnamed)"
    return plan_resize(in_size, out_size, name, upscaler.scale, box=geometry)


def show_progress(args) -> bool:
    """Whether to draw a progress bar: not ``-q``, and stderr is a terminal."""
    return not args.quiet and sys.stderr.isatty()


def write_stdout(data) -> None:
    """Write all of ``data`` to stdout, or raise :class:`BrokenPipeError`.

    ``sys.stdout.buffer`` is the raw file when Python runs unbuffered
    (``PYTHONUNBUFFERED=1``, ``python -u``), whose ``write`` may write only part
    of the data and say so in its return value (a pipe whose reader left after
    the first 64 KiB): the rest is written in a loop, so a short write is
    never taken for success.
    """
    out = sys.stdout.buffer
    view = memoryview(data).cast("B")
    while view:
        written = out.write(view)
        if written is None:  # a non-blocking stdout that is full: wait, as a blocking one
            select.select([], [out], [])
            continue
        if written == 0:
            raise BrokenPipeError("stdout accepted no more data")
        view = view[written:]
    out.flush()


def silence_stdout() -> None:
    """Point stdout at the null device: what is still buffered, and the flush at interpreter
    exit, then go nowhere instead of raising :class:`BrokenPipeError` again."""
    with contextlib.suppress(OSError, ValueError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def broken_pipe() -> int:
    """The reader of an image or video on stdout went away: one line, exit 1.

    The data written is cut short, so it is an error (unlike a text listing,
    see :func:`lutsr.cli.main`).
    """
    silence_stdout()
    print_error("the output pipe was closed by its reader before the end")
    return 1
