"""The live controller's parts without a deployment: P99 from histogram deltas, faults, safety rules, signals."""

from __future__ import annotations

import http.server
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from autotune.control.actuator import Actuator, SwitchResult
from autotune.control.loop import ControlOptions, ControlRecord, install_stop_signals, run_controller
from autotune.control.settings import parse_settings, settings_document
from autotune.control.source import FrontendHistogram, MetricsError, parse_buckets, quantile_from_deltas
from autotune.controller import ControllerSettings
from autotune.regimes import BELOW, SATURATED, TRANSITION
from autotune.topology import RouterSettings

PRESETS = {
    BELOW: RouterSettings(temperature=0.0, overlap_weight=1.0),
    TRANSITION: RouterSettings(temperature=0.5, overlap_weight=1.0),
    SATURATED: RouterSettings(temperature=0.8, overlap_weight=0.1),
}
# θ1 = 20 ms, θ2 = 50 ms; α = 1: the EWMA is the interval's P99, so a script reads directly
SETTINGS = ControllerSettings(10.0, 2.0, 5.0, ewma_alpha=1.0, interval_s=1.0, dwell_s=0.0, presets=PRESETS)


def histogram(counts: dict[str, float], name: str = "dynamo_frontend_time_to_first_token_seconds") -> str:
    lines = [f"# TYPE {name} histogram"]
    lines += [f'{name}_bucket{{model="m",le="{le}"}} {v}' for le, v in counts.items()]
    total = counts["+Inf"]
    return "\n".join([*lines, f'{name}_sum{{model="m"}} {total}', f'{name}_count{{model="m"}} {total}', ""])


def test_p99_is_interpolated_inside_the_bucket_of_the_interval() -> None:
    before = parse_buckets(histogram({"0.1": 100, "0.5": 100, "1.0": 100, "+Inf": 100}))
    # 100 new requests: 50 under 0.1 s, 40 in (0.1, 0.5], 10 in (0.5, 1.0]
    after = parse_buckets(histogram({"0.1": 150, "0.5": 190, "1.0": 200, "+Inf": 200}))
    p99 = quantile_from_deltas(before, after)
    assert p99 == pytest.approx(0.5 + 0.5 * (99 - 90) / 10)  # rank 99 is 9/10 into the last bucket
    assert quantile_from_deltas(after, after) is None  # nothing new: no P99
    # beyond the last finite bound: that bound, as Prometheus reports it
    tail = parse_buckets(histogram({"0.1": 150, "0.5": 190, "1.0": 190, "+Inf": 210}))
    assert quantile_from_deltas(before, tail) == pytest.approx(1.0)


def test_a_counter_reset_or_garbage_is_an_error_not_a_number() -> None:
    before = parse_buckets(histogram({"0.1": 100, "+Inf": 120}))
    with pytest.raises(MetricsError) as info:
        quantile_from_deltas(before, parse_buckets(histogram({"0.1": 3, "+Inf": 3})))
    assert info.value.kind == "reset"
    with pytest.raises(MetricsError) as info:
        parse_buckets('dynamo_frontend_time_to_first_token_seconds_bucket{le="x"} 1\n')
    assert info.value.kind == "garbage"
    assert parse_buckets("# nothing here\nother_metric 1\n") == {}


