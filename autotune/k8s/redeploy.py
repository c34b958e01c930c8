"""What it costs to turn the running graph into the next trial's, by what changed between the two specs.

Dynamo's operator reconciles a changed DGD by what changed (dynamo.md §1 "Redeploy cost"): new
worker replica counts are a scale, with no rollout; a new frontend spec (router flags) restarts the
frontend only; anything else in a worker's template (TP, args, env, image) rolls every worker, and a
different set of components is another graph. So the classes, cheapest first:

* ``none``: the same spec (only the trial's labels move, no new generation);
* ``frontend``: only the frontend differs: patch it, the operator restarts the frontend;
* ``replicas``: worker replica counts differ (and maybe the frontend): patch in place, only the added or
  removed workers start or stop;
* ``full``: anything else: delete the graph and deploy the next one fresh.

Pure functions on rendered manifests, so the decision is exactly what the operator will see.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from autotune.k8s.render import components, version_of

NONE, FRONTEND, REPLICAS, FULL = "none", "frontend", "replicas", "full"
REDEPLOYS = (NONE, FRONTEND, REPLICAS, FULL)  # cheapest first


@dataclass(frozen=True)
class Change:
    kind: str  # one of REDEPLOYS
    why: str  # what differs, for the log line; "" for none


def _spec_rest(dgd: dict[str, Any]) -> dict[str, Any]:
    """The spec outside the services/components: framework, pod labels and annotations."""
    return {k: v for k, v in dgd.get("spec", {}).items() if k not in ("services", "components")}


def _template(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "replicas"}


def classify(running: dict[str, Any], wanted: dict[str, Any]) -> Change:
    """How the operator gets from ``running`` to ``wanted`` (both rendered or fetched DGDs of one name)."""
    if version_of(running) != version_of(wanted):
        return Change(FULL, f"apiVersion {running['apiVersion']} -> {wanted['apiVersion']}")
    if running["metadata"]["name"] != wanted["metadata"]["name"]:
        return Change(FULL, "another graph")
    if _spec_rest(running) != _spec_rest(wanted):
        return Change(FULL, "graph-wide settings changed")
    have, want = components(running), components(wanted)
    if set(have) != set(want):
        return Change(FULL, f"components {sorted(have)} -> {sorted(want)}")
    frontend, scaled = False, []
    for name, (is_frontend, spec) in have.items():
        new = want[name][1]
        if is_frontend != want[name][0]:
            return Change(FULL, f"{name} changed kind")
        if is_frontend:
            frontend = frontend or spec != new
        elif _template(spec) != _template(new):
            return Change(FULL, f"{name} template changed (TP, args, env or image)")
        elif spec.get("replicas", 1) != new.get("replicas", 1):
            scaled.append(f"{name} {spec.get('replicas', 1)} -> {new.get('replicas', 1)}")
    if scaled:
        return Change(REPLICAS, ", ".join(scaled) + (" and the frontend" if frontend else ""))
    if frontend:
        return Change(FRONTEND, "frontend (router) flags")
    return Change(NONE, "")


def graft(wanted: dict[str, Any], running: dict[str, Any]) -> dict[str, Any]:
    """``wanted`` as a patch of the running graph: its name, and the labels and annotations its pods carry.

    ``spec.labels``/``spec.annotations`` reach every pod; changing them (the trial id) would roll every
    worker. The graph's own metadata names the trial it now serves, so sweeps by trial label find it.
    """
    out = copy.deepcopy(wanted)
    out["metadata"]["name"] = running["metadata"]["name"]
    for key in ("labels", "annotations"):
        if key in running.get("spec", {}):
            out["spec"][key] = copy.deepcopy(running["spec"][key])
    return out
