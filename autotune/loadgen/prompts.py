"""Real prompts for the load burst, rendered from the shared request stream (``autotune.workload``).

Every prompt is a sequence of *symbols*, each one token of the tiny model (a vocabulary entry
that encodes to exactly one token as `` word``; ``autotune.dynamo.model_dir`` lists them). The
same symbols render either as token ids for ``/v1/completions`` (exact token counts, no
tokenizer involved) or as words for ``/v1/chat/completions`` (exact up to the chat template's
fixed overhead, which is subtracted from the word budget). Requests of one template share their
first ``prefix_tokens`` symbols, so the KV router sees real prefix overlap; a trace's requests share
the blocks their hash ids share (``autotune.traces.tokens``). The profile's chat template tokens
(``workload.chat_template_tokens_before/after``) are fixed symbols around that: the leading ones the
same in every request (shared by all), the trailing ones after the request's own text. In chat mode
the server's own template comes on top of them, as its overhead.

Request bodies are serialised once before the burst so the client spends its CPU on timing
streams, not on building JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from autotune.profile import WorkloadSpec
from autotune.traces.tokens import BlockTokens
from autotune.workload import ArrivalSchedule, RequestStream, request_stream

Api = Literal["completions", "chat"]


@dataclass(frozen=True)
class Vocabulary:
    """Single-token words of the served model and the chat template's token overhead."""

    words: tuple[str, ...]
    ids: tuple[int, ...]
    chat_overhead_tokens: int

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> Vocabulary:
        words = tuple(table["words"])
        ids = tuple(table["word_ids"])
        if len(words) != len(ids) or len(words) < 16:
            raise ValueError("word table has too few single-token words")
        return cls(words, ids, int(table["chat_overhead_tokens"]))


# Token-id prompts from ids every Llama-family tokenizer has (and the tiny test model's 4096): load on a
# deployment whose tokenizer autotune cannot read needs exact token counts and shared prefixes, not text.
TOKEN_ID_VOCAB = Vocabulary(tuple(str(i) for i in range(256, 4096)), tuple(range(256, 4096)), 0)


@dataclass(frozen=True)
class RequestSpec:
    """One request of a burst, before rendering."""

    index: int
    template: int
    input_tokens: int  # tokens the server will count (chat: including the template overhead)
    output_tokens: int
    symbols: np.ndarray  # int32 indices into the vocabulary; length = prompt tokens we write
    think_s: float = 0.0  # closed loop: the client's pause after this request's response


def template_prefixes(workload: WorkloadSpec, vocab_size: int, seed: int) -> list[np.ndarray]:
    """The shared prefix of each template; keyed by the profile seed so every point reuses them."""
    return [
        np.random.default_rng([seed, 7919, t]).integers(0, vocab_size, size=workload.prefix_tokens, dtype=np.int32)
        for t in range(workload.templates)
    ]


