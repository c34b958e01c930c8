"""Routing facts from Dynamo 1.6.1's JSONL logs (``DYN_LOGGING_JSONL=1``).

Dynamo exposes no per-request routing API, but its frontend logs every decision. With JSONL
logging and the selection module at DEBUG (``DYN_LOG=info,dynamo_kv_router::services::
selection=debug``) each request leaves, per routing stage:

* ``[ROUTING_INPUT] request local hashes``: ``request_id``, ``isl_tokens``, ``block_size``, the
  request's block hashes (one per full block);
* ``Selected worker``: ``request_id``, ``worker_id``, ``worker_type`` (prefill|decode; aggregated
  workers report decode), the chosen worker's ``logit``;
* ``route request completed`` (target ``request_span``): ``phase`` (Prefill|Decode|Aggregated),
  ``worker_id``, ``overlap_blocks``, outcome; logged when that stage's stream ends;
* ``request completed`` (target ``dynamo_llm::http::service::metrics``): status, and on
  streaming requests ``prefill_worker_id``/``decode_worker_id``, ``ttft_ms``, token counts.

``request_id`` is the OpenAI response ``id`` without its ``chatcmpl-``/``cmpl-`` prefix, which
is how the client's records are joined to these events. Workers log their own instance id
(``FPM direct publisher started worker_id=N``), which ties a ``worker_id`` to a process.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

_KEYS = (b"Selected worker", b"ROUTING_INPUT", b"route request completed", b'"request completed"')


@dataclass(frozen=True)
class Selection:
    t: float  # epoch seconds
    request_id: str
    worker_id: int
    worker_type: str  # prefill | decode
    logit: float
    cached_blocks: float  # effective_cached_blocks when logged, else NaN


@dataclass(frozen=True)
class RoutingInput:
    t: float
    request_id: str
    isl_tokens: int
    block_size: int
    hashes: tuple[int, ...]


@dataclass(frozen=True)
class StageDone:
    t: float
    request_id: str
    phase: str  # Prefill | Decode | Aggregated
    worker_id: int
    overlap_blocks: int
    outcome: str


@dataclass(frozen=True)
class RequestDone:
    t: float
    request_id: str
    status: str
    prefill_worker_id: int | None
    decode_worker_id: int | None
    input_tokens: int | None
    output_tokens: int | None


@dataclass
class FrontendLog:
    """Every routing event of a time span, in log order."""

    inputs: list[RoutingInput] = field(default_factory=list)
    selections: list[Selection] = field(default_factory=list)
    stages: list[StageDone] = field(default_factory=list)
    requests: list[RequestDone] = field(default_factory=list)
    unparsed: int = 0


def parse_time(text: str) -> float:
    """``2026-11-23T01:21:55.171240Z`` -> epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _int(v: Any) -> int | None:
    if v is None or v == "":
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _hashes(v: object) -> tuple[int, ...]:
    if isinstance(v, list):
        return tuple(int(x) for x in v)
    text = str(v).strip().strip("[]")
    return tuple(int(x) for x in text.split(",") if x.strip())


def parse_line(line: bytes | str, out: FrontendLog) -> None:
    """Add the routing event on ``line`` (if any) to ``out``."""
    raw = line.encode() if isinstance(line, str) else line
    if not any(k in raw for k in _KEYS):
        return
    try:
        rec = json.loads(raw)
    except ValueError:
        out.unparsed += 1
        return
    msg = rec.get("message", "")
    rid = str(rec.get("request_id", "")).strip('"')
    if not rid:
        return
    try:
        t = parse_time(rec["time"])
    except (KeyError, ValueError):
        out.unparsed += 1
        return
    if msg == "Selected worker":
        wid = _int(rec.get("worker_id"))
        if wid is None:
            return
        cached = rec.get("effective_cached_blocks")
        out.selections.append(
            Selection(
                t,
                rid,
                wid,
                str(rec.get("worker_type", "")),
                float(rec.get("logit", "nan")),
                float(cached) if cached is not None else float("nan"),
            )
        )
    elif msg.startswith("[ROUTING_INPUT]"):
        out.inputs.append(
            RoutingInput(
                t,
                rid,
                int(rec.get("isl_tokens", 0)),
                int(rec.get("block_size", 0)),
                _hashes(rec.get("local_hashes", "")),
            )
        )
    elif msg == "route request completed":
        wid = _int(rec.get("worker_id"))
        if wid is None:
            return
        out.stages.append(
            StageDone(
                t,
                rid,
                str(rec.get("phase", "")),
                wid,
                _int(rec.get("overlap_blocks")) or 0,
                str(rec.get("request.outcome", "")),
            )
        )
    elif msg == "request completed" and "metrics" in str(rec.get("target", "")):
        out.requests.append(
            RequestDone(
                t,
                rid,
                str(rec.get("status", "")),
                _int(rec.get("prefill_worker_id")),
                _int(rec.get("decode_worker_id")),
                _int(rec.get("input_tokens")),
                _int(rec.get("output_tokens")),
            )
        )


def parse_lines(lines: Iterable[bytes | str]) -> FrontendLog:
    out = FrontendLog()
    for line in lines:
        parse_line(line, out)
    return out


def read_from(path: Path, offset: int) -> Iterator[bytes]:
    """Lines of ``path`` from byte ``offset`` on (only complete lines)."""
    with open(path, "rb") as f:
        f.seek(offset)
        for line in f:
            if line.endswith(b"\n"):
                yield line


def file_size(path: Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def worker_instance_id(log_path: Path) -> int | None:
    """The instance id a mocker worker registered under (from its own log), or None yet."""
    try:
        with open(log_path, "rb") as f:
            for line in f:
                if b"FPM direct publisher started" in line or b"Initializing KvEventPublisher" in line:
                    try:
                        wid = _int(json.loads(line).get("worker_id"))
                    except ValueError:
                        continue
                    if wid is not None:
                        return wid
    except OSError:
        return None
    return None
