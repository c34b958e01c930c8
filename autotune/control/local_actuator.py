"""Switching router presets on a dynamo-local 1.6.1 stack without losing a request.

Dynamo 1.6.1 reads router flags only at frontend start, and its HTTP request schema has no router
override (``nvext.agent_hints`` carries priority, latency sensitivity and the expected output length;
``RouterConfigOverride`` is reachable only through the Python ``KvRouter`` binding). So a switch is a
new frontend, made invisible to clients by ``SwitchProxy``:

1. start a frontend with the new preset's flags on a free port, sharing the stack's discovery
   directory (it finds the same workers and rebuilds its KV index from their events);
2. wait until it lists every worker and the model (and, disaggregated, activated its prefill router);
3. point the proxy at it: new connections go there, connections in flight stay where they are;
4. drain: wait until no connection is left on the old frontend (``drain_timeout_s`` at most);
5. stop the old frontend if this actuator started it. The stack's own frontend is never stopped (it is
   not ours): it idles, its KV index kept current by the workers' events, and a switch back to its
   preset reuses it at once.

Requests affected = connections the proxy could not forward during the switch + connections still on
the old frontend when it was stopped (only past the drain deadline). The duration runs from the
decision to the old frontend drained: the new preset serves from step 3 on.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from autotune.control.actuator import SwitchResult
from autotune.control.proxy import SwitchProxy
from autotune.dynamo.process import Child, ProcessGroup
from autotune.dynamo.stack import (
    FRONTEND_SPEC,
    HOST,
    free_port,
    frontend_argv,
    frontend_missing,
    new_work_dir,
    stack_env,
)
from autotune.errors import BackendError, InputError
from autotune.topology import RouterSettings


@dataclass
class Frontend:
    url: str
    preset: RouterSettings
    child: Child | None  # None: the stack's own frontend (not ours to stop)

    @property
    def target(self) -> tuple[str, int]:
        return HOST, int(self.url.rsplit(":", 1)[1])

    def alive(self) -> bool:
        return self.child is None or self.child.alive()


@dataclass(frozen=True)
class FrontendSpec:
    """``frontend.json`` of a running ``DynamoStack`` (``DynamoStack._write_frontend_spec``)."""

    python: Path
    work_dir: Path
    model_name: str
    frontend_url: str
    router: RouterSettings
    extra_args: tuple[Any, ...]
    workers: tuple[int, ...]
    disaggregated: bool

    @classmethod
    def read(cls, stack_dir: Path) -> FrontendSpec:
        path = Path(stack_dir) / FRONTEND_SPEC
        try:
            d = json.loads(path.read_text())
            return cls(
                Path(d["python"]),
                Path(d["work_dir"]),
                str(d["model_name"]),
                str(d["frontend_url"]),
                RouterSettings(**d["router"]),
                tuple(d["extra_frontend_args"]),
                tuple(int(w) for w in d["workers"]),
                bool(d["disaggregated"]),
            )
        except OSError as exc:
            raise InputError(
                f"--local-stack {stack_dir}: no {FRONTEND_SPEC} ({exc.strerror}); is it a running stack?"
            ) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: not a frontend spec written by autotune ({type(exc).__name__})") from exc

    def args(self) -> list[str]:
        """Extra frontend arguments, secret references resolved from this process's environment."""
        out = []
        for a in self.extra_args:
            if isinstance(a, dict):
                if a["env"] not in os.environ:
                    raise InputError(f"{self.work_dir / FRONTEND_SPEC}: a frontend argument needs ${a['env']}")
                out.append(os.environ[a["env"]])
            else:
                out.append(str(a))
        return out


