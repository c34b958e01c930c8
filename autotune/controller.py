"""The paper's adaptive controller (§6, Table 2): EWMA of TTFT P99, two thresholds, router presets.

It switches routing from cache affinity (below saturation) to load balance (saturated). The
thresholds are multiples of the topology's baseline TTFT P99, as the paper advises, not absolute
values. Hysteresis and a dwell time keep it from flapping at a threshold. The same object runs
inside the simulator (``Controller`` protocol) and is written to ``recommended.yaml`` for the real
controller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from autotune.regimes import BELOW, SATURATED, TRANSITION
from autotune.topology import RouterSettings

# paper.md §5, Table 2: the paper's presets (saturated preset conjectural, never fired)
PAPER_PRESETS = {
    BELOW: RouterSettings(temperature=0.0, overlap_weight=1.0),
    TRANSITION: RouterSettings(temperature=0.7, overlap_weight=1.0),
    SATURATED: RouterSettings(temperature=0.8, overlap_weight=0.1),
}


@dataclass(frozen=True)
class ControllerSettings:
    baseline_ttft_p99_ms: float
    theta1_x: float  # θ1 as a multiple of the baseline TTFT P99
    theta2_x: float
    ewma_alpha: float = 0.3
    interval_s: float = 1.0  # one Prometheus scrape / EWMA update
    dwell_s: float = 3.0  # minimum time in a regime before the next switch
    hysteresis: float = 0.2  # leave a regime only 20 % below its entry threshold
    presets: dict[str, RouterSettings] = field(default_factory=lambda: dict(PAPER_PRESETS))

    @property
    def theta1_ms(self) -> float:
        return self.theta1_x * self.baseline_ttft_p99_ms

    @property
    def theta2_ms(self) -> float:
        return self.theta2_x * self.baseline_ttft_p99_ms

    def as_dict(self) -> dict[str, object]:
        return {
            "signal": "EWMA of TTFT P99",
            "baseline_ttft_p99_ms": round(self.baseline_ttft_p99_ms, 3),
            "theta1_ms": round(self.theta1_ms, 3),
            "theta2_ms": round(self.theta2_ms, 3),
            "theta1_x_baseline": self.theta1_x,
            "theta2_x_baseline": self.theta2_x,
            "ewma_alpha": self.ewma_alpha,
            "interval_s": self.interval_s,
            "dwell_s": self.dwell_s,
            "hysteresis": self.hysteresis,
            "presets": {
                k: {
                    "temperature": v.temperature,
                    "overlap_weight": v.overlap_weight,
                    "overlap_credit": v.overlap_credit,
                }
                for k, v in self.presets.items()
            },
        }


class AdaptiveController:
    """Stateful controller; ``update`` is called every ``interval_s`` with the TTFTs seen since."""

    def __init__(self, settings: ControllerSettings) -> None:
        self.s = settings
        self.interval_s = settings.interval_s
        self.ewma_ms: float | None = None
        self.regime = BELOW
        self.since_s = 0.0
        self.history: list[tuple[float, float, str]] = []  # (time, ewma, regime)

    def _target(self, ewma: float) -> str:
        s, cur = self.s, self.regime
        order = [BELOW, TRANSITION, SATURATED]
        enter = {TRANSITION: s.theta1_ms, SATURATED: s.theta2_ms}
        want = SATURATED if ewma >= s.theta2_ms else TRANSITION if ewma >= s.theta1_ms else BELOW
        if order.index(want) < order.index(cur):
            # stepping down needs the EWMA clearly below the current regime's entry threshold
            if ewma > enter[cur] * (1 - s.hysteresis):
                return cur
        return want

    def update(self, now_s: float, ttft_s: list[float]) -> RouterSettings | None:
        p99_ms = float(np.percentile(ttft_s, 99)) * 1000 if ttft_s else None
        return self.update_p99(now_s, p99_ms)

    def update_p99(self, now_s: float, p99_ms: float | None) -> RouterSettings | None:
        """One interval whose TTFT P99 is already known (a live controller reads it from the frontend's
        histogram); ``None``: no request finished its first token in the interval, the EWMA holds."""
        if p99_ms is not None:
            a = self.s.ewma_alpha
            self.ewma_ms = p99_ms if self.ewma_ms is None else a * p99_ms + (1 - a) * self.ewma_ms
        if self.ewma_ms is None or not math.isfinite(self.ewma_ms):
            return None
        want = self._target(self.ewma_ms)
        if want != self.regime and now_s - self.since_s >= self.s.dwell_s:
            self.regime, self.since_s = want, now_s
        self.history.append((now_s, self.ewma_ms, self.regime))
        return self.s.presets[self.regime]
