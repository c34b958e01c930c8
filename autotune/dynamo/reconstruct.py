"""Per-decision router state, rebuilt from Dynamo's logs, for PoA-hat on live trials.

The KV router keeps its per-worker costs in memory and logs only the *chosen* worker's logit.
PoA-hat needs the cost of every candidate at every decision, so we replay the router's
bookkeeping from the events it does log (``autotune.dynamo.logparse``):

* **Prefix overlap** per candidate: each worker's cache is the set of block-hash chains of the
  requests whose prefill it finished (Dynamo's indexer learns blocks from KV events sent when a
  prefill completes). A candidate's overlap is the longest chain prefix of the request's hashes
  in its set. The chosen worker's overlap is then replaced by the logged ``overlap_blocks``.
* **Active prefill tokens**: a request adds ``isl − overlap·bs`` to its prefill (or aggregated)
  worker from selection until its prefill ends (the Prefill stage's ``route request completed``
  in disaggregated mode; the client's first token in aggregated mode).
* **Active blocks**: a request holds its full blocks (hash chains) on its decode (or aggregated)
  worker from selection until it completes; ``A_w`` counts *distinct* blocks held (Dynamo's
  ``assume_kv_reuse``: requests sharing a prefix share its blocks), and the request's new
  blocks ``N_w`` are those of its chain not already held by ``w``.
* **Logit** (Dynamo 1.3-1.6, ``selector``): ``ω·max((P_w + isl)/bs − c·o_w, 0) + A_w + N_w``;
  the prefill stage has no decode term (active-block tracking is off there) and the decode
  stage no prefill term (Dynamo overrides its overlap weight to 0).

Limits (also in docs/live-poa.md): no cache eviction is modelled (exact while the workload's
blocks fit the worker's pool); KV events and completions reach the router a few ms after the
log line we use, so decisions in that window may differ; output blocks are not tracked (as
Dynamo's default); with τ > 0 the router samples, so the argmin need not be the choice. Every
run reports how well the replay matches what *was* logged (chosen logit error, chosen overlap
agreement, argmin agreement) in ``ReplayStats``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

from autotune.dynamo.logparse import FrontendLog, RoutingInput
from autotune.records import DecisionLog
from autotune.topology import RouterSettings


@dataclass
class ReplayStats:
    decisions: int = 0
    logit_abs_err_mean: float = float("nan")  # |reconstructed − logged| of the chosen worker
    overlap_agreement: float = float("nan")  # reconstructed overlap == logged, chosen worker
    argmin_agreement: float = float("nan")  # chosen worker has the least reconstructed logit
    unmatched_selections: int = 0  # selections whose request or worker we could not place

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def _chain(hashes: tuple[int, ...]) -> list[int]:
    out, k = [], 0
    for h in hashes:
        k = hash((k, h))
        out.append(k)
    return out


def _overlap(chain: list[int], cache: set[int]) -> int:
    n = 0
    for k in chain:
        if k not in cache:
            break
        n += 1
    return n


def replay(
    log: FrontendLog,
    *,
    stage_workers: dict[str, list[int]],
    worker_index: dict[int, int],
    request_index: dict[str, int],
    prefill_end: dict[str, float],
    request_end: dict[str, float],
    output_tokens: dict[str, int],
    router: RouterSettings,
    t0_wall: float,
) -> tuple[dict[str, DecisionLog], ReplayStats]:
    """Decision logs per stage ("prefill", "decode" or "agg") from one point's frontend log.

    ``stage_workers`` lists each stage's candidate worker indices; ``worker_index`` maps Dynamo
    instance ids to those indices; ``prefill_end``/``request_end`` are epoch times by Dynamo
    request id (from the log or the client).
    """
    disagg = "prefill" in stage_workers
    prefill_end, request_end = dict(prefill_end), dict(request_end)
    inputs: dict[str, list[RoutingInput]] = defaultdict(list)
    for ev in log.inputs:
        inputs[ev.request_id].append(ev)
    logged_overlap: dict[tuple[str, int], int] = {(s.request_id, s.worker_id): s.overlap_blocks for s in log.stages}
    if disagg:
        for s in log.stages:
            if s.phase == "Prefill":
                prefill_end.setdefault(s.request_id, s.t)
    for s in log.stages:
        if s.phase in ("Decode", "Aggregated"):
            request_end.setdefault(s.request_id, s.t)

    # Time-ordered events: 0 = end of a prefill, 1 = end of a request, 2 = a selection.
    events: list[tuple[float, int, int]] = []
    for i, sel in enumerate(log.selections):
        events.append((sel.t, 2, i))
    rids = {sel.request_id for sel in log.selections}
    rid_list = sorted(rids)
    for j, rid in enumerate(rid_list):
        if rid in prefill_end:
            events.append((prefill_end[rid], 0, j))
        if rid in request_end:
            events.append((request_end[rid], 1, j))
    events.sort()

    logs = {stage: DecisionLog(stage=stage, workers=list(ws)) for stage, ws in stage_workers.items()}
    pos = {stage: {w: p for p, w in enumerate(ws)} for stage, ws in stage_workers.items()}
    cache: dict[int, set[int]] = defaultdict(set)
    p_tokens: dict[int, float] = defaultdict(float)
    held: dict[int, Counter[int]] = defaultdict(Counter)
    a_reqs: dict[int, int] = defaultdict(int)
    # Per request: (prefill-side worker, tokens added, chain) and (decode-side worker, blocks).
    open_prefill: dict[str, tuple[int, float, list[int]]] = {}
    open_decode: dict[str, tuple[int, list[int]]] = {}
    seen_input: dict[str, int] = defaultdict(int)
    stats = ReplayStats()
    errs: list[float] = []
    ov_ok: list[bool] = []
    am_ok: list[bool] = []
    omega, credit = router.overlap_weight, router.effective_credit

    for _, kind, i in events:
        if kind == 0:
            rid = rid_list[i]
            if rid in open_prefill:
                w, tok, chain = open_prefill.pop(rid)
                p_tokens[w] -= tok
                cache[w].update(chain)
            continue
        if kind == 1:
            rid = rid_list[i]
            if rid in open_prefill:  # aggregated request that never showed a first token
                w, tok, chain = open_prefill.pop(rid)
                p_tokens[w] -= tok
                cache[w].update(chain)
            if rid in open_decode:
                w, keys = open_decode.pop(rid)
                held[w].subtract(keys)
                held[w] = +held[w]  # drop blocks no request holds any more
                a_reqs[w] -= 1
            continue
        sel = log.selections[i]
        stage = ("prefill" if sel.worker_type == "prefill" else "decode") if disagg else "agg"
        w_chosen = worker_index.get(sel.worker_id)
        k = seen_input[sel.request_id]
        seen_input[sel.request_id] += 1
        ins = inputs.get(sel.request_id, [])
        if w_chosen is None or stage not in logs or w_chosen not in pos[stage] or not ins:
            stats.unmatched_selections += 1
            continue
        inp = ins[min(k, len(ins) - 1)]
        bs = max(1, inp.block_size)
        isl = inp.isl_tokens
        chain = _chain(inp.hashes)
        workers = stage_workers[stage]
        uses_cache = stage in ("prefill", "agg")
        overlaps = [(_overlap(chain, cache[w]) if uses_cache else 0) for w in workers]
        c = pos[stage][w_chosen]
        if uses_cache and (sel.request_id, sel.worker_id) in logged_overlap:
            true_ov = logged_overlap[(sel.request_id, sel.worker_id)]
            ov_ok.append(overlaps[c] == true_ov)
            overlaps[c] = true_ov
        logits = []
        for p, w in enumerate(workers):
            prefill_term = omega * max((p_tokens[w] + isl) / bs - credit * overlaps[p], 0.0)
            decode_term = len(held[w]) + sum(1 for k in chain if k not in held[w])
            logits.append(
                prefill_term if stage == "prefill" else decode_term if stage == "decode" else prefill_term + decode_term
            )
        if not math.isnan(sel.logit):
            errs.append(abs(logits[c] - sel.logit))
        am_ok.append(logits[c] <= min(logits) + 1e-9)
        dl = logs[stage]
        dl.time_s.append(sel.t - t0_wall)
        dl.request_id.append(request_index.get(sel.request_id, -1))
        dl.chosen.append(c)
        dl.input_tokens.append(isl)
        dl.output_tokens.append(output_tokens.get(sel.request_id, -1))
        dl.overlap_blocks.append(tuple(overlaps))
        dl.active_prefill_tokens.append(tuple(int(round(p_tokens[w])) for w in workers))
        dl.active_blocks.append(tuple(len(held[w]) for w in workers))
        dl.active_requests.append(tuple(a_reqs[w] for w in workers))
        dl.logits.append(tuple(logits))
        if uses_cache:
            tok = max(0.0, isl - overlaps[c] * bs)
            p_tokens[w_chosen] += tok
            open_prefill[sel.request_id] = (w_chosen, tok, chain)
        if stage in ("decode", "agg"):
            held[w_chosen].update(chain)
            a_reqs[w_chosen] += 1
            open_decode[sel.request_id] = (w_chosen, chain)

    stats.decisions = sum(len(d) for d in logs.values())
    if errs:
        stats.logit_abs_err_mean = sum(errs) / len(errs)
    if ov_ok:
        stats.overlap_agreement = sum(ov_ok) / len(ov_ok)
    if am_ok:
        stats.argmin_agreement = sum(am_ok) / len(am_ok)
    return logs, stats
