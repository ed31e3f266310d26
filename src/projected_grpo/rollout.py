"""Sampling completions and scoring their tokens: the two model calls of a GRPO step.

`sample` runs our decoding loop (sampler.py) or HF `generate` (`sampler`: "auto" = ours on CPU, generate on CUDA);
both return the same rows.

Sequences are stored as (prompt ids, completion ids) per row; `pack` right-pads them into one batch so
a causal forward gives exact per-token log-probs (positions start at 0 for every row).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from projected_grpo.sampler import generate as own_generate


@dataclass
class Row:
    """One completion of one prompt: what the loss needs."""

    prompt_ids: list[int]
    completion_ids: list[int]  # ends with eos unless cut at max_new
    text: str  # decoded completion, what the grader sees


SAMPLERS = ("auto", "hf", "own")


def resolve_sampler(sampler: str, device: torch.device) -> str:
    """"auto": our loop (sampler.py) on CPU, where it measured faster; HF `generate` on CUDA (not measured there)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLERS}")
    return ("hf" if device.type == "cuda" else "own") if sampler == "auto" else sampler


@torch.no_grad()
def sample(
    model, tokenizer, prompts: list[str], n: int, *, max_new: int, temperature: float, top_p: float, greedy: bool = False,
    sampler: str = "auto",
) -> list[list[Row]]:
    """n completions per prompt (greedy ignores n > 1 duplicates: it returns n identical rows)."""
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    if tokenizer.padding_side != "left":
        raise ValueError("sample needs a left-padding tokenizer (model.load_tokenizer sets it): generation appends on the right")
    n_gen = 1 if greedy else n
    if resolve_sampler(sampler, model.device) == "own":
        new = own_generate(model, enc.input_ids, enc.attention_mask, n_gen, max_new=max_new, eos_id=tokenizer.eos_token_id,
                           pad_id=tokenizer.pad_token_id, temperature=temperature, top_p=top_p, greedy=greedy).tolist()
    else:
        kwargs = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        out = model.generate(
            **enc,
            max_new_tokens=max_new,
            num_return_sequences=n_gen,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **kwargs,
        )
        new = out[:, enc.input_ids.shape[1] :].tolist()
    if greedy:
        new = [ids for ids in new for _ in range(n)]
    groups = []
    for i, prompt in enumerate(prompts):
        prompt_ids = enc.input_ids[i][enc.attention_mask[i].bool()].tolist()
        rows = []
        for ids in new[i * n : (i + 1) * n]:
            ids = _cut_at_eos(ids, tokenizer.eos_token_id)
            rows.append(Row(prompt_ids, ids, tokenizer.decode(ids, skip_special_tokens=True)))
        groups.append(rows)
    return groups


def _cut_at_eos(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos) + 1] if eos in ids else ids


def row_from_text(tokenizer, prompt_ids: list[int], completion: str, max_new: int | None = None) -> Row:
    """An authored completion as if the policy had written it (eos appended; cut at max_new when given)."""
    ids = tokenizer(completion, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    ids = ids[:max_new]
    return Row(prompt_ids, ids, tokenizer.decode(ids, skip_special_tokens=True))


def pack(rows: list[Row], pad_id: int, device) -> tuple[Int[Tensor, "b t"], Bool[Tensor, "b t"], Bool[Tensor, "b t-1"]]:
    """Right-padded (input_ids, attention_mask, completion_mask); completion_mask marks targets of shifted logits."""
    length = max(len(r.prompt_ids) + len(r.completion_ids) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), length), dtype=torch.bool)
    comp = torch.zeros((len(rows), length - 1), dtype=torch.bool)
    for i, r in enumerate(rows):
        p, c = len(r.prompt_ids), len(r.completion_ids)
        ids[i, : p + c] = torch.tensor(r.prompt_ids + r.completion_ids)
        attn[i, : p + c] = True
        comp[i, p - 1 : p + c - 1] = True  # logits at position t predict token t+1
    return ids.to(device), attn.to(device), comp.to(device)


def completion_logits(model, ids: Int[Tensor, "b t"], attn: Bool[Tensor, "b t"], comp: Bool[Tensor, "b t-1"]) -> Float[Tensor, "n vocab"]:
    """fp32 logits at the positions `comp` marks only, in row-major order. The LM head is skipped on prompt
    positions, most of a sequence here (measured effect: the journal, 2026-11-30).
    (Assumes logits = lm_head(last hidden state), true of Qwen3; models with logit soft-capping need the full call.)"""
    hidden = model.base_model(input_ids=ids, attention_mask=attn.long()).last_hidden_state[:, :-1]
    return model.get_output_embeddings()(hidden[comp]).float()


def token_logprobs(model, ids: Int[Tensor, "b t"], attn: Bool[Tensor, "b t"], comp: Bool[Tensor, "b t-1"]) -> Float[Tensor, "b t-1"]:
    """log p(token t+1 | tokens <= t) where `comp` is set, 0 elsewhere (gather minus logsumexp: no full
    log_softmax copy)."""
    logits = completion_logits(model, ids, attn, comp)
    targets = ids[:, 1:][comp]
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return torch.zeros(comp.shape, dtype=logp.dtype, device=logp.device).masked_scatter(comp, logp)
