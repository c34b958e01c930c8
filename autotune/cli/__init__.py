"""The ``autotune`` command line (console script ``autotune.cli:main``).

Only the entry points are exported; each command lives in its own module and ``app.py`` registers
them all explicitly, so no command module imports this package back.
"""

from autotune.cli.app import cli, main

__all__ = ["cli", "main"]
