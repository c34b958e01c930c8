"""The paper-reproduction table: autotune's simulator on the paper's three setups, next to the paper's numbers.

For each paper profile at its paper topology (the profile's first baseline), in the simulator:

1. a steady-state concurrency sweep: TTFT P99, output tok/s, PoA-hat (the paper's reading) and the
   routing regret, each with its 95 % interval, the regime labels and the knee (``bench_regimes``);
2. the controller derived from that sweep (``autotune.adaptive.derive_controller``: (τ, ω) grids on
   common random numbers per regime, Dynamo's default kept unless a cell is significantly better);
3. the 16-cell (τ, ω) spread (``autotune.presets.heatmap``, ``grid_spread``) below the knee (C = 64),
   at the paper's C = 128 and at the first saturated point: PoA-hat mean ± SD and max/min over the cells, and how many cells
   differ from the default beyond their intervals;
4. adaptive vs static over the open-loop spike (``autotune.controller_eval``), per phase, ratios over
   seeds with intervals, with the derived presets and with the paper's (paper.md §5), as the paper's
   controller sets them (when every derived preset is the default, the derived controller cannot
   change a run; the paper's can).

    python benchmarks/bench_paper.py [--quick] [-p paper-70b-1p2d ...] [--seed 0]

Prints markdown tables (docs/paper-reproduction.md "The table: autotune vs the paper").
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_regimes import PAPER_PROFILES, fmt_interval, paper_topology, run_sweep  # noqa: E402

from autotune.adaptive import derive_controller  # noqa: E402
from autotune.controller import PAPER_PRESETS, ControllerSettings  # noqa: E402
from autotune.controller_eval import SpikeReport, evaluate_controller  # noqa: E402
from autotune.errors import AutotuneError  # noqa: E402
from autotune.intervals import Interval  # noqa: E402
from autotune.presets import GridSpread, grid_spread, heatmap  # noqa: E402
from autotune.profile import Profile, load_profile  # noqa: E402
from autotune.regimes import SATURATED  # noqa: E402
from autotune.scoring import TrialResult  # noqa: E402
from autotune.topology import DEFAULT_ROUTER, Topology  # noqa: E402

GRID = [16, 32, 64, 96, 128, 192, 256, 384]
QUICK_GRID = [32, 64, 128, 192]
BELOW_C = 64  # paper.md §4: the below-saturation heatmap is at C = 64
PAPER_SAT_C = 128  # paper.md §4: the saturated heatmaps are at C = 128, the first post-knee point
QUICK_REQUESTS = 300  # per heatmap cell in --quick


def _r(i: Interval, nd: int = 2) -> str:
    """A ratio with its interval; '*' when the interval excludes 1."""
    if not math.isfinite(i.value):
        return "-"
    sig = math.isfinite(i.lo) and math.isfinite(i.hi) and (i.lo > 1 or i.hi < 1)
    return fmt_interval(i, nd) + (" *" if sig else "")


def _col(df: pd.DataFrame | pd.Series, name: str) -> Interval:
    return Interval(float(df[name]), float(df[f"{name}_lo"]), float(df[f"{name}_hi"]))


def quick_profile(profile: Profile) -> Profile:
    """Smoke-run budget: shorter steady-state runs and two seeds for the open-loop experiment."""
    meas = profile.measurement.model_copy(update={"max_requests": 2000})
    ce = profile.controller_eval.model_copy(update={"seeds": 2, "phase_e2e_multiple": 2.0})
    return profile.model_copy(update={"measurement": meas, "controller_eval": ce})


def print_sweep(name: str, topo: Topology, result: TrialResult, seed: int, wall_s: float) -> None:
    print(f"\n### {name}: {topo.to_string()} (seed {seed}, {wall_s:.0f} s)\n")
    print("| C | TTFT P99 ms | output tok/s | PoA-hat | routing regret | regime |")
    print("|---|---|---|---|---|---|")
    for p in result.points:
        m = p.metrics
        print(
            f"| {m.concurrency} | {fmt_interval(m.interval('ttft_p99_ms'))} | {fmt_interval(m.interval('output_tok_s'))} | "
            f"{fmt_interval(p.poa_interval, 1)} | {fmt_interval(p.regret_interval, 3)} | {p.regime} |"
        )
    knee = result.knee_concurrency
    print(f"\nknee: {knee if knee is not None else 'none in the grid'}")


def print_spreads(spreads: dict[int, tuple[GridSpread, pd.DataFrame]]) -> None:
    print(
        "\n| C | cells | PoA-hat mean ± SD | min – max (max/min) | default PoA-hat | cells ≠ default: PoA-hat / TTFT P99 |"
    )
    print("|---|---|---|---|---|---|")
    for c, (_, grid) in spreads.items():
        d = grid[
            (grid["temperature"] == DEFAULT_ROUTER.temperature)
            & (grid["overlap_weight"] == DEFAULT_ROUTER.overlap_weight)
        ]
        dflt = fmt_interval(_col(d.iloc[0], "poa_hat"), 1) if len(d) else "-"
        # Dynamo 0.9.0 at ω = 0 keeps no overlap index and logs overlap 0 (docs/paper-reproduction.md), which
        # prices the frozen no-queue optimum on the whole prompt: the ω > 0 cells show the spread without it
        for label, g in ((str(c), grid), (f"{c} (ω > 0)", grid[grid["overlap_weight"] > 0])):
            s = grid_spread(g)
            print(
                f"| {label} | {s.cells} | {s.poa_mean:.1f} ± {s.poa_sd:.2f} | {s.poa_min:.1f} – {s.poa_max:.1f} "
                f"({s.max_over_min:.3f}×) | {dflt} | {s.poa_differs} / {s.ttft_differs} |"
            )


def print_spike(label: str, rep: SpikeReport) -> None:
    presets = ", ".join(f"{k} τ {v.temperature:g} ω {v.overlap_weight:g}" for k, v in rep.settings.presets.items())
    sw = ", ".join(f"{t:.1f} s {what}" for t, what in rep.switches) or "none"
    print(f"\n#### adaptive vs static, {label} ({presets}); {len(rep.seeds)} seeds")
    print(
        f"capacity {rep.plan.capacity_rps:.0f} req/s ({rep.plan.capacity_source}), phase {rep.plan.phase_s:.1f} s, "
        f"θ1/θ2 {rep.settings.theta1_x:g}/{rep.settings.theta2_x:g} × {rep.settings.baseline_ttft_p99_ms:.0f} ms; "
        f"switches (first seed): {sw}\n"
    )
    print(
        "| phase | load × capacity | static PoA-hat | adaptive PoA-hat | PoA-hat ratio | TTFT P99 ratio | output tok/s ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    ph = rep.phases.set_index(["policy", "phase"])
    for _, e in rep.effect.iterrows():
        st, ad = ph.loc[("static", e["phase"])], ph.loc[("adaptive", e["phase"])]
        print(
            f"| {e['phase']} | {e['load_x_capacity']:.1f} | {fmt_interval(_col(st, 'poa_hat'), 1)} | {fmt_interval(_col(ad, 'poa_hat'), 1)} | "
            f"{_r(_col(e, 'poa_hat_ratio'))} | {_r(_col(e, 'ttft_p99_ms_ratio'))} | {_r(_col(e, 'output_tok_s_ratio'))} |"
        )


def saturated_c(result: TrialResult) -> int:
    """The first saturated grid point (the paper's C = 128 when the sweep never saturates)."""
    sat = [p.metrics.concurrency for p in result.points if p.regime == SATURATED]
    return sat[0] if sat else PAPER_SAT_C


def reproduce(name: str, grid: list[int], seed: int, quick: bool) -> dict[str, object]:
    """Everything for one profile; prints its tables and returns the headline figures."""
    profile = load_profile(name)
    if quick:
        profile = quick_profile(profile)
    topo = paper_topology(profile)
    t0 = time.monotonic()
    result = run_sweep(profile, topo, grid, seed)
    print_sweep(name, topo, result, seed, time.monotonic() - t0)
    requests = QUICK_REQUESTS if quick else None
    settings, grids, choices = derive_controller(profile, topo, result, seed=seed, requests=requests)
    by_c = {int(k.split("@C")[1]): g for k, g in grids.items()}
    spreads: dict[int, tuple[GridSpread, pd.DataFrame]] = {}
    for c in sorted({BELOW_C, PAPER_SAT_C, saturated_c(result)}):
        g = by_c.get(c)
        if g is None:
            g = heatmap(profile, topo, c, seed=seed, requests=requests)
        spreads[c] = (grid_spread(g), g)
    print_spreads(spreads)
    for ch in choices.values():
        print(f"- preset {ch.regime}: τ {ch.preset.temperature:g} ω {ch.preset.overlap_weight:g} — {ch.reason}")
    reports = {"derived presets": evaluate_controller(profile, topo, settings, result, seed=seed, sensitivity=False)}
    if settings.presets != PAPER_PRESETS:
        paper: ControllerSettings = replace(settings, presets=dict(PAPER_PRESETS))
        reports["paper presets (§5)"] = evaluate_controller(profile, topo, paper, result, seed=seed, sensitivity=False)
    for label, rep in reports.items():
        print_spike(label, rep)
    print(f"\n({name}: {time.monotonic() - t0:.0f} s)")
    return {"result": result, "spreads": spreads, "reports": reports}


def summary(rows: dict[str, dict[str, object]]) -> None:
    """One row per profile: the figures the paper's headline numbers are compared with."""
    print("\n## Summary (paper numbers: reference/paper.md §4, §5, §7)\n")
    print("| profile | knee | 16-cell PoA-hat mean ± SD (max/min) | spike-phase ratio PoA-hat / TTFT P99 / tok/s |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        res: TrialResult = r["result"]  # type: ignore[assignment]
        spreads: dict[int, tuple[GridSpread, pd.DataFrame]] = r["spreads"]  # type: ignore[assignment]
        reports: dict[str, SpikeReport] = r["reports"]  # type: ignore[assignment]
        sp = [f"C={c}: {s.poa_mean:.1f} ± {s.poa_sd:.2f} ({s.max_over_min:.2f}×)" for c, (s, _) in spreads.items()]
        eff = []
        for label, rep in reports.items():
            e = rep.effect[rep.effect["load_x_capacity"] > 1].iloc[-1]
            eff.append(
                f"{label}, {e['phase']}: {_r(_col(e, 'poa_hat_ratio'))} / {_r(_col(e, 'ttft_p99_ms_ratio'))} / "
                f"{_r(_col(e, 'output_tok_s_ratio'))}"
            )
        print(f"| {name} | {res.knee_concurrency} | {'; '.join(sp)} | {'; '.join(eff)} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-p", "--profile", action="append", help="profile name (repeatable); default: the paper's three")
    ap.add_argument("--quick", action="store_true", help="smoke run: 4-point grid, short runs, two seeds")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.monotonic()
    try:
        names = a.profile or PAPER_PROFILES
        for n in names:
            load_profile(n)  # every name checked before the first minute of simulation
        rows = {n: reproduce(n, QUICK_GRID if a.quick else GRID, a.seed, a.quick) for n in names}
    except AutotuneError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    summary(rows)
    print(f"\n(wall time {time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
