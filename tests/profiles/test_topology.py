"""Topology strings, feasibility reasons and KV-pool capacities (perf_model.md §2)."""

from __future__ import annotations

import random

import pytest

from autotune.errors import InputError
from autotune.feasibility import check_feasibility, kv_capacity_tokens
from autotune.profile import Profile, profile_from_dict
from autotune.topology import RouterSettings, Topology, parse_topology


def make_profile(
    gpu: str = "B200",
    model: str = "Llama-3.1-70B",
    nodes: int = 3,
    per_node: int = 8,
    dtype: str = "fp8",
    **cluster: object,
) -> Profile:
    return profile_from_dict(
        {
            "name": "t",
            "cluster": {"nodes": nodes, "gpu": gpu, "gpus_per_node": per_node, **cluster},
            "model": {"name": model, "weight_dtype": dtype, "kv_dtype": dtype},
        }
    )


# ---- string form ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expect",
    [
        ("1P4-5D4", Topology(1, 4, 5, 4)),
        ("2P2-3D8", Topology(2, 2, 3, 8)),
        ("6A4", Topology(agg_workers=6, agg_tp=4)),
        (" 1P4-2D4@tau=0.7,omega=0.1 ", Topology(1, 4, 2, 4, router=RouterSettings(0.7, 0.1))),
        ("8A1@credit=1.5", Topology(agg_workers=8, agg_tp=1, router=RouterSettings(overlap_credit=1.5))),
    ],
)
def test_parse(text: str, expect: Topology) -> None:
    topo = parse_topology(text)
    assert topo == expect
    assert parse_topology(topo.to_string()) == topo


def test_format() -> None:
    t = parse_topology("1P4-5D4")
    assert (t.shape(), t.to_string(), t.gpus, t.disaggregated) == ("1P4-5D4", "1P4-5D4@tau=0,omega=1", 24, True)
    a = parse_topology("6A4@tau=0.7,omega=0.1,credit=2")
    assert (a.shape(), str(a), a.gpus, a.disaggregated) == ("6A4", "6A4@tau=0.7,omega=0.1,credit=2", 24, False)
    assert a.worker_tps() == [("agg", 4)] * 6
    assert parse_topology("1P2-2D4").worker_tps() == [("prefill", 2), ("decode", 4), ("decode", 4)]


def test_round_trip_random_floats() -> None:
    """Search-sampled router values survive string form exactly (results store the string)."""
    rng = random.Random(7)
    for _ in range(200):
        r = RouterSettings(rng.uniform(0, 2), rng.uniform(0, 3) * 10 ** rng.randint(-8, 2), rng.uniform(0, 4))
        topo = Topology(rng.randint(1, 4), 2 ** rng.randint(0, 3), rng.randint(1, 9), 2 ** rng.randint(0, 3), router=r)
        assert parse_topology(topo.to_string()) == topo
        agg = Topology(agg_workers=rng.randint(1, 9), agg_tp=2 ** rng.randint(0, 3), router=r)
        assert parse_topology(agg.to_string()) == agg


def test_effective_credit() -> None:
    assert RouterSettings(overlap_weight=0.0, overlap_credit=1.5).effective_credit == 0.0
    assert RouterSettings(overlap_weight=0.5, overlap_credit=1.5).effective_credit == 1.5


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("", "cannot parse ''"),
        ("1P4", "cannot parse '1P4'"),
        ("1P4-5D", "cannot parse"),
        ("P4-5D4", "cannot parse"),
        ("1P4-5A4", "cannot parse"),
        ("0P4-5D4", "prefill workers must be at least 1"),
        ("1P0-5D4", "prefill TP must be at least 1"),
        ("1P4-0D4", "decode workers must be at least 1"),
        ("6A0", "TP must be at least 1"),
        ("1P4-5D4@tau", "unknown router setting 'tau'"),
        ("1P4-5D4@temp=1", "unknown router setting 'temp=1'"),
        ("1P4-5D4@tau=fast", "tau must be a number, got 'fast'"),
        ("1P4-5D4@tau=nan", "temperature must be a finite number >= 0"),
        ("1P4-5D4@omega=-1", "overlap_weight must be a finite number >= 0"),
        ("1P4-5D4@credit=inf", "overlap_credit must be a finite number >= 0"),
    ],
)
def test_bad_strings_name_the_flag(text: str, fragment: str) -> None:
    for flag in ("--topology", "--baseline"):
        with pytest.raises(InputError) as info:
            parse_topology(text, flag=flag)
        msg = str(info.value)
        assert msg.startswith(f"{flag}: ") and fragment in msg and "\n" not in msg, msg
        assert info.value.exit_code == 2


def test_router_settings_reject_bad_values() -> None:
    with pytest.raises(InputError, match="temperature"):
        RouterSettings(temperature=-0.1)
    with pytest.raises(InputError, match="overlap_credit"):
        RouterSettings(overlap_credit=float("nan"))


# ---- feasibility ---------------------------------------------------------------------------------


def test_paper_topologies_fit() -> None:
    p = make_profile()
    f = check_feasibility(parse_topology("1P4-5D4"), p)
    assert f.ok and f.reason == ""
    # six TP4 workers, two per node: each node holds exactly 8 GPUs
    nodes = [n for (n,) in f.placement]
    assert sorted(nodes) == [0, 0, 1, 1, 2, 2]
    assert set(f.kv_tokens) == {"prefill", "decode"}


