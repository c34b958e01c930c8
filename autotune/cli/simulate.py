"""``autotune simulate``: one topology over a concurrency sweep on the simulator, for a quick look without a study."""

from __future__ import annotations

import logging
import math
from typing import Any

import click

from autotune.cli.options import REQUESTS, SEED, check_point_size, output_option, parse_int_list, profile_option
from autotune.cli.output import emit
from autotune.errors import InputError

log = logging.getLogger("autotune")


@click.command()
@profile_option
@click.option(
    "-t",
    "--topology",
    default=None,
    help="Topology, e.g. 1P4-5D4 or 6A4@tau=0.7,omega=0.5 (default: the profile's first baseline).",
)
@click.option(
    "-c", "--concurrency", default=None, help="Comma-separated concurrency points (default: the profile grid)."
)
@click.option("-n", "--requests", type=REQUESTS, default=None, help="Requests per point (default: profile).")
@click.option("--seed", type=SEED, default=None, help="Random seed (default: the profile's).")
@click.option("--perf-model", default="roofline", show_default=True, help="Step-time model: roofline or mocker.")
@output_option
def simulate(
    profile: str,
    topology: str | None,
    concurrency: str | None,
    requests: int | None,
    seed: int | None,
    perf_model: str,
    fmt: str,
) -> None:
    """Simulate one topology over a concurrency sweep and print one row per point."""
    from autotune.backends.sim import SimBackend
    from autotune.metrics import summarize
    from autotune.profile import load_profile, profile_topology
    from autotune.results.ci import fmt_interval, level_text
    from autotune.scoring import score_point, step_timers

    prof = load_profile(profile)
    if topology is None:
        if not prof.baselines:
            raise InputError("--topology: required because the profile lists no baselines")
        topology = prof.baselines[0]
    topo = profile_topology(prof, topology)
    points = (
        parse_int_list(concurrency, "--concurrency") if concurrency is not None else list(prof.workload.concurrency)
    )
    check_point_size(prof, requests, points)
    seed = prof.seed if seed is None else seed
    level = prof.measurement.ci_level
    dep = SimBackend(perf_model).deploy(prof, topo, trial_id="simulate")
    timers = step_timers(dep.perf, topo)
    rows, table = [], []
    for c in points:
        run = dep.run_point(c, seed=seed, requests=requests)
        m = run.summary = summarize(run, level=level)
        score = score_point(run, timers, prof.engine.block_size)
        note = _imprecision(m.steady, run.meta)
        log.log(
            logging.WARNING if note else logging.INFO,
            "C=%d: %s tok/s, TTFT p99 %s ms (%s CI, %d measured requests)%s",
            c,
            fmt_interval(m.output_tok_s, m.output_tok_s_lo, m.output_tok_s_hi),
            fmt_interval(m.ttft_p99_ms, m.ttft_p99_ms_lo, m.ttft_p99_ms_hi),
            level_text(level),
            m.requests,
            f"; {note}" if note else "",
        )
        row: dict[str, Any] = {k: v for k, v in score.row().items() if k != "regime"}
        row.update({k: run.meta[k] for k in RUN_META if k in run.meta})
        rows.append(row)
        table.append(
            {
                "concurrency": c,
                "steady": "yes" if m.steady else "no",
                "requests": m.requests,
                **{k: fmt_interval(row[k], row[f"{k}_lo"], row[f"{k}_hi"], sep="\n") for k, _ in FIGURES},
            }
        )
    data = {
        "profile": prof.name,
        "topology": topo.to_string(),
        "gpus": topo.gpus,
        "perf_model": perf_model,
        "seed": seed,
        "ci_level": level,
        "points": rows,
    }
    cols = [("concurrency", "C"), ("steady", "steady"), ("requests", "requests"), *FIGURES]
    emit(
        data,
        fmt,
        rows=table,
        columns=cols,
        title=f"{prof.name} {topo.to_string()} ({topo.gpus} GPUs, simulated)",
        caption=f"each figure: steady-state value [{level_text(level)} confidence interval]; "
        "requests: measured (in the steady-state window); see docs/measurement.md",
    )


# the headline figures the table shows, each with its interval (autotune.metrics.HEADLINE)
FIGURES = [
    ("output_tok_s", "tok/s"),
    ("tok_s_per_gpu", "tok/s/GPU"),
    ("req_s", "req/s"),
    ("ttft_p50_ms", "TTFT p50 ms"),
    ("ttft_p99_ms", "TTFT p99 ms"),
    ("itl_mean_ms", "ITL mean ms"),
    ("itl_p99_ms", "ITL p99 ms"),
    ("e2e_p99_ms", "E2E p99 ms"),
    ("prefix_hit_rate", "hit rate"),
    ("poa_hat", "PoA-hat"),  # docs/poa-hat.md
    ("routing_regret", "routing regret"),
]
# how the adaptive run length ended (autotune.backends.sim), kept in -o json|yaml rows
RUN_META = (
    "requests_run",
    "converged",
    "limiting_figure",
    "precision_ratio",
    "stop_reason",
    "trace_requests",
    "trace_passes",
)


def _imprecision(steady: bool, meta: dict[str, Any]) -> str:
    """Why a point's figures are less precise than the profile's ``measurement`` section asks ("" when they are not)."""
    if meta.get("converged") is False:
        ratio = float(meta.get("precision_ratio", float("nan")))
        how = (
            f"is still {ratio:.1f}x its precision target"
            if math.isfinite(ratio)
            else "has no bound yet (too few samples beyond the percentile)"
        )
        return (
            f"NOT converged after {meta.get('requests_run', '?')} requests: the "
            f"{meta.get('limiting_figure') or 'warm-up'} interval {how} "
            "(raise measurement.max_requests for tighter figures)"
        )
    if not steady:
        return "no steady state found (the warm-up may not have settled): run more requests"
    return ""
