"""Describing your own deployment: a model outside the catalog (inline or from a Hugging Face config.json)
and an engine KV pool size that wins over the memory computation, in feasibility, the simulator, the
dynamo-local mocker and the rendered DGD."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from autotune import catalog
from autotune.cli import main
from autotune.dynamo.mocker_timing import plan_timing
from autotune.dynamo.stack import DynamoStack
from autotune.errors import ProfileError
from autotune.feasibility import check_feasibility, kv_capacity_tokens
from autotune.k8s.containers import worker_args
from autotune.model_arch import derive_params, fields_from_hf_config
from autotune.profile import PROFILES_DIR, load_profile, profile_from_dict
from autotune.topology import parse_topology

EXAMPLE = PROFILES_DIR / "examples" / "custom-model.yaml"
INLINE: dict[str, Any] = {
    "name": "my-model",
    "layers": 32,
    "hidden": 4096,
    "heads": 32,
    "kv_heads": 8,
    "head_dim": 128,
    "ffn": 14336,
    "vocab": 128256,
}
BASE: dict[str, Any] = {
    "name": "own",
    "cluster": {"nodes": 1, "gpu": "H100", "gpus_per_node": 8},
    "model": INLINE,
    "workload": {"prefix_tokens": 64, "concurrency": [8], "requests_per_point": 200, "warmup_requests": 20},
    "search": {"operating_point": "grid"},
}


def profile(**sections: dict[str, Any]) -> Any:
    data = copy.deepcopy(BASE)
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return profile_from_dict(data)


def test_example_profile_reads_its_model_from_the_config_beside_it() -> None:
    p = load_profile(EXAMPLE)
    cfg = json.loads((EXAMPLE.parent / "chat-14b-config.json").read_text())
    m = p.model
    assert (m.name, m.layers, m.hidden, m.heads, m.kv_heads, m.ffn, m.vocab) == (
        "my-org/chat-14b",
        cfg["num_hidden_layers"],
        cfg["hidden_size"],
        cfg["num_attention_heads"],
        cfg["num_key_value_heads"],
        cfg["intermediate_size"],
        cfg["vocab_size"],
    )
    assert m.head_dim == cfg["hidden_size"] // cfg["num_attention_heads"]  # no head_dim key: derived
    assert m.max_context_tokens == cfg["max_position_embeddings"]
    assert m.weight_dtype == "bf16" and m.kv_dtype == "fp8"  # torch_dtype, then the profile's own field wins
    assert m.params_b == pytest.approx(14.77, abs=0.01)  # derived: attention + gated MLP + untied embeddings
    assert kv_capacity_tokens(p, 1) == 6000 * 64  # engine.num_gpu_blocks_override
    for text in p.baselines:
        assert check_feasibility(parse_topology(text), p).ok


def test_example_profile_simulates(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "-p", str(EXAMPLE), "-c", "8", "-n", "200", "-o", "json"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, _ = capsys.readouterr()
    assert info.value.code == 0
    point = json.loads(out)["points"][0]
    assert point["requests"] > 0 and point["rejected"] == 0 and point["output_tok_s"] > 0
    assert point["prefix_hit_rate"] > 0  # the chat template's leading tokens and the prefixes are shared


@pytest.mark.parametrize("name", ["Llama-3.1-8B", "Llama-3.1-70B", "Llama-3.1-405B", "Qwen3-32B", "Mixtral-8x7B"])
def test_derived_parameter_counts_match_the_catalog(name: str) -> None:
    entry = dict(catalog.load("models")[name])
    derived = derive_params({k: v for k, v in entry.items() if k not in ("params_b", "active_params_b")})
    assert derived["params_b"] == pytest.approx(entry["params_b"], rel=0.005)
    assert derived.get("active_params_b") == pytest.approx(entry.get("active_params_b"), rel=0.005)


def test_inline_model_outside_the_catalog_loads_and_gives_params_when_asked() -> None:
    p = profile()
    assert p.model.name == "my-model" and p.model.params_b == pytest.approx(8.03, abs=0.01)
    given = profile(model={"params_b": 9.5})
    assert given.model.params_b == 9.5
    tied = profile(model={"tied_embeddings": True})
    assert p.model.params_b - tied.model.params_b == pytest.approx(128256 * 4096 / 1e9, abs=0.002)


def test_catalog_name_with_overrides_is_still_the_catalog_entry() -> None:
    p = profile(model={"name": "Llama-3.1-8B", "layers": 16})
    assert p.model.layers == 16 and p.model.params_b == 8.03  # the catalog's, overridden field by field


def test_hf_config_keys_of_moe_multimodal_and_quantised_models(tmp_path: Path) -> None:
    cfg = {
        "text_config": {
            "num_hidden_layers": 24,
            "hidden_size": 2048,
            "num_attention_heads": 16,
            "intermediate_size": 5632,
            "moe_intermediate_size": 1408,
            "num_experts": 60,
            "num_experts_per_tok": 4,
            "vocab_size": 151936,
        },
        "tie_word_embeddings": True,
        "quantization_config": {"quant_method": "fp8"},
        "torch_dtype": "bfloat16",
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    got = fields_from_hf_config(path, "p.yaml")
    assert got["kv_heads"] == 16 and got["head_dim"] == 128  # no num_key_value_heads / head_dim: MHA, hidden/heads
    assert (got["experts"], got["experts_per_token"], got["ffn"]) == (60, 4, 1408)
    assert got["weight_dtype"] == "fp8" and got["tied_embeddings"] is True and "kv_dtype" not in got
    derived = derive_params({"name": "moe", **got})
    assert derived["active_params_b"] < derived["params_b"]


def test_hf_config_path_is_relative_to_the_profile_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tmp_path / "deploy"
    sub.mkdir()
    (sub / "config.json").write_text((EXAMPLE.parent / "chat-14b-config.json").read_text())
    (sub / "p.yaml").write_text(
        "extends: paper-70b-1p5d\nname: rel\nmodel: {name: mine, hf_config: config.json, weight_dtype: fp8}\n"
    )
    monkeypatch.chdir(tmp_path)  # not the profile's directory
    p = load_profile(sub / "p.yaml")
    assert (p.model.name, p.model.layers, p.model.weight_dtype) == ("mine", 48, "fp8")
    # the child's config.json (torch_dtype bfloat16) is the child's: it wins over the parent's kv_dtype fp8
    assert p.model.kv_dtype == "bf16"


def test_bad_hf_config_names_the_profile_and_field(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"num_hidden_layers": 0}')
    data = {**copy.deepcopy(BASE), "model": {"name": "x", "hf_config": str(tmp_path / "c.json")}}
    with pytest.raises(ProfileError) as info:
        profile_from_dict(data, "mine.yaml")
    assert str(info.value).startswith("mine.yaml: model.hf_config: ") and "num_hidden_layers" in str(info.value)


def test_kv_pool_override_wins_in_feasibility_and_is_refused_below_the_minimum() -> None:
    computed = profile()
    pinned = profile(engine={"num_gpu_blocks_override": 1000, "block_size": 64})
    assert kv_capacity_tokens(computed, 1) != 64_000
    assert {kv_capacity_tokens(pinned, tp) for tp in (1, 2, 4)} == {64_000}
    feas = check_feasibility(parse_topology("1P1-1D2"), pinned)
    assert feas.ok and feas.kv_tokens == {"prefill": 64_000, "decode": 64_000}
    small = profile(engine={"num_gpu_blocks_override": 10})
    why = check_feasibility(parse_topology("2A1"), small).reason
    assert "num_gpu_blocks_override gives a KV pool of 640 tokens" in why


def test_kv_pool_override_reaches_the_simulator_the_mocker_and_the_dgd(tmp_path: Path) -> None:
    p = profile(engine={"num_gpu_blocks_override": 1000})
    topo = parse_topology("1P1-1D2")
    plan = plan_timing(p, topo, tmp_path, timing="mocker")
    stack = DynamoStack(p, topo, python=Path("python3"), model_dir=tmp_path, plan=plan, work_dir=tmp_path / "w")
    for role, tp in topo.worker_tps():
        argv = stack.mocker_argv(role, tp)
        assert argv[argv.index("--num-gpu-blocks-override") + 1] == "1000"
    args = worker_args(p, "decode", 2)
    assert args[args.index("--num-gpu-blocks-override") + 1] == "1000"
    sglang = profile(engine={"num_gpu_blocks_override": 1000}, dynamo={"framework": "sglang"})
    args = worker_args(sglang, "agg", 1)
    assert args[args.index("--max-total-tokens") + 1] == str(1000 * 64)
    assert "--num-gpu-blocks-override" not in worker_args(profile(), "agg", 1)  # unset: the engine computes it


def test_kv_transfer_figures_reach_the_mocker(tmp_path: Path) -> None:
    p = profile(kv_transfer={"bandwidth_gb_s": 25, "bytes_per_token": 4096})
    topo = parse_topology("1P1-1D1")
    stack = DynamoStack(
        p, topo, python=Path("python3"), model_dir=tmp_path, plan=plan_timing(p, topo, tmp_path, timing="mocker"),
        work_dir=tmp_path / "w",
    )  # fmt: skip
    argv = stack.mocker_argv("prefill", 1)
    assert argv[argv.index("--kv-transfer-bandwidth") + 1] == "25"
    assert argv[argv.index("--kv-bytes-per-token") + 1] == "4096"
    default = DynamoStack(
        profile(), topo, python=Path("python3"), model_dir=tmp_path,
        plan=plan_timing(profile(), topo, tmp_path, timing="mocker"), work_dir=tmp_path / "w2",
    )  # fmt: skip
    argv = default.mocker_argv("decode", 1)
    assert argv[argv.index("--kv-bytes-per-token") + 1] == str(int(profile().model.kv_bytes_per_token))
