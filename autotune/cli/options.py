"""Options shared by several commands, so every command spells a flag, its default and its help the same way.

Imports nothing from the command modules or ``main.py``: any command can use it without a cycle.
"""

from __future__ import annotations

from typing import Any

import click

from autotune.cli.output import FORMATS
from autotune.errors import InputError

DEFAULT_PROFILE = "paper-70b-1p5d"


def parse_int_list(text: str, flag: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) <= 0:
            raise InputError(f"{flag}: {part!r} is not a positive integer (expected e.g. 16,32,64)")
        out.append(int(part))
    return out


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


def study_options(f: Any) -> Any:
    """The options of ``run`` and ``plan``: one study, the same flags."""
    for opt in reversed(
        [
            profile_option,
            click.option(
                "-b", "--backend", default="sim", show_default=True, help="Trial backend: sim, dynamo-local, k8s."
            ),
            click.option(
                "-n", "--trials", type=click.IntRange(min=1), default=None, help="Trials (default: the profile's)."
            ),
            click.option(
                "-r",
                "--results",
                "results",
                type=click.Path(file_okay=False),
                default=None,
                help="Results directory (default: results/<profile name>).",
            ),
            click.option(
                "--storage", default=None, help="Optuna storage URL (default: a journal file in the results dir)."
            ),
            click.option("--resume", is_flag=True, help="Continue the study in the results directory."),
            click.option(
                "--seed", type=int, default=None, help="Seed for the sampler and the simulator (default: profile)."
            ),
            click.option(
                "-j",
                "--jobs",
                type=click.IntRange(min=1),
                default=None,
                help="Parallel trials (default: CPU count on sim, 1 on live backends).",
            ),
            click.option("--sampler", type=click.Choice(["tpe", "random", "nsga2"]), default="tpe", show_default=True),
            click.option(
                "--timing",
                type=click.Choice(["roofline", "mocker"]),
                default="roofline",
                show_default=True,
                help="dynamo-local: mocker worker timing from the perf model, or the mocker's default.",
            ),
            click.option(
                "--speedup",
                type=click.FloatRange(min=0, min_open=True),
                default=1.0,
                show_default=True,
                help="dynamo-local: mocker speed-up ratio (compressed time).",
            ),
            click.option("--kubeconfig", default=None, help="k8s: kubeconfig file (default: $KUBECONFIG, in-cluster)."),
            click.option("--context", default=None, help="k8s: kubeconfig context."),
            click.option(
                "--frontend-access",
                type=click.Choice(["auto", "service-dns", "load-balancer", "port-forward"]),
                default="auto",
                show_default=True,
                help="k8s: how to reach each trial's frontend.",
            ),
            output_option,
        ]
    ):
        f = opt(f)
    return f
