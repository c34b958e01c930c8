"""``autotune validate``: the simulator side by side with a real local Dynamo (see ``autotune.validate``).

Standalone like every command; ``autotune.cli.app`` registers it.
"""

from __future__ import annotations

from pathlib import Path

import click

from autotune.cli.options import REQUESTS, SEED, SPEEDUP, check_point_size
from autotune.cli.output import FORMATS, emit
from autotune.errors import InputError
from autotune.profile_schema import MAX_CONCURRENCY


@click.command("validate")
@click.option("-p", "--profile", "profile_ref", required=True, help="Profile YAML path or shipped profile name.")
@click.option("-t", "--topology", required=True, help="Topology, e.g. 2A4 or 1P4-2D4@omega=2.")
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1, MAX_CONCURRENCY),
    default=None,
    help="Closed-loop concurrency (default: the profile's target or first point).",
)
@click.option("-n", "--requests", type=REQUESTS, default=None, help="Requests (default: profile).")
@click.option("--seed", type=SEED, default=None, help="Random seed (default: the profile's).")
@click.option(
    "--timing",
    default="roofline",
    show_default=True,
    help="Worker timing: a perf model tabulated for the mockers (roofline), or 'mocker' (its default).",
)
@click.option(
    "--speedup",
    type=SPEEDUP,
    default=0.5,
    show_default=True,
    help="Mocker speed-up ratio (both sides run at the same compressed time).",
)
@click.option("-o", "--output", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--strict", is_flag=True, help="Exit 1 when a metric misses its target.")
@click.option(
    "--save-records",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the live point's per-request records under this directory (input of autotune calibrate).",
)
def validate_cmd(
    profile_ref: str,
    topology: str,
    concurrency: int | None,
    requests: int | None,
    seed: int | None,
    timing: str,
    speedup: float,
    fmt: str,
    strict: bool,
    save_records: Path | None,
) -> None:
    """Run one load point on the simulator and on a real local Dynamo; print both with relative errors."""
    from autotune.dynamo.stack import secret_env
    from autotune.profile import load_profile, profile_topology
    from autotune.validate import validate

    prof = load_profile(profile_ref)
    secret_env(prof)  # a missing secret variable: one line, before anything starts
    topo = profile_topology(prof, topology)
    check_point_size(prof, requests, [concurrency or prof.search.target_concurrency or prof.workload.concurrency[0]])
    if timing == "mocker-npz":
        raise InputError("--timing: mocker-npz is the simulator's reading of the tables, not a source for them")
    report = validate(
        prof,
        topo,
        concurrency=concurrency,
        requests=requests,
        seed=seed,
        timing=timing,
        speedup=speedup,
        records_dir=save_records,
    )
    rows = [
        {
            "metric": r.label,
            "sim": r.sim,
            "live": r.live,
            "error": f"{r.error:+.1%}" if r.kind == "rel" else f"{r.error:+.1f} pt",
            "target": f"{r.tolerance:.0%}" if r.kind == "rel" else f"{r.tolerance:g} pt",
            "ok": "yes" if r.ok else "NO",
        }
        for r in report.rows
    ]
    cols = [
        ("metric", "metric"),
        ("sim", "sim"),
        ("live", "live"),
        ("error", "error"),
        ("target", "target"),
        ("ok", "ok"),
    ]
    emit(
        report.as_dict(),
        fmt,
        rows=rows,
        columns=cols,
        title=f"{prof.name} {topo.to_string()} C={report.concurrency}: simulator vs dynamo-local "
        f"({report.timing.get('timing')}, speedup {report.timing.get('speedup_ratio')}, "
        f"noise fitted from the live run: frontend {report.timing.get('frontend_jitter_ms')} ms, "
        f"token {report.timing.get('token_jitter_ms')} ms)",
    )
    if strict and not report.ok:
        raise SystemExit(1)
