#!/usr/bin/env python
"""Evaluate upscalers (LUTs, bicubic, the full CNN) on SR benchmark folders.

The command line of :mod:`train.evaluate` (``pip install -e .``; ``--cnn`` needs
the ``train`` extra's torch), whose docstring gives the protocol. Example::

    python tools/evaluate.py --lut x4 path/to/a.lutsr --bicubic \\
        --datasets ../shared/data/test/Set5 ../shared/data/test/Set14 --scale 4
"""

import sys

from train.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
