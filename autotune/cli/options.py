"""Options shared by several commands, so every command spells a flag, its default and its help the same way.

Imports nothing from the command modules or ``main.py``: any command can use it without a cycle.
"""

from __future__ import annotations

import re
from typing import Any

import click

from autotune.cli.output import FORMATS
from autotune.errors import InputError
from autotune.profile_schema import MAX_CONCURRENCY, MAX_REQUESTS, MAX_TRIALS, SEED_MAX
from autotune.search.config import HEARTBEAT_S, ROUTER_BLOCK_K8S, STALE_AFTER_S
from autotune.topology import shorten

DEFAULT_PROFILE = "paper-70b-1p5d"
_ASCII_INT = re.compile(r"[0-9]{1,12}", re.ASCII)  # str.isdigit() also takes '²' and other non-ASCII digits


def parse_int_list(text: str, flag: str, maximum: int = MAX_CONCURRENCY) -> list[int]:
    """``16,32,64``: positive ASCII integers up to ``maximum``, strictly increasing; errors name ``flag``."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not _ASCII_INT.fullmatch(part) or int(part) <= 0:
            raise InputError(f"{flag}: {shorten(part)} is not a positive integer (expected e.g. 16,32,64)")
        if int(part) > maximum:
            raise InputError(f"{flag}: {part} exceeds the maximum {maximum}")
        if out and int(part) <= out[-1]:
            raise InputError(f"{flag}: {shorten(text)} must be strictly increasing without repeats")
        out.append(int(part))
    return out


def check_point_size(profile: Any, requests: int | None, concurrency: list[int]) -> None:
    """Refuse ``-n`` too small for the largest ``-c`` (a closed-loop point that never reaches steady state
    reports nonsense throughput); ``requests`` None means the profile's ``workload.requests_per_point``."""
    w = profile.workload
    n = requests or w.requests_per_point
    why = w.too_few_requests(n, max(concurrency))
    if why:
        where = "-n/--requests" if requests else f"{profile.source}: workload.requests_per_point"
        raise InputError(f"{where}: {why}; raise -n or lower -c/--concurrency")


# every --seed flag: numpy seeds are 0 <= seed < 2**32, as the profile's ``seed`` field
SEED = click.IntRange(0, SEED_MAX)
REQUESTS = click.IntRange(10, MAX_REQUESTS)
SPEEDUP = click.FloatRange(min=0, max=1000, min_open=True)  # also refuses inf and nan


output_option = click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format of the data written to stdout.",
)
profile_option = click.option(
    "-p",
    "--profile",
    default=DEFAULT_PROFILE,
    show_default=True,
    help="Profile YAML path, or the name of a shipped profile in profiles/.",
)


# the URL may carry a password: $AUTOTUNE_STORAGE (a Secret in k8s/) keeps it off the command line
storage_option = click.option(
    "--storage",
    envvar="AUTOTUNE_STORAGE",
    default=None,
    help="Optuna storage URL, e.g. postgresql://user@host/db (default: a journal file in the results dir; "
    "env AUTOTUNE_STORAGE).",
)


kube_options = [
    click.option(
        "--kubeconfig",
        default=None,
        help="k8s: kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster configuration in a pod).",
    ),
    click.option(
        "--context", default=None, help="k8s: kubeconfig context (default: $AUTOTUNE_KUBE_CONTEXT or current)."
    ),
]


def with_kube_options(f: Any) -> Any:
    """``--kubeconfig`` and ``--context``, the same on every command that reaches a cluster."""
    for opt in reversed(kube_options):
        f = opt(f)
    return f


def study_options(f: Any) -> Any:
    """The options of ``run`` and ``plan``: one study, the same flags."""
    for opt in reversed(_study_option_list(resume=True)):
        f = opt(f)
    return f


def worker_options(f: Any) -> Any:
    """The options of ``worker``: those of ``run`` less ``--resume`` (a worker always joins), plus its own."""
    own = [
        click.option(
            "--study", "study_name", default=None, help="Study name in --storage (default: autotune-<profile>)."
        ),
        click.option(
            "--worker-index",
            envvar="JOB_COMPLETION_INDEX",
            type=click.IntRange(0, 100_000),
            default=None,
            help="This worker's index (a Kubernetes Indexed Job sets $JOB_COMPLETION_INDEX); offsets the sampler seed.",
        ),
        click.option(
            "--heartbeat",
            "heartbeat_s",
            type=click.IntRange(1, 3600),
            default=HEARTBEAT_S,
            show_default=True,
            help="Seconds between heartbeats of each trial in flight.",
        ),
        click.option(
            "--stale-after",
            "stale_after_s",
            type=click.IntRange(2, 86400),
            default=STALE_AFTER_S,
            show_default=True,
            help="Seconds without a heartbeat after which a trial's worker counts as dead (failed, retried once).",
        ),
    ]
    for opt in reversed(_study_option_list(resume=False) + own):
        f = opt(f)
    return f


def _study_option_list(*, resume: bool) -> list[Any]:
    return [
        opt
        for opt in [
            profile_option,
            click.option(
                "-b", "--backend", default="sim", show_default=True, help="Trial backend: sim, dynamo-local, k8s."
            ),
            click.option(
                "-n",
                "--trials",
                type=click.IntRange(1, MAX_TRIALS),
                default=None,
                help="Trials (default: the profile's).",
            ),
            click.option(
                "-r",
                "--results",
                "results",
                type=click.Path(file_okay=False),
                default=None,
                help="Results directory (default: results/<profile name>).",
            ),
            storage_option,
            click.option("--resume", is_flag=True, help="Continue the study in the results directory.")
            if resume
            else None,
            click.option(
                "--polish/--no-polish",
                default=None,
                help="After the budget, run once each shape on the recommended number of GPUs that no trial "
                "has tried (default: on with the simulator, off on live backends).",
            )
            if resume
            else None,
            click.option(
                "--seed", type=SEED, default=None, help="Seed for the sampler and the simulator (default: profile)."
            ),
            click.option(
                "-j",
                "--jobs",
                type=click.IntRange(1, 1024),
                default=None,
                help="Parallel trials (default: CPU count on sim, 1 on live backends).",
            ),
            click.option("--sampler", type=click.Choice(["tpe", "random", "nsga2"]), default="tpe", show_default=True),
            click.option(
                "--router-block",
                type=click.IntRange(1, MAX_TRIALS),
                default=None,
                help="Trials in a row on one worker shape, the sampler choosing only the router "
                f"(default: {ROUTER_BLOCK_K8S} on k8s with --reuse-graphs, else 1; docs/kubernetes.md).",
            ),
            click.option(
                "--reuse-graphs/--no-reuse-graphs",
                default=True,
                show_default=True,
                help="k8s: keep the last graph between trials and patch it for router or replica changes.",
            ),
            click.option(
                "--timing",
                type=click.Choice(["roofline", "mocker"]),
                default="roofline",
                show_default=True,
                help="dynamo-local: mocker worker timing from the perf model, or the mocker's default.",
            ),
            click.option(
                "--speedup",
                type=SPEEDUP,
                default=1.0,
                show_default=True,
                help="dynamo-local: mocker speed-up ratio (compressed time).",
            ),
            *kube_options,
            click.option(
                "--frontend-access",
                type=click.Choice(["auto", "service-dns", "load-balancer", "port-forward"]),
                default="auto",
                show_default=True,
                help="k8s: how to reach each trial's frontend.",
            ),
            output_option,
        ]
        if opt is not None
    ]
