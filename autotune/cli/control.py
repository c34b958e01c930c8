"""``autotune control``: run the adaptive controller against a live deployment (``autotune.control``).

Advisory unless ``--apply``. Exit codes: 0 after ``--duration``; 130 after SIGTERM/SIGINT (the baseline
preset restored first, unless ``--keep-on-exit``); 2 for bad input (a settings file of the wrong kind or
version, conflicting flags); 4 when the deployment cannot be reached or switched at start.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import click

from autotune.cli.options import with_kube_options
from autotune.control.actuator import SwitchResult
from autotune.errors import EXIT_INTERRUPTED, InputError
from autotune.topology import RouterSettings


class _ReadOnly:
    """Advisory against a frontend autotune did not start: it reads metrics and never switches."""

    name = "read-only"

    def __init__(self, preset: RouterSettings) -> None:
        self.preset = preset

    def current(self) -> RouterSettings:
        return self.preset

    def apply(self, preset: RouterSettings) -> SwitchResult:
        raise InputError("control: this deployment is read-only here (advisory); --apply needs --local-stack or --dgd")


@click.command("control")
@click.option("--settings", "settings_path", required=True, type=click.Path(path_type=Path), help="recommended.yaml.")
@click.option("--frontend", default=None, help="Frontend base URL (local); its /metrics is read.")
@click.option(
    "--local-stack",
    type=click.Path(path_type=Path),
    default=None,
    help="Work directory of a running dynamo-local stack (its frontend.json): lets the controller switch it.",
)
@click.option("--proxy-port", type=click.IntRange(0, 65535), default=0, help="Loopback port clients use (0: any).")
@click.option("--dgd", default=None, help="DynamoGraphDeployment name (Kubernetes).")
@click.option("-N", "--namespace", default=None, help="Namespace of --dgd.")
@with_kube_options
@click.option("--prometheus", default=None, help="Prometheus base URL: read the P99 by PromQL instead of scraping.")
@click.option("--prom-selector", default="", help='PromQL label selector, e.g. {namespace="llm"}.')
@click.option("--apply/--advisory", "apply", default=False, help="Switch presets (default: advisory, log only).")
@click.option(
    "--max-switches-per-hour",
    type=click.IntRange(1, 3600),
    default=12,
    show_default=True,
    help="Switch rate limit over any sliding hour (failed attempts count).",
)
@click.option(
    "--rollback-margin",
    type=click.FloatRange(0, None),
    default=1.0,
    show_default=True,
    help="Roll back a switch whose P99 after is worse than before by more than this fraction.",
)
@click.option(
    "--rollback-intervals",
    type=click.IntRange(1, 1000),
    default=3,
    show_default=True,
    help="Intervals before and after a switch that the roll-back rule compares.",
)
@click.option("--keep-on-exit", is_flag=True, help="On SIGTERM leave the current preset (default: restore baseline).")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None, help="Serve /metrics on this port.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option("--record", "record_path", type=click.Path(path_type=Path), default=None, help="JSONL record file.")
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(0, None, min_open=True),
    default=None,
    help="Stop after this many seconds (restoring the baseline; exit 0). Default: until SIGTERM/SIGINT (exit 130).",
)
def control_cmd(
    settings_path: Path,
    frontend: str | None,
    local_stack: Path | None,
    proxy_port: int,
    dgd: str | None,
    namespace: str | None,
    kubeconfig: str | None,
    context: str | None,
    prometheus: str | None,
    prom_selector: str,
    apply: bool,
    max_switches_per_hour: int,
    rollback_margin: float,
    rollback_intervals: int,
    keep_on_exit: bool,
    metrics_port: int | None,
    metrics_host: str,
    record_path: Path | None,
    duration_s: float | None,
) -> None:
    """Read TTFT P99 every interval, track the regime, switch router presets (advisory unless --apply)."""
    from autotune.control.local_actuator import FrontendSpec, LocalActuator
    from autotune.control.loop import ControlOptions, install_stop_signals, run_controller
    from autotune.control.observe import ControlMetrics, RecordFile
    from autotune.control.settings import load_settings
    from autotune.control.source import FrontendHistogram, PrometheusQuery, TtftSource
    from autotune.regimes import BELOW

    settings = load_settings(settings_path)
    targets = sum(x is not None for x in (frontend, local_stack, dgd))
    if targets != 1:
        raise InputError("control: give one of --frontend URL, --local-stack DIR or --dgd NAME -N NAMESPACE")
    if dgd is not None and not namespace:
        raise InputError("-N/--namespace: required with --dgd")
    if apply and frontend is not None:
        raise InputError("--apply: locally the controller switches a stack it can start frontends for: --local-stack")
    local = LocalActuator(FrontendSpec.read(local_stack), proxy_port=proxy_port) if local_stack else None
    k8s = None
    if dgd is not None:
        from autotune.cli.k8s import kube_settings
        from autotune.control.k8s_actuator import make_k8s_actuator

        k8s = make_k8s_actuator(dgd, str(namespace), kube_settings(kubeconfig, context))
    try:
        actuator = local or k8s or _ReadOnly(settings.presets[BELOW])
        if prometheus:
            source: TtftSource = PrometheusQuery(prometheus, 2 * settings.interval_s, prom_selector)
        elif local is not None:
            source = FrontendHistogram(local.metrics_urls)
        elif k8s is not None:  # re-resolved after each switch: a port-forward dies with the old pod
            source = FrontendHistogram(lambda: [f"{k8s.frontend_url()}/metrics"])
        else:
            url = f"{str(frontend).rstrip('/')}/metrics"
            source = FrontendHistogram(lambda: [url])
        metrics = ControlMetrics(settings)
        server = metrics.serve(metrics_port, metrics_host) if metrics_port else None
        stop = threading.Event()
        install_stop_signals(stop)
        if local is not None:
            click.echo(f"autotune: control: clients use {local.url} (proxy to the serving frontend)", err=True)
        options = ControlOptions(
            apply=apply,
            max_switches_per_hour=max_switches_per_hour,
            rollback_margin=rollback_margin,
            rollback_intervals=rollback_intervals,
            keep_on_exit=keep_on_exit,
            duration_s=duration_s,
            record=RecordFile(record_path),
            metrics=metrics,
            stop=stop,
        )
        try:
            record = run_controller(settings, source, actuator, options)
        finally:
            options.record.close()
            if server is not None:
                server.shutdown()
    finally:
        if local is not None:
            local.close()
        if k8s is not None:
            k8s.close()
    if record.stopped_by == "signal":
        kept = "kept" if keep_on_exit else "restored"
        click.echo(f"autotune: control stopped by signal; baseline preset {kept}", err=True)
        sys.exit(EXIT_INTERRUPTED)
