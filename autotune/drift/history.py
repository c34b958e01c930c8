"""The drift runs of one deployment, kept across runs (on the CronJob's PVC): one JSON line each.

Appends are flushed and fsynced before the command reports, so a run that ends (or is killed) after
its probe keeps its record; a damaged last line (a crash mid-append, a full disk) is skipped with a
warning instead of making the history unreadable. ``report.md`` is rewritten atomically each run.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from autotune.errors import StorageError
from autotune.redact import redact_text
from autotune.results.files import private_dir, write_text

log = logging.getLogger(__name__)

HISTORY = "history.jsonl"


def read_history(directory: Path) -> list[dict[str, Any]]:
    path = directory / HISTORY
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            log.warning("%s:%d: damaged record skipped", path, n)
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def append_history(directory: Path, record: dict[str, Any]) -> Path:
    try:
        private_dir(directory)
        path = directory / HISTORY
        line = redact_text(json.dumps(record, sort_keys=True, default=str)) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size and not _ends_with_newline(path):
                os.write(fd, b"\n")  # a previous append was cut short: keep its line apart
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageError(f"{directory / HISTORY}: cannot append the drift record: {exc.strerror}") from None
    return path


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _pct(v: object) -> str:
    return f"{float(v) * 100:+.1f} %" if isinstance(v, (int, float)) and v == v else "–"


def history_report(history: list[dict[str, Any]]) -> str:
    """The history as a markdown table, newest last, and the latest run's figures in words."""
    lines = [
        "# Drift history",
        "",
        "| time (UTC) | topology | verdict | TTFT P99 vs prediction | tok/s vs prediction | retune |",
        "|---|---|---|---|---|---|",
    ]
    for h in history:
        ch = {d["figure"]: d["change"] for d in h.get("figures", []) if d.get("against") == "prediction"}
        rt = h.get("retune") or {}
        retune = (
            f"{rt.get('recommended')} ({rt.get('gain_text', '')})"
            if rt.get("improvement_available")
            else rt.get("verdict", "–")
        )
        lines.append(
            f"| {h.get('time_utc', '')} | {h.get('topology', '')} | {h.get('verdict', '')} | "
            f"{_pct(ch.get('ttft_p99_ms'))} | {_pct(ch.get('output_tok_s'))} | {retune} |"
        )
    if history:
        lines += ["", "## Latest run", "", *history[-1].get("sentences", [])]
    return "\n".join(lines) + "\n"


def write_report(directory: Path, history: list[dict[str, Any]]) -> Path:
    try:
        return write_text(directory / "report.md", history_report(history))
    except OSError as exc:
        raise StorageError(f"{directory / 'report.md'}: cannot write: {exc.strerror}") from None
