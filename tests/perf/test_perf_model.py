"""Step-time models: the roofline against hand-computed numbers, and the Dynamo mocker polynomial."""

from __future__ import annotations

from itertools import pairwise

import pytest

from autotune.errors import InputError
from autotune.perf import available, get_perf_model, prefill_attn_work
from autotune.profile import Profile, profile_from_dict


def make_profile(
    gpu: str = "B200", model: str = "Llama-3.1-70B", dtype: str = "fp8", framework: str = "vllm"
) -> Profile:
    return profile_from_dict(
        {
            "name": "t",
            "cluster": {"nodes": 1, "gpu": gpu, "gpus_per_node": 8},
            "model": {"name": model, "weight_dtype": dtype, "kv_dtype": dtype},
            "dynamo": {"framework": framework},
        }
    )


# Llama-3.1-70B on B200, FP8, vLLM overheads (catalog/frameworks.yaml), written out by hand:
EMBED = 2 * 128_256 * 8_192  # input embedding + LM head parameters = 2,101,346,304
FLOPS_PER_TOKEN = 2 * (70.6e9 - EMBED)  # 2 × non-embedding params = 136.997e9
HEAD_FLOPS = 2 * 128_256 * 8_192  # LM head per emitting sequence = 2.101e9
ATTN_COEF = 4 * 80 * 64 * 128  # 4·L·heads·head_dim = 2,621,440
STEP_OVERHEAD = 0.15e-3 + 80 * 32e-6  # 0.15 ms per step + 32 µs per layer = 2.71 ms
PER_SEQ = 4e-6
AR_FIXED = 2 * 80 * 10e-6  # two all-reduces per layer × 10 µs = 1.6 ms


def weight_bytes(tp: int) -> float:
    return (70.6e9 - EMBED + 128_256 * 8_192) * 1.0 / tp  # FP8 non-embedding weights + LM head, per GPU


def ar_per_token(tp: int) -> float:
    return 2 * 80 * 2 * (tp - 1) / tp * 8_192 * 2 / 701e9  # ring: 2(t−1)/t · d·2 B over 701 GB/s


def test_decode_step_tp4_by_hand() -> None:
    """B=64 sequences at 1,000 tokens of context each, TP4 (memory-bound).

    compute = (136.997e9·64 + 2.101e9·64 + 2,621,440·64,000) / (4·4,500e12·0.5) = 1.008 ms
    memory  = (17.387e9 + 40,960·64,000) B / (8e12·0.8) B/s                   = 3.126 ms
    comm    = 1.6 ms + 64 · 5.609 µs                                           = 1.959 ms
    fixed   = 2.71 ms + 64 · 4 µs                                              = 2.966 ms   → 8.05 ms
    """
    timer = get_perf_model("roofline", make_profile()).timer(4)
    compute = (FLOPS_PER_TOKEN * 64 + HEAD_FLOPS * 64 + ATTN_COEF * 64_000) / (4 * 4500e12 * 0.5)
    memory = (weight_bytes(4) + 163_840 / 4 * 64_000) / (8e12 * 0.8)
    comm = AR_FIXED + ar_per_token(4) * 64
    expect = max(compute, memory) + comm + STEP_OVERHEAD + PER_SEQ * 64
    assert memory > compute
    assert expect == pytest.approx(8.05e-3, rel=2e-3)
    assert timer.step_s(0, 0.0, 64, 64_000, 0.3) == pytest.approx(expect, rel=1e-9)


def test_prefill_step_tp4_by_hand() -> None:
    """One 2,048-token chunk, nothing cached, no decodes (compute-bound).

    compute = (136.997e9·2048 + 2.101e9 + 2,621,440·2048·1024) / 9e15 = 31.79 ms
    comm    = 1.6 ms + 2048 · 5.609 µs                              = 13.09 ms
    fixed   = 2.71 ms + 4 µs                                        → 47.6 ms
    """
    timer = get_perf_model("roofline", make_profile()).timer(4)
    attn = prefill_attn_work(2048, 0)
    assert attn == 2048 * 1024
    compute = (FLOPS_PER_TOKEN * 2048 + HEAD_FLOPS + ATTN_COEF * attn) / (4 * 4500e12 * 0.5)
    expect = compute + AR_FIXED + ar_per_token(4) * 2048 + STEP_OVERHEAD + PER_SEQ
    assert expect == pytest.approx(47.6e-3, rel=2e-3)
    assert timer.step_s(2048, attn, 0, 0, 0.0) == pytest.approx(expect, rel=1e-9)


def test_tp1_has_no_all_reduce() -> None:
    """TP1 decode B=1 at 128 tokens: weights 69.55 GB over 6.4 TB/s = 10.87 ms, plus fixed 2.714 ms."""
    timer = get_perf_model("roofline", make_profile()).timer(1)
    expect = (weight_bytes(1) + 163_840 * 128) / 6.4e12 + STEP_OVERHEAD + PER_SEQ
    assert expect == pytest.approx(13.59e-3, rel=2e-3)
    assert timer.step_s(0, 0.0, 1, 128, 0.0) == pytest.approx(expect, rel=1e-9)


def test_bf16_h100_uses_its_rates() -> None:
    """H100 BF16 TP2 decode B=8, 8,000 context tokens: HBM 3.35 TB/s, bus 445 GB/s, KV 327,680 B/token."""
    timer = get_perf_model("roofline", make_profile(gpu="H100", dtype="bf16")).timer(2)
    memory = (weight_bytes(1) * 2 / 2 + 327_680 / 2 * 8_000) / (3.35e12 * 0.8)
    comm = AR_FIXED + 2 * 80 * 2 * (1 / 2) * 8_192 * 2 / 445e9 * 8
    expect = memory + comm + STEP_OVERHEAD + PER_SEQ * 8
    assert timer.step_s(0, 0.0, 8, 8_000, 0.0) == pytest.approx(expect, rel=1e-9)


