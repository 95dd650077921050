"""The LUT models shipped inside the package (``lutsr/luts/*.lutsr``)."""

from __future__ import annotations

import difflib
import functools
from importlib import resources

from .fileformat import SUFFIX, from_bytes
from .model import LUT

#: The model ``lutsr.upscale(img)`` uses when no LUT is given.
DEFAULT = "x4"


def names() -> list[str]:
    """Names of the bundled LUT models, e.g. ``["x2", "x4", "x4-sdy", "x4-sdy-taps"]``."""
    folder = resources.files(__package__) / "luts"
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(SUFFIX)] for p in folder.iterdir() if p.name.endswith(SUFFIX))


def closest(name: str) -> str | None:
    """The bundled name most like ``name``, ignoring case, or None when none is close.

    ``"X4-SDY"`` and ``"x4sdy"`` give ``"x4-sdy"``; "close" is
    :func:`difflib.get_close_matches`'s (a ratio of at least 0.6).
    """
    by_lower = {n.lower(): n for n in names()}
    match = difflib.get_close_matches(str(name).lower(), by_lower, n=1)
    return by_lower[match[0]] if match else None


def unknown_name(name: str, *, file_too: bool = False) -> str:
    """The one-line error for a LUT name that is not bundled, with the closest name if any.

    ``file_too``: the name was also tried as a file path.
    """
    guess = closest(name)
    hint = f"; did you mean {guess}?" if guess else ""
    return (f"no bundled LUT named {str(name)!r}{' and no such file' if file_too else ''}"
            f"{hint} (bundled: {', '.join(names())})")


@functools.cache
def load_bundled(name: str) -> LUT:
    """Load a bundled LUT model by name (cached: repeated calls return the same object)."""
    available = names()
    if name not in available:
        if name == DEFAULT and not available:
            raise ValueError("no bundled default LUT is installed yet: pass lut= explicitly")
        raise ValueError(unknown_name(name))
    data = (resources.files(__package__) / "luts" / f"{name}{SUFFIX}").read_bytes()
    return from_bytes(data, source=f"bundled LUT {name!r}")
