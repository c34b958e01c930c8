"""What runs in a trial's pods, whichever DGD apiVersion carries it: commands, arguments, env, GPUs per pod.

Both renderers (``render_v1alpha1``, ``render_v1beta1``) place these same pieces, so a trial runs the
same engine whatever the CRD shape. Flag names follow the profile's Dynamo version and backend
framework (dynamo.md §1-2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autotune.dynamo.flags import FRONTEND_LOG, router_args
from autotune.errors import InputError
from autotune.k8s.names import SERVICE_AGG, SERVICE_DECODE, SERVICE_PREFILL
from autotune.profile import Profile, SecretRef
from autotune.topology import Topology

_MODULES = {"vllm": "dynamo.vllm", "sglang": "dynamo.sglang", "trtllm": "dynamo.trtllm"}
_NIXL = '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'
_SGLANG_BOOTSTRAP_PORT = "12345"
FRONTEND_COMMAND = ["python3", "-m", "dynamo.frontend"]


@dataclass(frozen=True)
class Worker:
    """One worker service/component: its name, role, replicas and how its TP maps onto pods."""

    name: str
    role: str  # "prefill", "decode" or "agg"
    replicas: int
    tp: int
    gpus_per_pod: int  # the GPU limit: per node when the worker spans nodes
    node_count: int | None  # None: one pod per replica on one node


def workers(profile: Profile, topology: Topology) -> list[Worker]:
    """The worker services a topology needs; ``InputError`` for a TP that does not fill whole nodes."""
    if topology.gpus == 0:
        raise InputError(f"topology {topology} has no workers")
    if topology.disaggregated:
        wanted = [
            (SERVICE_PREFILL, "prefill", topology.prefill_workers, topology.prefill_tp),
            (SERVICE_DECODE, "decode", topology.decode_workers, topology.decode_tp),
        ]
    else:
        wanted = [(SERVICE_AGG, "agg", topology.agg_workers, topology.agg_tp)]
    per_node = profile.cluster.gpus_per_node
    out = []
    for name, role, replicas, tp in wanted:
        nodes = None
        if tp > per_node:
            if tp % per_node:
                raise InputError(f"{role} TP{tp} is not a whole number of {per_node}-GPU nodes")
            nodes = tp // per_node  # the GPU limit is per node; TP spans the nodes
        out.append(Worker(name, role, replicas, tp, min(tp, per_node), nodes))
    return out


def _engine_args(profile: Profile) -> list[str]:
    """Engine limits the simulator assumed, so the live run measures the same engine."""
    e, fw = profile.engine, profile.dynamo.framework
    blocks = e.num_gpu_blocks_override
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
            *(["--num-gpu-blocks-override", str(blocks)] if blocks else []),
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
            # SGLang sizes its KV pool in tokens
            *(["--max-total-tokens", str(blocks * e.block_size)] if blocks else []),
        ]
    return []  # TRT-LLM takes engine limits from --extra-engine-args YAML (profile extra_worker_args)


def _arg(a: str | SecretRef) -> str:
    """A literal argument, or ``$(VAR)`` for a secret reference (Kubernetes expands it in ``args``)."""
    return str(a)


def secret_envs(args: list[str | SecretRef]) -> list[dict[str, Any]]:
    """Container env entries, from ``secretKeyRef``, for the secret references among ``args``."""
    refs = list(dict.fromkeys(a for a in args if isinstance(a, SecretRef)))
    return [{"name": r.env_name, "valueFrom": {"secretKeyRef": {"name": r.secret, "key": r.key}}} for r in refs]


def worker_command(profile: Profile) -> list[str]:
    return ["python3", "-m", _MODULES[profile.dynamo.framework]]


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


def frontend_args(profile: Profile, topology: Topology) -> list[str]:
    """Router flags for the topology's settings, then the profile's extra frontend arguments."""
    d = profile.dynamo
    return router_args(d.version_tuple, topology.router) + [_arg(a) for a in d.extra_frontend_args]


def frontend_env(profile: Profile) -> list[dict[str, Any]]:
    """JSONL logs with the router's selections: the trial reads its routing decisions from the pod log."""
    return [
        {"name": "DYN_LOGGING_JSONL", "value": "1"},
        {"name": "DYN_LOG", "value": FRONTEND_LOG},
        *secret_envs(profile.dynamo.extra_frontend_args),
    ]
