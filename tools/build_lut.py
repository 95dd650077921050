#!/usr/bin/env python
"""Train a LUT model on folders of images and write it as a .lutsr file.

The command line of :mod:`train.build_lut` (``pip install -e ".[train]"``),
whose help lists the flags. Example::

    python tools/build_lut.py --data ../shared/data/train --scale 4 --out x4.lutsr
    python tools/build_lut.py --quick --data DIR --out /tmp/q.lutsr    # a CI-sized run
"""

import sys

from train.build_lut import main

if __name__ == "__main__":
    sys.exit(main())
