"""The study loop: ask-and-tell over an Optuna study, trials evaluated in parallel, nothing lost.

* Storage: a journal file in the results directory by default (any Optuna storage URL accepted).
  Every finished trial is told to storage before the next batch is asked, so a crash or Ctrl-C
  loses at most the trials in flight — and those are failed with a reason, never left RUNNING.
* Resume: trials a crashed process left RUNNING are failed with a reason first; finished trials
  count towards the budget and are never repeated (baselines are enqueued only once).
* Warm start: the profile's baseline topologies with Dynamo's default router settings, so every
  report can say how far the recommendation is from the default.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from autotune.errors import AutotuneError, InfeasibleError, InputError, Interrupted
from autotune.feasibility import check_feasibility
from autotune.profile import Profile
from autotune.search.evaluate import TrialResult, evaluate_topology
from autotune.search.space import outside_space, suggest_topology, topology_params
from autotune.topology import DEFAULT_ROUTER, Topology, parse_topology

log = logging.getLogger("autotune.search")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

OBJECTIVES = ("poa_hat", "tok_s_per_gpu")
DIRECTIONS = ("minimize", "maximize")


@dataclass(frozen=True)
class StudyConfig:
    results_dir: Path
    trials: int
    backend: str = "sim"
    backend_options: tuple[tuple[str, Any], ...] = ()
    storage: str | None = None  # Optuna storage URL; default: journal file in results_dir
    resume: bool = False
    seed: int = 0
    jobs: int = 1
    sampler: str = "tpe"


def open_storage(cfg: StudyConfig) -> optuna.storages.BaseStorage | str:
    if cfg.storage:
        return cfg.storage
    cfg.results_dir.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(cfg.results_dir / "study.journal")))


def study_name(profile: Profile) -> str:
    return f"autotune-{profile.name}"


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=10)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    raise InputError(f"--sampler: unknown sampler {name!r} (choose tpe, random, nsga2)")


def load_study(profile: Profile, cfg: StudyConfig, *, create: bool) -> optuna.Study:
    storage = open_storage(cfg)
    name = study_name(profile)
    try:
        existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    except Exception as exc:  # noqa: BLE001 - any storage error here means an unusable URL or file
        raise InputError(f"--storage: cannot open {cfg.storage or cfg.results_dir}: {exc}") from None
    if name in existing and create and not cfg.resume:
        raise InputError(f"--results: {cfg.results_dir} already holds study {name!r}; pass --resume to continue it "
                         "or choose another --results directory")
    if name not in existing and not create:
        raise InputError(f"no study {name!r} in {cfg.storage or cfg.results_dir}")
    n_before = 0
    if name in existing:
        n_before = len(optuna.load_study(study_name=name, storage=storage).trials)
    # a resumed sampler must not replay its start-up points (optuna #3255): offset its seed
    sampler = make_sampler(cfg.sampler, cfg.seed + n_before)
    study = optuna.create_study(study_name=name, storage=storage, directions=list(DIRECTIONS), sampler=sampler,
                                load_if_exists=True)
    if name not in existing:
        study.set_metric_names(list(OBJECTIVES))
        study.set_user_attr("profile_digest", profile.digest())
        for topo in baseline_topologies(profile):
            why = outside_space(topo, profile)
            if why:
                log.warning("baseline %s is outside the search space (%s); not enqueued", topo.shape(), why)
                continue
            study.enqueue_trial(topology_params(topo, profile), user_attrs={"baseline": topo.to_string()})
    elif study.user_attrs.get("profile_digest") not in (None, profile.digest()):
        raise InputError(f"--resume: the profile changed since the study started (digest "
                         f"{study.user_attrs.get('profile_digest')} != {profile.digest()}); use a new --results")
    return study


def baseline_topologies(profile: Profile) -> list[Topology]:
    out = []
    for i, text in enumerate(profile.baselines):
        topo = parse_topology(text, flag=f"{profile.source}: baselines.{i}")
        if "@" not in text:
            topo = topo.with_router(DEFAULT_ROUTER)
        out.append(topo)
    return out


def fail_stale_trials(study: optuna.Study) -> list[int]:
    """Trials a killed process left RUNNING: fail them with a reason (journal storage has no heartbeat)."""
    stale = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    for number in stale:
        study._storage.set_trial_user_attr(study.trials[number]._trial_id, "fail_reason",
                                           "left RUNNING by an interrupted run; failed on resume")
        study.tell(number, state=TrialState.FAIL)
    return stale


def _record(trial: optuna.Trial, res: TrialResult) -> None:
    trial.set_user_attr("topology", res.topology)
    trial.set_user_attr("gpus", res.gpus)
    trial.set_user_attr("knee_concurrency", res.knee_concurrency)
    trial.set_user_attr("ttft_p99_ms", res.ttft_p99_ms)
    trial.set_user_attr("itl_p99_ms", res.itl_p99_ms)
    trial.set_user_attr("output_tok_s", res.output_tok_s)
    trial.set_user_attr("slo_ok", res.slo_ok)
    trial.set_user_attr("points", json.dumps([p.row() for p in res.points], default=float))
    trial.set_user_attr("meta", json.dumps(res.meta, default=str))
    for key, val in res.constraints.items():
        trial.set_constraint(key, float(val))


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A CronJob's SIGTERM behaves like Ctrl-C: in-flight trials are failed with a reason, then exit."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while storage is mid-update, so no trial is created or told half-way."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (AttributeError, ValueError):  # not POSIX, or not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)


def _finished(study: optuna.Study) -> int:
    """Trials that count towards the budget: evaluated ones (pruned infeasible points cost nothing)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.FAIL))


