"""Router settings -> Dynamo frontend flags, per Dynamo version: one home for the local stack, the DGD and the results.

ω has one internal meaning and one flag name per era (dynamo.md §2): 0.9 ``--kv-overlap-score-weight``,
1.0-1.2 ``--router-kv-overlap-score-weight``, 1.3+ ``--router-prefill-load-scale`` (with overlap credit).
"""

from __future__ import annotations

from autotune.errors import InputError
from autotune.topology import RouterSettings

# The frontend's log filter: routing decisions at debug, which is what trials read back from the log.
FRONTEND_LOG = "info,dynamo_kv_router::services::selection=debug"


def router_args(version: tuple[int, int], router: RouterSettings) -> list[str]:
    """Frontend KV-router flags for a Dynamo version (dynamo.md §2 table); ω has one name per era."""
    if version >= (1, 7):
        raise InputError(
            f"dynamo.version {version[0]}.{version[1]}: router flags moved to --router-policy-config in 1.7, "
            "whose schema autotune does not know; use 1.6.x or older"
        )
    args = ["--router-mode", "kv", "--router-temperature", f"{router.temperature:g}"]
    if version >= (1, 3):
        return args + [
            "--router-prefill-load-scale",
            f"{router.overlap_weight:g}",
            "--router-kv-overlap-score-credit",
            f"{router.effective_credit:g}",
        ]
    if router.overlap_credit != 1.0:
        raise InputError(
            f"dynamo.version {version[0]}.{version[1]}: overlap credit needs Dynamo 1.3 or newer "
            f"(topology asks for credit={router.overlap_credit:g})"
        )
    flag = "--router-kv-overlap-score-weight" if version >= (1, 0) else "--kv-overlap-score-weight"
    return args + [flag, f"{router.overlap_weight:g}"]


# Every flag ``router_args`` writes, in any era: what ``replace_router_args`` takes out before writing anew.
_OMEGA_FLAGS = ("--router-prefill-load-scale", "--router-kv-overlap-score-weight", "--kv-overlap-score-weight")
_ROUTER_FLAGS = ("--router-mode", "--router-temperature", "--router-kv-overlap-score-credit", *_OMEGA_FLAGS)
_ERA_OF_OMEGA = {"--router-prefill-load-scale": (1, 3), "--router-kv-overlap-score-weight": (1, 0)}


def _router_values(args: list[str]) -> tuple[dict[str, str], list[int]]:
    """Router flag -> value (``--flag value`` and ``--flag=value``), and the indexes those take in ``args``."""
    values: dict[str, str] = {}
    taken: list[int] = []
    i = 0
    while i < len(args):
        flag, eq, inline = args[i].partition("=")
        if flag in _ROUTER_FLAGS:
            if eq:
                values[flag], span = inline, 1
            elif i + 1 < len(args):
                values[flag], span = args[i + 1], 2
            else:
                raise InputError(f"frontend args: {flag} has no value")
            taken += range(i, i + span)
            i += span
        else:
            i += 1
    return values, taken


def flag_era(args: list[str]) -> tuple[int, int] | None:
    """The oldest Dynamo version whose ω flag name ``args`` use (flags are the same up to the next rename);
    None when they carry no ω flag."""
    values, _ = _router_values(args)
    for flag in _OMEGA_FLAGS:
        if flag in values:
            return _ERA_OF_OMEGA.get(flag, (0, 9))
    return None


def router_from_args(args: list[str]) -> RouterSettings:
    """The KV-router settings frontend ``args`` run with, Dynamo's defaults for flags absent (the inverse of
    ``router_args``). ω = 0 reads back with credit 1: the flag carries the effective credit, 0 there."""
    values, _ = _router_values(args)
    mode = values.get("--router-mode")
    if mode != "kv":
        raise InputError(f"frontend args: --router-mode is {mode!r}, not 'kv': the frontend runs no KV router")
    omega = next((values[f] for f in _OMEGA_FLAGS if f in values), "1")
    try:
        tau = float(values.get("--router-temperature", "0"))
        weight = float(omega)
        credit = float(values.get("--router-kv-overlap-score-credit", "1"))
    except ValueError as exc:
        raise InputError(f"frontend args: a router flag is not a number ({exc})") from None
    return RouterSettings(temperature=tau, overlap_weight=weight, overlap_credit=credit if weight else 1.0)


def replace_router_args(args: list[str], version: tuple[int, int], router: RouterSettings) -> list[str]:
    """``args`` with their router flags replaced by ``router_args(version, router)``, where the old ones
    stood (at the front when there were none); every other argument kept, in order."""
    _, taken = _router_values(args)
    at = taken[0] if taken else 0
    gone = set(taken)
    rest = [a for i, a in enumerate(args) if i not in gone]
    head = len([i for i in range(at) if i not in gone])
    return rest[:head] + router_args(version, router) + rest[head:]
