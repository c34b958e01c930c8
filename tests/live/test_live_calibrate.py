"""``autotune calibrate`` against a real local Dynamo 1.6.1: recover constants the test knows, predict unseen points.

The mockers run tables tabulated from a roofline whose prefill MFU and decode MBU are 30 % under the
catalog's (tests/calibrate/synthetic.py); calibrate is given the catalog profile and the records of
2A4 at C=1 and C=4. Tolerance on the recovered constants: 10 % (CALIBRATION_TOLERANCE, docs/calibrate.md).
Held out: 2A4 at C=8 and 4A2 (other TP, other tables) at C=4. The validate targets (10 % P50s and means,
15 % P99s) are printed for every figure (pytest -s). On the shared 2-core host the live TTFT and throughput
at C=8 are set by the host's load more than by the engines (their intervals span 2-4x), so the test asserts
what holds robustly: the ITL mean of the other topology (4A2 at C=4) within 15 %, and calibration moving
the held-out errors toward zero on average. At C=8 the live host, not the engines, sets the batch: the
simulated ITL there came out 13-20 % high in every run (docs/calibrate.md), reported, not asserted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autotune.backends.dynamo_local import DynamoLocalBackend
from autotune.calibrate.points import save_point
from autotune.calibrate.report import markdown
from autotune.calibrate.run import calibrate
from autotune.topology import parse_topology
from tests.calibrate import synthetic

pytestmark = pytest.mark.slow

CALIBRATION_TOLERANCE = 0.10
# engine steps 4x as long as the tables say: the busy host's own delays, which the fit cannot tell from
# engine time, stay small next to them (at 0.5 the efficiencies came out 0-10 % low over four runs)
LIVE_SPEEDUP = 0.25
POINTS = (("2A4", 1), ("2A4", 4), ("2A4", 8), ("4A2", 4))
HELD_OUT = ["2A4-c8", "4A2-c4"]
HELD_OUT_ITL_TOLERANCE = 0.15


def test_calibrate_recovers_constants_from_a_live_stack(tmp_path: Path) -> None:
    base = synthetic.profile(requests_per_point=48, concurrency=[1, 4, 8])
    truth = synthetic.true_profile(base).model_copy(update={"dynamo": base.dynamo})  # the real frontend
    backend = DynamoLocalBackend(timing="roofline", speedup=LIVE_SPEEDUP)
    for topo_text in dict.fromkeys(t for t, _ in POINTS):
        topo = parse_topology(topo_text)
        with backend.deploy(truth, topo, trial_id=f"calib-{topo_text}") as dep:
            for t, c in POINTS:
                if t == topo_text:
                    run = dep.run_point(c, seed=c, requests=base.workload.requests_per_point)
                    save_point(run, topo, base, tmp_path / f"{topo.shape()}-c{c}")
    cal = calibrate(base, tmp_path, holdout=HELD_OUT, boot=20, seed=1)
    print(markdown(cal))  # the figures the docs quote (pytest -s)
    by = {p.name: p for p in cal.params}
    for name, true in synthetic.TRUE_PERF.items():
        assert by[name].status == "fitted", by[name]
        assert by[name].value == pytest.approx(true, rel=CALIBRATION_TOLERANCE), by[name]
    pred = cal.predictions[cal.predictions["held_out"]]
    assert set(pred["topology"].str[:3]) == {"2A4", "4A2"}
    itl = pred[(pred["figure"] == "itl_mean_ms") & pred["topology"].str.startswith("4A2")]
    assert len(itl) == 1
    assert abs(float(itl["error_after"].iloc[0])) <= HELD_OUT_ITL_TOLERANCE, itl.to_dict("records")
    assert pred["error_after"].abs().mean() < pred["error_before"].abs().mean()
