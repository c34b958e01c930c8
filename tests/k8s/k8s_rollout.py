"""What the test operator redoes between two generations of a graph, and a stand-in frontend to serve it.

Dynamo's operator diffs the new spec against what runs, per component (dynamo.md §1 "Redeploy cost"):
a changed template restarts that component's pods, a changed replica count starts or stops only the
difference, an unchanged component is left alone. ``plan_rollout`` makes that diff here, written
independently of ``autotune.k8s.redeploy`` (which predicts it) so the tests compare the two.

``FakeFrontend`` answers what autotune's readiness probe asks (``/v1/models`` lists the model,
``/health`` lists one ``generate`` instance per ready worker): no real processes, for the redeploy
tests and ``benchmarks/bench_live_redeploys.py``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from autotune.k8s.render import components

FRONTEND_KIND, WORKER_KIND = "frontend", "worker"


@dataclass(frozen=True)
class Step:
    """One component's part of a rollout: ``start`` new pods, ``restart`` all of them, or ``stop`` some."""

    component: str
    kind: str  # frontend | worker: picks the start-up delay
    action: str  # start | restart | stop
    pods: int


@dataclass(frozen=True)
class Rollout:
    """A logged step with the graph, its generation and when it finished (monotonic)."""

    dgd: str
    generation: int
    step: Step
    done_at: float


def _template(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "replicas"}


def plan_rollout(old: dict[str, Any] | None, new: dict[str, Any]) -> list[Step]:
    """The steps from the running graph ``old`` (None: nothing runs yet) to ``new``."""
    before = components(old) if old is not None else {}
    steps = []
    for name, (is_frontend, spec) in components(new).items():
        kind = FRONTEND_KIND if is_frontend else WORKER_KIND
        want = int(spec.get("replicas", 1))
        if name not in before:
            steps.append(Step(name, kind, "start", want))
            continue
        was = before[name][1]
        have = int(was.get("replicas", 1))
        if _template(was) != _template(spec):
            steps.append(Step(name, kind, "restart", want))
        elif want > have:
            steps.append(Step(name, kind, "start", want - have))
        elif want < have:
            steps.append(Step(name, kind, "stop", have - want))
    for name, (is_frontend, spec) in before.items():
        if name not in components(new):
            kind = FRONTEND_KIND if is_frontend else WORKER_KIND
            steps.append(Step(name, kind, "stop", int(spec.get("replicas", 1))))
    return steps


def ready_workers(dgd: dict[str, Any]) -> int:
    return sum(int(s.get("replicas", 1)) for front, s in components(dgd).values() if not front)


@dataclass
class FakeFrontend:
    """A loopback HTTP server standing in for one graph's frontend pod."""

    model: str
    workers: int = 0  # generate instances /health lists: the workers that are up
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> FakeFrontend:
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                if self.path == "/v1/models":
                    body: Any = {"object": "list", "data": [{"id": front.model, "object": "model"}]}
                elif self.path == "/health":
                    gen = {"endpoint": "generate", "component": "backend"}
                    body = {"status": "healthy", "instances": [dict(gen, instance_id=i) for i in range(front.workers)]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-frontend")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
