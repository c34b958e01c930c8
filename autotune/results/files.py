"""Atomic file writes: a results directory never holds a half-written file.

Each file is written to a temporary sibling and renamed over the target (``os.replace`` is atomic
on POSIX), so a crash or Ctrl-C leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from autotune.cli.output import to_plain


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
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
