"""A simulated load point's records: the per-request table, ITL samples and meta of a ``ClusterSim`` run.

A finished run reports every request it issued. A paused run (a growing point, ``ClusterSim.extend``)
reports its first ``n`` requests, all complete, and nothing of the requests past them that are already
in flight: the routing decisions are those of the first ``n``, and the ITL samples those the engines
recorded before the first request past them arrived (until then they served only the first ``n``;
the steady window ends at the last of their arrivals, so no figure loses a sample). The meta counters
(``worker_busy_s``, ``block_hit_rate``, ``sim_end_s``, ``events``) are the simulation's up to the pause.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from autotune.records import REQUEST_COLUMNS, DecisionLog, PointRun
from autotune.sim.delivery import with_delivery_noise
from autotune.sim.seq import Seq

if TYPE_CHECKING:
    from autotune.sim.cluster import ClusterSim


def point_run(
    sim: ClusterSim,
    seqs: list[Seq],
    decisions: dict[str, DecisionLog],
    itl_segments: list[tuple[float, int, float]],
    concurrency: int,
    warmup: int,
    cooldown: int,
) -> PointRun:
    """The records of ``seqs`` (requests 0 .. n-1 in issue order), their decisions, the ITL samples of
    ``itl_segments`` ((end time, tokens, mean step) per decode segment) and the run's meta."""
    n = len(seqs)
    ok = np.array([not s.rejected for s in seqs], dtype=bool)
    osl = np.array([s.osl for s in seqs], dtype=np.int64)
    first = np.array([s.first_token for s in seqs], dtype=float)
    done = np.array([s.done for s in seqs], dtype=float)
    rid = np.array([s.rid for s in seqs], dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        itl = np.where(ok & (osl > 1), (done - first) / (osl - 1) * 1000, np.nan)
    rows = {
        "request_id": rid,
        "client": [s.client for s in seqs],
        "template": [s.template for s in seqs],
        "arrival_s": [s.arrival for s in seqs],
        "routed_s": [s.routed for s in seqs],
        "prefill_worker": [s.pworker for s in seqs],
        "decode_worker": [s.dworker for s in seqs],
        "input_tokens": [s.isl for s in seqs],
        "output_tokens": np.where(ok, osl, 0),
        "cached_tokens": [s.cached for s in seqs],
        "prefill_start_s": [s.prefill_start for s in seqs],
        "prefill_end_s": [s.prefill_end for s in seqs],
        "kv_transfer_end_s": [s.xfer_end for s in seqs],
        "first_token_s": first,
        "itl_mean_ms": itl,
        "itl_max_ms": np.full(n, np.nan),
        "completion_s": done,
        "preemptions": [s.preemptions for s in seqs],
        "status": np.where(ok, "ok", "rejected"),
        "error": np.where(ok, "", "all workers busy (503)"),
        "measured": (rid >= warmup) & (rid < n - cooldown),
    }
    assert tuple(rows) == REQUEST_COLUMNS
    df = pd.DataFrame(rows)
    done = np.sort(df["completion_s"].to_numpy())
    lo = done[min(warmup, n - 1)] if n else 0.0
    hi = done[max(n - cooldown - 1, 0)] if n else 0.0
    if hi <= lo:
        lo, hi = 0.0, float(done[-1]) if n else 0.0
    seg = np.asarray(itl_segments, dtype=float).reshape(-1, 3)
    itl_ms, itl_weight, itl_time_s = with_delivery_noise(
        seg[:, 2] * 1000, seg[:, 1], sim.profile.dynamo.token_jitter_ms, seg[:, 0]
    )
    busy = [e.busy_time for e in sim.engines]
    hits = sum(e.kv.hits_blocks for e in sim.engines)
    looks = sum(e.kv.lookups_blocks for e in sim.engines)
    return PointRun(
        concurrency=concurrency,
        requests=df,
        decisions=decisions,
        itl_ms=itl_ms,
        itl_weight=itl_weight,
        window_s=(float(lo), float(hi)),
        gpus=sim.topology.gpus,
        backend="sim",
        meta={
            "worker_busy_s": busy,
            "block_hit_rate": hits / looks if looks else 0.0,
            "sim_end_s": sim.now,
            "events": sim.events,
        },
        router_changes=list(sim.router_changes),
        itl_time_s=itl_time_s,
    )


def decisions_before(logs: dict[str, DecisionLog], n: int) -> dict[str, DecisionLog]:
    """Copies of ``logs`` holding only the decisions about requests 0 .. n-1."""
    out = {}
    for stage, log in logs.items():
        keep = [i for i, r in enumerate(log.request_id) if r < n]
        cut = DecisionLog(stage, list(log.workers))
        for f in fields(log):
            if f.name not in ("stage", "workers"):
                col = getattr(log, f.name)
                setattr(cut, f.name, [col[i] for i in keep])
        out[stage] = cut
    return out
