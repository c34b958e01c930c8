"""One real Dynamo 1.6.1 stack on loopback: a frontend with the KV router and mocker workers.

Recipe from shared/reference/dynamo.md §6: file discovery in a fresh ``DYN_FILE_KV`` directory,
TCP request plane, ZMQ event plane, every ``*_HOST`` on 127.0.0.1, a private ``HOME`` (the
frontend caches model cards there), one ``DYN_SYSTEM_PORT`` per worker process (so each worker's
``/metrics`` can be scraped) and one mocker process per worker (so a worker can die alone).
No etcd, no NATS. Logs are JSONL so ``autotune.dynamo.logparse`` can read routing decisions.

Known leak: Dynamo's ZMQ PUB sockets bind 0.0.0.0 on OS-assigned ports whatever the host
variables say (1.6.1 has no knob); all traffic still goes over 127.0.0.1. The stack knows nothing of
namespaces: ``DynamoLocalDeployment`` calls it inside a private network namespace when it can
(``autotune.dynamo.netns``), which closes the leak.

Children get an allow-listed environment (``child_env``), not ours: a token in autotune's environment
does not reach Dynamo unless a secret reference in ``dynamo.extra_frontend_args`` asks for it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from autotune.dynamo.flags import FRONTEND_LOG, router_args
from autotune.dynamo.install import DYNAMO_VERSION
from autotune.dynamo.logparse import worker_instance_id
from autotune.dynamo.mocker_timing import TimingPlan
from autotune.dynamo.process import Child, ProcessGroup
from autotune.errors import BackendError, InputError
from autotune.profile import Profile, SecretRef
from autotune.topology import RouterSettings, Topology

HOST = "127.0.0.1"
LOCAL_DYNAMO_VERSION = (int(DYNAMO_VERSION.split(".")[0]), int(DYNAMO_VERSION.split(".")[1]))  # flag names


def free_port(low: int = 20000, high: int = 32767) -> int:
    """A currently free loopback port in [low, high].

    Below 32768 on purpose: Dynamo 1.6.1 parses ``DYN_SYSTEM_PORT`` as an i16, so the kernel's
    ephemeral ports (32768+) are rejected; it also keeps us clear of OS-assigned ports.
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    raise BackendError(f"dynamo-local: no free loopback port in {low}-{high}")


