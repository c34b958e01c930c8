"""GPU leases without a database: per-node packing, the in-process ledger, and ``run --jobs N`` on a live backend."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

from autotune import backends
from autotune.backends.base import Backend, Deployment
from autotune.backends.sim import SimBackend
from autotune.profile import Profile, profile_from_dict
from autotune.records import PointRun
from autotune.search.config import StudyConfig
from autotune.search.leases import LEASE_GPUS, LEASE_NODES, LEASE_WAIT_S, Busy, ClusterShape, Lease, LocalLeases, place
from autotune.search.study import open_leases, run_study
from autotune.topology import Topology, parse_topology

SHAPE = ClusterShape(nodes=3, gpus_per_node=8)


def _lease(holder: str, by_node: dict[int, int]) -> Lease:
    return Lease(holder, "w0", by_node)


def test_place_packs_whole_tp_groups_onto_what_is_free() -> None:
    assert place([8, 8, 8], [], SHAPE) == {0: 8, 1: 8, 2: 8}
    assert place([4, 4], [_lease("t0", {0: 4})], SHAPE) == {0: 4, 1: 4}  # first fit, largest first
    scattered = [_lease("a", {0: 4}), _lease("b", {1: 4}), _lease("c", {2: 4})]
    assert place([8], scattered, SHAPE) is None  # 12 GPUs free, but no node has 8
    assert place([4, 4, 4], scattered, SHAPE) == {0: 4, 1: 4, 2: 4}
    assert place([16], [_lease("a", {1: 2})], SHAPE) == {0: 8, 2: 8}  # a TP16 worker takes two whole free nodes
    assert place([16], [_lease("a", {1: 2}), _lease("b", {2: 1})], SHAPE) is None


def test_local_ledger_waits_when_full_and_says_why() -> None:
    leases = LocalLeases(SHAPE, "me")
    first = leases.try_acquire("t0", [8, 8])
    assert isinstance(first, Lease) and first.nodes_text() == "n0:8,n1:8"
    assert leases.try_acquire("t0", [8, 8]) == first  # asking again is no second lease
    busy = leases.try_acquire("t1", [8, 8])
    assert isinstance(busy, Busy)
    assert busy.line("trial #1 1P8-1D8") == (
        "trial #1 1P8-1D8 needs 16 GPUs and waits: 16 of 24 are leased (t0 by me: n0:8,n1:8), 8 free do not fit it"
    )
    leases.release("t0")
    assert isinstance(leases.try_acquire("t1", [8, 8]), Lease)


def test_local_ledger_under_threads_never_exceeds_the_cluster() -> None:
    leases = LocalLeases(SHAPE, "me")
    held: dict[str, int] = {}
    peak = [0]
    lock = threading.Lock()

    def work(i: int) -> None:
        for k in range(50):
            holder = f"t{i}-{k}"
            while not isinstance(got := leases.try_acquire(holder, [8] * (1 + (i + k) % 3)), Lease):
                time.sleep(0.001)
            with lock:
                held[holder] = got.gpus
                peak[0] = max(peak[0], sum(held.values()))
            with lock:
                del held[holder]
            leases.release(holder)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert 0 < peak[0] <= SHAPE.total and leases.held() == []


# ---- run --jobs N on a live backend ------------------------------------------------------------
class _FakeLiveDeployment(Deployment):
    """A 'live' graph: it logs +GPUs when deployed and −GPUs when torn down; the simulator measures it."""

    def __init__(self, profile: Profile, topology: Topology, log: Path) -> None:
        self.topology, self.log = topology, log
        self._note(topology.gpus)
        self._sim = SimBackend().deploy(profile, topology)
        self._open = True

    def _note(self, delta: int) -> None:
        with open(self.log, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(f"{time.monotonic()} {delta}\n")

    def run_point(
        self, concurrency: int, *, seed: int, requests: int | None = None, controller: Any = None
    ) -> PointRun:
        time.sleep(0.3)  # long enough for the pool's other trials to overlap
        return self._sim.run_point(concurrency, seed=seed, requests=requests)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._note(-self.topology.gpus)


class _FakeLive(Backend):
    name = "fake-live"

    def __init__(self, log: str) -> None:
        self.log = Path(log)

    def deploy(self, profile: Profile, topology: Topology, *, trial_id: str = "") -> Deployment:
        return _FakeLiveDeployment(profile, topology, self.log)


def _profile() -> Profile:
    return profile_from_dict(
        {
            "name": "leases-local",
            "cluster": {"nodes": 3, "gpu": "H100", "gpus_per_node": 8},
            "model": "Llama-3.1-8B",
            "workload": {
                "templates": 2,
                "prefix_tokens": 32,
                "input_tokens": {"dist": "fixed", "value": 64},
                "output_tokens": {"dist": "fixed", "value": 8},
                "concurrency": [4],
                "requests_per_point": 40,
                "warmup_requests": 4,
                "cooldown_requests": 4,
            },
            "search": {
                "trials": 8,
                "prefill_tp": [8],
                "decode_tp": [8],
                "aggregated_tp": [8],
                "max_prefill_workers": 2,
                "max_decode_workers": 2,
                "min_gpus": 8,
                "operating_point": "grid",
            },
            "baselines": ["3A8", "1P8-2D8"],  # 24 GPUs each
        }
    )


@pytest.mark.slow
def test_run_jobs_on_a_live_backend_leases_gpus_in_process(tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "graphs.log"
    monkeypatch.setitem(backends.BACKENDS, "fake-live", lambda **kw: _FakeLive(**kw))  # pool children fork it
    cfg = StudyConfig(tmp_path / "results", 8, "fake-live", (("log", str(log)),), jobs=3, seed=1)
    (tmp_path / "results").mkdir()
    study = run_study(_profile(), cfg)
    done = [t for t in study.trials if t.state != TrialState.PRUNED]
    assert [t.state for t in done] == [TrialState.COMPLETE] * 8
    held = peak = alive = most_alive = 0
    for line in sorted(log.read_text().splitlines(), key=lambda s: (float(s.split()[0]), int(s.split()[1]))):
        delta = int(line.split()[1])
        held, alive = held + delta, alive + (1 if delta > 0 else -1)
        peak, most_alive = max(peak, held), max(most_alive, alive)
    assert held == 0 and 0 < peak <= SHAPE.total
    assert most_alive >= 2  # trials that fit together did run side by side
    assert all(t.user_attrs[LEASE_GPUS] == parse_topology(t.user_attrs["topology"]).gpus for t in done)
    assert all(LEASE_WAIT_S in t.user_attrs and t.user_attrs[LEASE_NODES] for t in done)
    assert max(t.user_attrs[LEASE_WAIT_S] for t in done) > 0  # the 24-GPU baselines ran one after the other


def test_simulated_trials_take_no_lease(tmp_path: Path) -> None:
    cfg = StudyConfig(tmp_path, 4, "sim")
    assert open_leases(_profile(), cfg, None, "pool") is None  # type: ignore[arg-type]
