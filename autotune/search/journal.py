"""The study journal on disk: a torn tail is repaired, a damaged record refuses the study.

Optuna's journal is one JSON record per line, appended. A write cut short (disk full, power
loss) leaves half a line at the end; every later append would then glue onto it and the whole
study would stop loading. The half line belongs to an operation that never completed (its trial
is still RUNNING and is failed on resume), so dropping it loses nothing finished. A damaged line
*inside* the file is different: records after it may be fine, but we cannot know what it held,
so the study is refused with the line number rather than silently rewritten.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from autotune.errors import InputError

log = logging.getLogger("autotune.search")


def check_journal(path: Path, *, repair: bool) -> int:
    """Validate ``path``; with ``repair``, cut a torn last line. Returns the bytes dropped."""
    if not path.exists():
        return 0
    if not path.is_file():
        raise InputError(f"{path}: the study journal is not a regular file")
    data = path.read_bytes()
    dropped = 0
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        dropped = len(data) - keep
        if not repair:
            raise InputError(f"{path}: the last record is cut short ({dropped} bytes); run with --resume to repair it")
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        log.warning("%s: dropped a torn last record (%d bytes) left by an interrupted write", path, dropped)
        data = data[:keep]
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = None
        if not isinstance(record, dict) or "op_code" not in record:
            raise InputError(
                f"{path}: line {number} is not a study journal record: the journal is damaged "
                "(restore it from a backup or start a new --results directory)"
            )
    return dropped
