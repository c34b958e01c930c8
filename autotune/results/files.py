"""Atomic file writes: a results directory never holds a half-written file.

Each file is written to a temporary sibling and renamed over the target (``os.replace`` is atomic
on POSIX), so a crash or Ctrl-C leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # only annotations: `autotune --help` must not load pandas
    import pandas as pd


def to_plain(v: Any) -> Any:
    """Plain JSON/YAML-safe data: NaN/inf become None, tuples lists, numpy scalars Python numbers."""
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, dict):
        return {k: to_plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_plain(x) for x in v]
    if hasattr(v, "item") and callable(v.item):  # numpy scalars
        return to_plain(v.item())
    return v


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: Path, data: Any) -> Path:
    return write_text(path, json.dumps(to_plain(data), indent=2) + "\n")


def write_yaml(path: Path, data: Any, header: str = "") -> Path:
    return write_text(path, header + yaml.safe_dump(to_plain(data), sort_keys=False))


def write_csv(path: Path, df: pd.DataFrame) -> Path:
    return atomic_write(path, lambda p: df.to_csv(p, index=False))


def write_parquet(path: Path, df: pd.DataFrame) -> Path:
    return atomic_write(path, lambda p: df.to_parquet(p, index=False))