# what a Dynamo child needs from our environment; everything else (tokens, cloud credentials) stays here
CHILD_ENV_NAMES = ("PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "VIRTUAL_ENV", "LD_LIBRARY_PATH")
CHILD_ENV_PREFIXES = ("LC_", "PYTHON")


def child_env(parent: dict[str, str] | None = None) -> dict[str, str]:
    """The allow-listed part of ``parent`` (default: ``os.environ``) a Dynamo child inherits."""
    parent = dict(os.environ if parent is None else parent)
    return {k: v for k, v in parent.items() if k in CHILD_ENV_NAMES or k.startswith(CHILD_ENV_PREFIXES)}


def secret_env(profile: Profile, parent: dict[str, str] | None = None) -> dict[str, str]:
    """Values of the frontend's secret references, from the variables they name (``SecretRef.env_name``).

    Raises ``InputError`` naming the variable to set. Worker references are not needed: mockers take no
    ``extra_worker_args``.
    """
    parent = dict(os.environ if parent is None else parent)
    out = {}
    for a in profile.dynamo.extra_frontend_args:
        if isinstance(a, SecretRef):
            if a.env_name not in parent:
                raise InputError(
                    f"{profile.source}: dynamo.extra_frontend_args: secret reference {a.secret}/{a.key}: "
                    f"set ${a.env_name} (dynamo-local reads secret references from the environment)"
                )
            out[a.env_name] = parent[a.env_name]
    return out


def stack_env(work_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of every process of the stack in ``work_dir`` (file discovery, loopback planes)."""
    env = child_env()
    home = work_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "DYN_DISCOVERY_BACKEND": "file",
            "DYN_FILE_KV": str(work_dir / "kv"),
            "DYN_REQUEST_PLANE": "tcp",
            "DYN_EVENT_PLANE": "zmq",
            "DYN_EVENT_PLANE_HOST": HOST,
            "DYN_TCP_RPC_HOST": HOST,
            "DYN_TCP_RESPONSE_STREAM_HOST": HOST,
            "DYN_SYSTEM_HOST": HOST,
            "DYN_LOGGING_JSONL": "1",
            "DYN_ZMQ_IO_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HOME": str(home),
            "NO_COLOR": "1",
            "PYTHONNOUSERSITE": "1",
        }
    )
    env.update(extra)
    return env


def frontend_argv(python: Path, http_port: int, router: RouterSettings, extra_args: Sequence[str] = ()) -> list[str]:
    """The command line of a frontend on ``http_port`` with the KV router set to ``router``."""
    return [
        str(python),
        "-m",
        "dynamo.frontend",
        "--http-host",
        HOST,
        "--http-port",
        str(http_port),
        *router_args(LOCAL_DYNAMO_VERSION, router),
        *extra_args,
    ]


def frontend_missing(http: httpx.Client, ids: set[int | None], model_name: str, prefill_log: Path | None) -> str:
    """What a frontend still lacks to serve (``""``: nothing): every worker in ``/health``, the model in
    ``/v1/models`` and, disaggregated (``prefill_log``: its log), the prefill router activated."""
    try:
        health = http.get("/health").json()
        listed = {int(i["instance_id"]) for i in health.get("instances", []) if i.get("endpoint") == "generate"}
        if not ids <= listed:
            return f"/health to list {len(ids)} worker instances (has {len(ids & listed)})"
        models = http.get("/v1/models").json()
        if not any(m.get("id") == model_name for m in models.get("data", [])):
            return f"/v1/models to list {model_name!r}"
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return "the frontend to answer"
    if prefill_log is not None:
        try:
            activated = b"Prefill router target activated" in prefill_log.read_bytes()
        except OSError:
            activated = False
        if not activated:
            return "the frontend to activate its prefill router"
    return ""


FRONTEND_SPEC = "frontend.json"  # in the work directory: what another process needs to start a frontend here


@dataclass
class Worker:
    index: int  # Topology.worker_tps() order
    role: str  # prefill | decode | agg
    tp: int
    system_port: int
    child: Child
    instance_id: int | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.system_port}/metrics"


class DynamoStack:
    """Start, watch and stop the processes of one topology. ``stop`` is idempotent."""

    def __init__(
        self,
        profile: Profile,
        topology: Topology,
        *,
        python: Path,
        model_dir: Path,
        plan: TimingPlan,
        work_dir: Path,
        ready_timeout_s: float = 60.0,
    ) -> None:
        self.profile, self.topology, self.plan = profile, topology, plan
        self.python, self.model_dir = Path(python), Path(model_dir)
        self.work_dir = Path(work_dir)
        self.ready_timeout_s = ready_timeout_s
        self.model_name = profile.model.served_name or profile.model.name
        self.procs = ProcessGroup(self.work_dir / "logs")
        self.workers: list[Worker] = []
        self.frontend: Child | None = None
        self.http_port = 0
        self.router = topology.router
        self._frontend_starts = 0
        self.secrets = secret_env(profile)

    # ---- environment ---------------------------------------------------------------------
    def _env(self, **extra: str) -> dict[str, str]:
        return stack_env(self.work_dir, **extra)

    # ---- start ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start everything and wait until it serves; on failure stop all and raise."""
        try:
            (self.work_dir / "kv").mkdir(parents=True, exist_ok=True)
            self._start_frontend()
            for i, (role, tp) in enumerate(self.topology.worker_tps()):
                self._start_worker(i, role, tp)
            self.wait_ready()
            self._write_frontend_spec()
        except BaseException:
            self.stop()
            raise

    def _start_frontend(self) -> None:
        self.http_port = free_port()
        self._frontend_starts += 1
        extra = [
            self.secrets[a.env_name] if isinstance(a, SecretRef) else a for a in self.profile.dynamo.extra_frontend_args
        ]
        argv = frontend_argv(self.python, self.http_port, self.router, extra)
        env = self._env(DYN_LOG=FRONTEND_LOG, **self.secrets)
        self.frontend = self.procs.start(f"frontend{self._frontend_starts}", argv, env)

    def _start_worker(self, index: int, role: str, tp: int) -> None:
        argv = self.mocker_argv(role, tp)
        port = free_port()
        child = self.procs.start(f"worker{index}-{role}", argv, self._env(DYN_SYSTEM_PORT=str(port), DYN_LOG="info"))
        self.workers.append(Worker(index, role, tp, port, child))

    def mocker_argv(self, role: str, tp: int) -> list[str]:
        """The mocker worker's command line: the profile's engine limits, KV pool and KV transfer."""
        timing = self.plan.roles[(role, tp)]
        eng = self.profile.engine
        argv = [
            str(self.python),
            "-m",
            "dynamo.mocker",
            "--model-path",
            str(self.model_dir),
            "--model-name",
            self.model_name,
            "--block-size",
            str(eng.block_size),
            "--max-num-seqs",
            str(eng.max_num_seqs),
            "--max-num-batched-tokens",
            str(eng.max_num_batched_tokens),
            "--num-gpu-blocks-override",
            str(timing.num_gpu_blocks),
            "--speedup-ratio",
            f"{self.plan.speedup:g}",
        ]
        if timing.npz is not None:
            argv += ["--planner-profile-data", str(timing.npz)]
        if role in ("prefill", "decode"):
            kv = self.profile.kv_transfer
            bw = kv.bandwidth_gb_s or self.profile.cluster.intra_bw_gb_s * kv.efficiency
            argv += [
                "--disaggregation-mode",
                role,
                "--kv-bytes-per-token",
                str(int(kv.bytes_per_token or self.profile.model.kv_bytes_per_token)),
                "--kv-transfer-bandwidth",
                f"{bw:g}",
            ]
        return argv

    def _write_frontend_spec(self) -> None:
        """``frontend.json``: how ``autotune control`` (another process) starts frontends on this stack.

        Secret references are named, never written: that process reads them from its own environment.
        """
        spec = {
            "python": str(self.python),
            "work_dir": str(self.work_dir),
            "model_name": self.model_name,
            "frontend_url": self.base_url,
            "router": {
                "temperature": self.router.temperature,
                "overlap_weight": self.router.overlap_weight,
                "overlap_credit": self.router.overlap_credit,
            },
            "extra_frontend_args": [
                {"env": a.env_name} if isinstance(a, SecretRef) else a for a in self.profile.dynamo.extra_frontend_args
            ],
            "workers": [w.instance_id for w in self.workers],
            "disaggregated": self.topology.disaggregated,
        }
        (self.work_dir / FRONTEND_SPEC).write_text(json.dumps(spec, indent=1))

    # ---- readiness -----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    def dead_reason(self) -> str | None:
        """Why the stack cannot serve (a process exited), or None."""
        for child in self.procs.dead():
            code = child.popen.returncode
            return f"{child.name} (pid {child.pid}) exited with code {code}; last log lines:\n{child.tail()}"
        return None

    def wait_ready(self) -> float:
        """Block until ``/health`` lists every worker instance and ``/v1/models`` lists the model.

        Returns the seconds waited; raises ``BackendError`` with the relevant log tail on a dead
        process or at the deadline.
        """
        t0 = time.monotonic()
        deadline = t0 + self.ready_timeout_s
        missing = "workers"
        with httpx.Client(base_url=self.base_url, timeout=2.0) as http:
            while True:
                reason = self.dead_reason()
                if reason:
                    raise BackendError(f"dynamo-local: {reason}")
                for w in self.workers:
                    if w.instance_id is None:
                        w.instance_id = worker_instance_id(w.child.log_path)
                ids = {w.instance_id for w in self.workers}
                if None not in ids:
                    missing = self._check_served(http, ids)
                    if not missing:
                        return time.monotonic() - t0
                else:
                    missing = "worker registration (instance ids not logged yet)"
                if time.monotonic() > deadline:
                    slow = next((w for w in self.workers if w.instance_id is None), None)
                    child = slow.child if slow else self.frontend
                    tail = child.tail() if child else ""
                    raise BackendError(
                        f"dynamo-local: not ready after {self.ready_timeout_s:g}s (waiting for "
                        f"{missing}); last log lines of {child.name if child else '?'}:\n{tail}"
                    )
                time.sleep(0.1)

    def _check_served(self, http: httpx.Client, ids: set[int | None]) -> str:
        assert self.frontend is not None
        return frontend_missing(
            http, ids, self.model_name, self.frontend.log_path if self.topology.disaggregated else None
        )

    # ---- changes and teardown -------------------------------------------------------------
    def restart_frontend(self, router: RouterSettings) -> None:
        """New router settings: restart only the frontend (its router rebuilds KV state from events)."""
        if self.frontend is not None:
            self.procs.stop_child(self.frontend)
        self.router = router
        try:
            self._start_frontend()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def worker_by_instance(self) -> dict[int, int]:
        return {w.instance_id: w.index for w in self.workers if w.instance_id is not None}

    def stop(self, keep_logs: Path | None = None) -> None:
        """Stop every process by PID and delete the work directory (logs copied first if asked)."""
        self.procs.stop()
        if keep_logs is not None and (self.work_dir / "logs").is_dir():
            shutil.copytree(self.work_dir / "logs", keep_logs, dirs_exist_ok=True)
        shutil.rmtree(self.work_dir, ignore_errors=True)


def new_work_dir(prefix: str = "autotune-dynamo-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
