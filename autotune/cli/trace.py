"""``autotune trace``: write a Mooncake-style trace from a profile's distributions, and describe a profile's trace."""

from __future__ import annotations

from pathlib import Path

import click

from autotune.cli.options import SEED, output_option, profile_option
from autotune.cli.output import emit
from autotune.errors import InputError
from autotune.profile_schema import MAX_REQUESTS, MAX_TOKENS


@click.group("trace")
def trace_cmd() -> None:
    """Traces a profile's workload can replay (docs/traces.md)."""


@trace_cmd.command("generate")
@profile_option
@click.option("-n", "--requests", type=click.IntRange(1, MAX_REQUESTS), default=1000, show_default=True)
@click.option(
    "--rate-rps",
    type=click.FloatRange(min=0, min_open=True, max=1e6),
    default=None,
    help="Mean arrival rate, Poisson (default: the profile's workload.rate_rps, else 10).",
)
@click.option(
    "--block-size-tokens",
    type=click.IntRange(1, MAX_TOKENS),
    default=512,
    show_default=True,
    help="Tokens per hash id (Mooncake uses 512).",
)
@click.option("--seed", type=SEED, default=None, help="Random seed (default: the profile's).")
@click.argument("out", type=click.Path(dir_okay=False, writable=True))
def generate_cmd(
    profile: str, requests: int, rate_rps: float | None, block_size_tokens: int, seed: int | None, out: str
) -> None:
    """Write OUT: a Mooncake JSONL trace drawn from the profile's length distributions and prefix templates."""
    from autotune.profile import load_profile
    from autotune.traces.generate import mooncake_records, write_trace

    prof = load_profile(profile)
    w = prof.workload
    if w.trace is not None:
        raise InputError(
            f"{profile}: workload.trace: generate draws from the distributions; this profile replays a trace"
        )
    rate = rate_rps or w.rate_rps or 10.0
    records = mooncake_records(
        w, requests, rate_rps=rate, block_tokens=block_size_tokens, seed=prof.seed if seed is None else seed
    )
    count = write_trace(Path(out), records)
    click.echo(f"wrote {count} requests to {out} ({rate:g} req/s, {block_size_tokens}-token blocks)", err=True)


@trace_cmd.command("info")
@profile_option
@output_option
def info_cmd(profile: str, fmt: str) -> None:
    """Describe the trace the profile replays, as sliced and scaled: requests, rate, lengths, prefix reuse."""
    import numpy as np

    from autotune.profile import load_profile
    from autotune.traces.trace import load_trace

    prof = load_profile(profile)
    spec = prof.workload.trace
    if spec is None:
        raise InputError(f"{profile}: workload.trace: this profile has no trace")
    t = load_trace(spec)
    span = float(t.arrival_s[-1] - t.arrival_s[0])
    data = {
        "path": spec.path,
        "format": spec.format,
        "mode": spec.mode,
        "requests": len(t),
        "skipped": t.skipped,
        "duration_s": span,
        "mean_rate_rps": (len(t) - 1) / span if span > 0 else float("nan"),
        "pass_period_s": t.period_s,
        "input_tokens_mean": float(t.input_tokens.mean()),
        "input_tokens_p99": float(np.percentile(t.input_tokens, 99)),
        "output_tokens_mean": float(t.output_tokens.mean()),
        "output_tokens_p99": float(np.percentile(t.output_tokens, 99)),
        "block_tokens": t.block_tokens,
        "prefix_groups": int(t.template.max()) + 1,
        "shared_tokens_mean": t.mean_shared_tokens(),
        "reuse_rate": t.reuse_rate(),
    }
    emit(data, fmt, rows=[{"figure": k, "value": v} for k, v in data.items()], title=f"{prof.name}: trace")
