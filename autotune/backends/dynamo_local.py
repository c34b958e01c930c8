"""``dynamo-local``: each trial deploys a real Dynamo 1.6.1 frontend + KV router + mocker workers
on loopback and measures load bursts against it.

What it is for: measuring the real router (and checking the simulator against it) without GPUs.
A point's burst continues its request stream until its figures meet the profile's precision
targets, ``measurement.max_requests`` or ``measurement.live_time_budget_s``
(``autotune.loadgen.live_point``); ``PointRun.meta["stop_reason"]`` says which.
Workers are Dynamo's mocker engines timed by our perf model (``autotune.dynamo.mocker_timing``),
so TP and GPU differences show; if the model cannot be tabulated the mocker's default timing is
used and ``PointRun.meta["timing"]`` says so. Setup: ``scripts/setup_dynamo.sh``.

Teardown is by PID and always happens (``close``/context manager, ``atexit``, parent-death
signal); a worker that dies during a burst aborts it and ``run_point`` raises ``BackendError``
with the worker's last log lines, after which the deployment is closed.

As root, each deployment gets a private network namespace (``autotune.dynamo.netns``): the stack's
processes, readiness checks, scrapes and the load client all run in it, so Dynamo's 0.0.0.0 ZMQ
publishers are unreachable from outside. Elsewhere the host's namespace is used (logged once);
``PointRun.meta["network_namespace"]`` is ``private`` or ``host``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from autotune.backends.base import Backend, Deployment
from autotune.dynamo import install, logparse, scrape
from autotune.dynamo.mocker_timing import TimingPlan, plan_timing
from autotune.dynamo.model_dir import load_words
from autotune.dynamo.netns import NetNamespace, private_namespace
from autotune.dynamo.point import build_point
from autotune.dynamo.stack import DynamoStack, new_work_dir
from autotune.errors import BackendError, InfeasibleError
from autotune.feasibility import check_feasibility
from autotune.loadgen.aiperf_export import aiperf_record, write_jsonl
from autotune.loadgen.client import BurstConfig, run_burst
from autotune.loadgen.live_point import LivePoint
from autotune.loadgen.prompts import Api, Vocabulary
from autotune.profile import Profile
from autotune.records import PointRun
from autotune.topology import RouterSettings, Topology


class DynamoLocalDeployment(Deployment):
    def __init__(self, backend: DynamoLocalBackend, profile: Profile, topology: Topology, trial_id: str) -> None:
        self.backend, self.profile, self.topology, self.trial_id = backend, profile, topology, trial_id
        self.python = install.find_python(backend.python)
        self.model_dir = install.model_dir(self.python)
        self.vocab = Vocabulary.from_table(load_words(self.model_dir))
        self.work_dir = new_work_dir(f"autotune-{trial_id or 'trial'}-")
        self.stack: DynamoStack | None = None
        self.closed = False
        self.net: NetNamespace = private_namespace()
        try:
            self.plan: TimingPlan = plan_timing(
                profile, topology, self.work_dir / "timing", timing=backend.timing, speedup=backend.speedup
            )
            self.stack = DynamoStack(
                profile,
                topology,
                python=self.python,
                model_dir=self.model_dir,
                plan=self.plan,
                work_dir=self.work_dir,
                ready_timeout_s=backend.ready_timeout_s,
            )
            t = time.monotonic()
            with self.net.inside():
                self.stack.start()
            self.startup_s = self.deploy_s = time.monotonic() - t
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------------
    def set_router(self, router: RouterSettings) -> None:
        """Restart the frontend with new router flags (workers and their caches stay)."""
        assert self.stack is not None
        with self.net.inside():
            self.stack.restart_frontend(router)
        self.topology = self.topology.with_router(router)

    def run_point(
        self, concurrency: int, *, seed: int, requests: int | None = None, controller: Any | None = None
    ) -> PointRun:
        with self.net.inside():  # the stack is reachable only from its namespace
            return self._run_point(concurrency, seed=seed, requests=requests, controller=controller)

    def _run_point(self, concurrency: int, *, seed: int, requests: int | None, controller: Any | None) -> PointRun:
        if self.closed or self.stack is None:
            raise BackendError("dynamo-local: deployment already closed")
        if controller is not None:
            raise BackendError(
                "dynamo-local: router settings cannot change during a live point (use set_router between points)"
            )
        stack, w = self.stack, self.profile.workload
        api = self.backend.api
        point = LivePoint(
            self.profile,
            concurrency,
            seed=seed,
            requests=requests or w.requests_per_point,
            vocab=self.vocab,
            api=api,
            model=stack.model_name,
            gpus=self.topology.gpus,
        )
        arrivals = point.arrivals_s
        cfg = BurstConfig(
            stack.base_url,
            api=api,
            concurrency=concurrency,
            arrivals_s=arrivals,
            think_s=point.think_time(),
            request_timeout_s=self.backend.request_timeout_s,
            max_wall_s=self.backend.max_burst_s,
        )
        fe_metrics = f"{stack.base_url}/metrics"
        before: dict[str | int, scrape.Snapshot] = {
            "frontend": scrape.scrape(fe_metrics),
            **{w_.index: scrape.scrape(w_.metrics_url) for w_ in stack.workers},
        }
        assert stack.frontend is not None
        log_path = stack.frontend.log_path
        offset = logparse.file_size(log_path)
        burst = run_burst(
            cfg, point.bodies, watchdog=stack.dead_reason, grow=point.grow_callback(), lookahead=point.lookahead
        )
        if burst.aborted:
            reason = burst.aborted
            self.close()
            raise BackendError(f"dynamo-local: trial {self.trial_id or '?'} failed during the burst: {reason}")
        after: dict[str | int, scrape.Snapshot] = {
            "frontend": scrape.scrape(fe_metrics),
            **{w_.index: scrape.scrape(w_.metrics_url) for w_ in stack.workers},
        }
        log = self._read_log(log_path, offset, burst)
        meta: dict[str, Any] = {
            **self.backend.describe(),
            **self.plan.describe(),
            "trial_id": self.trial_id,
            "dynamo_version": install.dynamo_version(str(self.python)),
            "api": api,
            "network_namespace": self.net.mode,
            "startup_s": self.startup_s,
            "open_loop": arrivals is not None,
            "frontend_metrics": scrape.summarize_frontend(before["frontend"], after["frontend"]),
            "worker_metrics": {
                w_.index: scrape.summarize_worker(before.get(w_.index, {}), after.get(w_.index, {}))
                for w_ in stack.workers
            },
            "worker_instance_ids": {w_.index: w_.instance_id for w_ in stack.workers},
            "log_lines_unparsed": log.unparsed,
        }
        specs = point.sent_specs(burst)
        run = build_point(
            topology=self.topology,
            concurrency=concurrency if arrivals is None else -1,
            specs=specs,
            burst=burst,
            log=log,
            worker_index=stack.worker_by_instance(),
            edges=point.edges(burst),
            meta=meta,
        )
        point.finish(run, burst)
        if self.backend.export_aiperf:
            out = Path(self.backend.export_aiperf) / (self.trial_id or "trial") / f"c{concurrency}-seed{seed}"
            df = run.requests
            rows = [
                aiperf_record(r, burst, input_tokens=spec.input_tokens, measured=bool(m), worker=str(dw))
                for r, spec, m, dw in zip(burst.records, specs, df["measured"], df["decode_worker"], strict=True)
            ]
            run.meta["aiperf_export"] = str(write_jsonl(out / "profile_export.jsonl", rows))
        return run

    def _read_log(self, path: Path, offset: int, burst: Any, settle_s: float = 2.0) -> logparse.FrontendLog:
        """Frontend log lines written since ``offset``; waits briefly until every ok request's
        completion line is there (the frontend logs it just after the stream ends)."""
        want = {r.response_id for r in burst.records if r.status == "ok" and r.response_id}
        deadline = time.monotonic() + settle_s
        while True:
            log = logparse.parse_lines(logparse.read_from(path, offset))
            done = {r.request_id for r in log.requests}
            if want <= done or time.monotonic() > deadline:
                return log
            time.sleep(0.05)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self.stack is not None:
                keep = self.backend.keep_logs
                self.stack.stop(keep_logs=Path(keep) / (self.trial_id or "trial") if keep else None)
            else:
                import shutil

                shutil.rmtree(self.work_dir, ignore_errors=True)
        finally:
            self.net.close()  # the namespace goes with its last process


class DynamoLocalBackend(Backend):
    """Options: ``timing`` (perf model tabulated for the mockers, or ``"mocker"`` for the default
    polynomial), ``speedup`` (mocker speed-up ratio; times are reported as measured), ``api``
    (``completions`` with token-id prompts, or ``chat``), ``python`` (Dynamo venv interpreter),
    ``keep_logs`` (copy process logs there), ``export_aiperf`` (write ``profile_export.jsonl`` per point)."""

    name = "dynamo-local"
    predictions = False

    def __init__(
        self,
        *,
        timing: str = "roofline",
        speedup: float = 1.0,
        api: Api = "completions",
        python: str | None = None,
        ready_timeout_s: float = 60.0,
        request_timeout_s: float = 60.0,
        max_burst_s: float = 600.0,
        keep_logs: str | None = None,
        export_aiperf: str | None = None,
    ) -> None:
        if api not in ("completions", "chat"):
            raise ValueError("api must be 'completions' or 'chat'")
        self.timing, self.speedup, self.api, self.python = timing, float(speedup), api, python
        self.ready_timeout_s, self.request_timeout_s, self.max_burst_s = ready_timeout_s, request_timeout_s, max_burst_s
        self.keep_logs = keep_logs
        self.export_aiperf = export_aiperf  # directory for aiperf-format per-request records, per point

    def deploy(self, profile: Profile, topology: Topology, *, trial_id: str = "") -> DynamoLocalDeployment:
        feas = check_feasibility(topology, profile)
        if not feas.ok:
            raise InfeasibleError(f"topology {topology.shape()}: {feas.reason}")
        return DynamoLocalDeployment(self, profile, topology, trial_id)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "timing_requested": self.timing, "speedup": self.speedup, "api": self.api}
