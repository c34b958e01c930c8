"""``autotune control --apply`` as its own process on a real Dynamo 1.6.1 stack, through a spike.

Asserted from the controller's record and the load generator's records: it leaves ``below`` during the
spike and comes back to it afterwards (light traffic continues until it does: a slow machine drains
the spike's backlog later), switches no more than the regime changes allow, every
request of the open-loop schedule succeeds (no request lost to a switch), and SIGTERM restores the
baseline preset and exits 130. No timing asserts: thresholds scale with the measured baseline.
"""

from __future__ import annotations

import pytest

from autotune.dynamo import install
from autotune.errors import EXIT_INTERRUPTED
from autotune.regimes import BELOW, SATURATED, TRANSITION
from tests.control.live_stack import (
    ControllerProcess,
    LiveStack,
    calibrate,
    phase_of,
    regime_timeline,
    run_schedule,
    schedule_bodies,
    spike_plan,
    trickle_until_below,
    write_settings,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.fixture
def live_stack():
    install.find_python()  # no Dynamo venv: BackendError with the install hint (CI installs it)
    live = LiveStack.start()
    try:
        yield live
    finally:
        live.stop()


def test_controller_follows_a_spike_and_loses_no_request(live_stack: LiveStack, tmp_path) -> None:
    cal = calibrate(live_stack)
    settings = cal.settings()
    plan, phases = spike_plan(cal.capacity_rps)
    bodies, arrivals = schedule_bodies(live_stack, plan, phases, seed=7)
    path = write_settings(tmp_path / "recommended.yaml", settings)
    ctl = ControllerProcess.start(live_stack, path, tmp_path, apply=True, extra=("--rollback-margin", "100"))
    try:
        burst = run_schedule(ctl.proxy_url, bodies, arrivals)
        spike_end_wall_s = burst.t0_wall + phases[1].end_s
        after_spike, trickle = trickle_until_below(ctl, ctl.proxy_url, bodies, 0.3 * cal.capacity_rps, spike_end_wall_s)
    finally:
        code = ctl.stop()
    rows = ctl.rows()
    err = ctl.stderr.read_text()
    assert code == EXIT_INTERRUPTED, err[-2000:]
    records = [r for b in (burst, *trickle) for r in b.records]
    assert {r.status for r in records} == {"ok"}, [r.error for r in records if r.error][:5]
    assert len(burst.records) == len(bodies)

    intervals = [r for r in rows if r["type"] == "interval" and "wall_s" in r]
    by_phase: dict[str, set[str]] = {}
    for r in intervals:
        by_phase.setdefault(phase_of(r["wall_s"] - burst.t0_wall, phases), set()).add(r["regime"])
    spike, recovery = phases[1].name, phases[2].name
    regimes_from_spike = by_phase.get(spike, set()) | by_phase.get(recovery, set())
    assert regimes_from_spike & {TRANSITION, SATURATED}, (by_phase, cal)
    assert after_spike and after_spike[-1] == BELOW, (after_spike, cal)

    switches = [r for r in rows if r["type"] == "switch"]
    changes = [s for s in switches if s["kind"] == "switch"]
    # one switch per regime change at most (a noisy ramp may cross the transition threshold and back:
    # that is two changes, and two switches, not a flap)
    regime_changes = len(regime_timeline(rows, burst.t0_wall)) - 1
    assert 1 <= len(changes) <= regime_changes, (len(changes), regime_timeline(rows, burst.t0_wall))
    assert all(s["ok"] and s["requests_affected"] == 0 for s in switches), switches
    assert [s["kind"] for s in switches if s["kind"] != "switch"] in ([], ["restore"])
    assert rows[-1]["type"] == "stop" and rows[-1]["stopped_by"] == "signal"
    assert rows[-1]["serving"] == {"temperature": 0.0, "overlap_weight": 1.0, "overlap_credit": 1.0}
