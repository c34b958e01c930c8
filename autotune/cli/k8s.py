"""Kubernetes commands: ``autotune cleanup`` and ``autotune dgd``, plus the hooks ``plan`` and ``run --resume`` call.

The helpers live next to the commands so every cluster entry point shares one connection path. Cluster
selection everywhere: ``--kubeconfig``/``--context`` flags, else ``$KUBECONFIG`` and
``$AUTOTUNE_KUBE_CONTEXT``, else in-cluster configuration when running as a pod.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import yaml

from autotune.cli.options import output_option, profile_option, with_kube_options
from autotune.cli.output import emit
from autotune.errors import BackendError
from autotune.k8s import API_VERSIONS


def kube_settings(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """The flags as a ``KubeOptions``: ``--context``, else ``$AUTOTUNE_KUBE_CONTEXT``, else the current one."""
    from autotune.k8s.client import KubeOptions

    return KubeOptions(kubeconfig, context or os.environ.get("AUTOTUNE_KUBE_CONTEXT") or None)


def connect_kube(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A client for the cluster the flags select (every CLI entry point connects here)."""
    from autotune.k8s.client import connect

    return connect(kube_settings(kubeconfig, context))


def plan_topologies(profile: Any) -> list[Any]:
    """One graph per distinct worker shape the search can propose, plus the baselines.

    Replica counts do not change what the CRD schema accepts; TP (GPU limit, multinode), the
    aggregated/disaggregated split and the router bounds do, so those are covered.
    """
    from autotune.feasibility import check_feasibility
    from autotune.search.study import baseline_topologies
    from autotune.topology import RouterSettings, Topology

    s = profile.search
    credit = s.overlap_credit[1] if s.overlap_credit else 1.0
    router = RouterSettings(temperature=s.temperature[1], overlap_weight=s.overlap_weight[1], overlap_credit=credit)
    cands = [Topology(1, p, 1, d, router=router) for p in s.prefill_tp for d in s.decode_tp]
    if s.allow_aggregated:
        cands += [Topology(agg_workers=1, agg_tp=a, router=router) for a in s.aggregated_tp]
    cands += baseline_topologies(profile)
    seen, out = set(), []
    for t in cands:
        if t.to_string() not in seen and check_feasibility(t, profile).ok:
            seen.add(t.to_string())
            out.append(t)
    return out


def validate_plan_against_cluster(
    profile_ref: str, kubeconfig: str | None = None, context: str | None = None, study: str = "plan"
) -> list[Any]:
    """Server-side dry run of every graph shape the study can deploy; creates nothing.

    Reports on stderr (stdout carries the plan's own output); raises ``BackendError`` listing
    the graphs the cluster rejects or would silently prune.
    """
    from autotune.k8s.housekeeping import plan
    from autotune.k8s.render import render_dgd
    from autotune.profile import load_profile

    prof = load_profile(profile_ref)
    kube = connect_kube(kubeconfig, context)
    try:
        topos = plan_topologies(prof)
        dgds = [render_dgd(prof, t, study=study, trial_id=f"plan-{i}") for i, t in enumerate(topos)]
        checks = plan(kube, dgds)
    finally:
        kube.close()
    bad = []
    for t, c in zip(topos, checks, strict=True):
        click.echo(f"k8s dry run {t.to_string()} ({c.name}): {'ok, ' + c.detail if c.ok else c.detail}", err=True)
        if not c.ok:
            bad.append(f"{t.to_string()}: {c.detail}")
    if bad:
        raise BackendError(f"k8s: {len(bad)} of {len(checks)} graphs fail the cluster's dry run: " + "; ".join(bad))
    return checks


def reconcile_on_resume(
    profile: Any, study: str, finished_trials: set[str], kubeconfig: str | None = None, context: str | None = None
) -> Any:
    """Before ``run --resume`` with the k8s backend: remove every graph of ``study`` left in the cluster.

    Returns ``housekeeping.Reconciliation``; its ``interrupted_trials`` (ids like ``t3``) had graphs
    but no recorded result and should be marked failed ("interrupted; leftover removed on resume").
    """
    from autotune.k8s.housekeeping import reconcile
    from autotune.k8s.render import api_version_for

    kube = connect_kube(kubeconfig, context)
    try:
        return reconcile(kube, profile.dynamo.namespace, study, finished_trials, version=api_version_for(profile))
    finally:
        kube.close()


@click.command("cleanup")
@with_kube_options
@click.option("-N", "--namespace", default=None, help="Namespace to clean (default: the profile's dynamo.namespace).")
@click.option("-p", "--profile", default=None, help="Profile whose dynamo.namespace to clean.")
@click.option("--study", default=None, help="Only graphs of this study (default: every graph autotune made).")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=1, max=86400),
    default=600.0,
    show_default=True,
    help="Seconds to wait for the graphs and their pods to be gone.",
)
@output_option
def cleanup_cmd(
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    profile: str | None,
    study: str | None,
    dry_run: bool,
    timeout_s: float,
    fmt: str,
) -> None:
    """Delete DynamoGraphDeployments autotune left behind (selected by label) and wait until gone."""
    from autotune.k8s.housekeeping import cleanup, list_leftovers, served_version

    kube = connect_kube(kubeconfig, context)
    try:
        if namespace is None:
            if profile is not None:
                from autotune.profile import load_profile

                namespace = load_profile(profile).dynamo.namespace
            else:
                namespace = kube.default_namespace or "default"
        version = served_version(kube)  # the operator converts between served versions: any one lists all
        found = (
            list_leftovers(kube, namespace, study, version=version)
            if dry_run
            else cleanup(kube, namespace, study, version=version, timeout_s=timeout_s)
        )
    finally:
        kube.close()
    rows = [{"name": lo.name, "study": lo.study, "trial": lo.trial_id, "state": lo.state or "-"} for lo in found]
    verb = "would delete" if dry_run else "deleted"
    if fmt == "table" and not rows:
        click.echo(f"nothing to clean in namespace {namespace}", err=True)
        return
    emit(
        {"namespace": namespace, verb.replace(" ", "_"): rows},
        fmt,
        rows=rows,
        columns=[("name", "graph"), ("study", "study"), ("trial", "trial"), ("state", "state")],
        title=f"{verb} in namespace {namespace}",
    )


@click.command("dgd")
@profile_option
@click.option("-t", "--topology", required=True, help="Topology, e.g. 1P4-5D4@tau=0.7,omega=1 or 6A4.")
@click.option("--study", default="manual", show_default=True, help="Study name for the graph's name and labels.")
@click.option("--trial", "trial_id", default="0", show_default=True, help="Trial id for the graph's name and labels.")
@click.option(
    "--api-version",
    "api_version",
    type=click.Choice(API_VERSIONS),
    default=None,
    help="DGD apiVersion (nvidia.com/...); default: v1beta1 for Dynamo >= 1.5, v1alpha1 before (profile's dynamo.version).",
)
def dgd_cmd(profile: str, topology: str, study: str, trial_id: str, api_version: str | None) -> None:
    """Print the DynamoGraphDeployment a k8s trial would apply (YAML; nothing is contacted).

    Credential-looking literals are printed as ``<redacted>`` (with a warning): use secret references.
    """
    from autotune.k8s.render import render_dgd
    from autotune.profile import load_profile, profile_topology
    from autotune.redact import scrub

    prof = load_profile(profile)
    topo = profile_topology(prof, topology)
    dgd = render_dgd(prof, topo, study=study, trial_id=trial_id, api_version=api_version)
    sys.stdout.write(yaml.safe_dump(scrub(dgd, "autotune dgd"), sort_keys=False))
