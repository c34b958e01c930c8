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
import pandas as pd

from autotune.dynamo.logparse import FrontendLog
from autotune.dynamo.reconstruct import replay
from autotune.loadgen.client import BurstResult
from autotune.loadgen.prompts import RequestSpec
from autotune.records import REQUEST_COLUMNS, PointRun
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
    warmup: int,
    cooldown: int,
    meta: dict[str, Any],
) -> PointRun:
    recs = burst.records
    n = len(recs)
    # Send order defines warm-up/cool-down (closed loop sends in index order; open loop too).
    order = np.argsort([r.send_s if r.send_s == r.send_s else np.inf for r in recs], kind="stable")
    measured = np.zeros(n, dtype=bool)
    measured[order] = measured_mask(n, warmup, cooldown)
    rid_to_idx = {r.response_id: r.index for r in recs if r.response_id}
    t0 = burst.t0_wall

    sel_time: dict[tuple[str, str], float] = {}
    sel_worker: dict[tuple[str, str], int] = {}
    for s in log.selections:
        key = (s.request_id, s.worker_type)
        if key not in sel_time:
            sel_time[key], sel_worker[key] = s.t, s.worker_id
    prefill_done = {s.request_id: s.t for s in log.stages if s.phase == "Prefill"}

    cols: dict[str, list[Any]] = {c: [] for c in REQUEST_COLUMNS}
    itl_samples: list[np.ndarray] = []
    for r, spec, meas in zip(recs, specs, measured, strict=True):
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
        itl_mean, itl_max = r.itl_ms()
        cols["request_id"].append(r.index)
        cols["client"].append(r.client)
        cols["template"].append(spec.template)
        cols["arrival_s"].append(r.send_s)
        cols["routed_s"].append(routed - t0)
        cols["prefill_worker"].append(pw)
        cols["decode_worker"].append(dw)
        cols["input_tokens"].append(r.prompt_tokens if r.prompt_tokens >= 0 else spec.input_tokens)
        cols["output_tokens"].append(r.output_tokens if r.status == "ok" else 0)
        cols["cached_tokens"].append(max(r.cached_tokens, 0))
        cols["prefill_start_s"].append(NAN)
        cols["prefill_end_s"].append(pend - t0)
        cols["kv_transfer_end_s"].append(kv_end - t0)
        cols["first_token_s"].append(r.first_token_s)
        cols["itl_mean_ms"].append(itl_mean)
        cols["itl_max_ms"].append(itl_max)
        cols["completion_s"].append(r.end_s)
        cols["preemptions"].append(NAN)
        cols["status"].append(r.status if r.status != "cancelled" else "error")
        cols["error"].append(r.error)
        cols["measured"].append(bool(meas))
        if meas and r.status == "ok" and len(r.chunk_times) > 1:
            itl_samples.append(np.diff(np.asarray(r.chunk_times)) * 1e3)
    df = pd.DataFrame(cols)
    df["preemptions"] = df["preemptions"].astype(float)

    m_ok = df[df["measured"] & (df["status"] == "ok")]
    window = (
        (float(df.loc[df["measured"], "arrival_s"].min()), float(m_ok["completion_s"].max()))
        if len(m_ok)
        else (0.0, 0.0)
    )
    itl = np.concatenate(itl_samples) if itl_samples else np.zeros(0)

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
        window_s=window,
        gpus=topology.gpus,
        backend="dynamo-local",
        meta=meta,
    )
