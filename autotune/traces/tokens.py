"""The tokens of a trace request's prompt, so that requests sharing a block send the same tokens.

Each trace block (content id, pass) renders as ``block_tokens`` symbols drawn from a generator keyed by
the profile seed and that pair alone: every request whose prompt holds the block writes it identically,
so the server's prefix cache and the KV router see exactly the trace's sharing.
"""

from __future__ import annotations

import numpy as np

from autotune.traces.trace import TraceBlocks


class BlockTokens:
    """Symbols per trace block, drawn once per burst plan."""

    def __init__(self, vocab_size: int, profile_seed: int) -> None:
        self.vocab_size, self.seed = vocab_size, profile_seed
        self._memo: dict[tuple[int, int], np.ndarray] = {}

    def block(self, key: tuple[int, int], size: int) -> np.ndarray:
        got = self._memo.get(key)
        if got is None:
            q, p = key
            entropy = [self.seed, 7919, 1, q, p] if q >= 0 else [self.seed, 7919, 2, -q, p]
            got = np.random.default_rng(entropy).integers(0, self.vocab_size, size=size, dtype=np.int32)
            if q >= 0:  # a private block (q < 0) is written once: not worth keeping
                self._memo[key] = got
        return got

    def prompt(self, blocks: TraceBlocks, k: int, words: int) -> np.ndarray:
        """The first ``words`` symbols of request ``k``'s prompt (``words`` <= its input tokens)."""
        size = blocks.trace.block_tokens
        keys = blocks.block_keys(k)[: -(-words // size)]
        return np.concatenate([self.block(key, size) for key in keys])[:words]
