"""What the controller does under load it must and must not react to, measured over seeds.

* Ramp and spike (``LoadPlan.spike``): static default routing vs the controller, per phase, on the
  same seeds (common random numbers): figures with intervals over seeds, the adaptive/static ratio
  seed by seed.
* Detector: a false positive is an entry into SATURATED while the offered load is at or below the
  load the sweep measured below the knee (and no overload came before it: a backlog drains after
  one); a false negative is an overload episode (offered load past the capacity) longer than the
  dwell during which the controller was never in SATURATED. Rates over seeds, with exact binomial intervals.
* Transient at each switch: TTFT P99 of the requests arriving in the window after the switch, against
  the window before it and against the static run's same window (same arrivals).
* Sensitivity: θ1, θ2, EWMA α and dwell one at a time, the outcome (TTFT P99 and output tok/s over
  the overload phases, adaptive/static) with its interval over seeds, switches and detector errors.

When every preset is Dynamo's default the controller cannot change a run, so the static runs carry
the controller (and every sensitivity variant) as watchers (``spike.Watchers``) instead of
simulating the same runs again per setting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from autotune.controller import ControllerSettings
from autotune.controller_checks import (
    TRANSIENT_COLUMNS,
    changes,
    detections,
    detector_summary,
    episodes,
    false_positives,
    p99_ms,
    sensitivity_variants,
    transient_summary,
    transients,
)
from autotune.perf import get_perf_model
from autotune.profile import Profile
from autotune.regimes import BELOW
from autotune.scoring import TrialResult, step_timers
from autotune.search.signals import worker_init
from autotune.seeds import excludes_one, mean_interval, paired_ratio
from autotune.spike import (
    LoadPlan,
    Phase,
    PolicyRun,
    measure_capacity,
    phase_rows,
    plan_load,
    routers,
    run_policy,
    scaled,
)
from autotune.topology import DEFAULT_ROUTER, Topology


# ---- the experiment ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpikeReport:
    """The controller's open-loop tests on one topology (see the module docstring)."""

    plan: LoadPlan
    settings: ControllerSettings  # as run: on the experiment's clock (``spike.scaled``)
    replayed: bool  # every preset is the default: the adaptive runs are the static runs, the controller watching
    seeds: tuple[int, ...]
    per_seed: pd.DataFrame  # policy × seed × phase
    phases: pd.DataFrame  # policy × phase: figures with intervals over seeds
    effect: pd.DataFrame  # per phase: adaptive / static ratios over seeds (common random numbers)
    switches: list[tuple[float, str]]  # the first seed's adaptive run: (time, from->to)
    detector: pd.DataFrame  # per schedule × seed: false positives, episodes, missed, delay
    detector_summary: dict[str, Any]
    transients: pd.DataFrame  # per switch
    transient_summary: pd.DataFrame  # per switch kind: after / static with its interval
    sensitivity: pd.DataFrame | None
    adaptive_runs: int = 0  # adaptive runs the experiment asked for
    adaptive_runs_simulated: int = 0  # of which simulated: the rest were provably a run already made


class _Runner:
    """Runs a schedule for a seed, simulating an adaptive run only when no run made already is provably it.

    Every run carries every controller setting of the experiment as a watcher (``spike.Watchers``). An
    adaptive run for a setting is the static run when, watching it, the setting never sets a router
    other than the static one; else it is the centre setting's adaptive run when, watching that, it sets
    the same routers as the centre did; else it is simulated.
    """

    def __init__(
        self, profile: Profile, topology: Topology, plan: LoadPlan, settings: list[ControllerSettings]
    ) -> None:
        self.profile, self.topology, self.plan = profile, topology, plan
        self.settings = settings  # every setting the experiment will ask for; the first is the centre
        self._runs: dict[tuple[str, int, int], PolicyRun] = {}  # (schedule, seed, setting index or -1 static)
        self.simulated = 0  # adaptive runs that needed a simulation of their own
        self.asked = 0

    def _run(self, name: str, phases: tuple[Phase, ...], seed: int, i: int) -> PolicyRun:
        key = (name, seed, i)
        if key not in self._runs:
            s = self.settings[i] if i >= 0 else None
            self._runs[key] = run_policy(
                self.profile,
                self.topology,
                self.plan,
                phases,
                seed=seed,
                router=s.presets[BELOW] if s is not None else DEFAULT_ROUTER,
                controller=s,
                watchers=self.settings,
            )
            self.simulated += i >= 0
        return self._runs[key]

    def prefetch_static(self, schedules: dict[str, tuple[Phase, ...]], seeds: Sequence[int], jobs: int) -> None:
        """Simulate every static run the experiment will ask for on ``jobs`` processes (same runs as serial)."""
        keys = [(name, sd) for name in schedules for sd in seeds if (name, sd, -1) not in self._runs]
        if jobs <= 1 or len(keys) <= 1:
            return
        args = [(self.profile, self.topology, self.plan, schedules[n], sd, self.settings) for n, sd in keys]
        with ProcessPoolExecutor(max_workers=min(jobs, len(keys)), initializer=worker_init) as pool:
            for (name, sd), run in zip(keys, pool.map(_static_run, *zip(*args, strict=True)), strict=True):
                self._runs[(name, sd, -1)] = run

    def static(self, name: str, phases: tuple[Phase, ...], seed: int) -> PolicyRun:
        return self._run(name, phases, seed, -1)

    def adaptive(self, name: str, phases: tuple[Phase, ...], seed: int, s: ControllerSettings) -> PolicyRun:
        self.asked += 1
        i = self.settings.index(s)
        st = self.static(name, phases, seed)
        if all(r == DEFAULT_ROUTER for r in routers(s, st.watched[i])):
            return PolicyRun("adaptive", seed, st.run, st.watched[i])
        if i > 0:
            centre = self._run(name, phases, seed, 0)
            if routers(s, centre.watched[i]) == routers(self.settings[0], centre.history):
                return PolicyRun("adaptive", seed, centre.run, centre.watched[i])
        return self._run(name, phases, seed, i)