def test_gpu_budget() -> None:
    f = check_feasibility(parse_topology("1P4-6D4"), make_profile())
    assert not f.ok and f.reason == "needs 28 GPUs, the cluster has 24 (3x8)"


def test_node_packing() -> None:
    """12 GPUs in two 6-GPU nodes: three TP4 workers fit the budget but not the nodes."""
    p = make_profile(nodes=2, per_node=6)
    f = check_feasibility(parse_topology("3A4"), p)
    assert not f.ok and f.reason == "the workers cannot be packed onto 2 nodes of 6 GPUs"
    g = check_feasibility(parse_topology("2A4"), p)
    assert g.ok and g.placement == ((0,), (1,))


def test_multinode_tp() -> None:
    topo = parse_topology("1P16-1D8")
    f = check_feasibility(topo, make_profile())
    assert not f.ok
    assert f.reason == "prefill TP16 exceeds 8 GPUs per node and multi-node workers are not allowed"
    g = check_feasibility(topo, make_profile(allow_multinode_workers=True))
    assert g.ok
    assert len(g.placement[0]) == 2 and len(g.placement[1]) == 1  # the TP16 worker spans two whole nodes
    assert not set(g.placement[0]) & set(g.placement[1])


def test_tp_power_of_two_and_shape() -> None:
    f = check_feasibility(parse_topology("1A6"), make_profile())
    assert not f.ok and f.reason == "agg TP6 is not a power of two"
    assert check_feasibility(Topology(), make_profile()).reason == "the topology has no workers"
    no_decode = Topology(prefill_workers=1, prefill_tp=4)
    assert (
        check_feasibility(no_decode, make_profile()).reason
        == "a disaggregated topology needs at least one decode worker"
    )


def test_memory_405b_tp1_h100() -> None:
    p = make_profile(gpu="H100", model="Llama-3.1-405B", nodes=1)
    f = check_feasibility(parse_topology("1A1"), p)
    assert not f.ok
    assert f.reason == ("agg TP1: 405.9 GB of weights per GPU leave a KV pool of 0 tokens, below the minimum 4096")
    assert check_feasibility(parse_topology("1A8"), p).ok  # 50.7 GB of weights per GPU at TP8


def test_memory_70b_tp1_h100_too_small() -> None:
    """70.6 GB of FP8 weights on an 80 GB H100 at 0.9 fraction and 4 GB reserve: no KV pool."""
    f = check_feasibility(parse_topology("1A1"), make_profile(gpu="H100", nodes=1))
    assert not f.ok and "70.6 GB of weights per GPU" in f.reason


def test_minimum_pool_counts_the_longest_request() -> None:
    """A pool that holds the engine minimum but not one longest request is infeasible."""
    p = profile_from_dict(
        {
            "name": "t",
            "cluster": {"nodes": 1, "gpu": "H100", "gpus_per_node": 8},
            "model": {"name": "Llama-3.1-70B", "weight_dtype": "fp8", "kv_dtype": "fp8"},
            "engine": {"gpu_memory_fraction": 0.95},
            "workload": {"prefix_tokens": 0, "input_tokens": {"dist": "fixed", "value": 100_000}},
        }
    )
    tokens = kv_capacity_tokens(p, 1)
    assert 4096 < tokens < 100_128  # (0.95·80 − 4 − 70.6) GB / 163,840 B ≈ 8,545 tokens
    f = check_feasibility(parse_topology("1A1"), p)
    assert not f.ok and f"KV pool of {tokens} tokens, below the minimum 100128" in f.reason


# ---- KV capacity (perf_model.md §2: FP8 weights + KV, 0.9 fraction, 4 GB/GPU reserve) ---------------------


@pytest.mark.parametrize(
    "gpu,model,tp,expect_m",
    [
        ("B200", "Llama-3.1-70B", 1, 0.53),
        ("B200", "Llama-3.1-70B", 2, 1.50),
        ("B200", "Llama-3.1-70B", 4, 3.43),
        ("B200", "Llama-3.1-70B", 8, 7.28),
        ("H100", "Llama-3.1-70B", 4, 1.23),
        ("B200", "Llama-3.1-405B", 8, 3.33),
    ],
)
def test_kv_capacity_matches_reference(gpu: str, model: str, tp: int, expect_m: float) -> None:
    tokens = kv_capacity_tokens(make_profile(gpu=gpu, model=model), tp)
    assert tokens / 1e6 == pytest.approx(expect_m, rel=0.02)


def test_kv_capacity_hand_computed() -> None:
    """70B B200 TP4: (180·0.9 − 4 − 70.6/4) GB = 140.35 GB per GPU over 163,840/4 B per token per GPU."""
    expect = int((180e9 * 0.9 - 4e9 - 70.6e9 / 4) / (163_840 / 4))
    assert kv_capacity_tokens(make_profile(), 4) == expect == 3_426_513


def test_kv_heads_replicate_beyond_kv_head_count() -> None:
    """8 KV heads: TP16 keeps 1 head per rank (replicated), so KV per token per GPU stops shrinking."""
    p = make_profile(allow_multinode_workers=True)
    per_gpu_16 = 180e9 * 0.9 - 4e9 - 70.6e9 / 16
    assert kv_capacity_tokens(p, 16) == int(per_gpu_16 / (163_840 / 8))
