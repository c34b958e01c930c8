"""The ``autotune`` command line: thin click commands over the library.

Errors a user can cause print one line on stderr and exit with a documented code (README):
0 ok, 2 bad input, 3 no feasible configuration, 4 backend failure, 130 interrupted.
"""

from __future__ import annotations

import logging
import sys

import click

from autotune import __version__
from autotune.errors import EXIT_INTERRUPTED, AutotuneError, InputError
from autotune.output import FORMATS, emit

log = logging.getLogger("autotune")

DEFAULT_PROFILE = "paper-70b-1p5d"


def parse_int_list(text: str, flag: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) <= 0:
            raise InputError(f"{flag}: {part!r} is not a positive integer (expected e.g. 16,32,64)")
        out.append(int(part))
    return out


output_option = click.option("-o", "--output", "fmt", type=click.Choice(FORMATS), default="table",
                             show_default=True, help="Output format of the data written to stdout.")
profile_option = click.option("-p", "--profile", default=DEFAULT_PROFILE, show_default=True,
                              help="Profile YAML path, or the name of a shipped profile in profiles/.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autotune")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
def cli(verbose: int) -> None:
    """Cluster autotuner for NVIDIA Dynamo disaggregated LLM serving."""
    level = logging.WARNING - 10 * min(verbose, 2) if verbose else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("optuna", "matplotlib", "kubernetes", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@cli.command()
@profile_option
@click.option("-t", "--topology", default=None, help="Topology, e.g. 1P4-5D4 or 6A4@tau=0.7,omega=0.5 "
              "(default: the profile's first baseline).")
@click.option("-c", "--concurrency", default=None, help="Comma-separated concurrency points (default: the profile grid).")
@click.option("-n", "--requests", type=click.IntRange(min=10), default=None, help="Requests per point (default: profile).")
@click.option("--seed", type=int, default=None, help="Random seed (default: the profile's).")
@click.option("--perf-model", default="roofline", show_default=True, help="Step-time model: roofline or mocker.")
@output_option
def simulate(profile: str, topology: str | None, concurrency: str | None, requests: int | None, seed: int | None,
             perf_model: str, fmt: str) -> None:
    """Simulate one topology over a concurrency sweep and print one row per point."""
    from autotune.backends.sim import SimBackend
    from autotune.metrics import summarize
    from autotune.profile import load_profile
    from autotune.topology import parse_topology

    prof = load_profile(profile)
    if topology is None:
        if not prof.baselines:
            raise InputError("--topology: required because the profile lists no baselines")
        topology = prof.baselines[0]
    topo = parse_topology(topology)
    points = parse_int_list(concurrency, "--concurrency") if concurrency else list(prof.workload.concurrency)
    seed = prof.seed if seed is None else seed
    dep = SimBackend(perf_model).deploy(prof, topo, trial_id="simulate")
    rows = []
    for c in points:
        m = summarize(dep.run_point(c, seed=seed, requests=requests))
        log.info("C=%d: %.0f tok/s, TTFT p99 %.1f ms", c, m.output_tok_s, m.ttft_p99_ms)
        rows.append(m.as_dict())
    data = {"profile": prof.name, "topology": topo.to_string(), "gpus": topo.gpus, "perf_model": perf_model,
            "seed": seed, "points": rows}
    cols = [("concurrency", "C"), ("output_tok_s", "tok/s"), ("tok_s_per_gpu", "tok/s/GPU"), ("req_s", "req/s"),
            ("ttft_p50_ms", "TTFT p50 ms"), ("ttft_p99_ms", "TTFT p99 ms"), ("itl_p50_ms", "ITL p50 ms"),
            ("itl_p99_ms", "ITL p99 ms"), ("e2e_p99_ms", "E2E p99 ms"), ("prefix_hit_rate", "hit rate")]
    emit(data, fmt, rows=rows, columns=cols, title=f"{prof.name} {topo.to_string()} ({topo.gpus} GPUs, simulated)")


def _register_commands() -> None:
    """Commands living in their own modules attach themselves to ``cli`` on import."""
    import importlib

    for mod in ("autotune.cli_run", "autotune.cli_validate", "autotune.cli_k8s"):
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
            continue
        for obj in vars(module).values():  # standalone commands (e.g. validate_cmd)
            if isinstance(obj, click.Command) and not isinstance(obj, click.Group) and obj.name not in cli.commands:
                cli.add_command(obj)


def main(argv: list[str] | None = None) -> None:
    """Entry point: map errors to exit codes, never a traceback for user errors."""
    _register_commands()
    try:
        cli.main(args=argv, prog_name="autotune", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("autotune: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except AutotuneError as exc:
        click.echo(f"autotune: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("autotune: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        sys.exit(0)
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover - ``python -m autotune`` is the supported form
    from autotune.cli import main as _main

    _main()