def test_empty_step_is_free() -> None:
    assert get_perf_model("roofline", make_profile()).timer(4).step_s(0, 0.0, 0, 0, 0.0) == 0.0


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_monotone_in_batch_and_context(tp: int) -> None:
    timer = get_perf_model("roofline", make_profile()).timer(tp)
    by_batch = [timer.step_s(0, 0.0, b, b * 1000, 0.0) for b in (1, 8, 64, 256, 1024)]
    assert all(a < b for a, b in pairwise(by_batch))
    by_ctx = [timer.step_s(0, 0.0, 64, 64 * c, 0.0) for c in (128, 1024, 8192, 32768)]
    assert all(a < b for a, b in pairwise(by_ctx))
    by_prefill = [timer.step_s(n, prefill_attn_work(n, 0), 0, 0, 0.0) for n in (64, 512, 2048, 8192)]
    assert all(a < b for a, b in pairwise(by_prefill))
    cached = [timer.step_s(512, prefill_attn_work(512, p), 0, 0, 0.0) for p in (0, 4096, 32768)]
    assert all(a < b for a, b in pairwise(cached))  # attention still reads the cached prefix


def test_more_tp_is_faster_per_step() -> None:
    model = get_perf_model("roofline", make_profile())
    decode = [model.timer(tp).step_s(0, 0.0, 64, 64_000, 0.0) for tp in (1, 2, 4, 8)]
    prefill = [model.timer(tp).step_s(8192, prefill_attn_work(8192, 0), 0, 0, 0.0) for tp in (1, 2, 4, 8)]
    assert all(a > b for a, b in pairwise(decode))
    assert all(a > b for a, b in pairwise(prefill))
    # ... but sublinearly: all-reduce and fixed overheads do not shrink with TP
    assert decode[0] / decode[3] < 8 and prefill[0] / prefill[3] < 8


def test_fp4_and_faster_gpu_are_faster() -> None:
    args = (8192, prefill_attn_work(8192, 0), 0, 0, 0.0)
    b200_fp8 = get_perf_model("roofline", make_profile()).timer(1).step_s(*args)
    b200_fp4 = get_perf_model("roofline", make_profile(dtype="fp4")).timer(1).step_s(*args)
    decode = (0, 0.0, 64, 64_000, 0.0)  # memory-bound: H200's 4.8 TB/s beats H100's 3.35 TB/s
    h100_fp8 = get_perf_model("roofline", make_profile(gpu="H100")).timer(4).step_s(*decode)
    h200_fp8 = get_perf_model("roofline", make_profile(gpu="H200")).timer(4).step_s(*decode)
    assert b200_fp4 < b200_fp8
    assert h200_fp8 < h100_fp8


def test_moe_reads_more_experts_for_more_tokens() -> None:
    timer = get_perf_model("roofline", make_profile(model="Mixtral-8x7B")).timer(1)
    one, many = timer.weight_read_bytes(1), timer.weight_read_bytes(4096)
    assert one < many
    # one token touches 2 of 8 experts; thousands touch all 8: the full 46.7 GB (minus the input embedding)
    assert many == pytest.approx((46.7e9 - 32_000 * 4096), rel=1e-6)
    assert one == pytest.approx(timer.dense_weight_bytes + 2 * timer.expert_bytes, rel=1e-9)


# ---- Dynamo mocker polynomial (dynamo.md §5) ------------------------------------------------------------


def test_mocker_prefill_polynomial() -> None:
    """prefill_ms = 4.209989e-7·t² + 1.518344e-2·t + 16.50142; t = 1000 → 0.421 + 15.183 + 16.501 = 32.106 ms."""
    timer = get_perf_model("mocker", make_profile()).timer(4)
    assert timer.step_s(1000, 0.0, 0, 0, 0.0) == pytest.approx(32.1058589e-3, rel=1e-9)
    assert timer.step_s(1, 0.0, 0, 0, 0.0) == pytest.approx((4.209989e-7 + 1.518344e-2 + 16.50142) / 1000)


@pytest.mark.parametrize(
    "u,ms",
    [
        (0.0, 5.74),  # max(1, 5.74)
        (0.5, 26.31),  # −25.74·0.25 + 54.01·0.5 + 5.74 = −6.435 + 27.005 + 5.74
        (1.0, 34.01),  # −25.74 + 54.01 + 5.74
    ],
)
def test_mocker_decode_polynomial(u: float, ms: float) -> None:
    timer = get_perf_model("mocker", make_profile()).timer(1)
    assert timer.step_s(0, 0.0, 32, 32_000, u) == pytest.approx(ms / 1000, rel=1e-9)


def test_mocker_mixed_speedup_and_tp() -> None:
    model = get_perf_model("mocker", make_profile(), speedup=2.0)
    assert model.timer(1) is model.timer(8)  # the mocker ignores GPU, model and TP
    both = model.timer(1).step_s(1000, 0.0, 8, 8000, 0.5)
    assert both == pytest.approx((32.1058589 + 26.31) / 2 / 1000, rel=1e-9)
    assert model.describe() == {"perf_model": "mocker", "speedup": 2.0}


def test_decode_floor_is_one_ms() -> None:
    """The polynomial is clamped below at 1 ms (u outside [0, 1] would go negative)."""
    timer = get_perf_model("mocker", make_profile()).timer(1)
    assert timer.step_s(0, 0.0, 1, 10, -1.0) == pytest.approx(1e-3)


def test_registry() -> None:
    assert {"roofline", "mocker"} <= set(available())
    with pytest.raises(InputError, match="--perf-model: unknown perf model 'vidur'"):
        get_perf_model("vidur", make_profile())
