"""How a router preset reaches a running deployment: one small interface, one class per mechanism.

The controller loop only sees `Actuator`; a local Dynamo stack and a DynamoGraphDeployment on
Kubernetes each implement it (frontend restart with new router flags, DGD frontend patch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from autotune.topology import RouterSettings


@dataclass(frozen=True)
class SwitchResult:
    """What one switch cost, as the actuator measured it."""

    started_unix_s: float  # wall clock when the switch began
    duration_s: float  # until the new preset served requests
    requests_affected: int | None  # in-flight requests failed or retried by the switch; None: not observable
    detail: str  # the mechanism, in words (e.g. "frontend restarted on port 8123; old one drained")


class Actuator(Protocol):
    """Applies router presets to one running deployment."""

    name: str

    def current(self) -> RouterSettings:
        """The preset the deployment serves with now."""
        ...

    def apply(self, preset: RouterSettings) -> SwitchResult:
        """Switch the deployment to ``preset``; raise `autotune.errors` types on failure, change nothing then."""
        ...