class LocalActuator:
    """``Actuator`` for a dynamo-local stack, behind a ``SwitchProxy`` on ``proxy_port`` (module docstring)."""

    name = "dynamo-local"

    def __init__(
        self, spec: FrontendSpec, *, proxy_port: int = 0, ready_timeout_s: float = 90.0, drain_timeout_s: float = 120.0
    ) -> None:
        self.spec, self.ready_timeout_s, self.drain_timeout_s = spec, ready_timeout_s, drain_timeout_s
        self.adopted = Frontend(spec.frontend_url, spec.router, None)
        self.active = self.adopted
        self.ours: list[Frontend] = []
        self.scratch = new_work_dir("autotune-control-")
        self.procs = ProcessGroup(self.scratch / "logs")
        self.proxy = SwitchProxy(self.adopted.target, proxy_port).start()
        self.starts = 0

    @property
    def url(self) -> str:
        """Where clients send requests."""
        return self.proxy.url

    def current(self) -> RouterSettings:
        return self.active.preset

    def metrics_urls(self) -> list[str]:
        """``/metrics`` of every frontend that may serve (the stack's own, and the one we run)."""
        live = [f for f in (self.adopted, *self.ours) if f.alive()]
        return [f"{f.url}/metrics" for f in live]

    def _start(self, preset: RouterSettings) -> Frontend:
        port = free_port()
        self.starts += 1
        argv = frontend_argv(self.spec.python, port, preset, self.spec.args())
        child = self.procs.start(f"frontend-ctl{self.starts}", argv, stack_env(self.spec.work_dir, DYN_LOG="info"))
        fe = Frontend(f"http://{HOST}:{port}", preset, child)
        deadline = time.monotonic() + self.ready_timeout_s
        missing = "the frontend to answer"
        ids: set[int | None] = set(self.spec.workers)
        with httpx.Client(base_url=fe.url, timeout=2.0) as http:
            while time.monotonic() < deadline:
                if not child.alive():
                    break
                missing = frontend_missing(
                    http, ids, self.spec.model_name, child.log_path if self.spec.disaggregated else None
                )
                if not missing:
                    self.ours.append(fe)
                    return fe
                time.sleep(0.2)
        tail = child.tail()
        self.procs.stop_child(child)
        state = "exited" if not child.alive() and child.popen.returncode is not None else "not ready"
        raise BackendError(
            f"dynamo-local: new frontend {state} (waiting for {missing}); preset unchanged; last log lines:\n{tail}"
        )

    def apply(self, preset: RouterSettings) -> SwitchResult:
        started, t0 = time.time(), time.monotonic()
        if preset == self.active.preset:
            return SwitchResult(started, 0.0, 0, "already serving this preset")
        reuse = self.adopted if self.adopted.preset == preset and self.adopted is not self.active else None
        new = reuse or self._start(preset)
        failed0 = self.proxy.failed
        old, self.active = self.active, new
        self.proxy.set_target(new.target)
        drain_deadline = time.monotonic() + self.drain_timeout_s
        while self.proxy.active_on(old.target) > 0 and time.monotonic() < drain_deadline:
            time.sleep(0.05)
        left = self.proxy.active_on(old.target)
        if old.child is not None:
            self.procs.stop_child(old.child)
            self.ours.remove(old)
        else:
            left = 0  # the stack's frontend keeps running: its connections finish
        how = "reused the stack's frontend" if reuse else f"started a frontend on {new.url}"
        return SwitchResult(
            started,
            time.monotonic() - t0,
            left + self.proxy.failed - failed0,
            f"{how}; proxy moved; old frontend drained"
            + (f" ({left} connections cut at the {self.drain_timeout_s:g}s deadline)" if left else ""),
        )

    def close(self) -> int:
        """Drain and stop the proxy, then every frontend this actuator started; the stack's frontend stays.

        The proxy lives in the controller's process: once it exits, clients reach the stack's own frontend
        (which serves the baseline preset) at its own URL. Returns the connections cut at the drain deadline.
        """
        left = self.proxy.drain(self.drain_timeout_s)
        self.proxy.stop()
        self.procs.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)
        return left

    def __enter__(self) -> LocalActuator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
