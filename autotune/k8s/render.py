"""Render one DynamoGraphDeployment (nvidia.com/v1alpha1) per trial from a topology and a profile.

Rendering is pure (no API calls) so ``plan`` and tests can check every manifest against the
real CRD with a server-side dry run before anything is created. Flag names follow the
profile's Dynamo version and backend framework (dynamo.md §1-2).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from autotune.dynamo.flags import FRONTEND_LOG, router_args
from autotune.errors import InputError
from autotune.k8s import (
    ANN_PROFILE,
    ANN_STUDY,
    ANN_TOPOLOGY,
    ANN_TRIAL,
    GROUP,
    KIND,
    LABEL_MANAGED_BY,
    LABEL_STUDY,
    LABEL_TRIAL,
    MANAGED_BY,
    VERSION,
)
from autotune.profile import Profile, SecretRef
from autotune.topology import Topology

# Grove-backed resources break above ~45 characters (dynamo #8480, #8566); children append
# "-<service>-<hash>" to the graph name, so the graph name itself stays well below that.
MAX_NAME = 40
FRONTEND = "Frontend"
SERVICE_PREFILL, SERVICE_DECODE, SERVICE_AGG = "prefill", "decode", "worker"

_MODULES = {"vllm": "dynamo.vllm", "sglang": "dynamo.sglang", "trtllm": "dynamo.trtllm"}
_NIXL = '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'
_SGLANG_BOOTSTRAP_PORT = "12345"


def slug(text: str, limit: int) -> str:
    """Lower-case DNS-1123 label fragment of at most ``limit`` characters (may be empty)."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].rstrip("-")


def label_value(text: str) -> str:
    """A valid label value (<= 63 chars, alnum ends); long values get a hash suffix."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    if len(s) <= 63:
        return s
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{s[:54].rstrip('-._')}-{digest}"


def dgd_name(study: str, trial_id: str) -> str:
    """Unique, stable, short graph name: ``at-<study>-<hash>-<trial>``.

    Stable so a resumed study finds its own leftovers; the hash keeps two studies whose names
    share a prefix (or two trial ids that slug alike) apart.
    """
    digest = hashlib.sha256(f"{study}\0{trial_id}".encode()).hexdigest()[:6]
    trial = slug(trial_id, 10) or "t"
    study_part = slug(study, MAX_NAME - len("at--") - len(digest) - len(trial) - 2) or "s"
    name = f"at-{study_part}-{digest}-{trial}"
    assert len(name) <= MAX_NAME, name
    return name


def frontend_service_name(name: str) -> str:
    """The Service Dynamo's operator creates for the Frontend (dynamo.md §1)."""
    return f"{name}-{FRONTEND.lower()}"


def _engine_args(profile: Profile) -> list[str]:
    """Engine limits the simulator assumed, so the live run measures the same engine."""
    e, fw = profile.engine, profile.dynamo.framework
    if fw == "vllm":
        return [
            "--block-size",
            str(e.block_size),
            "--max-num-seqs",
            str(e.max_num_seqs),
            "--max-num-batched-tokens",
            str(e.max_num_batched_tokens),
            "--gpu-memory-utilization",
            f"{e.gpu_memory_fraction:g}",
        ]
    if fw == "sglang":
        return [
            "--page-size",
            str(e.block_size),
            "--max-running-requests",
            str(e.max_num_seqs),
            "--chunked-prefill-size",
            str(e.max_num_batched_tokens),
            "--mem-fraction-static",
            f"{e.gpu_memory_fraction:g}",
        ]
    return []  # TRT-LLM takes engine limits from --extra-engine-args YAML (profile extra_worker_args)


def _arg(a: str | SecretRef) -> str:
    """A literal argument, or ``$(VAR)`` for a secret reference (Kubernetes expands it in ``args``)."""
    return str(a)


def secret_envs(args: list[str | SecretRef]) -> list[dict[str, Any]]:
    """Container env entries, from ``secretKeyRef``, for the secret references among ``args``."""
    refs = list(dict.fromkeys(a for a in args if isinstance(a, SecretRef)))
    return [{"name": r.env_name, "valueFrom": {"secretKeyRef": {"name": r.secret, "key": r.key}}} for r in refs]


