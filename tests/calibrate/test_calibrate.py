"""``autotune calibrate`` on simulated records whose constants are known (tests/calibrate/synthetic.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from autotune.calibrate.fit import fit_engine, fit_host
from autotune.calibrate.inputs import load_points
from autotune.calibrate.states import samples
from autotune.cli import main
from autotune.profile import load_profile
from tests.calibrate import synthetic
from tests.conftest import ROOT

# simulated records have no host noise: the fit must land within 5 % (the live test allows 10 %)
TOLERANCE = 0.05


def autotune(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "autotune", *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.write_points(tmp_path_factory.mktemp("calib"), synthetic.profile())


def test_recovers_the_efficiencies(records: Path) -> None:
    base = synthetic.profile()
    groups = [samples(p) for p in load_points(records, base)]
    engine, fits = fit_engine(base, groups, boot=6, seed=1)
    by = {f.name: f for f in fits}
    for name, true in synthetic.TRUE_PERF.items():
        assert by[name].status == "fitted", by[name]
        assert getattr(engine, name) == pytest.approx(true, rel=TOLERANCE), by[name]
        assert by[name].lo <= by[name].value <= by[name].hi
    assert by["kv_transfer_ms"].status == "prior"  # aggregated points: no hand-over to see
    assert "disaggregated" in by["kv_transfer_ms"].why


def test_recovers_the_host_line(records: Path) -> None:
    base = synthetic.profile()
    host = fit_host(base, [samples(p) for p in load_points(records, base)], boot=50, seed=1)
    assert host.input_token_us.status == "fitted"
    assert host.input_token_us.value == pytest.approx(synthetic.TRUE_HOST["frontend_input_token_us"], rel=0.10)
    assert host.input_token_us.lo <= synthetic.TRUE_HOST["frontend_input_token_us"] <= host.input_token_us.hi
    assert host.jitter_ms == pytest.approx(synthetic.TRUE_HOST["frontend_jitter_ms"], rel=0.35)


def test_without_routing_times_the_prefill_is_not_identifiable(tmp_path: Path, records: Path) -> None:
    base = synthetic.profile()
    for f in records.rglob("requests.csv"):
        dst = tmp_path / f.parent.relative_to(records)
        dst.mkdir(parents=True)
        df = pd.read_csv(f)
        df["routed_s"] = float("nan")  # an aiperf-like record: send, first token, end only
        df.to_csv(dst / "requests.csv", index=False)
        (dst / "point.json").write_text((f.parent / "point.json").read_text())
    groups = [samples(p) for p in load_points(tmp_path, base)]
    engine, fits = fit_engine(base, groups, boot=4, seed=1)
    by = {f.name: f for f in fits}
    assert by["prefill_mfu"].status == "not identifiable"
    assert "no prefill queueing" in by["prefill_mfu"].why
    assert engine.prefill_mfu == by["prefill_mfu"].prior
    assert by["decode_mbu"].status == "fitted"
    host = fit_host(base, groups, boot=10)
    assert host.request_ms.status == "not identifiable"


def test_command_writes_a_loadable_calibrated_profile(tmp_path: Path, records: Path) -> None:
    base = synthetic.profile()
    prof_path = tmp_path / "calib.yaml"
    prof_path.write_text(yaml.safe_dump({k: v for k, v in base.resolved_dict().items()}))
    out = tmp_path / "out"
    res = autotune("calibrate", str(records), "-p", str(prof_path), "--results", str(out), "--bootstrap", "4")
    assert res.returncode == 0, res.stderr
    cal = load_profile(out / "calibrated.yaml")
    assert cal.perf.prefill_mfu == pytest.approx(synthetic.TRUE_PERF["prefill_mfu"], rel=TOLERANCE)
    assert cal.model == base.model
    scores = pd.read_csv(out / "scores.csv")
    held = scores[scores["points"] == "held-out"].set_index("figure")
    # the held-out point (C=8): ITL and throughput come from the decode fit and must improve
    for fig in ("itl_mean_ms", "output_tok_s"):
        assert held.loc[fig, "mape_after"] < held.loc[fig, "mape_before"]
    assert (out / "calibration.md").read_text().startswith("# Calibration of")


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("empty", "no point records"),
        ("columns", "columns missing: first_token_s"),
        ("model", "but the profile describes"),
        ("json", "not readable as JSON"),
    ],
)
def test_bad_records_are_one_line_exit_2(
    tmp_path: Path, records: Path, damage: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = synthetic.profile()
    prof_path = tmp_path / "calib.yaml"
    data = base.resolved_dict()
    if damage == "model":
        data["model"] = "Llama-3.1-8B"
    prof_path.write_text(yaml.safe_dump(data))
    src = tmp_path / "rec"
    src.mkdir()
    if damage != "empty":
        one = next(records.rglob("point.json")).parent
        (src / "p").mkdir()
        df = pd.read_csv(one / "requests.csv")
        if damage == "columns":
            df = df.drop(columns=["first_token_s"])
        df.to_csv(src / "p" / "requests.csv", index=False)
        text = (one / "point.json").read_text()
        (src / "p" / "point.json").write_text("{not json" if damage == "json" else text)
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", str(src), "-p", str(prof_path), "--no-predict"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert needle in err
    assert len(err.strip().splitlines()) == 1, err


def test_profile_perf_section_overrides_the_catalog() -> None:
    from autotune.errors import ProfileError
    from autotune.perf.roofline import RooflinePerfModel
    from autotune.profile import profile_from_dict

    base = synthetic.profile()
    slow = synthetic.true_profile(base)
    t_base, t_slow = RooflinePerfModel(base).timer(4), RooflinePerfModel(slow).timer(4)
    # compute-bound prefill scales with 1/MFU, weight-bound decode with 1/MBU
    assert t_slow.compute_rate_prefill / t_base.compute_rate_prefill == pytest.approx(0.35 / 0.5)
    assert t_slow.mem_rate / t_base.mem_rate == pytest.approx(0.56 / 0.8)
    assert t_slow.step_s(1024, 1024 * 512, 0, 0, 0.0) > t_base.step_s(1024, 1024 * 512, 0, 0, 0.0)
    with pytest.raises(ProfileError, match=r"perf\.decode_mbu"):
        profile_from_dict({**base.resolved_dict(), "perf": {"decode_mbu": 1.5}}, "p.yaml")


def _as_aiperf(records: Path, out: Path) -> None:
    """The synthetic points as aiperf exports (what autotune.loadgen.aiperf_export writes)."""
    import json

    for f in records.rglob("requests.csv"):
        df = pd.read_csv(f)
        dst = out / f.parent.name / "profile_export.jsonl"
        dst.parent.mkdir(parents=True)
        lines = []
        for r in df.itertuples():
            ns = {
                k: int(getattr(r, c) * 1e9)
                for k, c in (
                    ("request_start_ns", "arrival_s"),
                    ("request_ack_ns", "first_token_s"),
                    ("request_end_ns", "completion_s"),
                )
            }
            meta = {
                **ns,
                "worker_id": f"client_{r.client}",
                "benchmark_phase": "profiling" if r.measured else "warmup",
                "dynamo_worker": str(r.decode_worker),
            }
            metrics = {
                "input_sequence_length": {"value": r.input_tokens, "unit": "tokens"},
                "output_sequence_length": {"value": r.output_tokens, "unit": "tokens"},
                "cached_tokens": {"value": r.cached_tokens, "unit": "tokens"},
            }
            lines.append(json.dumps({"metadata": meta, "metrics": metrics, "error": None}))
        dst.write_text("\n".join(lines) + "\n")


def test_aiperf_exports_identify_the_decode_side(
    tmp_path: Path, records: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from autotune.calibrate.aiperf import Deployment
    from autotune.topology import parse_topology

    base = synthetic.profile()
    _as_aiperf(records, tmp_path / "exports")
    dep = Deployment(parse_topology("2A4"), synthetic.SPEEDUP, mocker_tables=True)
    points = load_points(tmp_path / "exports", base, dep)
    assert sorted(p.concurrency for p in points) == [1, 4, 8]
    engine, fits = fit_engine(base, [samples(p) for p in points], boot=4, seed=1)
    by = {f.name: f for f in fits}
    assert by["prefill_mfu"].status == "not identifiable"  # no routing instant in an export
    assert by["decode_mbu"].status == "fitted"
    assert engine.decode_mbu == pytest.approx(synthetic.TRUE_PERF["decode_mbu"], rel=TOLERANCE)
    prof_path = tmp_path / "calib.yaml"
    prof_path.write_text(yaml.safe_dump(base.resolved_dict()))
    with pytest.raises(SystemExit) as exit_:
        main(["calibrate", str(tmp_path / "exports"), "-p", str(prof_path), "--no-predict"])
    assert exit_.value.code == 2
    assert "pass --topology" in capsys.readouterr().err