class _Metrics(http.server.BaseHTTPRequestHandler):
    bodies: list[tuple[int, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        code, body = self.bodies.pop(0) if self.bodies else (200, "")
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_server() -> Iterator[tuple[str, list[tuple[int, str]]]]:
    bodies: list[tuple[int, str]] = []
    handler = type("H", (_Metrics,), {"bodies": bodies})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics", bodies
    server.shutdown()
    server.server_close()


def test_frontend_source_scrapes_deltas_and_survives_faults(metrics_server) -> None:
    url, bodies = metrics_server
    bodies += [
        (200, histogram({"0.1": 10, "1.0": 10, "+Inf": 10})),
        (200, histogram({"0.1": 10, "1.0": 30, "+Inf": 30})),
        (500, "oops"),
        (200, "not { prometheus"),
        (200, histogram({"0.1": 1, "1.0": 1, "+Inf": 1})),  # restarted: new baseline
        (200, histogram({"0.1": 101, "1.0": 101, "+Inf": 101})),
    ]
    src = FrontendHistogram(lambda: [url])
    assert src.read() is None  # the first scrape is the baseline
    assert src.read() == pytest.approx((0.1 + 0.9 * 0.99) * 1000)
    kinds = []
    for _ in range(3):
        with pytest.raises(MetricsError) as info:
            src.read()
        kinds.append(info.value.kind)
    assert kinds == ["unreachable", "garbage", "reset"]
    assert src.read() == pytest.approx(0.099 * 1000)


def test_promql_source_reads_the_quantile_and_reports_faults(metrics_server) -> None:
    from autotune.control.source import PrometheusQuery

    url, bodies = metrics_server
    ok = '{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.25"]}]}}'
    nan = '{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}'
    bodies += [(200, ok), (200, nan), (200, "<html>"), (503, "down")]
    src = PrometheusQuery(url.removesuffix("/metrics"), window_s=2.0)
    assert "histogram_quantile(0.99" in src.query and "[2s]" in src.query
    assert src.read() == pytest.approx(250.0)
    assert src.read() is None  # no requests in the window
    kinds = []
    for _ in range(2):
        with pytest.raises(MetricsError) as info:
            src.read()
        kinds.append(info.value.kind)
    assert kinds == ["garbage", "unreachable"]


# ---- the loop, with a scripted source, a fake actuator and a fake clock ---------------------------------


@dataclass
class FakeActuator:
    name: str = "fake"
    serving: RouterSettings = PRESETS[BELOW]
    applied: list[RouterSettings] = field(default_factory=list)

    def current(self) -> RouterSettings:
        return self.serving

    def apply(self, preset: RouterSettings) -> SwitchResult:
        self.applied.append(preset)
        self.serving = preset
        return SwitchResult(0.0, 0.5, 0, "fake")


class Script:
    """P99s in ms (None: no requests; an exception: raised), then ``after`` forever."""

    description = "script"

    def __init__(self, values: list[object], after: float | None = 10.0, on_empty: object = None) -> None:
        self.values, self.after, self.on_empty = list(values), after, on_empty

    def read(self) -> float | None:
        if not self.values:
            if callable(self.on_empty):
                self.on_empty()
            return self.after
        v = self.values.pop(0)
        if isinstance(v, Exception):
            raise v
        return v  # type: ignore[return-value]


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.t

    def wait(self, s: float) -> bool:
        self.waits.append(s)
        self.t += s
        return False


def run(script: Script, *, duration_s: float = 30, **opts: object) -> tuple[ControlRecord, FakeActuator, FakeClock]:
    act, clock = FakeActuator(), FakeClock()
    _: Actuator = act  # the fake implements the Protocol
    o = ControlOptions(duration_s=duration_s, clock=clock, wait=clock.wait, log=open(os.devnull, "w"), **opts)  # type: ignore[arg-type]
    return run_controller(SETTINGS, script, act, o), act, clock


def test_advisory_decides_and_changes_nothing() -> None:
    rec, act, _ = run(Script([10, 10, 60, 60, 60, 10, 10]), apply=False)
    assert act.applied == []
    assert [r["regime"] for r in rec.intervals[:5]] == [BELOW, BELOW, SATURATED, SATURATED, SATURATED]
    actions = [r["action"] for r in rec.intervals]
    assert actions.count("advise") == 2  # into saturated, back below; once each
    assert rec.final == PRESETS[BELOW] and rec.switches == []


def test_garbage_holds_the_decision_and_backs_off_without_flapping() -> None:
    errs = [MetricsError("garbage", "x") for _ in range(4)]
    rec, act, clock = run(Script([60, *errs, 60]), apply=True, max_backoff_s=5)
    assert act.applied == [PRESETS[SATURATED], PRESETS[BELOW]]  # the spike, then recovery after the errors
    held = [r for r in rec.intervals if r["action"] == "hold"]
    assert len(held) == 4 and all(r["regime"] == SATURATED for r in held)
    assert [r["backoff_s"] for r in held] == [2, 4, 5, 5]  # doubling, capped
    assert clock.waits[1:5] == [2, 4, 5, 5]


def test_a_switch_that_makes_p99_worse_is_rolled_back_and_not_retried() -> None:
    # below at 15 ms, transition at 25 ms → switch; after it 80, 80, 80: > 2 × the 15-25 ms before
    rec, act, _ = run(Script([15, 15, 15, 25, 80, 80, 80, 80, 80], after=80.0), apply=True, rollback_margin=1.0)
    kinds = [s["kind"] for s in rec.switches]
    assert kinds[:3] == ["switch", "switch", "rollback"]  # → transition, → saturated, rolled back
    assert act.applied[:3] == [PRESETS[TRANSITION], PRESETS[SATURATED], PRESETS[TRANSITION]]
    assert PRESETS[SATURATED] not in act.applied[3:]  # blocked for saturated during the cooldown
    rb = rec.switches[2]
    assert "roll-back" in rb["reason"]


def test_no_rollback_inside_the_margin() -> None:
    # 45 ms after vs 15 ms before: worse by 2x, not by more than the margin 2.0 (3x); a bounded run restores
    rec, act, _ = run(Script([15, 15, 15, 60, 45, 45, 45], after=45.0), apply=True, rollback_margin=2.0)
    assert [s["kind"] for s in rec.switches] == ["switch", "restore"]


def test_the_rate_limit_caps_switches_in_an_hour() -> None:
    flapping = [10, 60] * 20
    rec, act, _ = run(Script(flapping), apply=True, max_switches_per_hour=3, rollback_margin=100.0, keep_on_exit=True)
    assert len(act.applied) == 3
    assert sum(r["action"] == "rate-limited" for r in rec.intervals) > 0


def _signal_after_a_switch(keep_on_exit: bool) -> tuple[ControlRecord, FakeActuator]:
    stop = threading.Event()
    old = install_stop_signals(stop)
    act = FakeActuator()
    s = ControllerSettings(10.0, 2.0, 5.0, ewma_alpha=1.0, interval_s=0.01, dwell_s=0.0, presets=PRESETS)
    src = Script([60, 60], after=60.0, on_empty=lambda: os.kill(os.getpid(), signal.SIGTERM))
    o = ControlOptions(apply=True, keep_on_exit=keep_on_exit, stop=stop, duration_s=60, log=open(os.devnull, "w"))
    try:
        rec = run_controller(s, src, act, o)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return rec, act


def test_sigterm_restores_the_baseline_preset() -> None:
    rec, act = _signal_after_a_switch(keep_on_exit=False)
    assert rec.stopped_by == "signal"
    assert act.applied == [PRESETS[SATURATED], PRESETS[BELOW]] and rec.final == PRESETS[BELOW]
    assert rec.switches[-1]["kind"] == "restore"


def test_sigterm_with_keep_on_exit_leaves_the_current_preset() -> None:
    rec, act = _signal_after_a_switch(keep_on_exit=True)
    assert rec.stopped_by == "signal" and act.applied == [PRESETS[SATURATED]] and rec.final == PRESETS[SATURATED]


def test_settings_round_trip_through_the_recommendation() -> None:
    assert parse_settings(settings_document(SETTINGS), "x.yaml") == SETTINGS


def test_own_metrics_are_served_on_loopback() -> None:
    import httpx

    from autotune.control.observe import ControlMetrics
    from autotune.dynamo.stack import free_port

    m = ControlMetrics(SETTINGS)
    m.observe(SATURATED, 61.0, 70.0)
    m.switched("switch")
    m.errors.labels("garbage").inc()
    port = free_port()
    server = m.serve(port)
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.shutdown()
    assert 'autotune_control_regime{regime="saturated"} 1.0' in text
    assert "autotune_control_ewma_ttft_p99_ms 61.0" in text
    assert 'autotune_control_threshold_ms{threshold="theta2"} 50.0' in text
    assert 'autotune_control_switches_total{kind="switch"} 1.0' in text
    assert 'autotune_control_errors_total{kind="garbage"} 1.0' in text
    assert "autotune_control_last_switch_age_seconds" in text