def chat_template_symbols(workload: WorkloadSpec, vocab_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The chat template's fixed symbols before and after the user prompt; keyed by the profile seed."""
    before = np.random.default_rng([seed, 6007]).integers(
        0, vocab_size, size=workload.chat_template_tokens_before, dtype=np.int32
    )
    after = np.random.default_rng([seed, 6011]).integers(
        0, vocab_size, size=workload.chat_template_tokens_after, dtype=np.int32
    )
    return before, after


def render_stream(
    stream: RequestStream,
    workload: WorkloadSpec,
    *,
    vocab: Vocabulary,
    api: Api,
    seed: int,
    profile_seed: int = 0,
    part: int = 0,
    first_index: int = 0,
) -> list[RequestSpec]:
    """The stream's requests as prompts: the template's shared prefix, then a unique random suffix.

    ``input_tokens`` is what the server's tokenizer counts. In chat mode the template overhead
    eats into the word budget, so the shared prefix is clipped to what fits. A continuation
    (``part`` > 0, ``autotune.workload.request_stream``) draws its suffixes from its own generator
    and numbers its requests from ``first_index``.
    """
    rng = np.random.default_rng([seed, 104729] if part == 0 else [seed, 104729, part])
    v = len(vocab.words)
    overhead = vocab.chat_overhead_tokens if api == "chat" else 0
    blocks = stream.blocks
    traced = BlockTokens(v, profile_seed) if blocks is not None else None
    prefixes = template_prefixes(workload, v, profile_seed) if blocks is None else []
    before, after = chat_template_symbols(workload, v, profile_seed)
    think = stream.think_s
    out: list[RequestSpec] = []
    for i in range(len(stream)):
        template = int(stream.template[i])
        words = max(1, int(stream.input_tokens[i]) - overhead)
        if traced is not None and blocks is not None:  # a trace's lengths hold everything, template included
            symbols = traced.prompt(blocks, i, words)
        else:
            lead = before[: words - 1]  # at least one word of the request's own
            tail = after[: words - 1 - len(lead)]
            body = words - len(lead) - len(tail)
            prefix = prefixes[template][:body]
            suffix = rng.integers(0, v, size=body - len(prefix), dtype=np.int32)
            symbols = np.concatenate([lead, prefix, suffix, tail])
        out.append(
            RequestSpec(
                first_index + i,
                template,
                words + overhead,
                int(stream.output_tokens[i]),
                symbols,
                float(think[i]) if think is not None else 0.0,
            )
        )
    return out


def build_requests(
    workload: WorkloadSpec, n: int, *, vocab: Vocabulary, api: Api, seed: int, profile_seed: int = 0
) -> list[RequestSpec]:
    """``n`` closed-loop requests of ``workload`` for ``seed``, as prompts (the stream, rendered)."""
    return render_stream(
        request_stream(workload, n, seed), workload, vocab=vocab, api=api, seed=seed, profile_seed=profile_seed
    )


@dataclass(frozen=True)
class BurstPlan:
    """One live point's requests: prompts, send times (open loop) and the measured window's edges."""

    specs: list[RequestSpec]
    arrivals_s: np.ndarray | None
    warmup: int
    cooldown: int


def plan_burst(
    workload: WorkloadSpec,
    n: int,
    *,
    vocab: Vocabulary,
    api: Api,
    seed: int,
    profile_seed: int = 0,
    part: int = 0,
    first_index: int = 0,
    after_s: float = 0.0,
) -> BurstPlan:
    """The same stream the simulator runs for ``seed`` (lengths, templates, arrivals), rendered as prompts;
    ``part`` > 0: its continuation past request ``first_index`` (and arrival ``after_s``), as a live point
    that runs longer extends it."""
    schedule = (
        ArrivalSchedule.from_workload(workload) if workload.arrival == "open" and workload.trace is None else None
    )
    stream = request_stream(workload, n, seed, schedule, part=part, after_s=after_s, first_index=first_index)
    specs = render_stream(
        stream, workload, vocab=vocab, api=api, seed=seed, profile_seed=profile_seed, part=part, first_index=first_index
    )
    return BurstPlan(specs, stream.arrival_s, *workload.measurement_edges(first_index + n))


def render_body(spec: RequestSpec, *, api: Api, model: str, vocab: Vocabulary) -> bytes:
    """The JSON body for one request: streaming, usage reported, length forced by ``ignore_eos``."""
    body: dict[str, object] = {
        "model": model,
        "max_tokens": spec.output_tokens,
        "min_tokens": spec.output_tokens,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if api == "completions":
        body["prompt"] = [vocab.ids[s] for s in spec.symbols.tolist()]
    else:
        body["messages"] = [{"role": "user", "content": "".join(" " + vocab.words[s] for s in spec.symbols.tolist())}]
    return json.dumps(body, separators=(",", ":")).encode()


def render_bodies(specs: Sequence[RequestSpec], *, api: Api, model: str, vocab: Vocabulary) -> list[bytes]:
    return [render_body(s, api=api, model=model, vocab=vocab) for s in specs]
