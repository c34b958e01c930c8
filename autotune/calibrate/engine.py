"""Price the reconstructed samples (``states``) with the roofline under candidate constants.

Two step semantics, as the records' workers had them: the Dynamo mocker with NPZ tables (``dynamo-local``)
prices a mixed step as prefill + decode, each tabulated alone (``dynamo.mocker_timing``); an engine on
GPUs runs one step of both (the roofline's own ``step_s``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autotune.calibrate.states import DecodeSample, PointSamples, PrefillSample
from autotune.perf.base import StepTimer, prefill_attn_work
from autotune.perf.roofline import RooflinePerfModel
from autotune.profile import PerfSpec, Profile


@dataclass(frozen=True)
class EngineConstants:
    """The constants ``autotune calibrate`` fits for the engine, and the client-side delivery latency."""

    prefill_mfu: float
    decode_mbu: float
    step_overhead_ms: float  # every step's fixed cost (framework + layers), as one figure
    stream_ms: float  # engine's first token → client (detokenise, SSE); a nuisance the overlay folds into the host
    kv_transfer_ms: float  # fixed latency of a P→D hand-over beyond its bandwidth term

    def profile(self, base: Profile) -> Profile:
        perf = base.perf.model_copy(
            update={
                "prefill_mfu": self.prefill_mfu,
                "decode_mbu": self.decode_mbu,
                "step_overhead_ms": self.step_overhead_ms,
                "per_layer_overhead_us": 0.0,
            }
        )
        return base.model_copy(update={"perf": PerfSpec.model_validate(perf.model_dump())})


def prior_constants(profile: Profile) -> EngineConstants:
    """What the profile (its catalog framework, plus any ``perf:`` overrides) assumes."""
    fw = RooflinePerfModel(profile).framework
    overhead = fw["step_overhead_ms"] + profile.model.layers * fw["per_layer_overhead_us"] / 1e3
    x = profile.kv_transfer
    return EngineConstants(fw["prefill_mfu"], fw["decode_mbu"], overhead, 0.0, x.setup_ms + x.handover_ms)


class Pricer:
    """Predicted decode time per token and post-route prefill time, sample by sample."""

    def __init__(self, base: Profile, constants: EngineConstants) -> None:
        self.c = constants
        self.model = RooflinePerfModel(constants.profile(base))
        m, x = base.model, base.kv_transfer
        self._kv_s_per_token = m.kv_bytes_per_token / (base.cluster.intra_bw_gb_s * 1e9 * x.efficiency)
        self._memo: dict[tuple[int, ...], float] = {}  # the same steps recur across samples

    def _dec_ms(self, t: StepTimer, batch: int, ctx: int) -> float:
        if batch <= 0:
            return 0.0
        key = (id(t), 0, batch, ctx)
        v = self._memo.get(key)
        if v is None:
            v = self._memo[key] = t.step_s(0, 0.0, batch, ctx, 0.0) * 1e3
        return v

    def _pre_ms(self, t: StepTimer, tokens: int, cached: int, mocker: bool) -> float:
        key = (id(t), 1, tokens, 0 if mocker else cached)
        v = self._memo.get(key)
        if v is None:
            attn = tokens * tokens / 2 if mocker else prefill_attn_work(tokens, cached)
            v = self._memo[key] = t.step_s(tokens, attn, 0, 0, 0.0) * 1e3
        return v

    def _mixed_ms(self, t: StepTimer, tokens: int, cached: int, batch: int, ctx: int, mocker: bool) -> float:
        if mocker:
            return self._pre_ms(t, tokens, cached, True) + self._dec_ms(t, batch, ctx)
        return t.step_s(tokens, prefill_attn_work(tokens, cached), batch, ctx, 0.0) * 1e3

    def decode_ms_per_token(self, s: DecodeSample, mocker: bool, speedup: float) -> float:
        t = self.model.timer(s.tp)
        dec = self._dec_ms(t, s.batch, s.context_tokens)
        k = min(len(s.co_prefill_tokens), s.steps)
        mixed = sum(self._mixed_ms(t, n, 0, s.batch, s.context_tokens, mocker) for n in s.co_prefill_tokens[:k])
        return ((s.steps - k) * dec + mixed) / s.steps / speedup

    def prefill_ms(self, s: PrefillSample, mocker: bool, speedup: float) -> float:
        t = self.model.timer(s.tp)
        dec = self._dec_ms(t, s.batch, s.context_tokens)
        # it waits, on average, for half the step running when it arrives, then shares the next one
        engine = 0.5 * dec + self._mixed_ms(t, s.new_tokens, s.cached_tokens, s.batch, s.context_tokens, mocker)
        transfer = (self.c.kv_transfer_ms + s.transfer_tokens * self._kv_s_per_token * 1e3) if s.disaggregated else 0.0
        return engine / speedup + transfer + self.c.stream_ms


def relative_residuals(base: Profile, constants: EngineConstants, groups: list[PointSamples]) -> dict[str, np.ndarray]:
    """(predicted − observed) / observed for every decode and every alone-prefill sample."""
    pricer = Pricer(base, constants)
    dec: list[float] = []
    pre: list[float] = []
    for g in groups:
        mocker, speed = g.point.mocker_tables, g.point.speedup
        for d in g.decode:
            obs = d.observed_ms / d.steps
            dec.append((pricer.decode_ms_per_token(d, mocker, speed) - obs) / obs)
        for p in g.prefill:
            pre.append((pricer.prefill_ms(p, mocker, speed) - p.observed_ms) / p.observed_ms)
    return {"decode": np.asarray(dec), "prefill": np.asarray(pre)}