def _pruned(study: optuna.Study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state == TrialState.PRUNED)


PRUNE_CAP_FACTOR = 20  # stop asking after this many infeasible proposals per budgeted trial


def run_study(profile: Profile, cfg: StudyConfig, on_trial: Callable[[optuna.trial.FrozenTrial, int, int], None] | None = None
              ) -> optuna.Study:
    """Run (or resume) the study until ``cfg.trials`` trials have finished."""
    study = load_study(profile, cfg, create=True)
    stale = fail_stale_trials(study)
    if stale:
        log.warning("failed %d trial(s) left RUNNING by an interrupted run: %s", len(stale), stale)
    s = profile.search
    concurrency = list(s.concurrency or profile.workload.concurrency)
    requests = s.requests_per_point
    options = dict(cfg.backend_options)
    pool = ProcessPoolExecutor(max_workers=cfg.jobs) if cfg.jobs > 1 else None
    inflight: dict[int, tuple[optuna.Trial, Future[TrialResult] | None, Topology]] = {}
    pending: optuna.Trial | None = None  # asked, not yet in flight or told
    try:
        with _sigterm_as_interrupt():
            while True:
                while len(inflight) < cfg.jobs and _finished(study) + len(inflight) < cfg.trials:
                    if _pruned(study) >= PRUNE_CAP_FACTOR * cfg.trials:
                        break
                    with _signals_deferred():
                        trial = pending = study.ask()
                    topo = suggest_topology(trial, profile)
                    trial.set_user_attr("topology", topo.to_string())
                    feas = check_feasibility(topo, profile)
                    reason = feas.reason
                    if feas.ok and topo.gpus < s.min_gpus:
                        reason = f"uses {topo.gpus} GPUs, below search.min_gpus ({s.min_gpus})"
                    if reason:
                        with _signals_deferred():
                            trial.set_user_attr("prune_reason", reason)
                            study.tell(trial, state=TrialState.PRUNED)
                            pending = None
                        if on_trial:
                            on_trial(study.trials[trial.number], _finished(study), cfg.trials)
                        continue
                    kw = {"seed": profile.seed, "concurrency": concurrency, "requests": requests,
                          "backend_options": options, "trial_id": f"t{trial.number}"}
                    fut = pool.submit(evaluate_topology, profile, topo, cfg.backend, **kw) if pool else None
                    inflight[trial.number] = (trial, fut, topo)
                    pending = None
                if not inflight:
                    break
                number = min(inflight)
                trial, fut, topo = inflight[number]
                t0 = time.monotonic()
                res: TrialResult | None = None
                error = ""
                try:
                    res = fut.result() if fut is not None else evaluate_topology(
                        profile, topo, cfg.backend, seed=profile.seed, concurrency=concurrency, requests=requests,
                        backend_options=options, trial_id=f"t{trial.number}")
                except AutotuneError as exc:
                    error = str(exc)
                with _signals_deferred():
                    if res is not None and res.poa_objective != res.poa_objective:  # NaN: nothing was routed
                        error = "no routing decisions were measured"
                    if res is not None:
                        trial.set_user_attr("duration_s", time.monotonic() - t0)
                        _record(trial, res)
                    if error:
                        trial.set_user_attr("fail_reason", error)
                        study.tell(trial, state=TrialState.FAIL)
                    else:
                        study.tell(trial, [res.poa_objective, res.tok_s_per_gpu])
                    del inflight[number]
                if on_trial:
                    on_trial(study.trials[trial.number], _finished(study), cfg.trials)
        if _finished(study) == 0:
            reasons = [t.user_attrs.get("prune_reason", "") for t in study.trials if t.state == TrialState.PRUNED]
            common = max(set(reasons), key=reasons.count) if reasons else "the search space is empty"
            raise InfeasibleError(f"no feasible configuration in the search space after {len(reasons)} proposals; "
                                  f"most common reason: {common}")
    except KeyboardInterrupt:
        leftovers = [(t, f) for t, f, _ in inflight.values()] + ([(pending, None)] if pending is not None else [])
        for trial, fut in leftovers:
            if fut is not None:
                fut.cancel()
            if study.trials[trial.number].state.is_finished():
                continue
            study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", "interrupted (Ctrl-C or SIGTERM)")
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        raise Interrupted(f"interrupted; {_finished(study)} finished trial(s) are saved, continue with --resume") from None
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    return study


def trial_line(t: optuna.trial.FrozenTrial, done: int, total: int) -> str:
    """One plain line per trial for logs (CronJob output)."""
    topo = t.user_attrs.get("topology", "?")
    if t.state == TrialState.PRUNED:
        return f"trial #{t.number} {topo}: skipped (infeasible: {t.user_attrs.get('prune_reason', '')})"
    if t.state == TrialState.COMPLETE:
        poa, tput = t.values
        return (f"trial {done}/{total} {topo}: PoA-hat {poa:.3f}, {tput:.0f} tok/s/GPU, "
                f"TTFT p99 {t.user_attrs.get('ttft_p99_ms', float('nan')):.0f} ms"
                f"{'' if t.user_attrs.get('slo_ok', True) else ' (SLO violated)'}")
    reason = t.user_attrs.get("prune_reason") or t.user_attrs.get("fail_reason") or ""
    return f"trial {done}/{total} {topo}: {t.state.name.lower()} — {reason}"


def print_line(t: optuna.trial.FrozenTrial, done: int, total: int) -> None:
    if t.state == TrialState.PRUNED:  # infeasible proposals cost nothing; shown with -v
        log.debug(trial_line(t, done, total))
        return
    print(trial_line(t, done, total), file=sys.stderr, flush=True)
