"""Build the offline tokenizer shipped in data/tokenizer/ (run once; the output is committed).

A byte-level BPE (like Qwen's, so any text round-trips) with Qwen3's chat special tokens and a chat
template that renders exactly like Qwen3's for system/user/assistant turns, `enable_thinking=False` included.
Trained on Python's own standard library sources plus this repo's data files, so it needs no download.

    python scripts/make_tokenizer.py [--vocab-size 4096]
"""

import sys
import sysconfig
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from projected_grpo.files import REPO_ROOT as ROOT

OUT = ROOT / "data" / "tokenizer"
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]

# Qwen3's template, reduced to the turns this project uses (no tools). With enable_thinking=False the
# generation prompt gets an empty think block, exactly as Qwen3 renders it.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)


def corpus() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))[:250]
    files += sorted((ROOT / "data").rglob("*.jsonl")) + sorted((ROOT / "data").rglob("*.md"))
    files += sorted((ROOT / "src").rglob("*.py"))
    return [f.read_text(errors="ignore") for f in files]


def main(vocab_size: int = 4096) -> None:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHAT_TEMPLATE
    )
    fast.model_max_length = 32768
    OUT.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(OUT)
    print(f"wrote {OUT} with {len(fast)} tokens")


if __name__ == "__main__":
    main(int(sys.argv[sys.argv.index("--vocab-size") + 1]) if "--vocab-size" in sys.argv else 4096)
