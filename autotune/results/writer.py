"""Write the results directory of a study (every file atomically).

profile.resolved.yaml  environment.json  study.journal
trials.csv  trials.parquet  points.csv  pareto.csv
recommended.yaml  dgd.yaml  summary.json  report.md
heatmaps.csv  spike.csv  plots/*.png
"""

from __future__ import annotations

import math
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from optuna.trial import TrialState

from autotune import __version__
from autotune.dynamo.flags import router_args
from autotune.k8s.render import render_dgd
from autotune.results import plots
from autotune.results.directory import staged
from autotune.results.files import write_csv, write_json, write_parquet, write_text, write_yaml
from autotune.results.outcome import Outcome
from autotune.results.report import render_report
from autotune.search.trials import headline, points_frame, trials_frame
from autotune.topology import parse_topology


def environment(backend: dict[str, Any]) -> dict[str, Any]:
    def ver(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    return {
        "autotune": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {p: ver(p) for p in ("optuna", "numpy", "pandas", "scipy", "pydantic", "kubernetes")},
        "backend": backend,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def recommendation(o: Outcome) -> dict[str, Any]:
    p, t = o.profile, o.chosen
    topo = parse_topology(t.user_attrs["topology"])
    s = p.search
    op = {
        "target": f"fixed load: C={s.target_concurrency}",
        "saturated": "saturated region",
        "grid": "whole grid",
        "capacity": "fixed cluster: the highest load that meets the SLO",
    }[s.operating_point]
    rec: dict[str, Any] = {
        "kind": "autotune/Recommendation",
        "prediction": o.prediction,
        "topology": {
            "string": topo.to_string(),
            "shape": topo.shape(),
            "gpus": topo.gpus,
            "disaggregated": topo.disaggregated,
            "prefill_workers": topo.prefill_workers,
            "prefill_tp": topo.prefill_tp,
            "decode_workers": topo.decode_workers,
            "decode_tp": topo.decode_tp,
            "agg_workers": topo.agg_workers,
            "agg_tp": topo.agg_tp,
        },
        "router": {
            "temperature": topo.router.temperature,
            "overlap_weight": topo.router.overlap_weight,
            "overlap_credit": topo.router.overlap_credit,
            "frontend_args": router_args(p.dynamo.version_tuple, topo.router),
        },
        "controller": o.controller.as_dict(),
        "operating_point": op,
        "predicted" if o.prediction else "measured": headline(t),
        "slo": {"ttft_p99_ms": p.slo.ttft_p99_ms, "itl_p99_ms": p.slo.itl_p99_ms, "met": o.slo_met},
    }
    if o.baseline is not None:
        b = o.baseline
        bp = headline(b)
        rec["baseline_comparison"] = {
            "baseline": b.user_attrs.get("topology"),
            **{f"baseline_{k}": v for k, v in bp.items()},
            "poa_hat_ratio": b.values[0] / t.values[0] if t.values[0] else None,
            "tok_s_per_gpu_ratio": t.values[1] / b.values[1] if b.values[1] else None,
            "ttft_p99_ratio": (bp["ttft_p99_ms"] or math.nan) / (t.user_attrs.get("ttft_p99_ms") or math.nan),
        }
    ph = o.spike.phases
    rec["adaptive_vs_static"] = ph.to_dict(orient="records")
    if o.baseline_spike is not None and o.baseline_controller is not None and o.baseline is not None:
        rec["baseline_adaptive_vs_static"] = {
            "topology": o.baseline.user_attrs.get("topology"),
            "controller": o.baseline_controller.as_dict(),
            "phases": o.baseline_spike.phases.to_dict(orient="records"),
        }
    rec["provenance"] = {
        "backend": o.backend,
        "autotune": __version__,
        "dynamo_version": p.dynamo.version,
        "framework": p.dynamo.framework,
        "seed": p.seed,
        "profile": p.name,
        "profile_digest": p.digest(),
        "study": o.study.study_name,
        "trial": t.number,
        "trials": len(o.study.trials),
    }
    return rec


OUTPUTS = {
    "profile.resolved.yaml",
    "environment.json",
    "trials.csv",
    "trials.parquet",
    "points.csv",
    "pareto.csv",
    "recommended.yaml",
    "dgd.yaml",
    "heatmaps.csv",
    "spike.csv",
    "summary.json",
    "report.md",
    "plots",
}


def write_results(out: Path, o: Outcome) -> dict[str, Any]:
    """Write every output file as one set (staged, then swapped in); returns the summary (summary.json)."""
    with staged(out, OUTPUTS) as stage:
        return _write_all(stage, o, out)


def _write_all(out: Path, o: Outcome, final: Path) -> dict[str, Any]:
    p = o.profile
    write_yaml(out / "profile.resolved.yaml", p.resolved_dict(), header=f"# resolved from {p.source}\n")
    write_json(out / "environment.json", environment(o.backend))
    trials = trials_frame(o.study)
    write_csv(out / "trials.csv", trials)
    write_parquet(out / "trials.parquet", trials)
    complete = [t for t in o.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    write_csv(out / "points.csv", points_frame(complete))
    front_nums = {t.number for t in o.front}
    front = trials[trials["number"].isin(front_nums)].sort_values("poa_hat")
    write_csv(out / "pareto.csv", front)
    rec = recommendation(o)
    mark = "# PREDICTION from the simulator: validate on a live backend before relying on it\n" if o.prediction else ""
    write_yaml(out / "recommended.yaml", rec, header=mark)
    topo = parse_topology(o.chosen.user_attrs["topology"])
    dgd = render_dgd(p, topo, study=o.study.study_name, trial_id="recommended")
    write_yaml(out / "dgd.yaml", dgd, header=f"# DynamoGraphDeployment for {topo} (kubectl apply -f dgd.yaml)\n" + mark)
    heat = pd.concat([g.assign(panel=k) for k, g in o.heatmaps.items()], ignore_index=True)
    write_csv(out / "heatmaps.csv", heat)
    spikes = [o.spike.phases.assign(topology=o.chosen.user_attrs["topology"], role="recommended")]
    if o.baseline_spike is not None and o.baseline is not None:
        spikes.append(o.baseline_spike.phases.assign(topology=o.baseline.user_attrs["topology"], role="baseline"))
    write_csv(out / "spike.csv", pd.concat(spikes, ignore_index=True))
    pts = points_frame([o.chosen] + ([o.baseline] if o.baseline is not None else []))
    curves = {
        f"{t.user_attrs.get('topology')} ({'recommended' if t is o.chosen else 'baseline'})": pts[
            pts["trial"] == t.number
        ]
        for t in [o.chosen] + ([o.baseline] if o.baseline is not None else [])
    }
    chosen_row = trials[trials["number"] == o.chosen.number].iloc[0]
    plots.sweep_plot(curves, out / "plots" / "poa_ttft_vs_concurrency.png")
    plots.pareto_plot(trials[trials["state"] == "COMPLETE"], front, chosen_row, out / "plots" / "pareto.png")
    plots.heatmap_plot(o.heatmaps, out / "plots" / "router_heatmaps.png")
    plots.spike_plot(o.spike.phases, out / "plots" / "spike_static_vs_adaptive.png")
    if o.baseline_spike is not None:
        plots.spike_plot(o.baseline_spike.phases, out / "plots" / "spike_static_vs_adaptive_baseline.png")
    counts = trials["state"].value_counts().to_dict()
    summary = {
        "profile": p.name,
        "prediction": o.prediction,
        "backend": o.backend.get("backend"),
        "trials": {str(k).lower(): int(v) for k, v in counts.items()},
        "recommended": rec["topology"]["string"],
        "gpus": rec["topology"]["gpus"],
        **{k: v for k, v in headline(o.chosen).items()},
        "slo_met": o.slo_met,
        "baseline": rec.get("baseline_comparison", {}).get("baseline"),
        "poa_hat_vs_baseline": rec.get("baseline_comparison", {}).get("poa_hat_ratio"),
        "tok_s_per_gpu_vs_baseline": rec.get("baseline_comparison", {}).get("tok_s_per_gpu_ratio"),
        "controller": {"theta1_ms": o.controller.theta1_ms, "theta2_ms": o.controller.theta2_ms},
        "results_dir": str(final),
    }
    write_json(out / "summary.json", summary)
    write_text(out / "report.md", render_report(o, rec, trials, front))
    return summary
