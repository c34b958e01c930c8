"""Reading the three trace formats into one set of columns (``TraceRows``), with one-line errors.

* Mooncake JSONL: ``timestamp`` (ms), ``input_length``, ``output_length``, ``hash_ids`` (one id per
  prompt block; a block's id stands for its tokens *and* everything before them) — perf_model.md §8.
* aiperf ``profile_export.jsonl`` (what aiperf writes, and what ``autotune.loadgen.aiperf_export``
  writes): ``metadata.request_start_ns``, ``metrics.input_sequence_length`` / ``output_sequence_length``.
  Records with an error (no output length) are skipped and counted.
* autotune's per-request records (``autotune.records.REQUEST_COLUMNS``) as CSV or Parquet: ``arrival_s``,
  ``input_tokens``, ``output_tokens``, ``template``; rows whose ``status`` is not ``ok`` are skipped and counted.

The formats without hash ids get them here: a request's first ``prefix_tokens`` are shared with its
prefix group (blocks ``("g", group, j)``), the rest is its own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from autotune.errors import InputError
from autotune.traces.spec import TraceSpec

MAX_TRACE_BYTES = 1 << 30  # a trace larger than this is refused (Mooncake's largest public trace is ~30 MB)
MAX_TRACE_REQUESTS = 5_000_000
NS_PER_S = 1e9


@dataclass
class TraceRows:
    """One entry per usable request, in file order."""

    time_s: list[float]
    input_tokens: list[int]
    output_tokens: list[int]
    hash_ids: list[list[Hashable]]
    skipped: int = 0  # records without the lengths a replay needs (errors, rejected requests)


def _where(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line is not None else str(path)


def _bad(path: Path, line: int | None, field: str, what: str) -> InputError:
    return InputError(f"{_where(path, line)}: {field}: {what}")


def _number(v: Any, path: Path, line: int | None, field: str, *, integer: bool, least: float) -> float:
    """A finite number (an integer when ``integer``) of at least ``least``."""
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    if ok and integer and float(v) != int(v):
        ok = False
    if not ok or v < least:
        kind = "an integer" if integer else "a number"
        raise _bad(path, line, field, f"expected {kind} >= {least:g}, got {v!r}")
    return float(v)


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) for each non-blank line."""
    with path.open("rb") as f:
        for no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            if no > MAX_TRACE_REQUESTS:
                raise _bad(path, no, "file", f"more than {MAX_TRACE_REQUESTS} lines")
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise _bad(path, no, "line", f"not a JSON object ({getattr(exc, 'msg', 'bad UTF-8')})") from None
            if not isinstance(obj, dict):
                raise _bad(path, no, "line", f"expected a JSON object, got {type(obj).__name__}")
            yield no, obj


def _new_rows() -> TraceRows:
    return TraceRows([], [], [], [])


def read_mooncake(path: Path) -> TraceRows:
    rows = _new_rows()
    for no, obj in _lines(path):
        for field in ("timestamp", "input_length", "output_length"):
            if field not in obj:
                raise _bad(path, no, field, "required field is missing")
        rows.time_s.append(_number(obj["timestamp"], path, no, "timestamp", integer=False, least=0) / 1e3)
        rows.input_tokens.append(int(_number(obj["input_length"], path, no, "input_length", integer=True, least=1)))
        rows.output_tokens.append(int(_number(obj["output_length"], path, no, "output_length", integer=True, least=1)))
        ids = obj.get("hash_ids", [])
        if not isinstance(ids, list) or not all(isinstance(h, int) and not isinstance(h, bool) for h in ids):
            raise _bad(path, no, "hash_ids", "expected a list of integers")
        rows.hash_ids.append(list(ids))
    return rows


def _metric(metrics: dict[str, Any], name: str) -> Any:
    m = metrics.get(name)
    return m.get("value") if isinstance(m, dict) else m


