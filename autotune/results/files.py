"""Atomic, private, redacted file writes: a results directory never holds a half-written file.

Each file is written to a temporary sibling and renamed over the target (``os.replace`` is atomic
on POSIX), so a crash or Ctrl-C leaves either the old file or the new one. Files are 0600 (``mkstemp``)
and the directories we create 0700 whatever the umask: results hold profiles, hosts and logs. Every
value goes through ``autotune.redact`` on the way out, so a credential in a profile never lands in a file.
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

from autotune.redact import redact_text, scrub

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


PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


def private_dir(path: Path) -> Path:
    """``mkdir -p`` where every directory created here is 0700 (umask-independent); existing ones are left as they are."""
    missing = []
    p = Path(path)
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue
        os.chmod(d, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty as 0600 if it does not exist (for files another library appends to)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return path
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return path


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)  # 0600
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write(path: Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_text(path: Path, text: str) -> Path:
    return _write(path, redact_text(text))


def write_json(path: Path, data: Any) -> Path:
    return _write(path, json.dumps(scrub(to_plain(data), path.name), indent=2) + "\n")


def write_yaml(path: Path, data: Any, header: str = "") -> Path:
    return _write(path, redact_text(header) + yaml.safe_dump(scrub(to_plain(data), path.name), sort_keys=False))


def redact_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with credential-looking text redacted in its string columns (fail reasons quote logs)."""
    cols = [c for c in df.columns if df[c].dtype == object]
    if not cols:
        return df
    out = df.copy()
    for c in cols:
        out[c] = out[c].map(lambda v: redact_text(v) if isinstance(v, str) else v)
    return out


def write_csv(path: Path, df: pd.DataFrame) -> Path:
    clean = redact_frame(df)
    return atomic_write(path, lambda p: clean.to_csv(p, index=False))


def write_parquet(path: Path, df: pd.DataFrame) -> Path:
    clean = redact_frame(df)
    return atomic_write(path, lambda p: clean.to_parquet(p, index=False))
