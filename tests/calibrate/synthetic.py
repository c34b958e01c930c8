"""Point records with known constants: the simulator runs the mockers' tables tabulated from a profile
whose perf constants the test sets and ``calibrate`` is not told (the same path as a dynamo-local run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autotune.backends.sim import SimBackend
from autotune.calibrate.points import save_point
from autotune.dynamo.mocker_timing import plan_timing
from autotune.profile import Profile, profile_from_dict
from autotune.topology import parse_topology

SPEEDUP = 0.5  # as validate runs the mockers
# the deployment the records come from: efficiencies 30 % under the catalog's vLLM 0.5 and 0.8
TRUE_PERF = {"prefill_mfu": 0.35, "decode_mbu": 0.56}
# its frontend: 2 ms + 20 us per prompt token before routing, plus an exponential 1 ms
TRUE_HOST = {
    "frontend_workers": 1024,
    "frontend_request_ms": 2.0,
    "frontend_input_token_us": 20.0,
    "frontend_overhead_ms": 1.0,
    "frontend_jitter_ms": 1.0,
}


def profile(**workload: Any) -> Profile:
    """What the user knows: the catalog's constants (calibrate starts from these)."""
    wl = {
        "templates": 4,
        "prefix_tokens": 32,
        "input_tokens": {"dist": "uniform", "min": 64, "max": 1024},
        "output_tokens": {"dist": "fixed", "value": 16},
        "concurrency": [1, 4, 8],
        "requests_per_point": 60,
        "warmup_requests": 4,
        "cooldown_requests": 4,
        **workload,
    }
    return profile_from_dict(
        {
            "name": "calib-h100-70b",
            "cluster": {"nodes": 1, "gpus_per_node": 8, "gpu": "H100"},
            "model": {"name": "Llama-3.1-70B", "weight_dtype": "fp8", "kv_dtype": "fp8"},
            "workload": wl,
            "measurement": {"adaptive": False},
            "search": {"operating_point": "grid"},
        },
        "calib-h100-70b",
    )


def true_profile(base: Profile) -> Profile:
    return base.model_copy(
        update={
            "perf": base.perf.model_copy(update=TRUE_PERF),
            "dynamo": base.dynamo.model_copy(update=TRUE_HOST),
        }
    )


def write_points(root: Path, base: Profile, topology: str = "2A4", concurrencies: tuple[int, ...] = (1, 4, 8)) -> Path:
    truth, topo = true_profile(base), parse_topology(topology)
    plan = plan_timing(truth, topo, root / "timing", speedup=SPEEDUP)
    name, opts = plan.sim_backend_options()
    for c in concurrencies:
        run = (
            SimBackend(name, **opts).deploy(truth, topo).run_point(c, seed=c, requests=base.workload.requests_per_point)
        )
        run.meta.update(plan.describe())
        save_point(run, topo, base, root / "points" / f"{topo.shape()}-c{c}")
    return root / "points"
