"""The simulated Dynamo deployment: frontend + KV router, worker engines, P→D KV transfer.

One ``ClusterSim`` runs one load point. Disaggregated requests follow Dynamo's path: the prefill
router picks a prefill worker on arrival; when prefill ends, the decode router picks a decode
worker, the KV moves (NVLink within a node, the network across nodes, plus setup and hand-over
latency) and the decode worker admits the request at its next step boundary. Router settings may
change mid-run through a controller (the paper's adaptive controller plugs in here).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Protocol

import numpy as np
import pandas as pd

from autotune.feasibility import Feasibility
from autotune.perf import PerfModel
from autotune.profile import Profile
from autotune.records import REQUEST_COLUMNS, DecisionLog, PointRun
from autotune.sim.delivery import with_delivery_noise
from autotune.sim.engine import Engine
from autotune.sim.frontend import Frontend, ServerPool
from autotune.sim.router import KvRouter, RouterRules, RouterState
from autotune.sim.seq import Seq
from autotune.topology import RouterSettings, Topology
from autotune.workload import RequestStream

REJECT_BACKOFF_S = 0.01  # a closed-loop client waits this long after an HTTP 503 before its next request


class Controller(Protocol):
    """Changes router settings during a run from what a Prometheus scrape would show."""

    interval_s: float

    def update(self, now_s: float, ttft_s: list[float]) -> RouterSettings | None:
        """Called every ``interval_s`` with the TTFTs observed since the last call."""
        ...


class ClusterSim:
    def __init__(self, profile: Profile, topology: Topology, perf: PerfModel, feas: Feasibility, seed: int) -> None:
        self.profile, self.topology = profile, topology
        eng = profile.engine
        self.bs = eng.block_size
        self.rng = random.Random(seed)
        self._heap: list[tuple[float, int, Callable[..., None], object]] = []
        self._n = 0
        self.now = 0.0
        roles = topology.worker_tps()
        self.nodes = [p[0] for p in feas.placement]
        self.engines: list[Engine] = []
        for i, (role, tp) in enumerate(roles):
            blocks = feas.kv_tokens[role] // self.bs
            self.engines.append(
                Engine(
                    i,
                    role,
                    perf.timer(tp),
                    blocks,
                    self.bs,
                    eng.max_num_seqs,
                    eng.max_num_batched_tokens,
                    self._schedule,
                    self._on_prefill_done,
                    self._on_first_token,
                    self._on_complete,
                    self._on_itl,
                )
            )
        self.tps = [tp for _, tp in roles]
        # worker_tps() orders prefill, decode, aggregated: each pool is a contiguous range
        n_p, n_d = topology.prefill_workers, topology.decode_workers
        self.prefill_pool = range(0, n_p)
        self.decode_pool = range(n_p, n_p + n_d)
        self.agg_pool = range(n_p + n_d, len(roles))
        self.caches = [e.kv for e in self.engines]
        dyn = profile.dynamo
        rules = RouterRules.for_version(dyn.version_tuple)
        self.state = RouterState(len(self.engines), share_blocks=rules.decode_assumes_kv_reuse)
        self.router = KvRouter(
            topology.router, self.bs, self.rng, dyn.busy_decode_blocks_frac, dyn.busy_prefill_tokens, rules
        )
        if topology.disaggregated:
            self.logs = {
                "prefill": DecisionLog("prefill", list(self.prefill_pool)),
                "decode": DecisionLog("decode", list(self.decode_pool)),
            }
        else:
            self.logs = {"agg": DecisionLog("agg", list(self.agg_pool))}
        m, c, x = profile.model, profile.cluster, profile.kv_transfer
        self._kv_bytes = x.bytes_per_token or m.kv_bytes_per_token
        # a given transfer bandwidth is the whole request's (as the mocker's): no per-rank parallelism
        self._kv_ranks = m.kv_heads if x.bandwidth_gb_s is None else 1
        given_bps = x.bandwidth_gb_s * 1e9 if x.bandwidth_gb_s is not None else None
        self._intra_bps = given_bps or c.intra_bw_gb_s * 1e9 * x.efficiency
        self._inter_bps = given_bps or c.inter_bw_gb_s * 1e9 * x.efficiency
        self._xfer_fixed_s = (x.setup_ms + x.handover_ms) / 1000
        self._setup_s, self._handover_s = x.setup_ms / 1000, x.handover_ms / 1000
        # per-request serial work (autotune/sim/frontend.py): the frontend's CPU, each worker's intake
        # and hand-off (one at a time), each prefill worker's transfer set-ups (``setup_slots`` at once)
        self.frontend = Frontend(dyn, self._schedule, seed)
        self._request_cost_s, self._handoff_cost_s = eng.request_cost_ms / 1000, x.handoff_cost_ms / 1000
        serial = self._request_cost_s > 0 or self._handoff_cost_s > 0
        self._intake = [ServerPool(1, self._schedule) for _ in self.engines] if serial else None
        self._setup = (
            [ServerPool(x.setup_slots, self._schedule) for _ in self.engines] if x.setup_slots is not None else None
        )
        self.seqs: list[Seq] = []
        self._itl: list[tuple[float, int, float]] = []
        self._ttft_buf: list[float] = []
        self.router_changes: list[tuple[float, str]] = []
        self._requests: RequestStream | None = None
        self._next_rid = 0
        self._pending = 0

    # ---- event loop -----------------------------------------------------------------------
    def _schedule(self, t: float, fn: Callable[..., None], arg: object) -> None:
        self._n += 1
        heapq.heappush(self._heap, (t, self._n, fn, arg))

    def _loop(self) -> None:
        heap = self._heap
        pop = heapq.heappop
        while heap and self._pending:
            t, _, fn, arg = pop(heap)
            self.now = t
            fn(t, arg)

    # ---- load --------------------------------------------------------------------------------
    def run_closed(
        self, requests: RequestStream, concurrency: int, controller: Controller | None = None, spread_s: float = 0.0
    ) -> None:
        """C clients send back to back; client k starts at k·spread/C (0: a synchronised first wave)."""
        self._requests = requests
        self._pending = len(requests)
        self._closed = True
        for client in range(min(concurrency, len(requests))):
            self._schedule(client * spread_s / max(concurrency, 1), self._issue, client)
        self._start_controller(controller)
        self._loop()

    def run_open(self, requests: RequestStream, controller: Controller | None = None) -> None:
        assert requests.arrival_s is not None
        self._requests = requests
        self._pending = len(requests)
        self._closed = False
        for t in requests.arrival_s:
            self._schedule(float(t), self._issue, -1)
        self._start_controller(controller)
        self._loop()

    def _start_controller(self, controller: Controller | None) -> None:
        if controller is not None:
            self._schedule(controller.interval_s, self._tick, controller)

    def _tick(self, now: float, controller: Controller) -> None:
        buf, self._ttft_buf = self._ttft_buf, []
        new = controller.update(now, buf)
        if new is not None and new != self.router.settings:
            self.router.settings = new
            self.router_changes.append((now, new.to_string()))
        self._schedule(now + controller.interval_s, self._tick, controller)

    def _issue(self, now: float, client: int) -> None:
        reqs = self._requests
        assert reqs is not None  # set by run_closed/run_open
        rid = self._next_rid
        if rid >= len(reqs):
            return
        self._next_rid += 1
        seq = Seq(
            rid,
            int(reqs.input_tokens[rid]),
            int(reqs.output_tokens[rid]),
            reqs.block_hashes(rid, self.bs),
            int(reqs.template[rid]),
            now,
            client,
        )
        self.seqs.append(seq)
        self.frontend.admit(now, seq, self._route)

    def _route(self, now: float, seq: Seq) -> None:
        """The frontend has parsed and tokenised the request: the KV router picks a worker."""
        rid = seq.rid
        if self.topology.disaggregated:
            stage, pool = "prefill", self.prefill_pool
        else:
            stage, pool = "agg", self.agg_pool
        got = self.router.choose(
            stage, pool, self.caches, self.state, seq.hashes, seq.isl, now, rid, seq.osl, self.logs[stage]
        )
        seq.routed = now
        if got is None:
            self._reject(seq, now)
            return
        w, overlap = got
        seq.overlap = overlap
        seq.pworker = w
        st = self.state
        st.active_prefill_tokens[w] += seq.isl - overlap * self.bs
        st.active_requests[w] += 1
        if stage == "agg":
            seq.dworker = w
            st.active_blocks[w] += -(-seq.isl // self.bs) - overlap
        self._to_worker(now, w, self._request_cost_s, self._enqueue_prefill, seq)

    def _to_worker(self, now: float, w: int, cost_s: float, then: Callable[[float, Seq], None], seq: Seq) -> None:
        """Run ``then`` after worker ``w`` has done ``cost_s`` of serial per-request work (queued)."""
        if self._intake is None or cost_s <= 0:
            then(now, seq)
        else:
            self._intake[w].submit(now, cost_s, then, seq)

    def _enqueue_prefill(self, now: float, seq: Seq) -> None:
        self.engines[seq.pworker].enqueue(seq, now)

    def _reject(self, seq: Seq, now: float) -> None:
        seq.rejected = True
        seq.done = now
        self._pending -= 1
        if self._closed:
            self._schedule(now + REJECT_BACKOFF_S, self._issue, seq.client)

    # ---- engine callbacks ------------------------------------------------------------------------
    def _on_prefill_done(self, seq: Seq, now: float) -> None:
        self._to_worker(now, seq.pworker, self._handoff_cost_s, self._frontend_hand_off, seq)

    def _frontend_hand_off(self, now: float, seq: Seq) -> None:
        self.frontend.hand_off(now, seq, self._hand_off)

    def _hand_off(self, now: float, seq: Seq) -> None:
        """The prefill worker hands the request on: the decode router picks a worker, the KV moves."""
        st, p = self.state, seq.pworker
        st.active_prefill_tokens[p] -= seq.isl - seq.overlap * self.bs
        st.active_requests[p] -= 1
        got = self.router.choose(
            "decode", self.decode_pool, self.caches, st, seq.hashes, seq.isl, now, seq.rid, seq.osl, self.logs["decode"]
        )
        if got is None:
            self.engines[p].release(seq, now)
            self._reject(seq, now)
            return
        d = got[0]
        seq.dworker = d
        st.add_blocks(d, seq.hashes, -(-seq.isl // self.bs))
        st.active_requests[d] += 1
        if self._setup is None:
            self._schedule(now + self._xfer_fixed_s + self._moving_s(seq), self._transfer_done, seq)
        else:
            self._setup[p].submit(now, self._setup_s, self._set_up, seq)

    def _moving_s(self, seq: Seq) -> float:
        """The time the KV bytes take from the prefill to the decode worker."""
        p, d = seq.pworker, seq.dworker
        shard = seq.isl * self._kv_bytes / min(self.tps[p], self._kv_ranks)  # ranks move their shards in parallel
        return shard / (self._intra_bps if self.nodes[p] == self.nodes[d] else self._inter_bps)

    def _set_up(self, now: float, seq: Seq) -> None:
        """The transfer is set up (its slot is free again): the hand-over and the bytes follow."""
        self._schedule(now + self._handover_s + self._moving_s(seq), self._transfer_done, seq)

    def _transfer_done(self, now: float, seq: Seq) -> None:
        self.engines[seq.pworker].release(seq, now)
        seq.xfer_end = now
        seq.prefill_left = 0
        self._to_worker(now, seq.dworker, self._request_cost_s, self._enqueue_decode, seq)

    def _enqueue_decode(self, now: float, seq: Seq) -> None:
        self.engines[seq.dworker].enqueue(seq, now)

    def _on_first_token(self, seq: Seq, t: float) -> None:
        if not self.topology.disaggregated:
            self.state.active_prefill_tokens[seq.pworker] -= seq.isl - seq.overlap * self.bs
        self.frontend.stream_first(t, seq, self._first_token_shown)

    def _first_token_shown(self, t: float, seq: Seq) -> None:
        """The client has the first token (after the frontend streamed it)."""
        seq.first_token = t
        self._ttft_buf.append(t - seq.arrival)

    def _on_complete(self, seq: Seq, now: float) -> None:
        st, d = self.state, seq.dworker
        if self.topology.disaggregated:
            st.remove_blocks(d, seq.hashes, -(-seq.isl // self.bs))
        else:
            st.active_blocks[d] -= -(-seq.isl // self.bs) - seq.overlap
        st.active_requests[d] -= 1
        self.frontend.stream_rest(now, seq, self._completion_shown)

    def _completion_shown(self, now: float, seq: Seq) -> None:
        """The client has the last token: the request is done, a closed-loop client sends its next."""
        seq.done = max(now, seq.first_token)
        self._pending -= 1
        if self._closed:
            think = self._requests.think_s if self._requests is not None else None
            if think is None:
                self._issue(now, seq.client)
            else:  # the client thinks before its next request (workload.think_time)
                self._schedule(now + float(think[seq.rid]), self._issue, seq.client)

    def _on_itl(self, start: float, end: float, tokens: int, mean_step_s: float) -> None:
        self._itl.append((end, tokens, mean_step_s))

    # ---- results ---------------------------------------------------------------------------------
    def result(self, concurrency: int, warmup: int, cooldown: int) -> PointRun:
        seqs = self.seqs
        n = len(seqs)
        ok = np.array([not s.rejected for s in seqs], dtype=bool)
        osl = np.array([s.osl for s in seqs], dtype=np.int64)
        first = np.array([s.first_token for s in seqs], dtype=float)
        done = np.array([s.done for s in seqs], dtype=float)
        rid = np.array([s.rid for s in seqs], dtype=np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            itl = np.where(ok & (osl > 1), (done - first) / (osl - 1) * 1000, np.nan)
        rows = {
            "request_id": rid,
            "client": [s.client for s in seqs],
            "template": [s.template for s in seqs],
            "arrival_s": [s.arrival for s in seqs],
            "routed_s": [s.routed for s in seqs],
            "prefill_worker": [s.pworker for s in seqs],
            "decode_worker": [s.dworker for s in seqs],
            "input_tokens": [s.isl for s in seqs],
            "output_tokens": np.where(ok, osl, 0),
            "cached_tokens": [s.cached for s in seqs],
            "prefill_start_s": [s.prefill_start for s in seqs],
            "prefill_end_s": [s.prefill_end for s in seqs],
            "kv_transfer_end_s": [s.xfer_end for s in seqs],
            "first_token_s": first,
            "itl_mean_ms": itl,
            "itl_max_ms": np.full(n, np.nan),
            "completion_s": done,
            "preemptions": [s.preemptions for s in seqs],
            "status": np.where(ok, "ok", "rejected"),
            "error": np.where(ok, "", "all workers busy (503)"),
            "measured": (rid >= warmup) & (rid < n - cooldown),
        }
        assert tuple(rows) == REQUEST_COLUMNS
        df = pd.DataFrame(rows)
        done = np.sort(df["completion_s"].to_numpy())
        lo = done[min(warmup, n - 1)] if n else 0.0
        hi = done[max(n - cooldown - 1, 0)] if n else 0.0
        if hi <= lo:
            lo, hi = 0.0, float(done[-1]) if n else 0.0
        itl = np.asarray(self._itl, dtype=float).reshape(-1, 3)  # (end time, tokens, mean step) per segment
        itl_ms, itl_weight, itl_time_s = with_delivery_noise(
            itl[:, 2] * 1000, itl[:, 1], self.profile.dynamo.token_jitter_ms, itl[:, 0]
        )
        busy = [e.busy_time for e in self.engines]
        hits = sum(e.kv.hits_blocks for e in self.engines)
        looks = sum(e.kv.lookups_blocks for e in self.engines)
        return PointRun(
            concurrency=concurrency,
            requests=df,
            decisions=self.logs,
            itl_ms=itl_ms,
            itl_weight=itl_weight,
            window_s=(float(lo), float(hi)),
            gpus=self.topology.gpus,
            backend="sim",
            meta={
                "worker_busy_s": busy,
                "block_hit_rate": hits / looks if looks else 0.0,
                "sim_end_s": self.now,
                "events": self._n,
            },
            router_changes=list(self.router_changes),
            itl_time_s=itl_time_s,
        )
