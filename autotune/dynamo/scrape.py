"""Prometheus ``/metrics`` snapshots of the frontend and workers, before and after a burst.

Parsed with ``prometheus_client``'s text parser (never by hand). A snapshot is a flat mapping
``(sample name, sorted label pairs) -> value``; the difference of two snapshots gives what a
burst added to counters and histogram sums, and the "after" snapshot the gauges.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx
from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, tuple[tuple[str, str], ...]]
Snapshot = dict[Key, float]


def parse(text: str) -> Snapshot:
    snap: Snapshot = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            snap[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return snap


def scrape(url: str, timeout_s: float = 3.0) -> Snapshot:
    """One snapshot of ``url``; empty if the endpoint does not answer (a dead worker)."""
    try:
        r = httpx.get(url, timeout=timeout_s)
        r.raise_for_status()
    except httpx.HTTPError:
        return {}
    return parse(r.text)


def total(snap: Snapshot, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in snap.items() if n == name and want <= set(lab))


def delta(before: Snapshot, after: Snapshot, names: Iterable[str]) -> dict[str, float]:
    """Increase of each named counter/sum between two snapshots (summed over label sets)."""
    return {n: total(after, n) - total(before, n) for n in names}


FRONTEND_COUNTERS = (
    "dynamo_frontend_requests_total",
    "dynamo_frontend_output_tokens_total",
    "dynamo_frontend_input_sequence_tokens_sum",
    "dynamo_frontend_cached_tokens_sum",
    "dynamo_frontend_time_to_first_token_seconds_sum",
    "dynamo_frontend_time_to_first_token_seconds_count",
    "dynamo_frontend_inter_token_latency_seconds_sum",
    "dynamo_frontend_inter_token_latency_seconds_count",
    "dynamo_frontend_model_rejection_total",
    "dynamo_frontend_disconnected_clients",
)
WORKER_COUNTERS = (
    "dynamo_component_requests_total",
    "vllm:num_preemptions_total",
    "vllm:time_to_first_token_seconds_count",
)


def summarize_frontend(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """Burst totals and the server-side means the frontend measured (for cross-checks)."""
    d = delta(before, after, FRONTEND_COUNTERS)
    out = {k.removeprefix("dynamo_frontend_"): v for k, v in d.items()}
    isl = d["dynamo_frontend_input_sequence_tokens_sum"]
    out["hit_rate"] = d["dynamo_frontend_cached_tokens_sum"] / isl if isl > 0 else float("nan")
    n = d["dynamo_frontend_time_to_first_token_seconds_count"]
    out["ttft_mean_ms"] = d["dynamo_frontend_time_to_first_token_seconds_sum"] / n * 1e3 if n else float("nan")
    n = d["dynamo_frontend_inter_token_latency_seconds_count"]
    out["itl_mean_ms"] = d["dynamo_frontend_inter_token_latency_seconds_sum"] / n * 1e3 if n else float("nan")
    return out


def summarize_worker(before: Snapshot, after: Snapshot) -> dict[str, float]:
    d = delta(before, after, WORKER_COUNTERS)
    return {k.replace("dynamo_component_", "").replace("vllm:", ""): v for k, v in d.items()}
