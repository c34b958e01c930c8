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
import sys
import warnings

import optuna
from optuna.exceptions import DuplicatedStudyError
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from autotune.errors import InfeasibleError, InputError, Interrupted
from autotune.profile import Profile
from autotune.redact import redact_text
from autotune.results.files import private_dir, private_file
from autotune.search import trials
from autotune.search.config import StudyConfig
from autotune.search.journal import check_journal
from autotune.search.leases import ClusterShape, Leases, LocalLeases
from autotune.search.leases_pg import PgLeases
from autotune.search.loop import Loop, OnTrial, finished
from autotune.search.polish import SHARE, enqueue_splits, queued
from autotune.search.signals import signals_deferred, sigterm_as_interrupt
from autotune.search.space import outside_space, topology_params
from autotune.search.workers import OnStale, SharedStudy, one_line, open_rdb, worker_label
from autotune.topology import DEFAULT_ROUTER, Topology, parse_topology

__all__ = ["StudyConfig", "load_study", "open_storage", "run_study", "study_name"]

log = logging.getLogger("autotune.search")
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log lines say what happened, once


def open_storage(cfg: StudyConfig) -> optuna.storages.BaseStorage:
    """The study's storage: ``--storage URL`` or the journal file in the results directory."""
    if cfg.storage:  # a database: heartbeats on, so a dead worker's trial does not stay RUNNING
        return open_rdb(cfg.storage, heartbeat_s=cfg.heartbeat_s, stale_after_s=cfg.stale_after_s)
    path = cfg.results_dir / "study.journal"
    if cfg.read_only and not path.exists():
        raise InputError(f"{cfg.results_dir}: no study journal here (study.journal); nothing to report")
    path = private_dir(cfg.results_dir) / "study.journal"
    check_journal(path, repair=cfg.resume and not cfg.read_only)
    if not cfg.read_only:
        private_file(path)  # 0600, whatever Optuna's umask
    return JournalStorage(JournalFileBackend(str(path)))


def study_name(profile: Profile, cfg: StudyConfig | None = None) -> str:
    return (cfg.study_name if cfg else None) or f"autotune-{profile.name}"


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
    name = study_name(profile, cfg)
    try:
        storage = storage or open_storage(cfg)
        existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any storage error here means an unusable URL or file
        where = redact_text(cfg.storage) if cfg.storage else cfg.results_dir
        raise InputError(f"--storage: cannot open {where}: {one_line(exc)}") from None
    if cfg.worker and create:  # one of many workers: join the study, whoever created it
        return _join_study(profile, cfg, storage, name, existing)
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
    if name not in existing:
        return _new_study(profile, storage, name, sampler)
    # load, not create(load_if_exists): that would append a record even for `report`
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    _check_digest(study, profile, "--resume")
    return study


def _new_study(
    profile: Profile, storage: optuna.storages.BaseStorage, name: str, sampler: optuna.samplers.BaseSampler
) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, directions=list(trials.DIRECTIONS), sampler=sampler)
    study.set_metric_names(list(trials.OBJECTIVES))
    study.set_user_attr("profile_digest", profile.digest())
    for topo in baseline_topologies(profile):
        why = outside_space(topo, profile)
        if why:
            log.warning("baseline %s is outside the search space (%s); not enqueued", topo.shape(), why)
            continue
        study.enqueue_trial(topology_params(topo, profile), user_attrs={trials.BASELINE: topo.to_string()})
    return study


def _check_digest(study: optuna.Study, profile: Profile, flag: str) -> None:
    if study.user_attrs.get("profile_digest") not in (None, profile.digest()):
        raise InputError(
            f"{flag}: the profile changed since the study started (digest "
            f"{study.user_attrs.get('profile_digest')} != {profile.digest()}); use a new study"
        )


def _join_study(
    profile: Profile, cfg: StudyConfig, storage: optuna.storages.BaseStorage, name: str, existing: set[str]
) -> optuna.Study:
    """A worker creates the study if it is the first, else loads it; only the creator enqueues the baselines.

    Each worker's sampler gets its own seed (``worker_index``): shared seeds propose the same points (optuna #4714).
    """
    n_before = len(optuna.load_study(study_name=name, storage=storage).trials) if name in existing else 0
    sampler = make_sampler(cfg.sampler, cfg.seed + n_before + cfg.worker_index)
    if name not in existing:
        try:
            return _new_study(profile, storage, name, sampler)
        except DuplicatedStudyError:
            pass  # another worker created it a moment ago
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    _check_digest(study, profile, "--profile")
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


def _raise_if_nothing_ran(study: optuna.Study) -> None:
    if finished(study):
        return
    reasons = [t.user_attrs.get(trials.PRUNE_REASON, "") for t in study.trials if t.state == TrialState.PRUNED]
    common = max(set(reasons), key=reasons.count) if reasons else "the search space is empty"
    raise InfeasibleError(
        f"no feasible configuration in the search space after {len(reasons)} proposals; most common reason: {common}"
    )


