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

import logging
import multiprocessing
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from autotune.errors import AutotuneError, InfeasibleError, InputError, Interrupted
from autotune.feasibility import check_feasibility
from autotune.profile import Profile
from autotune.redact import redact_text
from autotune.results.files import private_dir, private_file
from autotune.scoring import TrialResult
from autotune.search import trials
from autotune.search.evaluate import evaluate_topology
from autotune.search.journal import check_journal
from autotune.search.signals import signals_deferred, sigterm_as_interrupt, worker_init
from autotune.search.space import outside_space, suggest_topology, topology_params
from autotune.topology import DEFAULT_ROUTER, Topology, parse_topology

log = logging.getLogger("autotune.search")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log lines say what happened, once


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
    read_only: bool = False  # report: never repair or change the study


def open_storage(cfg: StudyConfig) -> optuna.storages.BaseStorage:
    """The study's storage: ``--storage URL`` or the journal file in the results directory."""
    if cfg.storage:
        return optuna.storages.get_storage(cfg.storage)
    path = cfg.results_dir / "study.journal"
    if cfg.read_only and not path.exists():
        raise InputError(f"{cfg.results_dir}: no study journal here (study.journal); nothing to report")
    path = private_dir(cfg.results_dir) / "study.journal"
    check_journal(path, repair=cfg.resume and not cfg.read_only)
    if not cfg.read_only:
        private_file(path)  # 0600, whatever Optuna's umask
    return JournalStorage(JournalFileBackend(str(path)))


def study_name(profile: Profile) -> str:
    return f"autotune-{profile.name}"


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=10
        )
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    raise InputError(f"--sampler: unknown sampler {name!r} (choose tpe, random, nsga2)")


def load_study(
    profile: Profile, cfg: StudyConfig, *, create: bool, storage: optuna.storages.BaseStorage | None = None
) -> optuna.Study:
    name = study_name(profile)
    try:
        storage = storage or open_storage(cfg)
        existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any storage error here means an unusable URL or file
        where = redact_text(cfg.storage) if cfg.storage else cfg.results_dir
        raise InputError(f"--storage: cannot open {where}: {redact_text(str(exc))}") from None
    if name in existing and create and not cfg.resume:
        raise InputError(
            f"--results: {cfg.results_dir} already holds study {name!r}; pass --resume to continue it "
            "or choose another --results directory"
        )
    if name not in existing and not create:
        raise InputError(f"no study {name!r} in {redact_text(cfg.storage) if cfg.storage else cfg.results_dir}")
    if name not in existing and cfg.resume:
        where = redact_text(cfg.storage) if cfg.storage else cfg.results_dir
        raise InputError(f"--resume: no study {name!r} in {where} to continue")
    n_before = 0
    if name in existing:
        n_before = len(optuna.load_study(study_name=name, storage=storage).trials)
    # a resumed sampler must not replay its start-up points (optuna #3255): offset its seed
    sampler = make_sampler(cfg.sampler, cfg.seed + n_before)
    if name in existing:  # load, not create(load_if_exists): that would append a record even for `report`
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    else:
        study = optuna.create_study(
            study_name=name, storage=storage, directions=list(trials.DIRECTIONS), sampler=sampler
        )
    if name not in existing:
        study.set_metric_names(list(trials.OBJECTIVES))
        study.set_user_attr("profile_digest", profile.digest())
        for topo in baseline_topologies(profile):
            why = outside_space(topo, profile)
            if why:
                log.warning("baseline %s is outside the search space (%s); not enqueued", topo.shape(), why)
                continue
            study.enqueue_trial(topology_params(topo, profile), user_attrs={trials.BASELINE: topo.to_string()})
    elif study.user_attrs.get("profile_digest") not in (None, profile.digest()):
        raise InputError(
            f"--resume: the profile changed since the study started (digest "
            f"{study.user_attrs.get('profile_digest')} != {profile.digest()}); use a new --results"
        )
    return study


INTERRUPTED = "interrupted (Ctrl-C or SIGTERM)"
STALE = "left RUNNING by an interrupted run; failed on resume"


