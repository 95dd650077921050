"""``python -m lutsr``: the same as the ``lutsr`` command."""

from .cli import main

raise SystemExit(main())
