"""What the ``lutsr`` commands do (:mod:`lutsr.cli` parses the command line and calls them).

Each ``cmd_*`` takes the parsed arguments and returns the exit status; user
errors raise :class:`lutsr.commands.common.CLIError` (or ``ValueError``/``OSError``),
which the entry point prints as one line. :mod:`lutsr.cluster` runs the per-file
work of ``image`` and ``video`` on Dask workers through the same functions.

- :mod:`~lutsr.commands.common`: errors and warnings, the upscaler from the
  arguments, refusing outputs that are inputs or exist, the resize options,
  writing to stdout and a reader that leaves early.
- :mod:`~lutsr.commands.image`: ``lutsr image`` (planning, files, folders,
  pipes) and ``lutsr demo``.
- :mod:`~lutsr.commands.video`: ``lutsr video``, whole or in segments.
- :mod:`~lutsr.commands.info`: ``lutsr info``, ``list``, ``backends`` and ``convert``.
"""