def _static_run(
    profile: Profile,
    topology: Topology,
    plan: LoadPlan,
    phases: tuple[Phase, ...],
    seed: int,
    watchers: list[ControllerSettings],
) -> PolicyRun:
    return run_policy(
        profile, topology, plan, phases, seed=seed, router=DEFAULT_ROUTER, controller=None, watchers=watchers
    )


def _summaries(per_seed: pd.DataFrame, level: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    figs = ("poa_hat", "ttft_p99_ms", "output_tok_s")
    rows, eff = [], []
    for (policy, phase), g in per_seed.groupby(["policy", "phase"], sort=False):
        row: dict[str, Any] = {
            "policy": policy,
            "phase": phase,
            "load_x_capacity": g["load_x_capacity"].iloc[0],
            "seeds": len(g),
            "requests": float(g["requests"].mean()),
            "mean_e2e_s": float(g["mean_e2e_s"].mean()),
        }
        for f in figs:
            iv = mean_interval(g[f].tolist(), level)
            row |= {f: iv.value, f"{f}_lo": iv.lo, f"{f}_hi": iv.hi}
        rows.append(row)
    for phase, g in per_seed.groupby("phase", sort=False):
        a = g[g["policy"] == "adaptive"].sort_values("seed")
        s = g[g["policy"] == "static"].sort_values("seed")
        row = {"phase": phase, "load_x_capacity": g["load_x_capacity"].iloc[0]}
        for f in figs:
            iv = paired_ratio(a[f].tolist(), s[f].tolist(), level)
            row |= {f"{f}_ratio": iv.value, f"{f}_ratio_lo": iv.lo, f"{f}_ratio_hi": iv.hi}
            row[f"{f}_ratio_significant"] = excludes_one(iv)
        eff.append(row)
    return pd.DataFrame(rows), pd.DataFrame(eff)


def _overload_outcome(a: PolicyRun, s: PolicyRun, phases: Sequence[Phase]) -> tuple[float, float, float, float]:
    """TTFT P99 and output tok/s over the overloaded phases: (adaptive, static) each."""
    eps = episodes(phases)
    lo, hi = (eps[0][0], eps[-1][1]) if eps else (0.0, 0.0)
    out = []
    for pr in (a, s):
        df = pr.run.requests
        p99, _ = p99_ms(df, lo, hi)
        ok = df[(df["status"] == "ok") & (df["completion_s"] >= lo) & (df["completion_s"] < hi)]
        out += [p99, float(ok["output_tokens"].sum() / max(hi - lo, 1e-9))]
    return out[0], out[2], out[1], out[3]


def evaluate_controller(
    profile: Profile,
    topology: Topology,
    settings: ControllerSettings,
    result: TrialResult,
    *,
    seed: int,
    sensitivity: bool,
    jobs: int = 1,
) -> SpikeReport:
    spec = profile.controller_eval
    level = profile.measurement.ci_level
    capacity, source = measure_capacity(profile, topology, result, seed=seed)
    plan = plan_load(profile, result, capacity, source, spec)
    run_s = scaled(settings, plan.phase_s)
    replayed = all(p == DEFAULT_ROUTER for p in settings.presets.values())
    variants = sensitivity_variants(run_s) if sensitivity else [("centre", math.nan, run_s)]
    runner = _Runner(profile, topology, plan, [v for _, _, v in variants])
    seeds = tuple(seed + i for i in range(spec.seeds))
    timers = step_timers(get_perf_model("roofline", profile), topology)
    knee_x = plan.below_knee_rps / plan.capacity_rps
    window = 2 * run_s.interval_s
    runner.prefetch_static({"spike": plan.spike, "calm": plan.calm}, seeds, jobs)
    per_seed, det, trans = [], [], []
    switches: list[tuple[float, str]] = []
    for sd in seeds:
        st = runner.static("spike", plan.spike, sd)
        ad = runner.adaptive("spike", plan.spike, sd, run_s)
        st_rows = phase_rows(st, plan.spike, timers, profile.engine.block_size)
        ad_rows = (
            [r | {"policy": "adaptive"} for r in st_rows]
            if ad.run is st.run
            else phase_rows(ad, plan.spike, timers, profile.engine.block_size)
        )
        per_seed += st_rows + ad_rows
        calm = runner.adaptive("calm", plan.calm, sd, run_s)
        for name, pr, phases in (("spike", ad, plan.spike), ("calm", calm, plan.calm)):
            fp = false_positives(pr.history, phases, knee_x)
            found = detections(pr.history, episodes(phases), run_s.dwell_s)
            det.append(
                {
                    "schedule": name,
                    "seed": sd,
                    "false_positives": len(fp),
                    "first_false_positive_s": fp[0] if fp else math.nan,
                    "episodes": len(found),
                    "missed": sum(d["missed"] for d in found),
                    "detection_delay_s": found[0]["delay_s"] if found else math.nan,
                    "switches": len(changes(pr.history)),
                }
            )
        trans += [r | {"seed": sd} for r in transients(ad.history, ad.run.requests, st.run.requests, window)]
        if sd == seeds[0]:
            switches = list(changes(ad.history))
    per = pd.DataFrame(per_seed)
    summary, effect = _summaries(per, level)
    detf = pd.DataFrame(det)
    trf = pd.DataFrame(trans, columns=TRANSIENT_COLUMNS)
    sens = _sensitivity(runner, plan, variants, seeds[: spec.sensitivity_seeds], level) if sensitivity else None
    return SpikeReport(
        plan,
        run_s,
        replayed,
        seeds,
        per,
        summary,
        effect,
        switches,
        detf,
        detector_summary(detf, level),
        trf,
        transient_summary(trf, level),
        sens,
        runner.asked,
        runner.simulated,
    )


def _sensitivity(
    runner: _Runner,
    plan: LoadPlan,
    variants: list[tuple[str, float, ControllerSettings]],
    seeds: Sequence[int],
    level: float,
) -> pd.DataFrame:
    knee_x = plan.below_knee_rps / plan.capacity_rps
    rows = []
    for param, value, s in variants:
        a_p99, s_p99, a_tok, s_tok, fps, missed, eps, sw = [], [], [], [], 0, 0, 0, []
        for sd in seeds:
            ad = runner.adaptive("spike", plan.spike, sd, s)
            st = runner.static("spike", plan.spike, sd)
            ap, sp, at, stk = _overload_outcome(ad, st, plan.spike)
            a_p99.append(ap)
            s_p99.append(sp)
            a_tok.append(at)
            s_tok.append(stk)
            calm = runner.adaptive("calm", plan.calm, sd, s)
            fps += int(bool(false_positives(calm.history, plan.calm, knee_x)))
            found = detections(ad.history, episodes(plan.spike), s.dwell_s)
            missed += sum(d["missed"] for d in found)
            eps += len(found)
            sw.append(len(changes(ad.history)))
        ttft = paired_ratio(a_p99, s_p99, level)
        tok = paired_ratio(a_tok, s_tok, level)
        rows.append(
            {
                "parameter": param,
                "value": value,
                "theta1_x": s.theta1_x,
                "theta2_x": s.theta2_x,
                "ewma_alpha": s.ewma_alpha,
                "dwell_s": s.dwell_s,
                "seeds": len(seeds),
                "overload_ttft_p99_ratio": ttft.value,
                "overload_ttft_p99_ratio_lo": ttft.lo,
                "overload_ttft_p99_ratio_hi": ttft.hi,
                "overload_output_tok_s_ratio": tok.value,
                "overload_output_tok_s_ratio_lo": tok.lo,
                "overload_output_tok_s_ratio_hi": tok.hi,
                "switches_mean": float(np.mean(sw)),
                "calm_false_positive_runs": fps,
                "missed_episodes": missed,
                "episodes": eps,
            }
        )
    return pd.DataFrame(rows)
