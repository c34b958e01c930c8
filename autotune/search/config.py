"""What one study run is asked to do: shared by the study set-up, its loop and the worker mode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEARTBEAT_S = 30  # a worker records a heartbeat for each trial in flight this often
STALE_AFTER_S = 180  # a RUNNING trial without a heartbeat for this long belongs to a dead worker
ROUTER_BLOCK_K8S = 3  # default trials per worker shape on k8s: 1 graph start, then 2 frontend patches


def router_block_for(backend: str, router_block: int | None, reuse_graphs: bool) -> int:
    """``--router-block``, or its default: grouping pays only where a kept graph can be patched (k8s)."""
    if router_block is not None:
        return router_block
    return ROUTER_BLOCK_K8S if backend == "k8s" and reuse_graphs else 1


def polish_for(backend: str, polish: bool | None) -> bool:
    """``--polish/--no-polish``, or its default: on the simulator a pool split costs seconds; a live one
    costs a deployment, so there it is asked for."""
    return polish if polish is not None else backend == "sim"


@dataclass(frozen=True)
class StudyConfig:
    results_dir: Path
    trials: int
    backend: str = "sim"
    backend_options: tuple[tuple[str, Any], ...] = ()
    storage: str | None = None  # Optuna storage URL; default: journal file in results_dir
    resume: bool = False
    seed: int = 0
    jobs: int = 1
    sampler: str = "tpe"
    read_only: bool = False  # report: never repair or change the study
    study_name: str | None = None  # default: autotune-<profile name>
    worker: str = ""  # set: one of many workers joining a shared (RDB) study
    worker_index: int = 0  # offsets the sampler's seed, so workers do not propose the same points
    heartbeat_s: int = HEARTBEAT_S
    stale_after_s: int = STALE_AFTER_S
    reuse_graphs: bool = True  # live backends keep the last graph between trials and patch it when they can
    router_block: int = 1  # trials in a row on one worker shape, the sampler choosing only the router (1: off)
    records_dir: Path | None = None  # set: every live point's per-request records are kept here (prescreen)
    polish: bool = False  # after the budget, try the recommended shape's untried pool splits (search.polish)
