"""A tiny, fully local HF-style model directory (config + tokenizer, no weights) for the mocker.

Dynamo's frontend and ``python -m dynamo.mocker --model-path DIR`` only need a tokenizer and a
config, so autotune builds one itself instead of downloading a model (no network here or in CI).
The tokenizer is a byte-level BPE trained in ~2 s on the Python stdlib sources (a deterministic
corpus present on every machine) with Llama-3 special tokens and chat template.

Besides the usual files it writes ``autotune_words.json``: vocabulary entries that encode to
exactly one token when written as `` word``, and the chat template's token overhead. The load
generator builds prompts from them so a prompt of N words is N tokens, without importing
``tokenizers`` in autotune's own environment.

This module imports only the standard library at top level: ``ensure_model_dir`` runs it as a
script under the Dynamo venv's python, which has ``tokenizers`` (``scripts/setup_dynamo.sh``).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|pad|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
WORDS_FILE = "autotune_words.json"
BUILD_VERSION = 1  # bump when the files written here change
REQUIRED = ("tokenizer.json", "tokenizer_config.json", "config.json", WORDS_FILE)


def build(out: str, vocab_size: int = 4096) -> int:
    """Write the model directory into ``out``; returns the vocabulary size. Needs ``tokenizers``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    os.makedirs(out, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))[:200]
    if not files:
        raise RuntimeError("no training corpus found (Python stdlib sources missing)")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train(files, trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B", special_tokens=[("<|begin_of_text|>", bos)]
    )
    tok.save(os.path.join(out, "tokenizer.json"))
    vocab = tok.get_vocab_size()
    eot, eos = tok.token_to_id("<|eot_id|>"), tok.token_to_id("<|end_of_text|>")

    def dump(name: str, obj: object) -> None:
        with open(os.path.join(out, name), "w") as f:
            json.dump(obj, f, indent=1)

    dump(
        "tokenizer_config.json",
        {
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|eot_id|>",
            "pad_token": "<|pad|>",
            "model_max_length": 131072,
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": False,
            "clean_up_tokenization_spaces": False,
            "chat_template": CHAT_TEMPLATE,
        },
    )
    dump(
        "special_tokens_map.json", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<|pad|>"}
    )
    dump(
        "config.json",
        {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": vocab,
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "max_position_embeddings": 131072,
            "torch_dtype": "bfloat16",
            "bos_token_id": bos,
            "eos_token_id": [eos, eot],
            "rope_theta": 500000.0,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
        },
    )
    dump("generation_config.json", {"bos_token_id": bos, "eos_token_id": [eos, eot]})
    dump(WORDS_FILE, _word_table(tok))
    return vocab


def _word_table(tok: Any) -> dict[str, object]:  # tok: a tokenizers.Tokenizer (optional, lazy import)
    """Single-token words (checked by re-encoding) and the chat template's fixed token overhead."""
    words: list[str] = []
    word_ids: list[int] = []
    for piece, tid in sorted(tok.get_vocab().items()):
        if not piece.startswith("Ġ"):
            continue
        word = piece[1:]
        if not (word.isascii() and word.isalpha() and 2 <= len(word) <= 12):
            continue
        ids = tok.encode(" " + word, add_special_tokens=False).ids
        if ids == [tid]:
            words.append(word)
            word_ids.append(tid)
    # Chat overhead: bos + "<|start_header_id|>user<|end_header_id|>\n\n" ... "<|eot_id|>" + assistant header.
    probe = " ".join(words[:8])
    text = (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        + " "
        + probe
        + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    chat_total = len(tok.encode(text, add_special_tokens=False).ids)
    plain = len(tok.encode(" " + probe, add_special_tokens=False).ids)
    return {
        "version": BUILD_VERSION,
        "words": words,
        "word_ids": word_ids,
        "chat_overhead_tokens": chat_total - plain,
        "vocab_size": tok.get_vocab_size(),
    }


def is_complete(path: Path) -> bool:
    """A directory built by this version of the builder, with every file the stack needs."""
    try:
        words = json.loads((path / WORDS_FILE).read_text())
    except (OSError, ValueError):
        return False
    return words.get("version") == BUILD_VERSION and all((path / f).is_file() for f in REQUIRED)


def ensure_model_dir(path: Path, python: str, timeout_s: float = 120.0) -> Path:
    """Build the model directory with ``python`` (a Dynamo venv interpreter) unless it exists.

    Built into a sibling temp dir and renamed, so a crash or a concurrent builder never leaves a
    half-written directory that a later run would take for complete.
    """
    path = Path(path)
    if is_complete(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    proc = subprocess.run(
        [python, str(Path(__file__).resolve()), str(tmp)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "PYTHONNOUSERSITE": "1"},
    )
    if proc.returncode != 0 or not is_complete(tmp):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"building the tiny model dir with {python} failed: {' | '.join(tail)}")
    try:
        os.replace(tmp, path)
    except OSError:  # another process won the race; its directory is as good as ours
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_words(path: Path) -> dict[str, object]:
    """The word table written by ``build``."""
    return json.loads((Path(path) / WORDS_FILE).read_text())


def digest(path: Path) -> str:
    """Short hash of the tokenizer: provenance for results measured with this directory."""
    return hashlib.sha256((Path(path) / "tokenizer.json").read_bytes()).hexdigest()[:12]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: model_dir.py OUT_DIR")
    n = build(sys.argv[1])
    print(f"wrote {os.path.abspath(sys.argv[1])} (vocab {n})")