def read_aiperf(path: Path) -> TraceRows:
    rows = _new_rows()
    for no, obj in _lines(path):
        meta, metrics = obj.get("metadata"), obj.get("metrics")
        if not isinstance(meta, dict):
            raise _bad(path, no, "metadata", "required object is missing")
        if not isinstance(metrics, dict):
            raise _bad(path, no, "metrics", "required object is missing")
        osl = _metric(metrics, "output_sequence_length")
        if osl is None:
            osl = _metric(metrics, "output_token_count")
        if obj.get("error") or osl is None:
            rows.skipped += 1
            continue
        start = meta.get("request_start_ns")
        if start is None:
            raise _bad(path, no, "metadata.request_start_ns", "required field is missing")
        isl = _metric(metrics, "input_sequence_length")
        if isl is None:
            raise _bad(path, no, "metrics.input_sequence_length", "required field is missing")
        rows.time_s.append(_number(start, path, no, "metadata.request_start_ns", integer=True, least=0) / NS_PER_S)
        rows.input_tokens.append(int(_number(isl, path, no, "metrics.input_sequence_length", integer=True, least=1)))
        rows.output_tokens.append(int(_number(osl, path, no, "metrics.output_sequence_length", integer=True, least=1)))
        rows.hash_ids.append([0])  # one prefix group (aiperf records carry no prefix information)
    return rows


AUTOTUNE_COLUMNS = ("arrival_s", "input_tokens", "output_tokens")


def read_autotune(path: Path) -> TraceRows:
    """A per-request frame (CSV, or Parquet by its suffix); a CSV's data row i is on line i + 2."""
    try:
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise _bad(path, None, "file", f"not a readable per-request table ({str(exc).splitlines()[0]})") from None
    for col in AUTOTUNE_COLUMNS:
        if col not in df.columns:
            raise _bad(path, None, col, "required column is missing")
    csv = path.suffix != ".parquet"
    rows = _new_rows()
    status = df["status"].tolist() if "status" in df.columns else ["ok"] * len(df)
    template = df["template"].tolist() if "template" in df.columns else [0] * len(df)
    for i, (t, isl, osl, st, g) in enumerate(
        zip(df["arrival_s"], df["input_tokens"], df["output_tokens"], status, template, strict=True)
    ):
        line = i + 2 if csv else None
        where = "" if csv else f" (row {i})"
        if st != "ok":
            rows.skipped += 1
            continue
        rows.time_s.append(_number(_plain(t), path, line, "arrival_s" + where, integer=False, least=0))
        rows.input_tokens.append(int(_number(_plain(isl), path, line, "input_tokens" + where, integer=True, least=1)))
        rows.output_tokens.append(int(_number(_plain(osl), path, line, "output_tokens" + where, integer=True, least=1)))
        rows.hash_ids.append([int(_number(_plain(g), path, line, "template" + where, integer=True, least=-1))])
    return rows


def _plain(v: Any) -> Any:
    """A pandas/numpy scalar as a Python number (NaN stays a float, so it is reported as bad)."""
    return v.item() if hasattr(v, "item") else v


READERS = {"mooncake": read_mooncake, "aiperf": read_aiperf, "autotune": read_autotune}


def read_rows(spec: TraceSpec, path: Path) -> TraceRows:
    """The usable requests of the trace at ``path``; formats without hash ids get synthetic ones."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _bad(path, None, "workload.trace.path", "file not found") from None
    except OSError as exc:
        raise _bad(path, None, "workload.trace.path", f"cannot read: {exc.strerror}") from None
    if not path.is_file():
        raise _bad(path, None, "workload.trace.path", "not a regular file")
    if size > MAX_TRACE_BYTES:
        raise _bad(path, None, "workload.trace.path", f"larger than {MAX_TRACE_BYTES >> 20} MiB")
    rows = READERS[spec.format](path)
    if spec.format != "mooncake":
        rows.hash_ids = [
            _group_blocks(ids[0], isl, spec) for ids, isl in zip(rows.hash_ids, rows.input_tokens, strict=True)
        ]
    if not rows.time_s:
        raise _bad(path, None, "file", f"no usable request ({rows.skipped} skipped: errors or rejected)")
    return rows


def _group_blocks(group: Hashable, isl: int, spec: TraceSpec) -> list[Hashable]:
    """Hash ids for a request of a prefix group: its shared prefix blocks (none for group -1)."""
    if group == -1:
        return []
    shared = min(spec.prefix_tokens, isl) // spec.block_tokens
    return [("g", group, j) for j in range(shared)]
