"""Progress bars on stderr: tqdm when it is installed, a stand-in with the same methods when not.

tqdm is optional (the ``lutsr[progress]`` extra is not required by anything), so
every caller asks :func:`progress_bar` and gets an object with tqdm's ``update``,
``set_postfix_str``, ``refresh``, ``close``, ``n``, ``total`` and ``disable``:
a tqdm bar, a :class:`PlainBar` (one rewritten line, for runs long enough that a
user wants to see them move even without tqdm), or a :class:`SilentBar`.
"""

from __future__ import annotations

import sys
import time


class SilentBar:
    """A bar that shows nothing: tqdm's methods, counting only."""

    disable = True

    def __init__(self, total: int | None = None, initial: int = 0):
        self.total, self.n = total, initial

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix_str(self, s: str) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


class PlainBar(SilentBar):
    """Progress on one stderr line, rewritten at most twice a second.

    The line reads ``DESC: N/TOTAL UNITS, R RATE, ETA S s`` (``video.mp4:
    40/120 frames, 23.5 fps, ETA 3 s``).
    """

    disable = False

    def __init__(self, total: int | None, desc: str, unit: str = "frames", rate: str = "fps",
                 initial: int = 0):
        super().__init__(total, initial)
        self.desc, self.unit, self.rate = desc, unit, rate
        self._t0, self._last = time.perf_counter(), 0.0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self._last > 0.5:
            self.refresh(now)

    def refresh(self, now: float | None = None) -> None:
        """Rewrite the line now."""
        now = time.perf_counter() if now is None else now
        self._last = now
        rate = self.n / max(now - self._t0, 1e-9)
        eta = f", ETA {(self.total - self.n) / rate:.0f} s" if self.total and rate else ""
        of = f"/{self.total}" if self.total else ""
        sys.stderr.write(f"\r{self.desc}: {self.n}{of} {self.unit}, {rate:.1f} {self.rate}{eta}   ")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


def progress_bar(total: int | None, *, enabled: bool, unit: str = "it", desc: str | None = None,
                 initial: int = 0, plain: bool = False, **tqdm_options):
    """A progress bar on stderr.

    Parameters
    ----------
    total : int or None
        Steps expected (None: unknown, no percentage or ETA).
    enabled : bool
        Show it; a disabled bar is a :class:`SilentBar`, which counts but
        writes nothing (``bar.disable`` is true, so a caller can log plain lines
        instead). No tqdm for it: tqdm's first bar in a process makes a named
        semaphore, which a segment worker ended by its client leaves behind,
        and Python warns of it at exit.
    unit : str
        tqdm's unit of a step (``"image"``, ``"frame"``...).
    desc : str, optional
        Text before the bar.
    initial : int
        Steps already done (a resumed run).
    plain : bool
        Without tqdm, show a :class:`PlainBar` (of ``unit + "s"``, and frames
        per second as ``fps``) rather than nothing.
    **tqdm_options
        Passed to ``tqdm`` (``dynamic_ncols``, ``mininterval``...).

    Returns
    -------
    tqdm.tqdm, PlainBar or SilentBar
    """
    if not enabled:
        return SilentBar(total, initial)
    try:
        from tqdm import tqdm
    except ImportError:
        if plain:
            rate = "fps" if unit == "frame" else f"{unit}s/s"
            return PlainBar(total, desc or "", unit=f"{unit}s", rate=rate,
                            initial=initial)
        return SilentBar(total, initial)
    return tqdm(total=total, initial=initial, unit=unit, desc=desc, **tqdm_options)


def finish(bar) -> None:
    """Show a run as complete: the real step count becomes the total.

    A total estimated beforehand (a video's frames from its container's
    duration, for MKV, MPEG-TS and others without a frame count) may be off by
    a few percent either way; a bar left at 95 % would look like a run that
    stopped early.
    """
    if bar.total != bar.n:
        bar.total = bar.n
    bar.refresh()
