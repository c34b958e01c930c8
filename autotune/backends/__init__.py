"""Trial backends, in one explicit table: a name on the command line -> a factory of a ``Backend``.

The factories import their module on first use, so ``autotune simulate`` never loads the
Kubernetes client. To add a backend: implement ``backends.base.Backend``, add one row here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autotune.backends.base import Backend
from autotune.errors import InputError


def _sim(**options: Any) -> Backend:
    from autotune.backends.sim import SimBackend

    return SimBackend(**options)


def _dynamo_local(**options: Any) -> Backend:
    from autotune.backends.dynamo_local import DynamoLocalBackend

    return DynamoLocalBackend(**options)


def _k8s(**options: Any) -> Backend:
    from autotune.backends.k8s import K8sBackend

    return K8sBackend(**options)


BACKENDS: dict[str, Callable[..., Backend]] = {
    "sim": _sim,  # embedded discrete-event simulator (default)
    "dynamo-local": _dynamo_local,  # real Dynamo frontend + KV router + mockers on loopback
    "k8s": _k8s,  # one DynamoGraphDeployment per trial
}


def available() -> list[str]:
    return sorted(BACKENDS)


def create(name: str, **options: Any) -> Backend:
    if name not in BACKENDS:
        raise InputError(f"--backend: unknown backend {name!r} (choose from {', '.join(available())})")
    try:
        return BACKENDS[name](**options)
    except ImportError as exc:
        raise InputError(f"--backend: {name} is not available here: {exc}") from None
