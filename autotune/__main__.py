"""``python -m autotune``: same as the ``autotune`` console script."""

from autotune.cli import main

main()
