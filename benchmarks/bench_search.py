"""Search benchmarks (issue 3): prints figures, asserts nothing.

1. Wall time of a 200-trial simulated study on the 70B B200 paper profile (5-point sweep per
   trial), both cores.
2. Search efficiency on a space small enough to enumerate: trials until the study's best is within
   2 % of the exhaustive optimum, for TPE and for random search (median of 5 seeds). Both
   objectives are checked: best-so-far PoA-hat and best-so-far tok/s/GPU (SLO-feasible trials).

    python benchmarks/bench_search.py [--trials 200] [--skip-study]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import optuna

from autotune.feasibility import check_feasibility
from autotune.profile import load_profile
from autotune.search.evaluate import evaluate_topology
from autotune.search.space import enumerate_space, suggest_topology
from autotune.search.study import StudyConfig, make_sampler, run_study

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_wall_time(trials: int) -> None:
    prof = load_profile("paper-70b-1p5d")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        study = run_study(prof, StudyConfig(Path(tmp), trials, jobs=os.cpu_count() or 2, seed=0))
        wall = time.perf_counter() - t0
        states = [t.state.name for t in study.trials]
    print(
        f"study: {trials} evaluated trials (+{states.count('PRUNED')} infeasible proposals pruned), "
        f"5-point sweep x {prof.search.requests_per_point} requests each, {os.cpu_count()} workers: "
        f"{wall:.1f} s wall ({wall / trials * 1000:.0f} ms per trial)"
    )


def small_profile():
    prof = load_profile("paper-70b-1p5d")
    search = prof.search.model_copy(
        update={
            "prefill_tp": [4, 8],
            "decode_tp": [4, 8],
            "aggregated_tp": [4, 8],
            "max_prefill_workers": 2,
            "max_decode_workers": 4,
            "min_gpus": 8,
            "router_step": 0.5,
            "temperature": (0.0, 1.0),
            "overlap_weight": (0.0, 2.0),
            "concurrency": [128],
            "requests_per_point": 600,
        }
    )
    return prof.model_copy(update={"search": search})


def _eval(args):
    prof, topo = args
    r = evaluate_topology(prof, topo, seed=prof.seed, concurrency=[128], requests=600)
    return topo.to_string(), (r.poa_objective, r.tok_s_per_gpu, r.slo_ok)


def efficiency(seeds: int = 5) -> None:
    prof = small_profile()
    grid = [t for t in enumerate_space(prof) if check_feasibility(t, prof).ok and t.gpus >= prof.search.min_gpus]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count() or 2) as ex:
        table = dict(ex.map(_eval, [(prof, t) for t in grid], chunksize=4))
    feasible = {k: v for k, v in table.items() if v[2]}
    best_poa = min(v[0] for v in feasible.values())
    best_tput = max(v[1] for v in feasible.values())
    print(
        f"exhaustive: {len(grid)} feasible grid points evaluated in {time.perf_counter() - t0:.1f} s; "
        f"optimum PoA-hat {best_poa:.4f}, optimum {best_tput:.0f} tok/s/GPU"
    )
    budget = len(grid)
    for sampler in ("tpe", "random"):
        hits_poa, hits_tput = [], []
        for seed in range(seeds):
            study = optuna.create_study(directions=["minimize", "maximize"], sampler=make_sampler(sampler, seed))
            got_poa = got_tput = None
            evaluated = 0
            while evaluated < budget and (got_poa is None or got_tput is None):
                trial = study.ask()
                topo = suggest_topology(trial, prof)
                key = topo.to_string()
                if key not in table:
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    continue
                poa, tput, ok = table[key]
                evaluated += 1
                trial.set_constraint("slo", 0.0 if ok else 1.0)
                study.tell(trial, [poa, tput])
                if ok and got_poa is None and poa <= best_poa * 1.02:
                    got_poa = evaluated
                if ok and got_tput is None and tput >= best_tput * 0.98:
                    got_tput = evaluated
            hits_poa.append(got_poa or budget)
            hits_tput.append(got_tput or budget)
        mp, mt = statistics.median(hits_poa), statistics.median(hits_tput)
        print(
            f"{sampler:>6}: trials to within 2 % of the optimum — PoA-hat {mp:.0f} ({mp / budget:.1%} of the grid), "
            f"tok/s/GPU {mt:.0f} ({mt / budget:.1%}); per seed {hits_poa} / {hits_tput}"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--skip-study", action="store_true")
    a = ap.parse_args()
    if not a.skip_study:
        study_wall_time(a.trials)
    efficiency()
