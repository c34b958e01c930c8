"""Live tests start a real Dynamo 1.6.1 stack (frontend, KV router, mocker workers) on loopback.

They skip, with the reason, only when the Dynamo venv is missing *and* ``CI`` is unset; under
``CI=true`` a missing install is a failure (``scripts/test.sh`` runs ``scripts/setup_dynamo.sh``).
Bursts are kept small: the machine has 2 cores shared by the stack and the client.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from autotune.dynamo import install
from autotune.profile import Profile, profile_from_dict


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if install.python_available():
        return
    ci = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
    reason = f"Dynamo venv missing ({install.default_python()}); run scripts/setup_dynamo.sh"
    for item in items:
        if "tests/live/" in str(item.fspath).replace(os.sep, "/"):
            if ci:
                item.add_marker(pytest.mark.usefixtures("require_dynamo"))  # fails, with the hint
            else:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def require_dynamo() -> None:
    install.find_python()  # raises BackendError with the install hint


@pytest.fixture
def small_profile() -> Callable[..., Profile]:
    return make_small_profile


LIVE_PROFILE: dict[str, Any] = {
    "name": "live-h100-70b",
    "cluster": {"nodes": 2, "gpu": "H100", "gpus_per_node": 8},
    "model": {"name": "Llama-3.1-70B", "weight_dtype": "fp8", "kv_dtype": "fp8"},
    "search": {"operating_point": "grid"},
}


def make_small_profile(measurement: dict[str, Any] | None = None, **workload: Any) -> Profile:
    """Llama-3.1-70B FP8 on H100s with a workload small enough for a 2-core machine; points have the
    length they are given unless ``measurement`` says otherwise (the adaptive length has its own test)."""
    wl = {
        "templates": 4,
        "prefix_tokens": 64,
        "input_tokens": {"dist": "fixed", "value": 128},
        "output_tokens": {"dist": "fixed", "value": 16},
        "concurrency": [8],
        "requests_per_point": 80,
        "warmup_requests": 8,
        "cooldown_requests": 8,
        **workload,
    }
    meas = measurement if measurement is not None else {"adaptive": False}
    return profile_from_dict({**LIVE_PROFILE, "workload": wl, "measurement": meas}, "live-h100-70b")
