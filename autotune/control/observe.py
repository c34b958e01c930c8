"""What the live controller shows of itself: ``/metrics``, one JSON log line per decision, a record file.

The record (``--record PATH``) is JSON Lines, one object per interval (``"type": "interval"``) and per
switch attempt (``"type": "switch"``); each line is one ``write`` on an ``O_APPEND`` descriptor, so a
reader (a test, ``tail -f``) never sees half a line and two writers never interleave inside one.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from autotune.controller import ControllerSettings
from autotune.errors import InputError
from autotune.regimes import BELOW, SATURATED, TRANSITION

REGIMES = (BELOW, TRANSITION, SATURATED)


class ControlMetrics:
    """The controller's own Prometheus metrics, on a private registry (nothing else is exported)."""

    def __init__(self, settings: ControllerSettings) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.regime = Gauge("autotune_control_regime", "1 for the regime the controller is in", ["regime"], registry=r)
        self.ewma = Gauge("autotune_control_ewma_ttft_p99_ms", "EWMA of the interval TTFT P99", registry=r)
        self.p99 = Gauge("autotune_control_interval_ttft_p99_ms", "TTFT P99 of the last interval", registry=r)
        theta = Gauge("autotune_control_threshold_ms", "regime thresholds", ["threshold"], registry=r)
        theta.labels("theta1").set(settings.theta1_ms)
        theta.labels("theta2").set(settings.theta2_ms)
        self.applying = Gauge("autotune_control_apply", "1 if switches are applied, 0 in advisory mode", registry=r)
        self.switches = Counter("autotune_control_switches", "preset switches applied", ["kind"], registry=r)
        self.errors = Counter("autotune_control_errors", "errors by kind", ["kind"], registry=r)
        self._last_switch = Gauge(
            "autotune_control_last_switch_age_seconds", "seconds since the last switch (-1: none)", registry=r
        )
        self._last_switch_mono: float | None = None
        self._last_switch.set_function(self._age)
        for name in REGIMES:
            self.regime.labels(name).set(1.0 if name == BELOW else 0.0)

    def _age(self) -> float:
        return -1.0 if self._last_switch_mono is None else time.monotonic() - self._last_switch_mono

    def switched(self, kind: str) -> None:
        self.switches.labels(kind).inc()
        self._last_switch_mono = time.monotonic()

    def observe(self, regime: str, ewma_ms: float | None, p99_ms: float | None) -> None:
        for name in REGIMES:
            self.regime.labels(name).set(1.0 if name == regime else 0.0)
        if ewma_ms is not None:
            self.ewma.set(ewma_ms)
        if p99_ms is not None:
            self.p99.set(p99_ms)

    def serve(self, port: int, host: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` on ``host:port`` (loopback unless asked); returns the server (``shutdown()``)."""
        try:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise InputError(f"--metrics-port {port}: cannot listen on {host}: {exc.strerror}") from exc
        return server


class RecordFile:
    """Append-only JSON Lines; ``None`` path: nothing is written."""

    def __init__(self, path: Path | None) -> None:
        self.fd: int | None = None
        if path is not None:
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            except OSError as exc:
                raise InputError(f"--record {path}: cannot open for appending: {exc.strerror}") from exc

    def append(self, row: dict[str, Any]) -> None:
        if self.fd is not None:
            os.write(self.fd, (json.dumps(row, separators=(",", ":"), default=str) + "\n").encode())

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def log_decision(row: dict[str, Any], stream: TextIO | None = None) -> None:
    """One structured line per decision on stderr (``"event": "control"`` tells it from other logs)."""
    out = sys.stderr if stream is None else stream
    out.write(json.dumps({"event": "control", **row}, separators=(",", ":"), default=str) + "\n")
    out.flush()


def read_record(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a record file (a line being written is left out)."""
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")]