def requeue_interrupted_baselines(study: optuna.Study, profile: Profile) -> list[str]:
    """A baseline cut short by an interrupt runs again on resume: the report compares against it."""
    by_label: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False):
        if trials.is_baseline(t):
            by_label.setdefault(t.user_attrs[trials.BASELINE], []).append(t)
    requeued = []
    for topo in baseline_topologies(profile):
        label = topo.to_string()
        runs = by_label.get(label, [])
        cut = [t for t in runs if t.state == TrialState.FAIL and trials.reason(t) in (INTERRUPTED, STALE)]
        if cut and len(cut) == len(runs) and not outside_space(topo, profile):
            study.enqueue_trial(topology_params(topo, profile), user_attrs={trials.BASELINE: label})
            requeued.append(label)
    return requeued


def baseline_topologies(profile: Profile) -> list[Topology]:
    out = []
    for i, text in enumerate(profile.baselines):
        topo = parse_topology(text, flag=f"{profile.source}: baselines.{i}")
        if "@" not in text:
            topo = topo.with_router(DEFAULT_ROUTER)
        out.append(topo)
    return out


def fail_stale_trials(study: optuna.Study, storage: optuna.storages.BaseStorage) -> list[int]:
    """Trials a killed process left RUNNING: fail them with a reason (journal storage has no heartbeat)."""
    stale = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    study_id = storage.get_study_id_from_name(study.study_name)
    for number in stale:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
        storage.set_trial_user_attr(
            trial_id, trials.FAIL_REASON, "left RUNNING by an interrupted run; failed on resume"
        )
        study.tell(number, state=TrialState.FAIL)
    return stale


