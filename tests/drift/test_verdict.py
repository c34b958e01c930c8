"""The drift rule: beyond the threshold *and* outside the noise; the history survives damage."""

from __future__ import annotations

import json
import math
from pathlib import Path

from autotune.drift.history import HISTORY, append_history, history_report, read_history
from autotune.drift.verdict import figure_drift
from autotune.intervals import Interval

NAN = math.nan


def test_a_large_change_outside_the_noise_is_drift_and_says_which_way() -> None:
    d = figure_drift("ttft_p99_ms", "prediction", Interval(100, 95, 105), Interval(140, 130, 150), 0.15)
    assert d.drifted and d.worse and d.significant and math.isclose(d.change, 0.4)
    up = figure_drift("output_tok_s", "prediction", Interval(100, 95, 105), Interval(140, 130, 150), 0.15)
    assert up.drifted and not up.worse  # more throughput: drift, not harm


def test_a_large_change_inside_the_noise_is_no_drift() -> None:
    d = figure_drift("ttft_p99_ms", "prediction", Interval(100, 60, 140), Interval(130, 90, 170), 0.15)
    assert abs(d.change) > 0.15 and not d.significant and not d.drifted


def test_a_small_significant_change_is_no_drift() -> None:
    d = figure_drift("itl_mean_ms", "last_probe", Interval(10.0, 9.9, 10.1), Interval(10.5, 10.4, 10.6), 0.15)
    assert d.significant and not d.drifted


def test_without_an_interval_a_figure_is_reported_but_not_judged() -> None:
    d = figure_drift("ttft_p99_ms", "prediction", Interval(100, NAN, NAN), Interval(200, 190, 210), 0.15)
    assert d.basis.startswith("no interval") and not d.drifted and math.isclose(d.change, 1.0)


def test_history_appends_and_skips_a_damaged_line(tmp_path: Path) -> None:
    append_history(tmp_path, {"topology": "1P4-2D4", "verdict": "steady", "figures": []})
    with (tmp_path / HISTORY).open("a") as f:
        f.write('{"topology": "1P4-2D4", "verd')  # a crash mid-append
    append_history(tmp_path, {"topology": "1P4-2D4", "verdict": "drifted", "figures": []})
    got = read_history(tmp_path)
    assert [h["verdict"] for h in got] == ["steady", "drifted"]
    assert (tmp_path / HISTORY).stat().st_mode & 0o777 == 0o600
    lines = (tmp_path / HISTORY).read_text().splitlines()
    assert json.loads(lines[-1])["verdict"] == "drifted"
    table = history_report(got)
    assert table.count("| 1P4-2D4 |") == 2


def test_history_never_holds_a_credential(tmp_path: Path) -> None:
    append_history(tmp_path, {"frontend": "http://user:s3cret-token@frontend:8000", "figures": []})
    assert "s3cret-token" not in (tmp_path / HISTORY).read_text()
