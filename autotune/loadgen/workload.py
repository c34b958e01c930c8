"""Requests built from a profile's workload: template prefixes, input and output lengths.

Every prompt is a sequence of *symbols*, each one token of the tiny model (a vocabulary entry
that encodes to exactly one token as `` word``; ``autotune.dynamo.model_dir`` lists them). The
same symbols render either as token ids for ``/v1/completions`` (exact token counts, no
tokenizer involved) or as words for ``/v1/chat/completions`` (exact up to the chat template's
fixed overhead, which is subtracted from the word budget). Requests of one template share their
first ``prefix_tokens`` symbols, so the KV router sees real prefix overlap.

Request bodies are serialised once before the burst so the client spends its CPU on timing
streams, not on building JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from autotune.profile import FixedDist, NormalDist, UniformDist, WorkloadSpec

Api = Literal["completions", "chat"]


@dataclass(frozen=True)
class Vocabulary:
    """Single-token words of the served model and the chat template's token overhead."""

    words: tuple[str, ...]
    ids: tuple[int, ...]
    chat_overhead_tokens: int

    @classmethod
    def from_table(cls, table: dict[str, object]) -> Vocabulary:
        words = tuple(table["words"])  # type: ignore[arg-type]
        ids = tuple(table["word_ids"])  # type: ignore[arg-type]
        if len(words) != len(ids) or len(words) < 16:
            raise ValueError("word table has too few single-token words")
        return cls(words, ids, int(table["chat_overhead_tokens"]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class RequestSpec:
    """One request of a burst, before rendering."""

    index: int
    template: int
    input_tokens: int  # tokens the server will count (chat: including the template overhead)
    output_tokens: int
    symbols: np.ndarray  # int32 indices into the vocabulary; length = prompt tokens we write


def sample_lengths(dist: FixedDist | UniformDist | NormalDist, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` integer lengths from a profile length distribution (normal is clipped to [min, max])."""
    if isinstance(dist, FixedDist):
        return np.full(n, dist.value, dtype=np.int64)
    if isinstance(dist, UniformDist):
        return rng.integers(dist.min, dist.max + 1, size=n, dtype=np.int64)
    hi = dist.max if dist.max is not None else np.inf
    vals = np.rint(rng.normal(dist.mean, dist.std, size=n))
    return np.clip(vals, dist.min, hi).astype(np.int64)


def template_prefixes(workload: WorkloadSpec, vocab_size: int, seed: int) -> list[np.ndarray]:
    """The shared prefix of each template; keyed by the profile seed so every point reuses them."""
    return [
        np.random.default_rng([seed, 7919, t]).integers(0, vocab_size, size=workload.prefix_tokens, dtype=np.int32)
        for t in range(workload.templates)
    ]


def build_requests(
    workload: WorkloadSpec,
    n: int,
    *,
    vocab: Vocabulary,
    api: Api,
    seed: int,
    profile_seed: int = 0,
) -> list[RequestSpec]:
    """``n`` requests: uniform template choice, sampled lengths, unique random suffixes.

    ``input_tokens`` is what the server's tokenizer counts. In chat mode the template overhead
    eats into the word budget, so the shared prefix is clipped to what fits.
    """
    rng = np.random.default_rng([seed, 104729])
    v = len(vocab.words)
    prefixes = template_prefixes(workload, v, profile_seed)
    templates = rng.integers(0, workload.templates, size=n)
    isl = sample_lengths(workload.input_tokens, n, rng)
    osl = sample_lengths(workload.output_tokens, n, rng)
    overhead = vocab.chat_overhead_tokens if api == "chat" else 0
    out: list[RequestSpec] = []
    for i in range(n):
        words = max(1, int(isl[i]) - overhead)
        prefix = prefixes[templates[i]][:words]
        suffix = rng.integers(0, v, size=words - len(prefix), dtype=np.int32)
        out.append(RequestSpec(i, int(templates[i]), words + overhead, int(osl[i]), np.concatenate([prefix, suffix])))
    return out


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
