"""The live control loop: every interval, TTFT P99 → ``AdaptiveController`` → regime → preset → ``Actuator``.

The regime logic (EWMA, θ1/θ2, hysteresis, dwell) is the simulator's ``AdaptiveController``, fed the
interval's P99 directly (``update_p99``). Around it, the safety rules a live deployment needs:

* advisory by default: without ``apply`` the loop decides and logs, and never calls the actuator;
* dwell: the controller changes regime at most once per ``dwell_s`` (its own rule), counted from the
  end of the switch (a switch can take longer than the dwell);
* rate limit: at most ``max_switches_per_hour`` switches in any sliding hour (failed attempts count,
  so a broken actuator is not hammered); a switch over the limit is logged ``rate-limited`` and held;
* roll-back: at a switch, ``before`` = mean interval P99 of the last ``rollback_intervals`` intervals;
  once as many intervals with requests have passed, ``after`` = their mean. If
  ``after > before × (1 + rollback_margin)`` the previous preset is restored and the preset rolled back
  from is not tried again for that regime for ``rollback_cooldown_s``. Rising load raises ``after`` too
  (the rule cannot tell load from preset), hence a generous default margin (1.0: twice as bad);
* faults: a ``MetricsError`` holds the last decision (no controller update, no switch), counts an error
  and retries after ``interval × 2^k`` (k errors in a row, at most ``max_backoff_s``): a dead frontend
  never makes the loop flap;
* exit: when ``stop`` is set (SIGTERM/SIGINT via ``install_stop_signals``) the baseline preset (the one
  served when the loop started) is restored unless ``keep_on_exit``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from autotune.control.actuator import Actuator
from autotune.control.observe import ControlMetrics, RecordFile, log_decision
from autotune.control.source import MetricsError, TtftSource
from autotune.controller import AdaptiveController, ControllerSettings
from autotune.errors import AutotuneError
from autotune.regimes import BELOW, SATURATED, TRANSITION
from autotune.topology import RouterSettings

HOUR_S = 3600.0


@dataclass
class ControlOptions:
    apply: bool = False
    max_switches_per_hour: int = 12
    rollback_margin: float = 1.0
    rollback_intervals: int = 3
    rollback_cooldown_s: float = 600.0
    keep_on_exit: bool = False
    max_backoff_s: float = 60.0
    duration_s: float | None = None  # stop after this long (benchmarks, tests); None: until signalled
    record: RecordFile = field(default_factory=lambda: RecordFile(None))
    metrics: ControlMetrics | None = None
    log: TextIO | None = None  # decision lines; None: stderr
    stop: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = time.monotonic
    wait: Callable[[float], bool] | None = None  # sleeps, True if stopped; None: ``stop.wait``


@dataclass
class ControlRecord:
    """What one run of the loop did (the record file has the same rows)."""

    baseline: RouterSettings
    final: RouterSettings
    intervals: list[dict[str, Any]] = field(default_factory=list)
    switches: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str = ""


@dataclass
class _Watch:
    """A switch whose effect is being judged for roll-back."""

    regime: str
    previous: RouterSettings
    before_ms: float
    after_ms: list[float] = field(default_factory=list)


def install_stop_signals(stop: threading.Event) -> dict[int, Any]:
    """SIGTERM and SIGINT set ``stop`` (the loop then restores the baseline); returns the old handlers."""
    old: dict[int, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        old[sig] = signal.signal(sig, lambda signum, frame: stop.set())
    return old


def _preset_dict(p: RouterSettings) -> dict[str, float]:
    return asdict(p)


def _reason(s: ControllerSettings, ewma_ms: float | None, src: str, dst: str) -> str:
    order = [BELOW, TRANSITION, SATURATED]
    enter = {TRANSITION: s.theta1_ms, SATURATED: s.theta2_ms}
    e = float("nan") if ewma_ms is None else ewma_ms
    if src == dst:
        return f"EWMA {e:.1f} ms: {dst} (its preset not served yet)"
    if order.index(dst) > order.index(src):
        return f"EWMA {e:.1f} ms >= {dst} threshold {enter[dst]:.1f} ms"
    return f"EWMA {e:.1f} ms <= {src} threshold x (1 - hysteresis) {enter[src] * (1 - s.hysteresis):.1f} ms"


class _Loop:
    def __init__(self, settings: ControllerSettings, source: TtftSource, actuator: Actuator, o: ControlOptions):
        self.s, self.source, self.act, self.o = settings, source, actuator, o
        self.ctl = AdaptiveController(settings)
        self.metrics = o.metrics or ControlMetrics(settings)
        self.metrics.applying.set(1.0 if o.apply else 0.0)
        self.baseline = actuator.current()
        self.served = self.baseline  # what the deployment serves (advisory: never changes)
        self.advised = self.baseline
        self.record = ControlRecord(self.baseline, self.baseline)
        self.recent_p99: deque[float] = deque(maxlen=max(o.rollback_intervals, 1))
        self.attempts: deque[float] = deque()
        self.blocked: dict[str, tuple[RouterSettings, float]] = {}  # regime -> (preset rolled back from, until)
        self.watch: _Watch | None = None
        self.errors_in_row = 0
        self.t0 = o.clock()

    def now(self) -> float:
        return self.o.clock() - self.t0

    def _emit(self, row: dict[str, Any]) -> None:
        self.o.record.append(row)
        log_decision(row, self.o.log)

    def switch(self, preset: RouterSettings, kind: str, regime_from: str, regime_to: str, reason: str) -> bool:
        """Apply ``preset``; a switch row either way; True if it took effect."""
        now = self.now()
        self.attempts.append(now)
        row: dict[str, Any] = {
            "type": "switch",
            "kind": kind,
            "t_s": round(now, 3),
            "wall_s": round(time.time(), 3),
            "regime_from": regime_from,
            "regime_to": regime_to,
            "from": _preset_dict(self.served),
            "to": _preset_dict(preset),
            "reason": reason,
        }
        try:
            res = self.act.apply(preset)
        except AutotuneError as exc:
            self.metrics.errors.labels("switch").inc()
            self._emit(row | {"ok": False, "error": str(exc)[:300]})
            return False
        self.served = preset
        self.ctl.since_s = max(self.ctl.since_s, self.now())  # the dwell counts from when the preset serves
        self.metrics.switched(kind)
        out = row | {
            "ok": True,
            "duration_s": round(res.duration_s, 3),
            "requests_affected": res.requests_affected,
            "detail": res.detail,
        }
        self.record.switches.append(out)
        self._emit(out)
        return True

    def _rate_limited(self, now: float) -> bool:
        while self.attempts and now - self.attempts[0] > HOUR_S:
            self.attempts.popleft()
        return len(self.attempts) >= self.o.max_switches_per_hour

    def _judge_rollback(self, p99_ms: float | None) -> str | None:
        w = self.watch
        if w is None or p99_ms is None:
            return None
        w.after_ms.append(p99_ms)
        if len(w.after_ms) < self.o.rollback_intervals:
            return None
        self.watch = None
        after = sum(w.after_ms) / len(w.after_ms)
        if after <= w.before_ms * (1 + self.o.rollback_margin):
            return None
        reason = (
            f"roll-back: TTFT P99 after the switch {after:.1f} ms > before {w.before_ms:.1f} ms "
            f"x (1 + {self.o.rollback_margin:g})"
        )
        bad = self.served
        if self.switch(w.previous, "rollback", w.regime, w.regime, reason):
            self.blocked[w.regime] = (bad, self.now() + self.o.rollback_cooldown_s)
            return "rollback"
        return "rollback-failed"

    def _wanted(self, regime: str, now: float) -> RouterSettings:
        want = self.s.presets[regime]
        bad = self.blocked.get(regime)
        if bad is not None and bad[1] > now and bad[0] == want:
            return self.served  # rolled back from for this regime: hold what serves
        return want

    def tick(self) -> float:
        """One interval; returns the seconds until the next."""
        now = self.now()
        try:
            p99 = self.source.read()
        except MetricsError as exc:
            self.errors_in_row += 1
            self.metrics.errors.labels(exc.kind).inc()
            backoff = min(self.s.interval_s * 2**self.errors_in_row, self.o.max_backoff_s)
            row = {
                "type": "interval",
                "t_s": round(now, 3),
                "regime": self.ctl.regime,
                "ewma_ms": self.ctl.ewma_ms,
                "action": "hold",
                "error": exc.kind,
                "message": str(exc)[:300],
                "backoff_s": round(backoff, 3),
            }
            self.record.intervals.append(row)
            self._emit(row)
            return backoff
        self.errors_in_row = 0
        before_regime = self.ctl.regime
        self.ctl.update_p99(now, p99)
        regime = self.ctl.regime
        self.metrics.observe(regime, self.ctl.ewma_ms, p99)
        action = self._judge_rollback(p99) or "none"
        want = self._wanted(regime, now)
        reason = _reason(self.s, self.ctl.ewma_ms, before_regime, regime)
        if action == "none" and not self.o.apply:
            if want != self.advised:  # once per change of advice
                action, self.advised = "advise", want
        elif action == "none" and want != self.served:
            if self._rate_limited(now):
                action = "rate-limited"
            else:
                before = list(self.recent_p99)
                previous = self.served
                ok = self.switch(want, "switch", before_regime, regime, reason)
                action = "switch" if ok else "switch-failed"
                if ok and before:
                    self.watch = _Watch(regime, previous, sum(before) / len(before))
        if p99 is not None:
            self.recent_p99.append(p99)
        row = {
            "type": "interval",
            "t_s": round(now, 3),
            "wall_s": round(time.time(), 3),
            "p99_ms": None if p99 is None else round(p99, 3),
            "ewma_ms": None if self.ctl.ewma_ms is None else round(self.ctl.ewma_ms, 3),
            "regime_from": before_regime,
            "regime": regime,
            "theta1_ms": round(self.s.theta1_ms, 3),
            "theta2_ms": round(self.s.theta2_ms, 3),
            "action": action,
            "serving": _preset_dict(self.served),
        }
        if action == "advise":
            row["would_serve"] = _preset_dict(want)
        if action in ("switch", "rollback") and self.record.switches:
            last = self.record.switches[-1]
            row |= {"switch_duration_s": last["duration_s"], "requests_affected": last["requests_affected"]}
        self.record.intervals.append(row)
        self._emit(row)
        return self.s.interval_s

    def run(self) -> ControlRecord:
        o = self.o
        wait = o.wait or o.stop.wait
        self._emit({"type": "start", "apply": o.apply, "baseline": _preset_dict(self.baseline), **self.s.as_dict()})
        next_due = self.now()
        while True:
            if o.stop.is_set():
                self.record.stopped_by = "signal"
                break
            if o.duration_s is not None and self.now() >= o.duration_s:
                self.record.stopped_by = "duration"
                break
            delay = self.tick()
            next_due = max(next_due + delay, self.now()) if delay == self.s.interval_s else self.now() + delay
            until = next_due if o.duration_s is None else min(next_due, o.duration_s)
            if wait(max(until - self.now(), 0.0)):
                self.record.stopped_by = "signal"
                break
        if o.apply and not o.keep_on_exit and self.served != self.baseline:
            self.switch(self.baseline, "restore", self.ctl.regime, "exit", "exit: baseline preset restored")
        self.record.final = self.served
        self._emit({"type": "stop", "stopped_by": self.record.stopped_by, "serving": _preset_dict(self.served)})
        return self.record


def run_controller(
    settings: ControllerSettings, source: TtftSource, actuator: Actuator, options: ControlOptions
) -> ControlRecord:
    """Run the loop until ``options.stop`` is set or ``options.duration_s`` passes (module docstring)."""
    return _Loop(settings, source, actuator, options).run()
