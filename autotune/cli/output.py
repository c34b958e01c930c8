"""Rendering for ``-o table|json|yaml``: data goes to stdout, everything else to stderr.

Data goes through ``results.files.to_plain``, the same as results files, so a file and ``-o json`` agree.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from autotune.results.files import to_plain

FORMATS = ("table", "json", "yaml")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def emit(
    data: Any,
    fmt: str,
    *,
    rows: Sequence[dict[str, Any]] | None = None,
    title: str | None = None,
    columns: Sequence[tuple[str, str]] | None = None,
    caption: str | None = None,
) -> None:
    """Write ``data`` as JSON/YAML, or ``rows`` as a table with ``(key, header)`` columns."""
    if fmt == "json":
        sys.stdout.write(json.dumps(to_plain(data), indent=2, sort_keys=False) + "\n")
    elif fmt == "yaml":
        sys.stdout.write(yaml.safe_dump(to_plain(data), sort_keys=False))
    else:
        rows = rows if rows is not None else [data]
        cols = columns or [(k, k) for k in rows[0]] if rows else []
        table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
        for _, header in cols:
            table.add_column(header, justify="right")
        for r in rows:
            table.add_row(*(_fmt(to_plain(r.get(k))) for k, _ in cols))
        Console(file=sys.stdout, width=200).print(table)
