"""aiperf's ``profile_export.jsonl`` as calibration input, with the deployment described by flags.

The export (``autotune.loadgen.aiperf_export``, or aiperf itself) holds per request the send, first-token
and end instants, the lengths, the cached tokens and — from autotune — the worker that decoded it. It
has no routing instant, so the prefill and host constants are not identifiable from it (``fit`` says so);
the topology, the worker timing and its speed-up are not in it and come from ``--topology``, ``--timing``
and ``--speedup``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autotune.calibrate.points import LivePoint, _itl_from_means
from autotune.errors import InputError
from autotune.profile import Profile
from autotune.records import REQUEST_COLUMNS, PointRun
from autotune.topology import Topology

EXPORT_NAME = "profile_export.jsonl"


@dataclass(frozen=True)
class Deployment:
    """What an aiperf export does not say about the deployment it measured."""

    topology: Topology
    speedup: float = 1.0
    mocker_tables: bool = False  # the workers were Dynamo mockers with NPZ tables (dynamo-local)


def _value(metrics: dict[str, Any], key: str) -> float:
    v = metrics.get(key)
    v = v.get("value") if isinstance(v, dict) else v
    return float(v) if isinstance(v, int | float) else math.nan


def _row(rec: dict[str, Any], i: int) -> dict[str, Any]:
    meta, metrics = rec.get("metadata") or {}, rec.get("metrics") or {}
    start, ack, end = (meta.get(k) for k in ("request_start_ns", "request_ack_ns", "request_end_ns"))
    worker = str(meta.get("dynamo_worker", ""))
    client = re.fullmatch(r"client_(\d+)", str(meta.get("worker_id", "")))
    ok = rec.get("error") is None
    isl = _value(metrics, "input_sequence_length" if ok else "error_isl")
    return {
        "request_id": i,
        "client": int(client.group(1)) if client else -1,
        "arrival_s": float(start) / 1e9 if isinstance(start, int | float) else math.nan,
        "first_token_s": float(ack) / 1e9 if ok and isinstance(ack, int | float) else math.nan,
        "completion_s": float(end) / 1e9 if ok and isinstance(end, int | float) else math.nan,
        "input_tokens": isl,
        "output_tokens": _value(metrics, "output_sequence_length"),
        "cached_tokens": _value(metrics, "cached_tokens"),
        "itl_mean_ms": _value(metrics, "inter_token_latency"),
        "decode_worker": int(worker) if worker.isdigit() else -1,
        "status": "ok" if ok else "error",
        "measured": meta.get("benchmark_phase", "profiling") == "profiling",
    }


def read_export(path: Path, profile: Profile, dep: Deployment) -> LivePoint:
    """One export file as a point: times from its first send, concurrency from its distinct clients."""
    rows: list[dict[str, Any]] = []
    try:
        with path.open() as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    rec = json.loads(line)
                    if not isinstance(rec, dict):
                        raise ValueError(f"line {n} is not a record")
                    rows.append(_row(rec, len(rows)))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not an aiperf export ({exc})") from None
    df = pd.DataFrame(rows)
    if df.empty or df["arrival_s"].isna().all():
        raise InputError(f"{path}: no request carries request_start_ns")
    t0 = float(df["arrival_s"].min())
    for c in ("arrival_s", "first_token_s", "completion_s"):
        df[c] = df[c] - t0
    if not dep.topology.disaggregated:
        df["prefill_worker"] = df["decode_worker"]
    for c in REQUEST_COLUMNS:
        if c not in df.columns:
            df[c] = math.nan if c not in ("error",) else ""
    clients = df.loc[df["client"] >= 0, "client"].nunique()
    meas = df[df["measured"]]
    window = (float(meas["arrival_s"].min()), float(meas["completion_s"].max())) if len(meas) else (0.0, 0.0)
    itl_ms, itl_w = _itl_from_means(df)
    run = PointRun(
        int(clients) if clients else -1,
        df,
        {},
        np.asarray(itl_ms),
        np.asarray(itl_w),
        window,
        dep.topology.gpus,
        "aiperf-export",
    )
    return LivePoint(
        str(path.parent),
        dep.topology,
        run,
        dep.speedup,
        dep.mocker_tables,
        profile.model.name,
        profile.cluster.gpu.name,
    )
