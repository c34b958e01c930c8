"""Where the live controller reads an interval's TTFT P99: the frontend's histogram, or a Prometheus server.

``FrontendHistogram`` scrapes ``dynamo_frontend_time_to_first_token_seconds`` (parsed with
``prometheus_client``) and takes the P99 of the requests whose first token came *between two
scrapes*, from the difference of the cumulative bucket counts, interpolated linearly inside the
bucket holding the 99th rank — Prometheus's own ``histogram_quantile`` rule.

Resolution limit: a histogram only knows which bucket a TTFT fell in. The estimate can be anywhere
in that bucket (error up to the bucket's width: with Dynamo's default buckets, e.g. 0.1–0.25 s or
1–2.5 s); a P99 in the ``+Inf`` bucket is reported as the highest finite bound. With fewer than 100
requests in an interval the "P99" is the slowest request's bucket. Thresholds much narrower than a
bucket cannot be told apart; choose θ1/θ2 that fall in different buckets.

Faults are ``MetricsError`` (the frontend does not answer, the text is not Prometheus, the histogram is
missing, a counter went backwards): the loop holds its last decision and backs off. After a counter
reset (a restarted frontend) the next scrape is a new baseline, never a negative count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

TTFT_HISTOGRAM = "dynamo_frontend_time_to_first_token_seconds"
QUANTILE = 0.99

Buckets = dict[float, float]  # upper bound (s) -> cumulative count, summed over label sets


class MetricsError(Exception):
    """The interval's P99 could not be read; ``kind`` labels the error counter."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class TtftSource(Protocol):
    """One interval's TTFT P99 in ms per ``read``; ``None``: no first token in the interval."""

    description: str

    def read(self) -> float | None: ...


def parse_buckets(text: str, name: str = TTFT_HISTOGRAM) -> Buckets:
    """The cumulative buckets of histogram ``name`` in Prometheus text, summed over label sets."""
    out: Buckets = {}
    try:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name + "_bucket":
                    le = float(s.labels["le"])
                    out[le] = out.get(le, 0.0) + float(s.value)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise MetricsError("garbage", f"metrics are not Prometheus text: {' '.join(str(exc).split())[:120]}") from exc
    return out


def quantile_from_deltas(before: Buckets, after: Buckets, q: float = QUANTILE) -> float | None:
    """The q-quantile (s) of what was added between two snapshots of one histogram; ``None`` if nothing was.

    Raises ``MetricsError("reset")`` if any cumulative count went down (the histogram was reset).
    """
    bounds = sorted(after)
    if not bounds or not math.isinf(bounds[-1]):
        raise MetricsError("garbage", f"{TTFT_HISTOGRAM}: no +Inf bucket")
    deltas = [after[b] - before.get(b, 0.0) for b in bounds]
    if any(d < 0 for d in deltas) or set(before) - set(after):
        raise MetricsError("reset", f"{TTFT_HISTOGRAM}: counts went down (frontend restarted?)")
    total = deltas[-1]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cum in zip(bounds, deltas, strict=True):
        if cum >= rank:
            if math.isinf(bound):  # Prometheus: the highest finite bound
                return lower
            inside = cum - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, cum
    return lower


class FrontendHistogram:
    """The P99 since the last ``read`` from the TTFT histograms of the frontends ``urls()`` lists.

    Several URLs: during a local switch two frontends serve (the new one, the old one draining); their
    deltas are summed. A URL seen for the first time gives a baseline, not an interval.
    """

    def __init__(self, urls: Callable[[], Sequence[str]], timeout_s: float = 2.0) -> None:
        self.urls, self.timeout_s = urls, timeout_s
        self.last: dict[str, Buckets] = {}
        self.description = "frontend /metrics histogram deltas"

    def _scrape(self, url: str) -> Buckets:
        try:
            r = httpx.get(url, timeout=self.timeout_s)
            r.raise_for_status()
        except httpx.HTTPError as exc:
            raise MetricsError("unreachable", f"{url}: {type(exc).__name__}: {str(exc)[:120]}") from exc
        buckets = parse_buckets(r.text)
        if not buckets:
            raise MetricsError("garbage", f"{url}: no {TTFT_HISTOGRAM} histogram")
        return buckets

    def read(self) -> float | None:
        urls = list(self.urls())
        now = {u: self._scrape(u) for u in urls}  # all or nothing: one failure keeps every baseline
        before, self.last = self.last, {u: now[u] for u in urls}
        total_before: Buckets = {}
        total_after: Buckets = {}
        for u in urls:
            if u not in before:
                continue  # a new frontend: this scrape is its baseline
            for b, v in before[u].items():
                total_before[b] = total_before.get(b, 0.0) + v
            for b, v in now[u].items():
                total_after[b] = total_after.get(b, 0.0) + v
        if not total_after:
            return None
        p99_s = quantile_from_deltas(total_before, total_after)
        return None if p99_s is None else p99_s * 1000


class PrometheusQuery:
    """The P99 from a Prometheus server: ``histogram_quantile(0.99, sum by (le) (rate(..._bucket[I])))``.

    ``selector`` narrows the series (e.g. ``{namespace="llm"}``). Prometheus's rate window should hold
    at least two of its scrapes, so ``window_s`` is at least twice the server's scrape interval.
    """

    def __init__(self, url: str, window_s: float, selector: str = "", timeout_s: float = 5.0) -> None:
        self.url, self.timeout_s = url.rstrip("/"), timeout_s
        window = f"{max(int(math.ceil(window_s)), 1)}s"
        self.query = f"histogram_quantile({QUANTILE}, sum by (le) (rate({TTFT_HISTOGRAM}_bucket{selector}[{window}])))"
        self.description = f"PromQL at {self.url}: {self.query}"

    def read(self) -> float | None:
        try:
            r = httpx.get(f"{self.url}/api/v1/query", params={"query": self.query}, timeout=self.timeout_s)
            r.raise_for_status()
            body = r.json()
        except httpx.HTTPError as exc:
            raise MetricsError("unreachable", f"{self.url}: {type(exc).__name__}: {str(exc)[:120]}") from exc
        except ValueError as exc:
            raise MetricsError("garbage", f"{self.url}: answer is not JSON") from exc
        try:
            if body["status"] != "success":
                raise MetricsError("garbage", f"{self.url}: {body.get('error', body['status'])}")
            result = body["data"]["result"]
            if not result:
                return None
            value = float(result[0]["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MetricsError("garbage", f"{self.url}: unexpected query result shape") from exc
        return value * 1000 if math.isfinite(value) else None
