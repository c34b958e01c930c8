"""Per-request records in aiperf's ``profile_export.jsonl`` layout and metric names.

Users compare autotune's live figures with aiperf's; writing the same record shape (``metadata``,
``metrics`` as ``{"value", "unit"}``, ``error``) and the same metric tags
(``time_to_first_token``, ``inter_token_latency``, ``request_latency``, ...) lets aiperf's own
tooling and notebooks read ours. Units follow aiperf: milliseconds and tokens.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from autotune.loadgen.client import BurstResult, RequestRecord


def _mv(value: Any, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit}


def aiperf_record(
    rec: RequestRecord, result: BurstResult, *, input_tokens: int, measured: bool, worker: str = ""
) -> dict[str, Any]:
    """One aiperf ``MetricRecordInfo``-shaped dict for ``rec``."""
    ns = 1e9

    def epoch_ns(t: float) -> int | None:
        return None if t != t else int((result.t0_wall + t) * ns)

    isl = rec.prompt_tokens if rec.prompt_tokens >= 0 else input_tokens
    meta = {
        "session_num": rec.index,
        "x_request_id": rec.response_id or str(uuid.UUID(int=rec.index)),
        "x_correlation_id": None,
        "conversation_id": None,
        "turn_index": 0,
        "request_start_ns": epoch_ns(rec.send_s),
        "request_ack_ns": epoch_ns(rec.first_token_s),
        "request_end_ns": epoch_ns(rec.end_s),
        "worker_id": f"client_{rec.client}" if rec.client >= 0 else "open_loop",
        "record_processor_id": "autotune",
        "benchmark_phase": "profiling" if measured else "warmup",
        "was_cancelled": rec.status == "cancelled",
        "cancellation_time_ns": epoch_ns(rec.end_s) if rec.status == "cancelled" else None,
        "dynamo_worker": worker,
    }
    if rec.status != "ok":
        return {
            "metadata": meta,
            "metrics": {"error_isl": _mv(isl, "tokens")},
            "error": {"code": rec.http_status or None, "type": rec.status, "message": rec.error},
        }
    osl = rec.output_tokens
    ttft = (rec.first_token_s - rec.send_s) * 1e3
    latency = (rec.end_s - rec.send_s) * 1e3
    metrics: dict[str, Any] = {
        "input_sequence_length": _mv(isl, "tokens"),
        "time_to_first_token": _mv(ttft, "ms"),
        "request_latency": _mv(latency, "ms"),
        "output_token_count": _mv(osl, "tokens"),
        "output_sequence_length": _mv(osl, "tokens"),
    }
    if len(rec.chunk_times) >= 2:
        gaps = np.diff(np.asarray(rec.chunk_times)) * 1e3
        metrics["time_to_second_token"] = _mv(float(gaps[0]), "ms")
        metrics["inter_chunk_latency"] = _mv([round(float(g), 6) for g in gaps], "ms")
    itl, _ = rec.itl_ms()
    if itl == itl:
        metrics["inter_token_latency"] = _mv(itl, "ms")
        if itl > 0:
            metrics["output_token_throughput_per_user"] = _mv(1e3 / itl, "tokens/sec/user")
    if rec.cached_tokens >= 0:
        metrics["cached_tokens"] = _mv(rec.cached_tokens, "tokens")
    return {"metadata": meta, "metrics": metrics, "error": None}


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write records one per line (aiperf's ``profile_export.jsonl``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(r, separators=(",", ":")))
            f.write("\n")
    return path
