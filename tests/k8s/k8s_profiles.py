"""Small profiles for the k8s tests: rendering, lifecycle and the live trial."""

from __future__ import annotations

from typing import Any

from autotune.k8s import V1ALPHA1, V1BETA1
from autotune.profile import Profile, profile_from_dict

# A Dynamo version whose profile renders each DGD apiVersion (the switch is at 1.5)
DYNAMO_RENDERING = {V1ALPHA1: "1.4.0", V1BETA1: "1.6.1"}


def make_profile(framework: str = "vllm", version: str = "1.6.1", namespace: str = "default", **dynamo: Any) -> Profile:
    """A small profile for rendering (8-GPU nodes, a Llama-8B-like model)."""
    return profile_from_dict(
        {
            "name": "k8s-test",
            "cluster": {"nodes": 4, "gpu": "H100", "gpus_per_node": 8, "allow_multinode_workers": True},
            "model": "Llama-3.1-8B",
            "dynamo": {
                "version": version,
                "framework": framework,
                "namespace": namespace,
                "image": f"nvcr.io/nvidia/ai-dynamo/{framework}-runtime:{version}",
                **dynamo,
            },
        }
    )
