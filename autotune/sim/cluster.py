"""The simulated Dynamo deployment: frontend + KV router, worker engines, P→D KV transfer.

One ``ClusterSim`` runs one load point (a growing point pauses it and continues: ``extend``).
Disaggregated requests follow Dynamo's path: the prefill router picks a prefill worker on arrival;
when prefill ends, the decode router picks a decode worker, the KV moves (NVLink within a node, the network across nodes, plus setup and hand-over
latency) and the decode worker admits the request at its next step boundary. Router settings may
change mid-run through a controller (the paper's adaptive controller plugs in here).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Protocol

from autotune.feasibility import Feasibility
from autotune.perf import PerfModel
from autotune.profile import Profile
from autotune.records import DecisionLog, PointRun
from autotune.sim.collect import decisions_before, point_run
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
        self.events = 0
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
        self._pending = 0  # requests below ``_until`` not yet done (or rejected): the loop runs while > 0
        # a continuable run (``more`` given): the stream grows as the clients need it, and the loop
        # pauses, under full load and without a drain, once its first ``_until`` requests are done
        self._more: Callable[[int, int, float], RequestStream] | None = None
        self._parts = 0
        self._until = 0

    # ---- event loop -----------------------------------------------------------------------
    def _schedule(self, t: float, fn: Callable[..., None], arg: object) -> None:
        self.events += 1
        heapq.heappush(self._heap, (t, self.events, fn, arg))

    def _loop(self) -> None:
        heap = self._heap
        pop = heapq.heappop
        while heap and self._pending:
            t, _, fn, arg = pop(heap)
            self.now = t
            fn(t, arg)

    # ---- load --------------------------------------------------------------------------------
    def run_closed(
        self,
        requests: RequestStream,
        concurrency: int,
        controller: Controller | None = None,
        spread_s: float = 0.0,
        *,
        more: Callable[[int, int, float], RequestStream] | None = None,
    ) -> None:
        """C clients send back to back; client k starts at k·spread/C (0: a synchronised first wave).

        Without ``more`` the clients stop when ``requests`` run out and the run drains. With it the
        stream goes on (``more(k, first, after_s)`` is its k-th continuation, requests ``first`` on,
        arrivals after ``after_s``) and the run pauses once its first ``len(requests)`` requests are
        done, the clients still busy; ``extend`` resumes it.
        """
        self._begin(requests, more, closed=True)
        for client in range(min(concurrency, len(requests))):
            self._schedule(client * spread_s / max(concurrency, 1), self._issue, client)
        self._start_controller(controller)
        self._loop()

    def run_open(
        self,
        requests: RequestStream,
        controller: Controller | None = None,
        *,
        more: Callable[[int, int, float], RequestStream] | None = None,
    ) -> None:
        """Requests arrive at their set times; ``more`` as in ``run_closed``."""
        assert requests.arrival_s is not None
        self._begin(requests, more, closed=False)
        self._schedule_arrivals(requests)
        self._start_controller(controller)
        self._loop()

    def extend(self, until: int) -> None:
        """Resume a paused continuable run until its first ``until`` requests are done. Pausing changes
        no event: the run is the one it would have been paused only at ``until``, or never."""
        assert self._more is not None, "extend needs a run started with more="
        assert until >= self._until
        self._until = until
        self._pending = until - sum(1 for s in self.seqs[:until] if s.done == s.done)  # NaN: not done
        self._loop()

    def _begin(
        self, requests: RequestStream, more: Callable[[int, int, float], RequestStream] | None, closed: bool
    ) -> None:
        self._requests = requests
        self._more = more
        self._until = self._pending = len(requests)
        self._closed = closed

    def _schedule_arrivals(self, part: RequestStream) -> None:
        assert part.arrival_s is not None
        for t in part.arrival_s:
            self._schedule(float(t), self._issue, -1)

    def _grow_stream(self) -> RequestStream:
        """Append the stream's next continuation (open loop: its arrivals, which follow the last one)."""
        reqs, more = self._requests, self._more
        assert reqs is not None and more is not None
        self._parts += 1
        last_s = float(reqs.arrival_s[-1]) if reqs.arrival_s is not None else 0.0
        part = more(self._parts, len(reqs), last_s)
        self._requests = reqs.joined(part)
        if not self._closed:
            self._schedule_arrivals(part)
        return self._requests

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
            if self._more is None:
                return
            reqs = self._grow_stream()  # closed loop: a client wants the next request
        self._next_rid += 1
        if self._more is not None and not self._closed and rid == len(reqs) - 1:
            self._grow_stream()  # open loop: the next arrivals are due from this one on
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
        if seq.rid < self._until:
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
        if seq.rid < self._until:
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
        """The run's records (``autotune.sim.collect``): a finished run's every request; a paused one's
        first ``until`` (``extend``), with nothing of the requests past them (docs/measurement.md)."""
        if self._more is None:
            return point_run(self, self.seqs, self.logs, self._itl, concurrency, warmup, cooldown)
        n = self._until
        cut_s = self.seqs[n].arrival if len(self.seqs) > n else self.now  # the first request past n arrives
        itl = [seg for seg in self._itl if seg[0] <= cut_s]
        return point_run(self, self.seqs[:n], decisions_before(self.logs, n), itl, concurrency, warmup, cooldown)
