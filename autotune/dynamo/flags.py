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
