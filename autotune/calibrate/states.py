"""What each worker was doing around each request, reconstructed from the per-request records.

A client sees only when a request was sent, routed, first answered and finished. Those instants, on
every request of a worker, give enough to price a request with the perf model: the sequences that
decoded beside it (batch size and context), the prefills that shared its steps, and whether its own
prefill waited behind another's. ``fit`` prices these samples with candidate constants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from autotune.calibrate.points import LivePoint


@dataclass
class DecodeSample:
    """A request's decode phase: ``steps`` tokens after the first, over ``observed_ms``."""

    tp: int
    steps: int
    observed_ms: float
    batch: int  # mean sequences decoding on its worker, itself included
    context_tokens: int  # their summed context
    co_prefill_tokens: list[int] = field(default_factory=list)  # prefills that shared its steps


@dataclass
class PrefillSample:
    """A request prefilled with no other prefill waiting or running on its worker ("no prefill queueing")."""

    tp: int
    observed_ms: float  # routed → first token seen by the client
    new_tokens: int
    cached_tokens: int
    batch: int  # sequences decoding on the worker when it arrived
    context_tokens: int
    disaggregated: bool
    transfer_tokens: int  # prompt tokens whose KV moves to the decode worker (0 when aggregated)


@dataclass
class RouteSample:
    """Send → routing decision: the frontend's per-request work before the router (host overhead)."""

    input_tokens: int
    observed_ms: float


@dataclass
class PointSamples:
    point: LivePoint
    decode: list[DecodeSample]
    prefill: list[PrefillSample]
    route: list[RouteSample]


def samples(point: LivePoint) -> PointSamples:
    """Decode, alone-prefill and route samples of one point (measured, completed requests)."""
    df = point.run.requests
    ok = df[(df["status"] == "ok") & df["first_token_s"].notna() & df["completion_s"].notna()].copy()
    tps = [tp for _, tp in point.topology.worker_tps()]
    disagg = point.topology.disaggregated
    ok["cached"] = ok["cached_tokens"].fillna(0).clip(lower=0)
    ok["ctx_mid"] = ok["input_tokens"] + ok["output_tokens"] / 2
    decode, prefill, route = [], [], []
    first = ok["first_token_s"].to_numpy(float)
    end = ok["completion_s"].to_numpy(float)
    routed = ok["routed_s"].to_numpy(float)
    dworker = ok["decode_worker"].fillna(-1).to_numpy(int)
    pworker = ok["prefill_worker"].fillna(-1).to_numpy(int)
    new = (ok["input_tokens"] - ok["cached"]).clip(lower=1).to_numpy(int)
    ctx_mid = ok["ctx_mid"].to_numpy(float)
    measured = ok["measured"].to_numpy(bool)
    isl, osl = ok["input_tokens"].to_numpy(int), ok["output_tokens"].to_numpy(int)
    cached, arrival = ok["cached"].to_numpy(int), ok["arrival_s"].to_numpy(float)
    for i in range(len(ok)):
        if not measured[i]:
            continue
        w = int(dworker[i])
        if 0 <= w < len(tps) and osl[i] >= 2 and end[i] > first[i]:
            same = (dworker == w) & (np.arange(len(ok)) != i)
            span = end[i] - first[i]
            overlap = np.clip(np.minimum(end, end[i]) - np.maximum(first, first[i]), 0, None) * same
            batch = 1 + overlap.sum() / span
            ctx = ctx_mid[i] + float((ctx_mid * overlap).sum() / span)
            co = [] if disagg else [int(n) for n in new[same & (first > first[i]) & (first < end[i])]]
            decode.append(DecodeSample(tps[w], int(osl[i]) - 1, span * 1e3, round(batch), round(ctx), co))
        if math.isnan(routed[i]):
            continue
        route.append(RouteSample(int(isl[i]), (routed[i] - arrival[i]) * 1e3))
        p = int(pworker[i])
        if not 0 <= p < len(tps):
            continue
        others = (pworker == p) & (np.arange(len(ok)) != i)
        # another prefill waiting or running on the same worker while this one was: it queued or shared
        if np.any(others & (routed < first[i]) & (first > routed[i])):
            continue
        decoding = (dworker == p) & (first <= routed[i]) & (end > routed[i]) if not disagg else np.zeros(len(ok), bool)
        prefill.append(
            PrefillSample(
                tps[p],
                (first[i] - routed[i]) * 1e3,
                int(new[i]),
                int(cached[i]),
                int(decoding.sum()),
                int(ctx_mid[decoding].sum()),
                disagg,
                int(isl[i]) if disagg else 0,
            )
        )
    return PointSamples(point, decode, prefill, route)


def frame(all_samples: list[PointSamples]) -> pd.DataFrame:
    """How many samples of each kind each point gave (the report's identification table)."""
    return pd.DataFrame(
        [
            {
                "point": s.point.name,
                "topology": s.point.topology.to_string(),
                "concurrency": s.point.concurrency,
                "decode_samples": len(s.decode),
                "alone_prefill_samples": len(s.prefill),
                "route_samples": len(s.route),
            }
            for s in all_samples
        ]
    )