def _finished(study: optuna.Study) -> int:
    """Trials that count towards the budget: evaluated ones (pruned infeasible points cost nothing)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.FAIL))


def _pruned(study: optuna.Study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state == TrialState.PRUNED)


OnTrial = Callable[[optuna.trial.FrozenTrial, int, int], None]
PRUNE_CAP_FACTOR = 20  # stop asking after this many infeasible proposals per budgeted trial


@dataclass
class _InFlight:
    trial: optuna.Trial
    topology: Topology
    future: Future[TrialResult] | None  # None: evaluated in this process when its turn comes
    started: float = field(default_factory=time.monotonic)


class _Loop:
    """One study run: ask, prune what cannot run, evaluate (in a pool on ``-j N``), record, tell.

    Storage is only touched with SIGINT/SIGTERM held, so no trial is created or told half-way.
    """

    def __init__(self, profile: Profile, cfg: StudyConfig, study: optuna.Study, on_trial: OnTrial | None) -> None:
        self.profile, self.cfg, self.study, self.on_trial = profile, cfg, study, on_trial
        s = profile.search
        self.eval_kw: dict[str, Any] = {
            "seed": profile.seed,
            "concurrency": list(s.concurrency or profile.workload.concurrency),
            "requests": s.requests_per_point,
            "backend_options": dict(cfg.backend_options),
        }
        self.pool = ProcessPoolExecutor(max_workers=cfg.jobs, initializer=worker_init) if cfg.jobs > 1 else None
        self.inflight: dict[int, _InFlight] = {}
        self.pending: optuna.Trial | None = None  # asked, not yet in flight or told

    def run(self) -> None:
        while True:
            self._fill()
            if not self.inflight:
                return
            self._finish(min(self.inflight))

    def _fill(self) -> None:
        """Ask until ``jobs`` trials are in flight or the budget is spoken for; infeasible ones cost nothing."""
        cfg, study = self.cfg, self.study
        while len(self.inflight) < cfg.jobs and _finished(study) + len(self.inflight) < cfg.trials:
            if _pruned(study) >= PRUNE_CAP_FACTOR * cfg.trials:
                return
            with signals_deferred():
                trial = self.pending = study.ask()
                topo = suggest_topology(trial, self.profile)
                trial.set_user_attr(trials.TOPOLOGY, topo.to_string())
            reason = self._infeasible(topo)
            if reason:
                with signals_deferred():
                    trial.set_user_attr(trials.PRUNE_REASON, reason)
                    study.tell(trial, state=TrialState.PRUNED)
                    self.pending = None
                self._report(trial.number)
                continue
            fut = None
            if self.pool is not None:
                with signals_deferred():  # the pool's threads start here and inherit the blocked signals
                    fut = self.pool.submit(
                        evaluate_topology, self.profile, topo, cfg.backend, **self.eval_kw, trial_id=f"t{trial.number}"
                    )
            self.inflight[trial.number] = _InFlight(trial, topo, fut)
            self.pending = None

    def _infeasible(self, topo: Topology) -> str:
        feas = check_feasibility(topo, self.profile)
        if feas.ok and topo.gpus < self.profile.search.min_gpus:
            return f"uses {topo.gpus} GPUs, below search.min_gpus ({self.profile.search.min_gpus})"
        return feas.reason

    def _finish(self, number: int) -> None:
        job = self.inflight[number]
        res: TrialResult | None = None
        error = ""
        try:
            res = (
                job.future.result()
                if job.future is not None
                else evaluate_topology(
                    self.profile, job.topology, self.cfg.backend, **self.eval_kw, trial_id=f"t{number}"
                )
            )
        except AutotuneError as exc:
            error = str(exc)
        if res is not None and res.poa_objective != res.poa_objective:  # NaN: nothing was routed
            error = "no routing decisions were measured"
        with signals_deferred():
            if res is not None:
                job.trial.set_user_attr(trials.DURATION_S, time.monotonic() - job.started)
                trials.record(job.trial, res)
            if error or res is None:
                job.trial.set_user_attr(trials.FAIL_REASON, error)
                self.study.tell(job.trial, state=TrialState.FAIL)
            else:
                self.study.tell(job.trial, trials.objective_values(res))
            del self.inflight[number]
        self._report(number)

    def _report(self, number: int) -> None:
        if self.on_trial:
            self.on_trial(self.study.trials[number], _finished(self.study), self.cfg.trials)

    def fail_unfinished(self, why: str) -> None:
        """Interrupted: trials in flight (and one asked but not yet placed) are failed with ``why``."""
        left = [j.trial for j in self.inflight.values()] + ([self.pending] if self.pending is not None else [])
        for job in self.inflight.values():
            if job.future is not None:
                job.future.cancel()
        for trial in left:
            if self.study.trials[trial.number].state.is_finished():
                continue
            trial.set_user_attr(trials.FAIL_REASON, why)
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)

    def close(self, *, kill: bool = False) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            if kill:  # interrupted: in-flight simulations are failed already, stop their processes now
                for child in multiprocessing.active_children():
                    child.terminate()


def _raise_if_nothing_ran(study: optuna.Study) -> None:
    if _finished(study):
        return
    reasons = [t.user_attrs.get(trials.PRUNE_REASON, "") for t in study.trials if t.state == TrialState.PRUNED]
    common = max(set(reasons), key=reasons.count) if reasons else "the search space is empty"
    raise InfeasibleError(
        f"no feasible configuration in the search space after {len(reasons)} proposals; most common reason: {common}"
    )


def run_study(profile: Profile, cfg: StudyConfig, on_trial: OnTrial | None = None) -> optuna.Study:
    """Run (or resume) the study until ``cfg.trials`` trials have finished."""
    storage = open_storage(cfg)
    study = load_study(profile, cfg, create=True, storage=storage)
    stale = fail_stale_trials(study, storage)
    if stale:
        log.warning("failed %d trial(s) left RUNNING by an interrupted run: %s", len(stale), stale)
    with signals_deferred():
        again = requeue_interrupted_baselines(study, profile)
    if again:
        log.info("resume: the interrupted baseline(s) %s run again", ", ".join(again))
    loop = _Loop(profile, cfg, study, on_trial)
    try:
        with sigterm_as_interrupt():
            loop.run()
        _raise_if_nothing_ran(study)
    except KeyboardInterrupt:
        with signals_deferred():
            loop.fail_unfinished(INTERRUPTED)
        raise Interrupted(
            f"interrupted; {_finished(study)} finished trial(s) are saved, continue with --resume"
        ) from None
    finally:
        loop.close()
    return study


def print_line(t: optuna.trial.FrozenTrial, done: int, total: int) -> None:
    if t.state == TrialState.PRUNED:  # infeasible proposals cost nothing; shown with -v
        log.debug(trials.trial_line(t, done, total))
        return
    print(trials.trial_line(t, done, total), file=sys.stderr, flush=True)
