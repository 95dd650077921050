"""The LUT models shipped inside the package (``lutsr/luts/*.lutsr``)."""

from __future__ import annotations

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


@functools.cache
def load_bundled(name: str) -> LUT:
    """Load a bundled LUT model by name (cached: repeated calls return the same object)."""
    available = names()
    if name not in available:
        if name == DEFAULT and not available:
            raise ValueError("no bundled default LUT is installed yet: pass lut= explicitly")
        raise ValueError(f"no bundled LUT named {name!r}; bundled: {available}")
    data = (resources.files(__package__) / "luts" / f"{name}{SUFFIX}").read_bytes()
    return from_bytes(data, source=f"bundled LUT {name!r}")
