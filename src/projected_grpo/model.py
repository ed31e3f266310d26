"""Load a policy: a Hugging Face causal LM by hub id or local dir, or a random Qwen3 built offline.

Random models (`tiny-random-qwen3`, `micro-qwen3`, `qwen3-0.6b-shape`) are built from a `Qwen3Config` with
seeded weights and use the byte-level BPE tokenizer shipped in `data/tokenizer/` (Qwen chat tokens and
template): smoke, tests and CI never touch the network.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from loguru import logger
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase, Qwen3Config, Qwen3ForCausalLM

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "data" / "tokenizer"

# Shapes of the offline random models. `qwen3-0.6b-shape` is Qwen3-0.6B's architecture (28 layers,
# d=1024, GQA 16/8, head_dim 128) with our small vocabulary: it proves the real layout wraps and trains.
RANDOM_CONFIGS: dict[str, dict] = {
    "tiny-random-qwen3": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16
    ),
    "micro-qwen3": dict(
        hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=64
    ),
    "qwen3-0.6b-shape": dict(
        hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128
    ),
}


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    source = str(TOKENIZER_DIR) if name in RANDOM_CONFIGS else name
    tok = AutoTokenizer.from_pretrained(source)
    tok.padding_side = "left"  # generation appends on the right
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def random_qwen3_config(name: str, vocab_size: int) -> Qwen3Config:
    if name not in RANDOM_CONFIGS:
        raise ValueError(f"unknown random model {name!r}; expected one of {sorted(RANDOM_CONFIGS)}")
    return Qwen3Config(
        vocab_size=vocab_size,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        attn_implementation="sdpa",
        **RANDOM_CONFIGS[name],
    )


def check_model_source(name: str) -> None:
    """Fail at once, in one line, when `name` cannot be loaded: not a random model, not a local directory with a
    config.json, not in the Hugging Face cache, and the hub unreachable or HF_HUB_OFFLINE set. (Left to
    transformers, an unreachable hub costs ~30 s of retries and a 100-line traceback, after the data loaded.)"""
    if name in RANDOM_CONFIGS:
        return
    local = Path(name)
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise FileNotFoundError(f"--model {name}: a directory without config.json (not a saved Hugging Face model)")
        return
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"--model {name}: no such directory")
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return  # cached: loads offline
    hint = f"a local directory, a cached hub id, or a random model ({', '.join(RANDOM_CONFIGS)})"
    if constants.HF_HUB_OFFLINE:
        raise ValueError(f"--model {name}: not a local directory and not in the Hugging Face cache, and HF_HUB_OFFLINE is set; use {hint}")
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as e:
        raise ValueError(f"--model {name}: not a local directory, not in the Hugging Face cache, and {host} cannot be reached "
                         f"({e.strerror or e}); use {hint}") from None


def pick_device(device: str | None = None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_model(name: str, device: str | None = None, seed: int = 0) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """(model, tokenizer). On CUDA: bf16 with flash-attn 2 when installed, else sdpa. On CPU: fp32 + sdpa."""
    dev = pick_device(device)
    tok = load_tokenizer(name)
    if name in RANDOM_CONFIGS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Qwen3ForCausalLM(random_qwen3_config(name, len(tok)))
        model.to(dev)
    else:
        dtype, attn = (torch.bfloat16, _cuda_attn_implementation()) if dev.type == "cuda" else (torch.float32, "sdpa")
        logger.info(f"loading {name} on {dev} as {dtype} with {attn} attention")
        model = AutoModelForCausalLM.from_pretrained(name, torch_dtype=dtype, attn_implementation=attn).to(dev)
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def _cuda_attn_implementation() -> str:
    try:
        import flash_attn  # noqa: F401

        return "flash_attention_2"
    except ImportError:
        return "sdpa"
