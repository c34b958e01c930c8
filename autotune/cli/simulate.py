"""``autotune simulate``: one topology over a concurrency sweep on the simulator, for a quick look without a study."""

from __future__ import annotations

import logging

import click

from autotune.cli.options import REQUESTS, SEED, check_point_size, output_option, parse_int_list, profile_option
from autotune.cli.output import emit
from autotune.errors import InputError

log = logging.getLogger("autotune")


@click.command()
@profile_option
@click.option(
    "-t",
    "--topology",
    default=None,
    help="Topology, e.g. 1P4-5D4 or 6A4@tau=0.7,omega=0.5 (default: the profile's first baseline).",
)
@click.option(
    "-c", "--concurrency", default=None, help="Comma-separated concurrency points (default: the profile grid)."
)
@click.option("-n", "--requests", type=REQUESTS, default=None, help="Requests per point (default: profile).")
@click.option("--seed", type=SEED, default=None, help="Random seed (default: the profile's).")
@click.option("--perf-model", default="roofline", show_default=True, help="Step-time model: roofline or mocker.")
@output_option
def simulate(
    profile: str,
    topology: str | None,
    concurrency: str | None,
    requests: int | None,
    seed: int | None,
    perf_model: str,
    fmt: str,
) -> None:
    """Simulate one topology over a concurrency sweep and print one row per point."""
    from autotune.backends.sim import SimBackend
    from autotune.metrics import summarize
    from autotune.profile import load_profile, profile_topology

    prof = load_profile(profile)
    if topology is None:
        if not prof.baselines:
            raise InputError("--topology: required because the profile lists no baselines")
        topology = prof.baselines[0]
    topo = profile_topology(prof, topology)
    points = (
        parse_int_list(concurrency, "--concurrency") if concurrency is not None else list(prof.workload.concurrency)
    )
    check_point_size(prof, requests, points)
    seed = prof.seed if seed is None else seed
    dep = SimBackend(perf_model).deploy(prof, topo, trial_id="simulate")
    rows = []
    for c in points:
        m = summarize(dep.run_point(c, seed=seed, requests=requests))
        log.info("C=%d: %.0f tok/s, TTFT p99 %.1f ms", c, m.output_tok_s, m.ttft_p99_ms)
        rows.append(m.as_dict())
    data = {
        "profile": prof.name,
        "topology": topo.to_string(),
        "gpus": topo.gpus,
        "perf_model": perf_model,
        "seed": seed,
        "points": rows,
    }
    cols = [
        ("concurrency", "C"),
        ("output_tok_s", "tok/s"),
        ("tok_s_per_gpu", "tok/s/GPU"),
        ("req_s", "req/s"),
        ("ttft_p50_ms", "TTFT p50 ms"),
        ("ttft_p99_ms", "TTFT p99 ms"),
        ("itl_p50_ms", "ITL p50 ms"),
        ("itl_p99_ms", "ITL p99 ms"),
        ("e2e_p99_ms", "E2E p99 ms"),
        ("prefix_hit_rate", "hit rate"),
    ]
    emit(data, fmt, rows=rows, columns=cols, title=f"{prof.name} {topo.to_string()} ({topo.gpus} GPUs, simulated)")
