"""One worker's engine: continuous batching with chunked prefill, paged KV, preemption.

Steps that carry prefill work are simulated one by one. Pure-decode stretches are advanced as one
*segment*: the batch only changes at admissions and completions, so k identical steps are one
event whose duration is the sum of a linearly growing step time (context grows by B per step).
An arrival cuts the running segment at the next step boundary, exactly where a real engine would
admit it.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable

from autotune.perf import StepTimer
from autotune.sim.kvcache import KvCache
from autotune.sim.seq import Seq

MAX_SEGMENT_STEPS = 4096


class Engine:
    """Roles: ``agg`` (prefill then decode), ``prefill`` (hand off after prefill), ``decode``."""

    def __init__(
        self,
        idx: int,
        role: str,
        timer: StepTimer,
        kv_blocks: int,
        block_size: int,
        max_num_seqs: int,
        max_batched_tokens: int,
        schedule: Callable[..., None],
        on_prefill_done: Callable[[Seq, float], None],
        on_first_token: Callable[[Seq, float], None],
        on_complete: Callable[[Seq, float], None],
        on_itl: Callable[[float, float, int, float], None],
    ) -> None:
        self.idx, self.role, self.timer, self.bs = idx, role, timer, block_size
        self.kv = KvCache(kv_blocks)
        self.max_seqs, self.budget = max_num_seqs, max_batched_tokens
        self.schedule = schedule
        self.on_prefill_done, self.on_first_token, self.on_complete, self.on_itl = (
            on_prefill_done,
            on_first_token,
            on_complete,
            on_itl,
        )
        self.waiting: deque[Seq] = deque()
        self.prefilling: list[Seq] = []
        self.decoding: dict[int, Seq] = {}
        self.finish_heap: list[tuple[int, int, Seq]] = []
        self.block_heap: list[tuple[int, int, Seq]] = []
        self.step = 0  # decode steps done
        self.ctx = 0  # Σ context of decoding sequences at ``step``
        self.busy = False
        self.epoch = 0
        # current pure-decode segment
        self.seg_start = 0.0
        self.seg_k = 0
        self.seg_t0 = 0.0
        self.seg_dt = 0.0
        self.seg_new: list[Seq] = []
        self.step_plan: list[tuple[Seq, int]] = []
        self.step_decode: list[Seq] = []
        self.busy_time = 0.0

    # ---- arrivals -------------------------------------------------------------------------
    def enqueue(self, seq: Seq, now: float) -> None:
        seq.engine = self.idx
        self.waiting.append(seq)
        if not self.busy:
            self._start(now)
        elif self.seg_k > 1 and len(self.prefilling) + len(self.decoding) < self.max_seqs:
            self._cut_segment(now)

    def _cut_segment(self, now: float) -> None:
        """Shorten the running decode segment to end at the step boundary after ``now``."""
        elapsed = now - self.seg_start
        t0, dt = self.seg_t0, self.seg_dt
        if dt > 1e-15:
            b = t0 - dt / 2
            j = int((-b + math.sqrt(b * b + 2 * dt * elapsed)) / dt)
        else:
            j = int(elapsed / t0) if t0 > 0 else 0
        while j > 0 and t0 * j + dt * j * (j - 1) / 2 > elapsed:
            j -= 1
        k = j + 1
        if k >= self.seg_k:
            return
        self.seg_k = k
        self.epoch += 1
        self.schedule(self.seg_start + t0 * k + dt * k * (k - 1) / 2, self._segment_end, self.epoch)

    # ---- scheduling ---------------------------------------------------------------------------
    def _start(self, now: float) -> None:
        self._admit(now)
        if self.prefilling:
            self._start_mixed_step(now)
        elif self.decoding:
            self._start_segment(now)
        else:
            self.busy = False

    def _admit(self, now: float) -> None:
        """Admit waiting sequences FCFS, as vLLM's scheduler does: up to ``max_num_seqs`` running, and a
        prefill only while this step's token budget has room. A request left waiting does its prefix
        lookup when it is admitted, so it can hit blocks that were published while it waited."""
        kv, bs = self.kv, self.bs
        room = self.budget - len(self.decoding)
        for s in self.prefilling:
            room -= s.prefill_left
        while self.waiting and len(self.prefilling) + len(self.decoding) < self.max_seqs:
            seq = self.waiting[0]
            if seq.prefill_left == 0 and seq.recompute == 0:
                # disaggregated decode: the KV arrived from a prefill worker
                need = -(-(seq.isl + 1) // bs)
                if not kv.alloc(need):
                    break
                self.waiting.popleft()
                seq.private, seq.held, seq.cap = need, (), need * bs
                self._join_decode(seq, 0, now)
                self.seg_new.append(seq)
                continue
            if room <= 0:
                break
            total = seq.isl + seq.recompute
            hashes = seq.hashes
            hit = kv.match(hashes)
            cached = min(hit * bs, total - 1)
            hit = cached // bs
            need = -(-total // bs) - hit
            kv.acquire(hashes[:hit])
            if not kv.alloc(need):
                kv.release(hashes[:hit], 0)
                break
            self.waiting.popleft()
            kv.lookups_blocks += len(hashes)
            kv.hits_blocks += hit
            if seq.recompute == 0 and math.isnan(seq.prefill_start):
                seq.cached = cached
                seq.prefill_start = now
            seq.held, seq.private = hashes[:hit], need
            seq.cap = (hit + need) * bs
            seq.prefill_done_tokens = cached
            seq.prefill_left = total - cached
            room -= seq.prefill_left
            self.prefilling.append(seq)

    def _start_mixed_step(self, now: float) -> None:
        budget = self.budget - len(self.decoding)
        plan: list[tuple[Seq, int]] = []
        tokens, attn = 0, 0.0
        for seq in self.prefilling:
            if budget <= 0:
                break
            chunk = min(seq.prefill_left, budget)
            budget -= chunk
            plan.append((seq, chunk))
            tokens += chunk
            attn += chunk * (seq.prefill_done_tokens + chunk / 2)
        b = len(self.decoding)
        dur = self.timer.step_s(tokens, attn, b, self.ctx + b, self.kv.used / self.kv.total)
        self.step_plan = plan
        self.busy = True
        self.seg_k = 1
        self.seg_start, self.seg_t0, self.seg_dt = now, dur, 0.0
        self.epoch += 1
        self.schedule(now + dur, self._mixed_step_end, self.epoch)

    def _mixed_step_end(self, now: float, epoch: int) -> None:
        if epoch != self.epoch:
            return
        self.busy_time += self.seg_t0
        if self.decoding:
            self._advance_decode(1, now)
        bs, kv = self.bs, self.kv
        for seq, chunk in self.step_plan:
            seq.prefill_left -= chunk
            seq.prefill_done_tokens += chunk
            if seq.prefill_left:
                continue
            self.prefilling.remove(seq)
            total = seq.isl + seq.recompute
            n_full = min(len(seq.hashes), total // bs)
            fresh = seq.hashes[len(seq.held) : n_full]
            if fresh:
                kv.publish(fresh)
                seq.private -= len(fresh)
                seq.held = seq.hashes[:n_full]
            if self.role == "prefill":
                seq.prefill_end = now
                self.on_prefill_done(seq, now)
                continue
            if seq.recompute:
                gen = seq.recompute
                seq.recompute = 0
            else:
                if math.isnan(seq.prefill_end):  # a disaggregated request preempted before its first
                    seq.prefill_end = now  # decode step recomputes here: keep the prefill worker's time
                seq.first_token = now
                self.on_first_token(seq, now)
                gen = 1
            if gen >= seq.osl:
                self._finish(seq, now)
            else:
                self._join_decode(seq, gen, now)
        self.step_plan = []
        self._start(now)

    def _join_decode(self, seq: Seq, generated: int, now: float) -> None:
        seq.decoding = True
        seq.gen_at_join, seq.join_step = generated, self.step
        seq.finish_step = self.step + seq.osl - generated
        self.decoding[seq.rid] = seq
        self.ctx += seq.isl + generated
        heapq.heappush(self.finish_heap, (seq.finish_step, seq.rid, seq))
        boundary = self.step + seq.cap - (seq.isl + generated) + 1
        heapq.heappush(self.block_heap, (boundary, seq.rid, seq))

    def _start_segment(self, now: float) -> None:
        b = len(self.decoding)
        k = min(self._next_finish_step() - self.step, MAX_SEGMENT_STEPS)
        kv = self.kv
        free = kv.free + len(kv.lru)
        if free < b * (k // self.bs + 1):
            k = min(k, (free // b - 1) * self.bs) if free >= 2 * b else 0
            if k < 1:
                self._ensure_blocks_for_one_step()
                b = len(self.decoding)
                if not b:
                    self._start(now)
                    return
                k = 1
        usage0 = kv.used / kv.total
        t0 = self.timer.step_s(0, 0.0, b, self.ctx + b, usage0)
        if k > 1:
            usage1 = min(1.0, (kv.used + b * k / self.bs) / kv.total)
            t1 = self.timer.step_s(0, 0.0, b, self.ctx + b * k, usage1)
            dt = (t1 - t0) / (k - 1)
        else:
            dt = 0.0
        self.busy = True
        self.seg_start, self.seg_k, self.seg_t0, self.seg_dt = now, k, t0, dt
        self.epoch += 1
        self.schedule(now + t0 * k + dt * k * (k - 1) / 2, self._segment_end, self.epoch)

    def _ensure_blocks_for_one_step(self) -> None:
        """Near KV exhaustion: preempt the newest sequences until the next step's blocks fit."""
        while self.decoding:
            need = sum(
                1 for bnd, _, s in self.block_heap if bnd <= self.step + 1 and s.decoding and s.engine == self.idx
            )
            if need <= self.kv.free + len(self.kv.lru):
                return
            victim = next(reversed(self.decoding.values()))
            self._preempt(victim)

    def _preempt(self, seq: Seq) -> None:
        gen = seq.gen_at_join + (self.step - seq.join_step)
        del self.decoding[seq.rid]
        self.ctx -= seq.isl + gen
        seq.decoding = False
        self.kv.release(seq.held, seq.private)
        seq.held, seq.private, seq.cap = (), 0, 0
        seq.recompute = gen
        seq.prefill_left = seq.isl + gen
        seq.preemptions += 1
        self.waiting.appendleft(seq)

    def _segment_end(self, now: float, epoch: int) -> None:
        if epoch != self.epoch:
            return
        k = self.seg_k
        self.busy_time += self.seg_t0 * k + self.seg_dt * k * (k - 1) / 2
        self._advance_decode(k, now)
        self._start(now)

    def _advance_decode(self, k: int, now: float) -> None:
        b = len(self.decoding)
        t0, dt, start = self.seg_t0, self.seg_dt, self.seg_start
        self.on_itl(start, now, b * k, t0 + dt * (k - 1) / 2)
        if self.seg_new:
            first = start + t0
            for seq in self.seg_new:
                if seq.decoding and math.isnan(seq.first_token):
                    seq.first_token = first
                    self.on_first_token(seq, first)
            self.seg_new = []
        self.step += k
        self.ctx += b * k
        step, kv, bs = self.step, self.kv, self.bs
        bh = self.block_heap
        while bh and bh[0][0] <= step:
            _, rid, seq = heapq.heappop(bh)
            if not seq.decoding or seq.engine != self.idx or self.decoding.get(rid) is not seq:
                continue
            length = seq.isl + seq.gen_at_join + (step - seq.join_step)
            add = -(-length // bs) - seq.cap // bs
            if add <= 0:
                add = 1
            if not kv.alloc(add):
                kv.private += add  # over-commit by a block; the next segment start preempts
            seq.private += add
            seq.cap += add * bs
            heapq.heappush(bh, (seq.join_step + seq.cap - seq.isl - seq.gen_at_join + 1, rid, seq))
        fh = self.finish_heap
        while fh and fh[0][0] <= step:
            fstep, rid, seq = heapq.heappop(fh)
            if self.decoding.get(rid) is not seq or seq.finish_step != fstep:
                continue  # stale: preempted since
            del self.decoding[rid]
            self.ctx -= seq.isl + seq.osl
            seq.decoding = False
            self._finish(seq, now)

    def _next_finish_step(self) -> int:
        fh = self.finish_heap
        while fh:
            fstep, rid, seq = fh[0]
            if self.decoding.get(rid) is seq and seq.finish_step == fstep:
                return fstep
            heapq.heappop(fh)
        raise RuntimeError("decoding sequences without a finish step")

    def _finish(self, seq: Seq, now: float) -> None:
        self.kv.release(seq.held, seq.private)
        seq.held, seq.private = (), 0
        seq.done = now
        self.on_complete(seq, now)

    # ---- hand-off (prefill role) ------------------------------------------------------------------
    def release(self, seq: Seq, now: float) -> None:
        """KV transfer finished: the prefill worker frees the request's blocks (hashes stay cached)."""
        self.kv.release(seq.held, seq.private)
        seq.held, seq.private = (), 0
        if not self.busy and self.waiting:
            self._start(now)
