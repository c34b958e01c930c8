"""Per-request serial work as queued resources: the frontend's CPU, each worker's intake, KV set-up.

A real stack saturates where its host does, not only where its GPUs do: the frontend parses,
tokenises, routes, then detokenises and streams every token, with a few cores; a worker schedules
and hands off one request at a time. A fixed delay cannot saturate, a queue can. ``ServerPool`` is
k identical servers taking jobs first come, first served; ``Frontend`` puts the frontend's
per-request work (before routing) and its per-token streaming work (at the first token and at the
end) on one pool. With no frontend servers configured (``frontend_workers: 0``) the frontend is
the old pure delay, draw for draw.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

from autotune.profile_serving import DynamoSpec
from autotune.sim.seq import Seq

Schedule = Callable[[float, Callable[..., None], object], None]


class ServerPool:
    """k identical servers, FCFS. Jobs are submitted in time order (the event loop's), so a job starts
    on the server that frees first, and its finish time is known at submission: no event per queue
    change, one event per job at its end."""

    def __init__(self, servers: int, schedule: Schedule) -> None:
        if servers < 1:
            raise ValueError(f"a server pool needs at least one server, got {servers}")
        self._free_at = [0.0] * servers  # a heap of the times each server next becomes free
        self._schedule = schedule
        self.busy_s = 0.0  # total service handed out: utilisation = busy_s / (servers · elapsed)
        self.wait_s = 0.0  # total time jobs spent queued

    def submit(self, now: float, service_s: float, done: Callable[..., None], arg: object) -> float:
        """Queue a job of ``service_s`` at ``now``; ``done(end, arg)`` runs when it ends. Returns the end."""
        start = max(now, self._free_at[0])
        end = start + service_s
        heapq.heapreplace(self._free_at, end)
        self.busy_s += service_s
        self.wait_s += start - now
        self._schedule(end, done, arg)
        return end


class Frontend:
    """The Dynamo frontend in front of the router: a delay (HTTP, network), then queued CPU work.

    ``frontend_overhead_ms`` stays the unloaded delay before routing: its fixed part is what the
    queued service does not already account for, so at concurrency 1 the route delay is unchanged
    and under load the queue adds the wait.
    """

    def __init__(self, dyn: DynamoSpec, schedule: Schedule, seed: int) -> None:
        self._schedule = schedule
        # its own stream, so noise does not shift the router's tie-breaking draws
        self._jitter_rng = random.Random(seed * 7919 + 1)
        self._jitter_s = dyn.frontend_jitter_ms / 1000
        self._request_s = dyn.frontend_request_ms / 1000
        self._input_token_s = dyn.frontend_input_token_us / 1e6
        self._tokenize_token_s = dyn.frontend_tokenize_token_us / 1e6
        self._output_token_s = dyn.frontend_output_token_us / 1e6
        self._handoff_s = dyn.frontend_handoff_ms / 1000
        self._response_s = dyn.frontend_response_ms / 1000
        self.pool = ServerPool(dyn.frontend_workers, schedule) if dyn.frontend_workers else None
        self._overhead_s = dyn.frontend_overhead_ms / 1000
        self._fixed_s = self._overhead_s - self._jitter_s  # the old pure delay's fixed part

    def request_service_s(self, input_tokens: int) -> float:
        """Frontend CPU a request needs before it can be routed (template, tokenisation, routing)."""
        return self._request_s + self._input_token_s * input_tokens

    def tokenize_s(self, input_tokens: int) -> float:
        """Tokenisation and chat-template work the flat overhead does not hold: on top of it."""
        return self._tokenize_token_s * input_tokens

    def admit(self, now: float, seq: Seq, route: Callable[[float, Seq], None]) -> None:
        """A request arrives: after the frontend's delay (and its CPU work, queued) ``route`` runs."""
        if self.pool is None:
            delay = self._fixed_s
            if self._tokenize_token_s > 0:
                delay += self.tokenize_s(seq.isl)
        else:
            delay = max(0.0, self._fixed_s - self.request_service_s(seq.isl))
        if self._jitter_s > 0:
            delay += self._jitter_rng.expovariate(1 / self._jitter_s)
        if self.pool is not None:
            self._schedule(now + delay, self._queue_request, (seq, route))
        elif delay > 0:
            self._schedule(now + delay, route, seq)
        else:
            route(now, seq)

    def _queue_request(self, now: float, job: tuple[Seq, Callable[[float, Seq], None]]) -> None:
        seq, route = job
        assert self.pool is not None
        self.pool.submit(now, self.request_service_s(seq.isl) + self.tokenize_s(seq.isl), route, seq)

    def hand_off(self, now: float, seq: Seq, then: Callable[[float, Seq], None]) -> None:
        """A disaggregated request's prefill is done: the frontend routes its decode leg (queued work)."""
        if self.pool is None or self._handoff_s <= 0:
            then(now, seq)
        else:
            self.pool.submit(now, self._handoff_s, then, seq)

    def stream_first(self, now: float, seq: Seq, shown: Callable[[float, Seq], None]) -> None:
        """The engine produced the first token: the client sees it once the frontend has streamed it."""
        if self.pool is None or self._output_token_s <= 0:
            shown(now, seq)
        else:
            self.pool.submit(now, self._output_token_s, shown, seq)

    def stream_rest(self, now: float, seq: Seq, shown: Callable[[float, Seq], None]) -> None:
        """The engine finished: the other tokens' streaming work and the response's, as one job (the same
        total work)."""
        rest = max(seq.osl - 1, 0) * self._output_token_s + self._response_s
        if self.pool is None or rest <= 0:
            shown(now, seq)
        else:
            self.pool.submit(now, rest, shown, seq)
