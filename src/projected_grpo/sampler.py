"""Our own decoding loop for the GRPO rollouts: what `rollout.sample` asks of HF `generate`, with less work.

Same distribution as `generate(do_sample=True, temperature, top_p, top_k=0)` (and the same tokens greedily),
same output layout (new tokens per row, padded after eos), but on a small CPU model generate's per-token
overhead is most of the cost. What this loop does that generate does not (figures: the journal and
`scripts/bench_sampler.py`):
  - each prompt is prefilled once and its KV cache copied to its n samples (generate prefills every sample);
  - the KV cache is preallocated for prompt + max_new tokens (DynamicCache re-concatenates it every token);
  - top-p by rejection instead of a vocabulary sort (`sample_top_p`), drawing by inverse CDF;
  - the decode steps' attention mask is built once, not from the 2-D mask every token.

Which sampler runs is `rollout.sample`'s `sampler` argument: "auto" is this loop on CPU and `generate` on CUDA,
where a real model's step is matmul-bound and generate's fused paths (and later vLLM) are the better bet; we
have not measured this loop on a GPU.
"""

from __future__ import annotations

import inspect

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

@torch.no_grad()
def generate(
    model,
    input_ids: Int[Tensor, "p t"],
    attention_mask: Int[Tensor, "p t"],
    n: int,
    *,
    max_new: int,
    eos_id: int,
    pad_id: int,
    temperature: float,
    top_p: float,
    greedy: bool = False,
) -> Int[Tensor, "rows new"]:
    """New tokens of n samples per left-padded prompt, rows grouped by prompt (prompt i: rows i*n .. i*n+n-1).

    A row stops at eos (kept) and is padded with pad_id after it; decoding stops when every row has stopped or
    after max_new tokens, as generate does."""
    prompt_len = input_ids.shape[1]
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    prefill_cache = DynamicCache()
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
                logits_to_keep=1, **{cache_kw: prefill_cache})
    # n samples share their prompt's prefill: copy logits, cache, mask and positions n times
    logits = out.logits[:, -1].float().repeat_interleave(n, 0)
    cache = _preallocated(prefill_cache, n, prompt_len + max_new)
    rows = logits.shape[0]
    mask = torch.cat([attention_mask.repeat_interleave(n, 0), attention_mask.new_ones(rows, max_new)], dim=1)
    decode_mask = _decode_mask(model, mask)
    position = position_ids[:, -1:].repeat_interleave(n, 0)

    new = torch.full((rows, max_new), pad_id, dtype=torch.long, device=input_ids.device)
    done = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
    for step in range(max_new):
        token = logits.argmax(-1) if greedy else sample_top_p(logits, temperature, top_p)
        token = token.masked_fill(done, pad_id)
        new[:, step] = token
        done |= token == eos_id
        if step == max_new - 1 or bool(done.all()):
            return new[:, : step + 1]
        position = position + 1
        out = model(input_ids=token[:, None], attention_mask=decode_mask(prompt_len + step + 1), position_ids=position,
                    use_cache=True, logits_to_keep=1, **{cache_kw: cache})
        logits = out.logits[:, -1].float()
    return new  # max_new == 0


def sample_top_p(logits: Float[Tensor, "b vocab"], temperature: float, top_p: float, max_rounds: int = 16) -> Int[Tensor, " b"]:
    """Temperature, then top-p as HF's TopPLogitsWarper (keep the most probable tokens until their mass reaches
    top_p, the token that crosses it included), then one draw from the renormalised nucleus.

    Without sorting the vocabulary: draw from the whole distribution and keep the draw if the tokens more probable
    than it hold less than top_p (it is in the nucleus), else draw again (rejection sampling, so exactly the
    nucleus distribution). The nucleus holds >= top_p of the mass, so a draw is kept with probability >= top_p;
    rows still rejected after max_rounds (possible only for small top_p) take the sorted path."""
    probs = torch.softmax(logits / temperature, dim=-1)
    token = _inverse_cdf(probs)
    if top_p >= 1.0:
        return token
    for _ in range(max_rounds):
        rejected = _mass_above(probs, token) >= top_p
        if not bool(rejected.any()):
            return token
        token = torch.where(rejected, _inverse_cdf(probs), token)
    rejected = _mass_above(probs, token) >= top_p
    top, ids = probs[rejected].sort(dim=-1, descending=True)
    keep = (top.cumsum(-1) - top) < top_p  # the first token always stays: nothing is above it
    token[rejected] = ids.gather(-1, _inverse_cdf(top * keep)[:, None]).squeeze(-1)
    return token


def _mass_above(probs: Float[Tensor, "b vocab"], token: Int[Tensor, " b"]) -> Float[Tensor, " b"]:
    """Probability mass of the tokens strictly more probable than `token`, per row."""
    p = probs.gather(-1, token[:, None])
    return (probs * (probs > p)).sum(-1)


def _inverse_cdf(weights: Float[Tensor, "b k"]) -> Int[Tensor, " b"]:
    """One index per row drawn with probability proportional to weights: the first whose cumulative weight
    exceeds a uniform in [0, total). (torch.multinomial draws one exponential per entry: slower on CPU.)"""
    cdf = weights.cumsum(-1)
    u = torch.rand(cdf.shape[0], 1, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
    return (cdf <= u).sum(-1).clamp(max=cdf.shape[-1] - 1)  # clamp: float round-off at the top end


def _decode_mask(model, mask: Int[Tensor, "b total"]):
    """kv_length -> the attention mask of a one-token decode step.

    For sdpa attention on full-attention layers we build the 4-D boolean mask once (a query attends to every
    non-pad key) and pass views of it as the prepared mask mapping generate itself passes; building it from the
    2-D mask every token cost ~20% of a decode step on the smoke model. Other models get the 2-D mask."""
    config = model.config
    layer_types = set(getattr(config, "layer_types", None) or ["?"])
    if getattr(config, "_attn_implementation", None) != "sdpa" or layer_types != {"full_attention"}:
        return lambda kv_length: mask[:, :kv_length]
    if bool(mask.all()):  # no padding: no mask at all (sdpa's fastest path)
        return lambda kv_length: {"full_attention": None}
    full = mask.bool()[:, None, None, :]
    return lambda kv_length: {"full_attention": full[..., :kv_length]}


class _PreallocatedLayer(DynamicLayer):
    """A DynamicLayer whose keys/values are views into a buffer sized for the whole generation: an update
    writes the new position in place instead of concatenating (copying) the whole cache."""

    def __init__(self, keys: Float[Tensor, "b h t d"], values: Float[Tensor, "b h t d"], capacity: int):
        super().__init__()
        b, h, t, _ = keys.shape
        self._keys = keys.new_empty(b, h, capacity, keys.shape[-1])
        self._values = values.new_empty(b, h, capacity, values.shape[-1])
        self._keys[:, :, :t], self._values[:, :, :t] = keys, values
        self.keys, self.values = self._keys[:, :, :t], self._values[:, :, :t]
        self.device, self.is_initialized = keys.device, True

    def update(self, key_states, value_states, *args, **kwargs):
        t, s = self.keys.shape[-2], key_states.shape[-2]
        self._keys[:, :, t : t + s], self._values[:, :, t : t + s] = key_states, value_states
        self.keys, self.values = self._keys[:, :, : t + s], self._values[:, :, : t + s]
        return self.keys, self.values


def _preallocated(prefill: DynamicCache, n: int, capacity: int) -> Cache:
    layers = [_PreallocatedLayer(layer.keys.repeat_interleave(n, 0), layer.values.repeat_interleave(n, 0), capacity)
              for layer in prefill.layers]
    return Cache(layers=layers)
