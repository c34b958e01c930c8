"""Where a load point's steady state begins and ends: the window every reported figure comes from.

A closed loop starts with all C clients sending at t = 0 (a synchronised first wave whose queue
does not represent the load) and ends with clients dropping out once the requests run out (the
population drains). An open loop starts empty and ends with a drain after the last arrival.
Measuring either edge makes a figure depend on how long one measures, so the window is:

* start: the latest of (a) the MSER-5 truncation point of the TTFT series in arrival order (White
  1997: the cut that minimises the standard error of the remaining mean, searched in the first
  half), (b) closed loop: the moment the first wave (the first C requests) has fully completed,
  (c) the profile's ``warmup_requests`` as a floor;
* end: the last arrival (closed loop: the last request issued, while all C clients are still
  busy; open loop: nothing arrives after it), or earlier by the profile's ``cooldown_requests``.

``reached`` is False when MSER-5 puts the cut at the end of its search range: the transient did
not settle within the run, so the point must run longer (``autotune.measure`` does that).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MSER_BATCH = 5


@dataclass(frozen=True)
class SteadyWindow:
    start_s: float
    end_s: float
    warmup_requests: int  # requests arriving before start_s (not measured)
    cooldown_requests: int  # requests arriving after end_s (not measured)
    reached: bool  # False: the transient may not have settled (the point should run longer)

    @property
    def duration_s(self) -> float:
        return max(self.end_s - self.start_s, 0.0)


def mser5(series: np.ndarray) -> tuple[int, bool]:
    """MSER-5 truncation: (samples to drop, settled). Settled means the cut lies inside the first half."""
    n = len(series) // MSER_BATCH
    if n < 4:
        return 0, False
    y = series[: n * MSER_BATCH].reshape(n, MSER_BATCH).mean(axis=1)
    # remaining-sample mean and sum of squares for every cut d, from the end (O(n))
    rev = y[::-1]
    cnt = np.arange(1, n + 1)
    s1 = np.cumsum(rev)[::-1]
    s2 = np.cumsum(rev * rev)[::-1]
    k = cnt[::-1].astype(float)
    ssd = s2 - s1 * s1 / k
    half = n // 2
    stat = ssd[: half + 1] / k[: half + 1] ** 2
    d = int(np.argmin(stat))
    return d * MSER_BATCH, d < half


def steady_window(
    requests: pd.DataFrame, concurrency: int, *, warmup_floor: int = 0, cooldown_floor: int = 0
) -> SteadyWindow:
    """The steady-state window of one point from its per-request records (sim or live alike)."""
    ok = requests[requests["status"] == "ok"].sort_values("arrival_s", kind="stable")
    arrivals = ok["arrival_s"].to_numpy(dtype=float)
    n = len(arrivals)
    if n == 0:
        return SteadyWindow(0.0, 0.0, 0, 0, False)
    ttft = (ok["first_token_s"].to_numpy(dtype=float) - arrivals) * 1000
    cut, settled = mser5(ttft)
    start = float(arrivals[min(max(cut, warmup_floor), n - 1)])
    if concurrency > 0:  # closed loop: the synchronised first wave must be over
        first = requests.sort_values("arrival_s", kind="stable").head(concurrency)
        start = max(start, float(first["completion_s"].max()))
    all_arrivals = np.sort(requests["arrival_s"].to_numpy(dtype=float))
    end = float(all_arrivals[max(len(all_arrivals) - 1 - cooldown_floor, 0)])
    reached = settled and end > start
    if end <= start:
        start, end = float(arrivals[0]), float(all_arrivals[-1])
    warm = int(np.sum(all_arrivals < start))
    cool = int(np.sum(all_arrivals > end))
    return SteadyWindow(start, end, warm, cool, reached)
