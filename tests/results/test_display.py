"""Figures are shown with their intervals, and claims say how sure they are (docs/measurement.md).

``autotune simulate`` in-process on a tiny profile; the baseline comparison and the report's wording on
synthetic trials (no study run); the heatmap plot with and without intervals.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from optuna.trial import TrialState, create_trial

from autotune.cli import main
from autotune.metrics import PointMetrics
from autotune.results import ci, plots
from autotune.results.report import _ratio_claim, trial_intervals
from autotune.results.writer import comparison, quoted
from tests.conftest import ROOT

TINY = """\
extends: {base}
name: tiny
workload: {{concurrency: [4, 8], requests_per_point: 60, warmup_requests: 5, cooldown_requests: 5}}
search: {{trials: 2, concurrency: [4, 8], requests_per_point: 40, target_concurrency: 8, min_gpus: 4}}
measurement: {measurement}
"""


def _tiny(tmp_path: Path, measurement: str = "{max_requests: 960}") -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY.format(base=ROOT / "profiles" / "paper-70b-1p5d.yaml", measurement=measurement))
    return p


def _simulate(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    with pytest.raises(SystemExit) as info:
        main(["simulate", *argv])
    out, err = capsys.readouterr()
    assert info.value.code == 0, err
    return out, err


def test_simulate_table_shows_every_headline_figure_with_its_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = _simulate(["-p", str(_tiny(tmp_path)), "-c", "4", "-n", "60"], capsys)
    for header in ("steady", "requests", "tok/s/GPU", "TTFT p99 ms", "ITL mean ms", "hit rate", "PoA-hat", "regret"):
        assert header in out, out
    assert "95 % confidence interval" in out
    # one data row: C, steady, requests, then 9 figures and the 2 PoA estimators, each "value" over "[lo, hi]"
    row = next(ln for ln in out.splitlines() if re.match(r"^│ +4 │", ln))
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells[1] == "yes" and int(cells[2]) > 0
    below = out.splitlines()[out.splitlines().index(row) + 1]
    bounds = [c.strip() for c in below.strip("│").split("│")][3:]
    assert len(bounds) == 11 and all(re.fullmatch(r"\[[\d,.]+, [\d,.]+\]", b) for b in bounds), below


def test_simulate_json_keeps_raw_bounds_and_the_run_length(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = _simulate(["-p", str(_tiny(tmp_path)), "-c", "4", "-n", "60", "-o", "json"], capsys)
    data = json.loads(out)
    assert data["ci_level"] == 0.95
    (p,) = data["points"]
    assert p["ttft_p99_ms_lo"] <= p["ttft_p99_ms"] <= p["ttft_p99_ms_hi"]
    assert p["output_tok_s_lo"] < p["output_tok_s"] < p["output_tok_s_hi"]
    assert p["poa_hat_lo"] <= p["poa_hat"] <= p["poa_hat_hi"] and p["routing_regret_lo"] <= p["routing_regret_hi"]
    assert p["converged"] is True and p["requests_run"] >= 60 and p["steady"] is True


def test_simulate_warns_when_a_point_does_not_converge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    prof = _tiny(tmp_path, "{max_requests: 120, rel_half_width_tail: 0.001}")
    with caplog.at_level(logging.INFO, logger="autotune"):
        _simulate(["-p", str(prof), "-c", "4", "-n", "60", "-o", "json"], capsys)
    warn = [r.getMessage() for r in caplog.records if r.name == "autotune" and r.levelno == logging.WARNING]
    assert len(warn) == 1, warn
    assert "C=4" in warn[0] and "NOT converged after 120 requests" in warn[0] and "max_requests" in warn[0]


def test_interval_form() -> None:
    assert ci.fmt_interval(55.04, 54.8, 58.31) == "55.0 [54.8, 58.3]"
    assert ci.fmt_interval(0.99996, 0.98, 1.02) == "1.00 [0.98, 1.02]"
    assert ci.fmt_interval(12345.6, 12001.0, 12700.2) == "12,346 [12,001, 12,700]"
    assert ci.fmt_interval(55.0, math.nan, math.nan) == "55.0"  # no interval: the value alone
    assert ci.fmt_interval(math.nan, 1.0, 2.0) == "-"


# --- the baseline comparison on synthetic trials ---------------------------------------------------


def _trial(number: int, poa: tuple[float, float, float], tput: tuple[float, float, float], ttft: float) -> Any:
    m = PointMetrics(
        concurrency=8,
        requests=100,
        rejected=0,
        errors=0,
        output_tok_s=tput[0] * 4,
        tok_s_per_gpu=tput[0],
        req_s=1.0,
        ttft_p50_ms=ttft / 2,
        ttft_p99_ms=ttft,
        itl_p50_ms=7.0,
        itl_p99_ms=8.0,
        itl_mean_ms=7.0,
        e2e_p99_ms=900.0,
        prefix_hit_rate=0.5,
        preemptions=0,
        ttft_p99_ms_lo=ttft * 0.97,
        ttft_p99_ms_hi=ttft * 1.04,
    )
    doc = {
        "metrics": m.as_dict(),
        "poa_hat": poa[0],
        "poa_by_stage": {},
        "poa_window_median": poa[0],
        "poa_window_p90": poa[0],
        "regime": "below",
        "poa_hat_lo": poa[1],
        "poa_hat_hi": poa[2],
        "routing_regret": 1.0,
        "routing_regret_lo": 0.99,
        "routing_regret_hi": 1.01,
        "regret_by_stage": {},
    }
    t = create_trial(
        state=TrialState.COMPLETE,
        values=[poa[0], tput[0]],
        user_attrs={
            "topology": f"T{number}",
            "ttft_p99_ms": ttft,
            "itl_p99_ms": 8.0,
            "output_tok_s": tput[0] * 4,
            "poa_objective_lo": poa[1],
            "poa_objective_hi": poa[2],
            "tok_s_per_gpu_lo": tput[1],
            "tok_s_per_gpu_hi": tput[2],
            "routing_regret": 1.0,
            "routing_regret_lo": 0.99,
            "routing_regret_hi": 1.01,
            "points": json.dumps([doc]),
        },
    )
    t.number = number
    return t


def test_comparison_ratios_carry_intervals_and_significance() -> None:
    chosen = _trial(1, (1.00, 0.99, 1.01), (1830.0, 1800.0, 1860.0), 45.0)
    base = _trial(0, (1.00, 0.99, 1.01), (1000.0, 990.0, 1010.0), 90.0)
    assert trial_intervals(chosen)["ttft_p99_ms"].lo == pytest.approx(45.0 * 0.97)  # from its operating point
    q = quoted(chosen)
    assert q["poa_hat_ci"] == [0.99, 1.01] and q["tok_s_per_gpu_ci"] == [1800.0, 1860.0]
    bc = comparison(chosen, base)
    assert bc["tok_s_per_gpu_ratio"] == pytest.approx(1.83)
    lo, hi = bc["tok_s_per_gpu_ratio_ci"]
    assert lo < 1.83 < hi and bc["tok_s_per_gpu_ratio_significant"] is True
    assert bc["poa_hat_ratio"] == pytest.approx(1.0) and bc["poa_hat_ratio_significant"] is False
    assert bc["poa_hat_ratio_ci"][0] < 1 < bc["poa_hat_ratio_ci"][1]
    assert bc["ttft_p99_ratio"] == pytest.approx(2.0) and bc["ttft_p99_ratio_significant"] is True

    tput = _ratio_claim("tok/s per GPU", bc, "tok_s_per_gpu", "95 %", lower=False)
    assert re.fullmatch(r"1\.83× the tok/s per GPU of the baseline \(95 % CI 1\.\d\d–1\.\d\d×\)\.", tput), tput
    poa = _ratio_claim("PoA-hat", bc, "poa_hat", "95 %", lower=True)
    assert poa.startswith("no significant difference from the baseline in PoA-hat (ratio 1.00, 95 % CI 0.9"), poa
    assert "2.00× lower TTFT P99" in _ratio_claim("TTFT P99", bc, "ttft_p99", "95 %", lower=True)


def test_a_significantly_worse_figure_is_called_higher() -> None:
    chosen = _trial(1, (1.20, 1.18, 1.22), (1000.0, 990.0, 1010.0), 90.0)
    base = _trial(0, (1.00, 0.99, 1.01), (1000.0, 990.0, 1010.0), 90.0)
    bc = comparison(chosen, base)
    assert bc["poa_hat_ratio_significant"] is True and bc["poa_hat_ratio"] < 1
    assert _ratio_claim("PoA-hat", bc, "poa_hat", "95 %", lower=True).startswith("1.20× higher PoA-hat than")


def test_a_figure_without_interval_is_never_significant() -> None:
    chosen = _trial(1, (1.00, math.nan, math.nan), (2000.0, math.nan, math.nan), 45.0)
    base = _trial(0, (1.00, 0.99, 1.01), (1000.0, 990.0, 1010.0), 90.0)
    bc = comparison(chosen, base)
    assert bc["tok_s_per_gpu_ratio_ci"] is None and bc["tok_s_per_gpu_ratio_significant"] is False
    assert "not claimed" in _ratio_claim("tok/s per GPU", bc, "tok_s_per_gpu", "95 %", lower=False)


# --- plots -----------------------------------------------------------------------------------------


def _grid(width: float) -> pd.DataFrame:
    rows = [
        {"temperature": t, "overlap_weight": w, "poa_hat": 1.0 + 0.05 * t + 0.01 * w}
        for t in (0.0, 0.3, 0.7, 1.0)
        for w in (0.0, 0.5, 1.0, 2.0)
    ]
    df = pd.DataFrame(rows)
    return df.assign(poa_hat_lo=df["poa_hat"] - width, poa_hat_hi=df["poa_hat"] + width)


@pytest.mark.parametrize("width", [0.001, 0.5, math.nan])
def test_heatmap_plot_draws_with_or_without_significant_cells(tmp_path: Path, width: float) -> None:
    out = plots.heatmap_plot({"below@C8": _grid(width), "saturated@C64": _grid(width)}, tmp_path / "h.png")
    assert out.stat().st_size > 0
    bare = _grid(width).drop(columns=["poa_hat_lo", "poa_hat_hi"])  # no interval columns: colour throughout
    assert plots.heatmap_plot({"below@C8": bare}, tmp_path / "b.png").stat().st_size > 0
