"""Write the results directory of a study (every file atomically).

profile.resolved.yaml  environment.json  study.journal
trials.csv  trials.parquet  points.csv  pareto.csv
recommended.yaml  dgd.yaml  summary.json  report.md
heatmaps.csv  plots/*.png  and the controller's files (``results.controller_files``)
"""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from autotune import __version__
from autotune.dynamo.flags import router_args
from autotune.k8s.render import render_dgd
from autotune.results import ci, plots
from autotune.results.controller_files import FILES as CONTROLLER_FILES
from autotune.results.controller_files import controller_summary, verdict, write_controller_files
from autotune.results.directory import staged
from autotune.results.files import write_csv, write_json, write_parquet, write_text, write_yaml
from autotune.results.outcome import Outcome
from autotune.results.prescreen import prescreen_section
from autotune.results.report import render_report, trial_intervals
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


def quoted(t: FrozenTrial) -> dict[str, Any]:
    """A trial's headline figures, each interval figure followed by ``<name>_ci: [lo, hi]``."""
    ivs = trial_intervals(t)
    out: dict[str, Any] = {}
    for k, v in headline(t).items():
        out[k] = v
        if k in ivs:
            out[f"{k}_ci"] = ci.ci_pair(ivs[k])
    return out


def comparison(t: FrozenTrial, b: FrozenTrial) -> dict[str, Any]:
    """Ratios of the chosen trial ``t`` over the baseline ``b``, each oriented so that > 1 favours ``t``,
    with its delta-method interval and whether that interval excludes 1 (``<name>_ratio_significant``)."""
    ti, bi = trial_intervals(t), trial_intervals(b)
    out: dict[str, Any] = {}
    for name, r in (
        ("poa_hat", ci.ratio(bi["poa_hat"], ti["poa_hat"])),  # x lower PoA-hat
        ("tok_s_per_gpu", ci.ratio(ti["tok_s_per_gpu"], bi["tok_s_per_gpu"])),  # x the throughput per GPU
        ("ttft_p99", ci.ratio(bi["ttft_p99_ms"], ti["ttft_p99_ms"])),  # x lower TTFT P99
    ):
        out[f"{name}_ratio"] = r["ratio"]
        out[f"{name}_ratio_ci"] = r["ci"]
        out[f"{name}_ratio_significant"] = r["significant"]
    return out


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
        "controller": o.controller.as_dict() | verdict(o.experiment),
        "operating_point": op,
        "predicted" if o.prediction else "measured": quoted(t),
        "slo": {"ttft_p99_ms": p.slo.ttft_p99_ms, "itl_p99_ms": p.slo.itl_p99_ms, "met": o.slo_met},
    }
    if o.baseline is not None:
        b = o.baseline
        rec["baseline_comparison"] = {
            "baseline": b.user_attrs.get("topology"),
            **{f"baseline_{k}": v for k, v in quoted(b).items()},
            "ci_level": p.measurement.ci_level,
            **comparison(t, b),
        }
    ph = o.spike.phases
    rec["adaptive_vs_static"] = ph.to_dict(orient="records")
    if o.baseline_experiment is not None and o.baseline is not None:
        rec["baseline_adaptive_vs_static"] = {
            "topology": o.baseline.user_attrs.get("topology"),
            "controller": o.baseline_experiment.settings.as_dict() | verdict(o.baseline_experiment),
            "phases": o.baseline_experiment.spike.phases.to_dict(orient="records"),
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
    *CONTROLLER_FILES,
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
    runs = [(o.chosen.user_attrs["topology"], "recommended", o.experiment)]
    if o.baseline_experiment is not None and o.baseline is not None:
        runs.append((o.baseline.user_attrs["topology"], "baseline", o.baseline_experiment))
    write_controller_files(out, runs)
    pts = points_frame([o.chosen] + ([o.baseline] if o.baseline is not None else []))
    curves = {
        f"{t.user_attrs.get('topology')} ({'recommended' if t is o.chosen else 'baseline'})": pts[
            pts["trial"] == t.number
        ]
        for t in [o.chosen] + ([o.baseline] if o.baseline is not None else [])
    }
    chosen_row = trials[trials["number"] == o.chosen.number].iloc[0]
    level = p.measurement.ci_level
    plots.sweep_plot(curves, out / "plots" / "poa_ttft_vs_concurrency.png", level)
    done = trials[trials["state"] == "COMPLETE"]
    plots.pareto_plot(done, front, chosen_row, out / "plots" / "pareto.png", level)
    plots.heatmap_plot(o.heatmaps, out / "plots" / "router_heatmaps.png", level)
    plots.spike_plot(o.spike.phases, out / "plots" / "spike_static_vs_adaptive.png")
    if o.baseline_spike is not None:
        plots.spike_plot(o.baseline_spike.phases, out / "plots" / "spike_static_vs_adaptive_baseline.png")
    counts = trials["state"].value_counts().to_dict()
    bc = rec.get("baseline_comparison", {})
    summary = {
        "profile": p.name,
        "prediction": o.prediction,
        "backend": o.backend.get("backend"),
        "trials": {str(k).lower(): int(v) for k, v in counts.items()},
        "recommended": rec["topology"]["string"],
        "gpus": rec["topology"]["gpus"],
        **quoted(o.chosen),
        "ci_level": p.measurement.ci_level,
        "slo_met": o.slo_met,
        "tied_with": list(o.ties),
        "baseline": bc.get("baseline"),
        "poa_hat_vs_baseline": bc.get("poa_hat_ratio"),
        "tok_s_per_gpu_vs_baseline": bc.get("tok_s_per_gpu_ratio"),
        **{k: v for k, v in bc.items() if k.endswith(("_ratio_ci", "_ratio_significant")) or k == "ttft_p99_ratio"},
        "controller": controller_summary(o.experiment),
        **({"baseline_controller": controller_summary(o.baseline_experiment)} if o.baseline_experiment else {}),
        "results_dir": str(final),
    }
    write_json(out / "summary.json", summary)
    write_text(out / "report.md", render_report(o, rec, trials, front) + prescreen_section(out))
    return summary
