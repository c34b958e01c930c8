"""Kubernetes API access: quiet configuration loading and client-go-style retries.

``kubernetes.config.load_config()`` prints to stdout when it falls back to in-cluster config,
which breaks ``-o json``; we pick the source explicitly instead (kubernetes.md §2). Retries
follow client-go: back off with jitter on 429, 5xx and connection errors (honouring
Retry-After), re-read and retry on 409, and never retry 401/403/422 or other 4xx.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from autotune.errors import BackendError, InputError, Interrupted

T = TypeVar("T")
_SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass(frozen=True)
class KubeOptions:
    """Where to find the cluster: explicit kubeconfig/context flags, else in-cluster, else default kubeconfig."""

    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool | None = None  # None: auto (KUBERNETES_SERVICE_HOST set and no kubeconfig/context flag)


@dataclass
class Kube:
    """A configured API client plus where it came from (recorded with each trial)."""

    api: client.ApiClient
    in_cluster: bool
    source: str  # "in-cluster" or the kubeconfig path
    context: str | None
    default_namespace: str | None

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def close(self) -> None:
        self.api.close()


def connect(opts: KubeOptions = KubeOptions()) -> Kube:
    """Load configuration without printing anything; ``InputError`` names the flag that is wrong."""
    explicit = bool(opts.kubeconfig or opts.context)
    in_cluster = (
        opts.in_cluster
        if opts.in_cluster is not None
        else (not explicit and bool(os.environ.get("KUBERNETES_SERVICE_HOST")))
    )
    cfg = client.Configuration()
    if in_cluster:
        try:
            config.load_incluster_config(client_configuration=cfg)
        except ConfigException as exc:
            raise InputError(f"--in-cluster: no in-cluster Kubernetes configuration ({exc})") from None
        ns = None
        if os.path.exists(_SA_NAMESPACE):
            with open(_SA_NAMESPACE) as f:
                ns = f.read().strip() or None
        return Kube(client.ApiClient(cfg), True, "in-cluster", None, ns)
    path = (
        opts.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")
    )
    if not os.path.exists(path):
        raise InputError(f"--kubeconfig: {path} not found (pass --kubeconfig or run inside a cluster)")
    try:
        config.load_kube_config(config_file=path, context=opts.context, client_configuration=cfg, persist_config=False)
        contexts, active = config.list_kube_config_contexts(config_file=path)
    except ConfigException as exc:
        flag = "--context" if opts.context else "--kubeconfig"
        raise InputError(f"{flag}: cannot load {path}: {exc}") from None
    name = opts.context or (active or {}).get("name")
    ctx = next((c for c in contexts if c.get("name") == name), active) or {}
    ns = (ctx.get("context") or {}).get("namespace")
    return Kube(client.ApiClient(cfg), False, path, name, ns)


# ---- retries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, capped both per sleep and in total."""

    initial_s: float = 0.1
    factor: float = 2.0
    max_s: float = 5.0
    jitter: float = 0.2
    budget_s: float = 60.0  # give up once this much time has passed since the first attempt

    def delays(self) -> Any:
        d = self.initial_s
        while True:
            yield min(d, self.max_s) * (1 + self.jitter * random.random())
            d *= self.factor


DEFAULT_BACKOFF = Backoff()


def status_of(exc: BaseException) -> int | None:
    return exc.status if isinstance(exc, ApiException) else None


def is_transient(exc: BaseException) -> bool:
    """429, 5xx, and connection-level failures (status 0 or urllib3 errors) are worth retrying."""
    if isinstance(exc, ApiException):
        return exc.status == 429 or exc.status >= 500 or exc.status == 0
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


def retry_after(exc: BaseException) -> float | None:
    headers = getattr(exc, "headers", None) or {}
    try:
        v = float(headers.get("Retry-After", ""))
    except (TypeError, ValueError):
        return None
    return v if v >= 0 else None


def describe(exc: BaseException) -> str:
    """One line for the trial record: status, reason and the API's message."""
    if isinstance(exc, ApiException):
        msg = exc.reason or ""
        try:
            body = json.loads(exc.body) if isinstance(exc.body, (str, bytes)) else {}
            msg = body.get("message") or msg
        except ValueError:
            pass
        return f"HTTP {exc.status}: {msg}".strip()
    return f"{type(exc).__name__}: {exc}"


def call(
    fn: Callable[[], T],
    *,
    what: str,
    backoff: Backoff = DEFAULT_BACKOFF,
    on_conflict: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run one API call with retries; raise ``BackendError`` naming ``what`` when it cannot succeed.

    ``on_conflict`` re-reads state before a 409 is retried; without it a 409 is final.
    """
    start = time.monotonic()
    delays = backoff.delays()
    while True:
        try:
            return fn()
        except Interrupted:
            raise  # a signal landed during the call: unwind, never report it as the cluster's failure
        except Exception as exc:
            code = status_of(exc)
            retriable = is_transient(exc) or (code == 409 and on_conflict is not None)
            elapsed = time.monotonic() - start
            if not retriable or elapsed >= backoff.budget_s:
                tail = f" (gave up after {elapsed:.1f} s of retries)" if retriable else ""
                raise BackendError(f"kubernetes: {what}: {describe(exc)}{tail}") from exc
            delay = next(delays)
            ra = retry_after(exc)
            if ra is not None and code in (429, 503):
                delay = max(delay, min(ra, backoff.max_s))
            sleep(min(delay, max(0.0, backoff.budget_s - elapsed)))
            if code == 409 and on_conflict is not None:
                on_conflict()
