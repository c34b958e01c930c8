"""Turn one live burst (client records + frontend log + metrics) into a ``PointRun``.

The client knows timings and token counts; the frontend log knows which worker served each
request and what the router saw. They are joined on Dynamo's request id (the response ``id``).
Times become seconds from the burst start; values a live stack does not expose (prefill start,
per-request preemptions) are NaN, as ``autotune.records`` asks.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from autotune.dynamo.logparse import FrontendLog
from autotune.dynamo.reconstruct import replay
from autotune.loadgen.client import BurstResult
from autotune.loadgen.frame import client_frame, itl_samples
from autotune.loadgen.prompts import RequestSpec
from autotune.records import PointRun
from autotune.topology import Topology

NAN = float("nan")


def measured_mask(n: int, warmup: int, cooldown: int) -> np.ndarray:
    """Requests by send order: the first ``warmup`` and last ``cooldown`` are not measured."""
    m = np.zeros(n, dtype=bool)
    m[warmup : max(warmup, n - cooldown)] = True
    return m


def stage_workers(topology: Topology) -> dict[str, list[int]]:
    roles = topology.worker_tps()
    if topology.disaggregated:
        return {
            "prefill": [i for i, (r, _) in enumerate(roles) if r == "prefill"],
            "decode": [i for i, (r, _) in enumerate(roles) if r == "decode"],
        }
    return {"agg": list(range(len(roles)))}


def build_point(
    *,
    topology: Topology,
    concurrency: int,
    specs: list[RequestSpec],
    burst: BurstResult,
    log: FrontendLog,
    worker_index: dict[int, int],
    edges: tuple[int, int],
    meta: dict[str, Any],
) -> PointRun:
    """``edges``: warm-up and cool-down requests, by send order (not measured)."""
    recs = burst.records
    n = len(recs)
    # Send order defines warm-up/cool-down (closed loop sends in index order; open loop too).
    order = np.argsort([r.send_s if r.send_s == r.send_s else np.inf for r in recs], kind="stable")
    measured = np.zeros(n, dtype=bool)
    measured[order] = measured_mask(n, *edges)
    rid_to_idx = {r.response_id: r.index for r in recs if r.response_id}
    t0 = burst.t0_wall

    sel_time: dict[tuple[str, str], float] = {}
    sel_worker: dict[tuple[str, str], int] = {}
    for s in log.selections:
        key = (s.request_id, s.worker_type)
        if key not in sel_time:
            sel_time[key], sel_worker[key] = s.t, s.worker_id
    prefill_done = {s.request_id: s.t for s in log.stages if s.phase == "Prefill"}

    if len(specs) != n:
        raise ValueError(f"{n} request records but {len(specs)} request specs")
    routing: dict[str, list[float]] = {c: [] for c in ("prefill_worker", "decode_worker", "routed_s")}
    routing.update(prefill_end_s=[], kv_transfer_end_s=[])
    for r in recs:
        rid = r.response_id
        p_key, d_key = (rid, "prefill"), (rid, "decode")
        if topology.disaggregated:
            pw = worker_index.get(sel_worker.get(p_key, -1), -1)
            dw = worker_index.get(sel_worker.get(d_key, -1), -1)
            routed = sel_time.get(p_key, NAN)
            pend = prefill_done.get(rid, NAN)
            kv_end = sel_time.get(d_key, NAN)  # decode routed once the prefill's KV is ready
        else:
            pw = dw = worker_index.get(sel_worker.get(d_key, -1), -1)
            routed, pend, kv_end = sel_time.get(d_key, NAN), NAN, NAN
        for col, v in (
            ("prefill_worker", pw),
            ("decode_worker", dw),
            ("routed_s", routed - t0),
            ("prefill_end_s", pend - t0),
            ("kv_transfer_end_s", kv_end - t0),
        ):
            routing[col].append(v)
    df = client_frame(recs, specs, measured)
    for col, values in routing.items():
        df[col] = values

    m_ok = df[df["measured"] & (df["status"] == "ok")]
    window = (
        (float(df.loc[df["measured"], "arrival_s"].min()), float(m_ok["completion_s"].max()))
        if len(m_ok)
        else (0.0, 0.0)
    )
    itl, itl_time_s = itl_samples(recs)  # every request's, as the simulator's: summarize keeps the window's

    first_token = {
        r.response_id: t0 + r.first_token_s for r in recs if r.response_id and r.first_token_s == r.first_token_s
    }
    ends = {r.response_id: t0 + r.end_s for r in recs if r.response_id and r.end_s == r.end_s}
    decisions, stats = replay(
        log,
        stage_workers=stage_workers(topology),
        worker_index=worker_index,
        request_index=rid_to_idx,
        prefill_end={} if topology.disaggregated else first_token,
        request_end=ends,
        output_tokens={r.response_id: r.output_tokens for r in recs if r.response_id},
        router=topology.router,
        t0_wall=t0,
    )
    statuses = Counter(r.status for r in recs)
    meta = {
        **meta,
        "replay": stats.as_dict(),
        "statuses": dict(statuses),
        "client_cpu_s": burst.cpu_s,
        "client_cpu_ms_per_request": burst.cpu_s / max(1, n) * 1e3,
        "burst_s": burst.duration_s,
        "aborted": burst.aborted,
        "unattributed_requests": int(((df["decode_worker"] < 0) & (df["status"] == "ok")).sum()),
    }
    return PointRun(
        concurrency=concurrency,
        requests=df,
        decisions=decisions,
        itl_ms=itl,
        itl_weight=np.ones_like(itl),
        itl_time_s=itl_time_s,
        window_s=window,
        gpus=topology.gpus,
        backend="dynamo-local",
        meta=meta,
    )
