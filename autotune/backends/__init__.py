"""Trial backends, in one explicit table: a name on the command line -> a factory of a ``Backend``.

The factories import their module on first use, so ``autotune simulate`` never loads the
Kubernetes client. To add a backend: implement ``backends.base.Backend``, add one row here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autotune.backends.base import Backend
from autotune.errors import InputError
from autotune.profile import Profile
from autotune.topology import Topology


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


def _sim_key(profile: Profile, topology: Topology) -> str:
    from autotune.sim.router import RouterRules, effective_router

    rules = RouterRules.for_version(profile.dynamo.version_tuple)
    return topology.with_router(effective_router(topology, rules)).to_string()


# Backends whose result is a function of (profile, topology, seed, run settings): a trial's key names
# what determines it, so a study measures each key once and answers a twin from the first
# (``autotune.search.loop``). Live backends are absent: every live trial is a measurement of its own.
RESULT_KEYS: dict[str, Callable[[Profile, Topology], str]] = {"sim": _sim_key}


def result_key(name: str, profile: Profile, topology: Topology) -> str | None:
    """What determines ``topology``'s result on backend ``name``; None: its result is measured, not computed."""
    key = RESULT_KEYS.get(name)
    return key(profile, topology) if key is not None else None


def available() -> list[str]:
    return sorted(BACKENDS)


def create(name: str, **options: Any) -> Backend:
    if name not in BACKENDS:
        raise InputError(f"--backend: unknown backend {name!r} (choose from {', '.join(available())})")
    try:
        return BACKENDS[name](**options)
    except ImportError as exc:
        raise InputError(f"--backend: {name} is not available here: {exc}") from None