def worker_args(profile: Profile, role: str, tp: int) -> list[str]:
    """Worker command-line arguments: model, TP, engine limits, disaggregation flags, extras."""
    d, fw = profile.dynamo, profile.dynamo.framework
    path = d.model_path or profile.model.name
    served = profile.model.served_name or profile.model.name
    if fw == "vllm":
        args = ["--model", path, "--served-model-name", served, "--tensor-parallel-size", str(tp)]
    elif fw == "sglang":
        args = ["--model-path", path, "--served-model-name", served, "--tp", str(tp)]
    else:
        args = ["--model-path", path, "--served-model-name", served, "--tensor-parallel-size", str(tp)]
    args += _engine_args(profile)
    if role in ("prefill", "decode"):
        args += ["--disaggregation-mode", role]
        if fw == "vllm" and role == "prefill":
            args += ["--kv-transfer-config", _NIXL]
        elif fw == "sglang":
            args += [
                "--disaggregation-transfer-backend",
                "nixl",
                "--disaggregation-bootstrap-port",
                _SGLANG_BOOTSTRAP_PORT,
            ]
    if fw == "trtllm" and role in ("prefill", "agg"):
        args.append("--publish-events-and-metrics")  # the KV router needs the events of the workers it routes to
    return args + [_arg(a) for a in d.extra_worker_args]


def _worker_service(profile: Profile, role: str, workers: int, tp: int) -> dict[str, Any]:
    d, per_node = profile.dynamo, profile.cluster.gpus_per_node
    container: dict[str, Any] = {
        "image": d.image,
        "command": ["python3", "-m", _MODULES[d.framework]],
        "args": worker_args(profile, role, tp),
    }
    svc: dict[str, Any] = {
        "componentType": "worker",
        "subComponentType": "decode" if role == "agg" else role,  # planner/profiler find P/D by it
        "replicas": workers,
        "resources": {"limits": {"gpu": str(min(tp, per_node))}},
        "extraPodSpec": {"mainContainer": container},
    }
    if envs := secret_envs(d.extra_worker_args):
        svc["envs"] = envs
    if tp > per_node:
        if tp % per_node:
            raise InputError(f"{role} TP{tp} is not a whole number of {per_node}-GPU nodes")
        svc["multinode"] = {"nodeCount": tp // per_node}  # gpu limit is per node, TP spans the nodes
    if d.secrets:
        svc["envFromSecret"] = d.secrets[0]
        if len(d.secrets) > 1:
            container["envFrom"] = [{"secretRef": {"name": s}} for s in d.secrets[1:]]
    return svc


def render_dgd(profile: Profile, topology: Topology, *, study: str, trial_id: str) -> dict[str, Any]:
    """The DGD for one trial. Raises ``InputError`` for settings the Dynamo version cannot express."""
    if topology.gpus == 0:
        raise InputError(f"topology {topology} has no workers")
    d = profile.dynamo
    name = dgd_name(study, trial_id)
    labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_STUDY: label_value(study), LABEL_TRIAL: label_value(trial_id)}
    annotations = {
        ANN_STUDY: study,
        ANN_TRIAL: trial_id,
        ANN_TOPOLOGY: topology.to_string(),
        ANN_PROFILE: profile.digest(),
    }
    frontend: dict[str, Any] = {
        "componentType": "frontend",
        "replicas": 1,
        # JSONL logs with the router's selections: the trial reads its routing decisions from the pod log
        "envs": [
            {"name": "DYN_LOGGING_JSONL", "value": "1"},
            {"name": "DYN_LOG", "value": FRONTEND_LOG},
            *secret_envs(d.extra_frontend_args),
        ],
        "extraPodSpec": {
            "mainContainer": {
                "image": d.image,
                "command": ["python3", "-m", "dynamo.frontend"],
                "args": router_args(d.version_tuple, topology.router) + [_arg(a) for a in d.extra_frontend_args],
            }
        },
    }
    services: dict[str, Any] = {FRONTEND: frontend}
    if topology.disaggregated:
        services[SERVICE_PREFILL] = _worker_service(profile, "prefill", topology.prefill_workers, topology.prefill_tp)
        services[SERVICE_DECODE] = _worker_service(profile, "decode", topology.decode_workers, topology.decode_tp)
    else:
        services[SERVICE_AGG] = _worker_service(profile, "agg", topology.agg_workers, topology.agg_tp)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": d.namespace, "labels": labels, "annotations": annotations},
        "spec": {
            "backendFramework": d.framework,
            "labels": dict(labels),  # propagated to every child resource and pod, so cleanup finds them
            "annotations": {ANN_STUDY: study, ANN_TRIAL: trial_id},
            "services": services,
        },
    }


def worker_services(dgd: dict[str, Any]) -> dict[str, int]:
    """Desired replicas of each worker service of a rendered or fetched DGD."""
    return {
        k: int(v.get("replicas", 1))
        for k, v in dgd.get("spec", {}).get("services", {}).items()
        if v.get("componentType") != "frontend"
    }
