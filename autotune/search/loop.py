"""One study run's ask-and-tell loop: ask, prune what cannot run, evaluate (in a pool on ``-j N``), record, tell.

Storage is only touched with SIGINT/SIGTERM held, so no trial is created or told half-way. As one
of many workers on a shared study (``SharedStudy``), the budget check and the ask happen inside the
workers' common turn, trials in flight send heartbeats, and a worker with nothing left to ask stays
until the other workers' trials are done, failing and retrying those whose worker died.

On a live backend every trial leases its GPUs before it deploys (``autotune.search.leases``): one
that does not fit beside the graphs already running waits, with backoff, while this loop finishes
its own trials in flight and other workers release theirs.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from autotune import backends
from autotune.backends.base import Backend
from autotune.errors import AutotuneError
from autotune.feasibility import check_feasibility
from autotune.profile import Profile
from autotune.scoring import TrialResult
from autotune.search import grouping, trials
from autotune.search.config import StudyConfig
from autotune.search.evaluate import evaluate_topology
from autotune.search.leases import BACKOFF_FIRST_S, BACKOFF_MAX_S, LEASE_GPUS, LEASE_NODES, LEASE_WAIT_S, Lease, Leases
from autotune.search.leases import topology_tps as lease_tps
from autotune.search.signals import signals_deferred, worker_init
from autotune.search.space import shape_params, suggest_topology
from autotune.search.workers import SharedStudy, budget_used, finished_count
from autotune.topology import Topology, parse_topology

log = logging.getLogger("autotune.search")

OnTrial = Callable[[optuna.trial.FrozenTrial, int, int], None]
PRUNE_CAP_FACTOR = 20  # stop asking after this many infeasible proposals per budgeted trial


def finished(study: optuna.Study) -> int:
    """Trials that count towards the budget: evaluated ones (pruned infeasible points cost nothing)."""
    return finished_count(study.get_trials(deepcopy=False))


def _pruned(study: optuna.Study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state == TrialState.PRUNED)


@dataclass
class _InFlight:
    trial: optuna.Trial
    topology: Topology
    future: Future[TrialResult] | None  # None: evaluated in this process when its turn comes
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Waiting:
    """An asked trial waiting for its GPUs (``leases``): not deployed yet, heartbeats on."""

    trial: optuna.Trial
    topology: Topology
    since: float = field(default_factory=time.monotonic)
    tries: int = 0
    next_line_at: float = 0.0


WAIT_LINE_EVERY_S = 60.0  # a trial still waiting for GPUs says so again this often


class Loop:
    def __init__(
        self,
        profile: Profile,
        cfg: StudyConfig,
        study: optuna.Study,
        on_trial: OnTrial | None,
        shared: SharedStudy | None = None,
        leases: Leases | None = None,
    ) -> None:
        self.profile, self.cfg, self.study, self.on_trial, self.shared = profile, cfg, study, on_trial, shared
        self.leases = leases
        self.budget = cfg.trials  # finished trials to reach (the polish pass raises it: autotune.search.polish)
        self.waiting: _Waiting | None = None
        s = profile.search
        self.eval_kw: dict[str, Any] = {
            "seed": profile.seed,
            "concurrency": list(s.concurrency or profile.workload.concurrency),
            "requests": s.requests_per_point,
            "backend_options": dict(cfg.backend_options),
            "records_dir": cfg.records_dir,
        }
        self.pool = ProcessPoolExecutor(max_workers=cfg.jobs, initializer=worker_init) if cfg.jobs > 1 else None
        self.inflight: dict[int, _InFlight] = {}
        self.pending: optuna.Trial | None = None  # asked, not yet in flight or told
        # In-process trials share one backend, which may keep the last graph for the next trial to patch.
        self.backend: Backend | None = None
        # the lease of the trial whose graph the backend keeps: held until that graph is reused or deleted
        self.kept_lease: str | None = None
        # deterministic backends: result key -> the first completed trial with it (``_twin``)
        self.computed: dict[str, FrozenTrial] = {}
        self.keyed: set[int] = set()
        serial = self.pool is None
        self.blocks = grouping.ShapeBlocks(cfg.router_block) if serial and cfg.router_block > 1 else None

    def run(self) -> None:
        while True:
            self._fill()
            if self.waiting is not None and not self.inflight:
                self._back_off()  # the GPUs it needs are other workers': wait for them to release
                continue
            if not self.inflight:
                self._drop_kept()  # nothing to ask now: a kept graph would hold GPUs while others finish
                if self.shared is None or not self.shared.wait_for_others():
                    return
                continue
            self._finish(min(self.inflight))

    def _in_process_backend(self) -> Backend:
        if self.backend is None:
            self.backend = backends.create(self.cfg.backend, **dict(self.cfg.backend_options))
            if self.cfg.reuse_graphs:
                self.backend.keep_deployments()
                self.backend.on_deployed = self._release_kept_lease
        return self.backend

    def _release_kept_lease(self) -> None:
        """The next trial's graph serves: the kept graph was patched into it (its new lease covers it) or
        deleted. Both leases were held while it deployed: conservative, never oversubscribed."""
        if self.kept_lease is not None and self.leases is not None:
            self.leases.release(self.kept_lease)
        self.kept_lease = None

    def _drop_kept(self) -> None:
        """Delete the kept graph, then give its GPUs back (never the other way round)."""
        if self.backend is not None:
            self.backend.close()
        if self.kept_lease is not None and self.leases is not None:
            self.leases.release(self.kept_lease)
        self.kept_lease = None

    def _fill(self) -> None:
        """Ask until ``jobs`` trials are in flight or the budget is spoken for; infeasible ones cost nothing."""
        if self.shared is not None:
            with signals_deferred():
                self.shared.fail_stale()
        if self.waiting is not None and not self._lease(self.waiting):
            return
        while len(self.inflight) < self.cfg.jobs:
            with signals_deferred(), self.shared.turn() if self.shared else nullcontext():
                if budget_used(self.study) >= self.budget or _pruned(self.study) >= PRUNE_CAP_FACTOR * self.cfg.trials:
                    return
                fixed = self.blocks.next_fixed() if self.blocks is not None else {}
                with grouping.fixing(self.study, fixed):
                    trial = self.pending = self.study.ask()
                    topo = suggest_topology(trial, self.profile)
                trial.set_user_attr(trials.TOPOLOGY, topo.to_string())
                if fixed and shape_params(trial.params) == fixed:
                    trial.set_user_attr(trials.GROUPED, True)
                reason = self._infeasible(topo)
                twin = None if reason else self._twin(topo)
                if reason:
                    trial.set_user_attr(trials.PRUNE_REASON, reason)
                    self.study.tell(trial, state=TrialState.PRUNED)
                    self.pending = None
                else:
                    if self.shared is not None:
                        self.shared.started(trial)  # this worker's trial (a twin's answer included)
                    if twin is not None:
                        self._answer_from(trial, topo, twin)
            if reason or twin is not None:
                self._report(trial.number)
                continue
            self.waiting = _Waiting(trial, topo)
            if not self._lease(self.waiting):
                return

    def _lease(self, w: _Waiting) -> bool:
        """Lease the GPUs of a waiting trial and start it; False (and a log line now and then) if it must wait."""
        if self.leases is not None:
            with signals_deferred():
                got = self.leases.try_acquire(f"t{w.trial.number}", lease_tps(w.topology))
                if not isinstance(got, Lease) and self.kept_lease is not None:
                    self._drop_kept()  # the kept graph's GPUs stand in the way: delete it, lease again
                    got = self.leases.try_acquire(f"t{w.trial.number}", lease_tps(w.topology))
                if not isinstance(got, Lease):
                    now = time.monotonic()
                    if now >= w.next_line_at:
                        what = f"trial #{w.trial.number} {w.topology.shape()}"
                        log.info("%s; retrying with backoff (waited %.0f s)", got.line(what), now - w.since)
                        w.next_line_at = now + WAIT_LINE_EVERY_S
                    return False
                waited_s = time.monotonic() - w.since
                w.trial.set_user_attr(LEASE_WAIT_S, round(waited_s, 3))
                w.trial.set_user_attr(LEASE_GPUS, got.gpus)
                w.trial.set_user_attr(LEASE_NODES, got.nodes_text())
                if w.next_line_at:  # it said it was waiting: say when it stops
                    what = f"trial #{w.trial.number} {w.topology.shape()}"
                    log.info("%s leased %d GPUs (%s) after waiting %.0f s", what, got.gpus, got.nodes_text(), waited_s)
        self._start(w.trial, w.topology)
        return True

    def _back_off(self) -> None:
        """Wait 1, 2, 4 … s (at most ``BACKOFF_MAX_S``) before the waiting trial tries again.

        The next ``_fill`` fails stale trials first: a dead worker's trial, once failed and swept, gives its GPUs back.
        """
        assert self.waiting is not None
        time.sleep(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**self.waiting.tries))
        self.waiting.tries += 1

    def _start(self, trial: optuna.Trial, topo: Topology) -> None:
        fut = None
        if self.pool is not None:
            with signals_deferred():  # the pool's threads start here and inherit the blocked signals
                fut = self.pool.submit(
                    evaluate_topology,
                    self.profile,
                    topo,
                    self.cfg.backend,
                    **self.eval_kw,
                    trial_id=f"t{trial.number}",
                )
        self.inflight[trial.number] = _InFlight(trial, topo, fut)
        self.pending = None
        self.waiting = None

    def _twin(self, topo: Topology) -> FrozenTrial | None:
        """A completed trial whose result ``topo``'s would repeat exactly (same result key on a
        deterministic backend: the same shape, router settings differing only where the router never
        reads them); None: ``topo`` must run. Points kept for calibration (``records_dir``) always run."""
        if self.cfg.records_dir is not None:
            return None
        key = backends.result_key(self.cfg.backend, self.profile, topo)
        if key is None:
            return None
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.number not in self.keyed:
                self.keyed.add(t.number)
                if not trials.is_legacy(t):
                    twin = parse_topology(t.user_attrs[trials.TOPOLOGY])
                    self.computed.setdefault(str(backends.result_key(self.cfg.backend, self.profile, twin)), t)
        return self.computed.get(key)

    def _answer_from(self, trial: optuna.Trial, topo: Topology, twin: FrozenTrial) -> None:
        """Record ``twin``'s result as ``trial``'s (under its own topology) and tell it: nothing runs."""
        res = replace(trials.read_result(twin), topology=topo.to_string())
        trial.set_user_attr(trials.SAME_AS, twin.number)
        trial.set_user_attr(trials.DURATION_S, 0.0)
        trials.record(trial, res)
        self.study.tell(trial, trials.objective_values(res))
        self.pending = None
        if self.shared is not None:
            self.shared.stopped(trial)
        if self.blocks is not None:
            self.blocks.finished(trial.params, complete=True)

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
                    self.profile, job.topology, self._in_process_backend(), **self.eval_kw, trial_id=f"t{number}"
                )
            )
        except AutotuneError as exc:
            error = str(exc)
        if res is not None and res.poa_objective != res.poa_objective:  # NaN: nothing was routed
            error = "no routing decisions were measured"
        with signals_deferred():
            try:
                if res is not None:
                    job.trial.set_user_attr(trials.DURATION_S, time.monotonic() - job.started)
                    trials.record(job.trial, res)
                if error or res is None:
                    job.trial.set_user_attr(trials.FAIL_REASON, error)
                    self.study.tell(job.trial, state=TrialState.FAIL)
                else:
                    self.study.tell(job.trial, trials.objective_values(res))
                if self.blocks is not None:
                    self.blocks.finished(job.trial.params, complete=not error and res is not None)
            except UpdateFinishedTrialError:  # our heartbeats stalled past the grace period; it was retried
                log.warning("trial %d was failed as stale by another worker; its result is dropped", number)
            if self.shared is not None:
                self.shared.stopped(job.trial)
            if self.leases is not None:
                self._settle_leases(f"t{number}", kept=job.future is None and self._holds_graph())
            del self.inflight[number]
        self._report(number)

    def _holds_graph(self) -> bool:
        return self.backend is not None and self.backend.holds_deployment()

    def _settle_leases(self, key: str, *, kept: bool) -> None:
        """A trial ended: the previous kept graph was reused or deleted by now, so its lease goes (if the
        deploy did not already give it back); this trial's lease goes too, unless its graph is kept for
        the next trial (the GPUs are still in use)."""
        assert self.leases is not None
        if self.kept_lease is not None and self.kept_lease != key:
            self.leases.release(self.kept_lease)
            self.kept_lease = None
        if kept:
            self.kept_lease = key
        else:
            self.leases.release(key)

    def _report(self, number: int) -> None:
        if self.on_trial:
            self.on_trial(self.study.trials[number], finished(self.study), self.budget)

    def fail_unfinished(self, why: str) -> None:
        """Interrupted: trials in flight (and one asked but not yet placed) are failed with ``why``.

        On a shared study each is also enqueued once more, for the workers that go on (an evicted pod).
        """
        left = [j.trial for j in self.inflight.values()] + ([self.pending] if self.pending is not None else [])
        for job in self.inflight.values():
            if job.future is not None:
                job.future.cancel()
        for trial in left:
            if self.study.trials[trial.number].state.is_finished():
                continue
            trial.set_user_attr(trials.FAIL_REASON, why)
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            if self.shared is not None and trial.params:
                self.shared.retry_once(self.study.trials[trial.number])

    def close(self, *, kill: bool = False) -> None:
        """Stop heartbeats and the pool, and delete a graph kept between trials (end, signal or error alike)."""
        try:
            if self.shared is not None:
                self.shared.close()
            if self.pool is not None:
                self.pool.shutdown(wait=False, cancel_futures=True)
                if kill:  # interrupted: in-flight simulations are failed already, stop their processes now
                    for child in multiprocessing.active_children():
                        child.terminate()
        finally:
            try:
                self._drop_kept()
            finally:  # the kept graph is gone: its GPUs go back to the other workers
                if self.leases is not None:
                    self.leases.close()
