"""Load a policy: a Hugging Face causal LM by hub id or local dir, or a random Qwen3 built offline.

Random models (`tiny-random-qwen3`, `micro-qwen3`, `qwen3-0.6b-shape`) are built from a `Qwen3Config` with
seeded weights and use the byte-level BPE tokenizer shipped in `data/tokenizer/` (Qwen chat tokens and
template): smoke, tests and CI never touch the network.

Dtype: `--dtype fp32|bf16` sets the *base* weights' dtype on any device (default: bf16 on CUDA, fp32 on CPU),
so the bf16 path a GPU run takes can be exercised on CPU. The adapter knobs, its fixed matrices, the hack basis
and the optimizer state stay fp32 whatever this is (adapter.py says why).

`model_config(name)` reads a model's architecture without its weights: the random configs, a local dir's
config.json, a config shipped in `data/models/` for a hub id (offline; `Qwen/Qwen3-4B`), else the hub.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from loguru import logger
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedTokenizerBase,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from projected_grpo.files import REPO_ROOT

TOKENIZER_DIR = REPO_ROOT / "data" / "tokenizer"
# Public config.json files of hub models, shipped so the plan and the meta-device skeleton work offline.
SHIPPED_CONFIGS = {"Qwen/Qwen3-4B": REPO_ROOT / "data" / "models" / "qwen3-4b"}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

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


def random_qwen3_config(name: str, vocab_size: int, attn: str = "sdpa") -> Qwen3Config:
    if name not in RANDOM_CONFIGS:
        raise ValueError(f"unknown random model {name!r}; expected one of {sorted(RANDOM_CONFIGS)}")
    return Qwen3Config(
        vocab_size=vocab_size,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        rope_theta=10000.0,
        attn_implementation=attn,
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


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """The base weights' dtype: `fp32` | `bf16`, or None for the device default (bf16 on CUDA, fp32 elsewhere)."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown --dtype {dtype!r}; expected one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def attn_implementation(device: torch.device, dtype: torch.dtype) -> str:
    """flash-attn 2 on CUDA in a 16-bit dtype when it is installed (it has no fp32 kernel), else sdpa."""
    if device.type != "cuda" or dtype == torch.float32:
        return "sdpa"
    try:
        import flash_attn  # noqa: F401

        return "flash_attention_2"
    except ImportError:
        return "sdpa"


def model_config(name: str) -> PretrainedConfig:
    """The architecture of `name` without loading weights (see the module docstring for the lookup order)."""
    if name in RANDOM_CONFIGS:
        return random_qwen3_config(name, len(load_tokenizer(name)))
    local = Path(name) if Path(name, "config.json").exists() else SHIPPED_CONFIGS.get(name)
    return AutoConfig.from_pretrained(str(local) if local else name)


def load_model(
    name: str, device: str | None = None, seed: int = 0, dtype: str | None = None
) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    """(model, tokenizer), base weights in `dtype` (None: bf16 on CUDA, fp32 on CPU). Attention: flash-attn 2
    on CUDA in bf16 when installed, else sdpa."""
    dev = pick_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    tok = load_tokenizer(name)
    attn = attn_implementation(dev, torch_dtype)
    if name in RANDOM_CONFIGS:
        hf_cfg = random_qwen3_config(name, len(tok), attn)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Qwen3ForCausalLM(hf_cfg)  # initialised in fp32, then cast: one init for every dtype
        model.to(dev, torch_dtype)
    else:
        logger.info(f"loading {name} on {dev} as {torch_dtype} with {attn} attention")
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype, attn_implementation=attn).to(dev)
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok
