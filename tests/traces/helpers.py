"""Small traces written on the fly, and a profile that replays one on the simulator."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from autotune.profile import Profile, profile_from_dict

BASE: dict[str, Any] = {
    "name": "t",
    "cluster": {"nodes": 3, "gpu": "B200", "gpus_per_node": 8},
    "model": {"name": "Llama-3.1-70B", "weight_dtype": "fp8", "kv_dtype": "fp8"},
    "workload": {"concurrency": [8], "requests_per_point": 400, "warmup_requests": 40, "cooldown_requests": 40},
    "measurement": {"adaptive": False},
}


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def shared_prefix_trace(path: Path, n: int, *, shared: int, blocks: int, gap_ms: float = 100.0) -> Path:
    """``n`` requests of ``blocks`` 512-token blocks each, all sharing their first ``shared`` blocks."""
    records = []
    next_id = shared
    for i in range(n):
        own = list(range(next_id, next_id + blocks - shared))
        next_id += blocks - shared
        records.append(
            {
                "timestamp": i * gap_ms,
                "input_length": blocks * 512,
                "output_length": 8,
                "hash_ids": list(range(shared)) + own,
            }
        )
    return write_jsonl(path, records)


def trace_profile(trace: dict[str, Any], **workload: Any) -> Profile:
    data = copy.deepcopy(BASE)
    data["workload"].update(workload)
    data["workload"]["trace"] = trace
    return profile_from_dict(data)