def run_study(
    profile: Profile, cfg: StudyConfig, on_trial: OnTrial | None = None, on_stale: OnStale | None = None
) -> optuna.Study:
    """Run (or resume, or join as a worker) the study until ``cfg.trials`` trials have finished.

    A database storage is shared: heartbeats tell live trials from a dead worker's, and
    ``on_stale`` gets the trials failed for lack of one (to sweep their deployments).
    """
    storage = open_storage(cfg)
    study = load_study(profile, cfg, create=True, storage=storage)
    shared = None
    if isinstance(storage, RDBStorage):
        shared = SharedStudy(storage, study, cfg.worker or worker_label(None), cfg.stale_after_s, on_stale)
    else:
        stale = fail_stale_trials(study, storage)
        if stale:
            log.warning("failed %d trial(s) left RUNNING by an interrupted run: %s", len(stale), stale)
    if not cfg.worker:
        with signals_deferred():
            again = requeue_interrupted_baselines(study, profile)
        if again:
            log.info("resume: the interrupted baseline(s) %s run again", ", ".join(again))
    leases = open_leases(profile, cfg, storage, study.study_name)
    if shared is not None and leases is not None:
        shared.heartbeats.on_beat = leases.renew
        shared.on_stale = _release_after(on_stale, leases)
    loop = Loop(profile, cfg, study, on_trial, shared, leases)
    try:
        with sigterm_as_interrupt():
            loop.run()
            _raise_if_nothing_ran(study)
            if cfg.polish and shared is None:
                _polish(profile, study, loop)
    except KeyboardInterrupt:
        with signals_deferred():
            loop.fail_unfinished(INTERRUPTED)
        again_with = "start the worker again" if cfg.worker else "continue with --resume"
        raise Interrupted(f"interrupted; {finished(study)} finished trial(s) are saved, {again_with}") from None
    finally:
        loop.close()
    return study


def _polish(profile: Profile, study: optuna.Study, loop: Loop) -> None:
    """Run the untried shapes on the recommended GPU count once each, beyond the budget (autotune.search.polish).

    One process's study only: on a shared study each worker would enqueue the same splits.
    """
    with signals_deferred():
        _, left = enqueue_splits(study, profile, loop.cfg.trials)
    pending = queued(study.get_trials(deepcopy=False))  # this pass's, and any an interrupted pass left
    if not pending:
        return
    log.info(
        "shapes on the recommended GPU count not yet tried: %s; running each once (--no-polish skips this)%s",
        ", ".join(t.user_attrs[trials.TOPOLOGY].split("@")[0] for t in pending),
        f"; {left} farther one(s) left untried (at most {SHARE:.0%} of the budget)" if left else "",
    )
    loop.budget = finished(study) + len(pending)
    loop.run()


def open_leases(profile: Profile, cfg: StudyConfig, storage: optuna.storages.BaseStorage, pool: str) -> Leases | None:
    """The GPU ledger of a live study: in the shared PostgreSQL database for workers, else in this process.

    Simulated trials take none (each simulates its own copy of the cluster). A lease outlives a dead
    worker by twice the staleness limit: its trial is failed and its graph swept (releasing the lease)
    well before the lease would run out by itself.
    """
    if cfg.backend == "sim":
        return None
    shape = ClusterShape.of(profile)
    worker = cfg.worker or worker_label(None)
    if isinstance(storage, RDBStorage) and storage.engine.dialect.name == "postgresql":
        return PgLeases(storage.engine, pool, worker, shape, ttl_s=2.0 * cfg.stale_after_s)
    return LocalLeases(shape, worker)


def _release_after(on_stale: OnStale | None, leases: Leases) -> OnStale:
    """Stale trials: sweep their graphs first (k8s), then give their GPUs back.

    Not a lease this process holds: its heartbeats stalled, but its graph still runs until its loop releases it.
    """

    def stale(failed: list[optuna.trial.FrozenTrial]) -> None:
        if on_stale is not None:
            on_stale(failed)
        for t in failed:
            if not leases.holds(f"t{t.number}"):
                leases.release(f"t{t.number}")

    return stale


def claim_finish(study: optuna.Study, cfg: StudyConfig) -> str:
    """Which worker writes the recommendation of a shared study: the first to ask (maybe this one)."""
    storage = open_storage(cfg)
    if not isinstance(storage, RDBStorage):
        return cfg.worker
    shared = SharedStudy(storage, study, cfg.worker, cfg.stale_after_s, None)
    try:
        return shared.claim_finish()
    finally:
        shared.close()


def print_line(t: optuna.trial.FrozenTrial, done: int, total: int) -> None:
    if t.state == TrialState.PRUNED:  # infeasible proposals cost nothing; shown with -v
        log.debug(trials.trial_line(t, done, total))
        return
    print(trials.trial_line(t, done, total), file=sys.stderr, flush=True)
