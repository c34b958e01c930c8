"""Measure a graph that is already serving, without redeploying it: one short load burst.

The probe is the study's load point, replayed against the live frontend: the profile's workload at
the study's operating concurrency, with the adaptive run length of a live point (it stops when the
headline figures are precise enough or the profile's ``live_time_budget_s`` is spent, and says
which). Prompts are token ids on the completions API, as the k8s backend sends them, so no tokenizer
of the served model is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from autotune.dynamo import scrape
from autotune.errors import BackendError
from autotune.loadgen.client import BurstConfig, run_burst
from autotune.loadgen.live_point import LivePoint
from autotune.loadgen.prompts import TOKEN_ID_VOCAB
from autotune.metrics import PointMetrics
from autotune.profile import Profile


@dataclass(frozen=True)
class ProbeResult:
    metrics: PointMetrics
    sent: int  # requests sent, all of them (warm-up included)
    failed: int  # requests that did not complete
    meta: dict[str, Any]  # run length, stop reason, the frontend's own counters over the probe


def probe(
    profile: Profile,
    url: str,
    *,
    concurrency: int,
    gpus: int,
    seed: int,
    requests: int | None = None,
    request_timeout_s: float = 120.0,
    max_wall_s: float = 900.0,
) -> ProbeResult:
    """One steady-state load point against ``url`` (the frontend's base URL)."""
    model = profile.model.served_name or profile.model.name
    live = LivePoint(
        profile,
        concurrency,
        seed=seed,
        requests=requests or profile.workload.requests_per_point,
        vocab=TOKEN_ID_VOCAB,
        api="completions",
        model=model,
        gpus=gpus,
    )
    cfg = BurstConfig(
        url.rstrip("/"),
        api="completions",
        concurrency=concurrency,
        arrivals_s=live.arrivals_s,
        request_timeout_s=request_timeout_s,
        max_wall_s=max_wall_s,
    )
    try:  # the frontend must answer, and serve the profile's model, before we load it
        served = httpx.get(f"{cfg.base_url}/v1/models", timeout=10.0)
        served.raise_for_status()
        names = [m.get("id") for m in served.json().get("data", [])]
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise BackendError(f"{url}: the frontend does not answer /v1/models ({type(exc).__name__}: {exc})") from None
    if model not in names:
        raise BackendError(f"{url}: serves {names or 'no model'}, not the profile's model {model!r}")
    metrics_url = f"{cfg.base_url}/metrics"
    before = scrape.scrape(metrics_url)
    burst = run_burst(cfg, live.bodies, grow=live.grow_callback(), lookahead=live.lookahead)
    if burst.aborted:
        raise BackendError(f"{url}: probe aborted: {burst.aborted}")
    after = scrape.scrape(metrics_url)
    run = live.judge(burst.records)
    failed = sum(r.status != "ok" for r in burst.records)
    if len(run.requests) == 0:
        raise BackendError(f"{url}: no probe request completed ({failed} failed)")
    run.meta["frontend_metrics"] = scrape.summarize_frontend(before, after)
    run = live.finish(run, burst)
    assert run.summary is not None
    return ProbeResult(run.summary, len(burst.records), failed, dict(run.meta))
