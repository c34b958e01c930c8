"""``python -m autotune.cli``: still works now that the CLI is a package (same as ``python -m autotune``)."""

from autotune.cli import main

main()
