"""A model outside the catalog: its architecture inline in the profile or from a Hugging Face ``config.json``.

The catalog (``catalog/models.yaml``) covers the paper's models; a user's own model is described by
its architecture numbers, either written in the profile's ``model`` section or read from the
``config.json`` that ships with its weights (``model: {hf_config: path}``, relative to the profile
file). Parameter counts, when not given, follow from the architecture, so a new model needs only
what its config says.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from autotune.errors import ProfileError

MAX_CONFIG_BYTES = 4 << 20  # a config.json is a few KiB; anything this large is not one

# Hugging Face config key -> ModelSpec field. The first key present wins (Mixtral: num_local_experts,
# Qwen-MoE: num_experts); head_dim and num_key_value_heads are absent from older configs.
HF_KEYS: dict[str, tuple[str, ...]] = {
    "layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "hidden": ("hidden_size", "n_embd", "d_model"),
    "heads": ("num_attention_heads", "n_head"),
    "kv_heads": ("num_key_value_heads", "num_kv_heads"),
    "head_dim": ("head_dim",),
    "ffn": ("intermediate_size", "ffn_hidden_size", "n_inner"),
    "experts": ("num_local_experts", "num_experts", "n_routed_experts"),
    "experts_per_token": ("num_experts_per_tok", "moe_topk"),
    "vocab": ("vocab_size",),
    "max_context_tokens": ("max_position_embeddings", "max_sequence_length", "seq_length"),
}
# torch_dtype names -> profile dtypes (fp32 weights are not served; the profile must say what is)
TORCH_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float8_e4m3fn": "fp8"}
# the architecture numbers that make a mapping an inline model rather than a catalog reference
ARCH_FIELDS = ("layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab")


def _read_config(path: Path, src: str, field: str) -> dict[str, Any]:
    try:
        if not path.is_file():
            raise ProfileError(src, field, f"{path}: file not found" if not path.exists() else f"{path}: not a file")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ProfileError(src, field, f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB; not a config.json")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(src, field, f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ProfileError(src, field, f"{path}: not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(src, field, f"{path}: bad JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ProfileError(src, field, f"{path}: expected a JSON object, got {type(data).__name__}")
    # multimodal configs keep the language model's numbers under text_config
    text_cfg = data.get("text_config")
    return {**data, **text_cfg} if isinstance(text_cfg, dict) else data


def _int_value(value: Any, path: Path, key: str, src: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ProfileError(src, field, f"{path}: {key} must be a positive integer, got {value!r}")
    return value


def fields_from_hf_config(path: Path, src: str, field: str = "model.hf_config") -> dict[str, Any]:
    """The ModelSpec fields a Hugging Face ``config.json`` gives (only those it has)."""
    cfg = _read_config(path, src, field)
    out: dict[str, Any] = {}
    for name, keys in HF_KEYS.items():
        key = next((k for k in keys if cfg.get(k) is not None), None)
        if key is not None:
            out[name] = _int_value(cfg[key], path, key, src, field)
    if "experts" in out and isinstance(cfg.get("moe_intermediate_size"), int):
        out["ffn"] = _int_value(cfg["moe_intermediate_size"], path, "moe_intermediate_size", src, field)
    if "kv_heads" not in out and "heads" in out:
        out["kv_heads"] = out["heads"]  # no num_key_value_heads: multi-head attention
    if "head_dim" not in out and "heads" in out and "hidden" in out:
        if out["hidden"] % out["heads"]:
            raise ProfileError(
                src,
                field,
                f"{path}: hidden_size {out['hidden']} is not a multiple of num_attention_heads {out['heads']}",
            )
        out["head_dim"] = out["hidden"] // out["heads"]
    dtype = cfg.get("torch_dtype") or cfg.get("dtype")
    quant = cfg.get("quantization_config")
    if isinstance(quant, dict) and str(quant.get("quant_method", "")).lower() == "fp8":
        out["weight_dtype"] = "fp8"
    elif isinstance(dtype, str) and dtype in TORCH_DTYPES:
        out["weight_dtype"] = TORCH_DTYPES[dtype]
        out["kv_dtype"] = TORCH_DTYPES[dtype]  # vLLM's kv_cache_dtype "auto": the model's dtype
    if isinstance(cfg.get("tie_word_embeddings"), bool):
        out["tied_embeddings"] = cfg["tie_word_embeddings"]
    return out


def expand_hf_config(data: dict[str, Any], base_dir: Path, src: str) -> None:
    """Replace ``model.hf_config`` (a path relative to ``base_dir``) by the fields it gives, under the
    profile's own: a number written in the profile wins over the config's."""
    model = data.get("model")
    if not isinstance(model, dict) or "hf_config" not in model:
        return
    model = dict(model)
    ref = model.pop("hf_config")
    if not isinstance(ref, str) or not ref:
        raise ProfileError(src, "model.hf_config", "expected the path of a config.json")
    if "base" in model:
        raise ProfileError(src, "model.hf_config", "give either base (a catalog model) or hf_config, not both")
    data["model"] = {**fields_from_hf_config(base_dir / ref, src), **model}


def is_inline(entry: dict[str, Any]) -> bool:
    """A ``model`` mapping that describes its architecture itself rather than naming a catalog entry."""
    return "base" not in entry and any(f in entry for f in ARCH_FIELDS)


def _positive_ints(entry: dict[str, Any], names: tuple[str, ...]) -> bool:
    return all(isinstance(entry.get(n), int) and not isinstance(entry.get(n), bool) and entry[n] > 0 for n in names)


def derive_params(entry: dict[str, Any]) -> dict[str, Any]:
    """``params_b`` (and, for a mixture of experts, ``active_params_b``) from the architecture when the
    entry does not give them: attention (Q, K, V, O), a gated MLP of three matrices per expert, the
    router, and the embedding and output matrices (one when tied). Norms are left out (< 0.01 %).
    Checked on the catalog: Llama-3.1-70B 70.55 vs 70.6 B, Mixtral-8x7B 46.70 / 12.88 vs 46.7 / 12.9 B;
    a model without a gated MLP (Nemotron's squared ReLU: two matrices) must give ``params_b`` itself."""
    needed = ("layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab")
    if "params_b" in entry or not _positive_ints(entry, needed):
        return entry  # given, or a bad field that validation will name
    h, hd = entry["hidden"], entry["head_dim"]
    experts = entry.get("experts", 1)
    top_k = entry.get("experts_per_token", 1)
    if not _positive_ints({"e": experts, "k": top_k}, ("e", "k")):
        return entry
    attention = h * entry["heads"] * hd * 2 + 2 * h * entry["kv_heads"] * hd
    mlp = 3 * h * entry["ffn"]
    router = h * experts if experts > 1 else 0
    embed = entry["vocab"] * h * (1 if entry.get("tied_embeddings") else 2)

    def total(e: int) -> float:
        return (entry["layers"] * (attention + mlp * e + router) + embed) / 1e9

    out = {**entry, "params_b": math.ceil(total(experts) * 1000) / 1000}
    if experts > 1 and "active_params_b" not in entry:
        out["active_params_b"] = math.ceil(total(min(top_k, experts)) * 1000) / 1000
    return out
