"""lutsr: look-up-table super-resolution for real-time image and video upscaling.

The public API::

    lutsr.upscale(img, lut=None, *, out=None, backend="auto", threads=None)
    lutsr.upscale_to(img, lut=None, *, size=(W, H) | outscale=S, backend="auto", threads=None)
    lutsr.Upscaler(lut=None, *, backend="auto", threads=None)
    lutsr.LUT, lutsr.Stage, lutsr.PATTERNS, lutsr.LayeredStage, lutsr.TableLayer
    lutsr.load(path), lutsr.save(lut, path), lutsr.LUTFormatError
    lutsr.load_bundled(name), lutsr.bundled_names()
    lutsr.import_srlut(path_or_array, scale), lutsr.import_mulut(tables, scale)
    lutsr.import_shiftlut(folder, scale=4)
    lutsr.upscale_video(src, dst, lut=None, options=lutsr.VideoOptions(...), *, upscaler=None)
        -> lutsr.VideoReport  (needs PyAV: the ``video`` extra)
"""

from .api import Upscaler, upscale
from .bundled import load_bundled
from .bundled import names as bundled_names
from .fileformat import LUTFormatError, load, save
from .importers import import_mulut, import_shiftlut, import_srlut
from .layered import LayeredStage, TableLayer
from .model import LUT, PATTERNS, Stage
from .outsize import upscale_to
from .video import VideoOptions, VideoReport, upscale_video

__version__ = "0.1.0"

__all__ = [
    "LUT",
    "LUTFormatError",
    "LayeredStage",
    "PATTERNS",
    "Stage",
    "TableLayer",
    "Upscaler",
    "VideoOptions",
    "VideoReport",
    "bundled_names",
    "import_mulut",
    "import_shiftlut",
    "import_srlut",
    "load",
    "load_bundled",
    "save",
    "upscale",
    "upscale_to",
    "upscale_video",
]
