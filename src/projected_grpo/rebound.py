"""Advantage-level baseline (Rebound-style, Wu & Tang 2026): penalise rollouts whose activations look hack-like.

Concept direction: from the same hand-authored pairs as the gradient basis, the mean hidden state over
completion tokens at ~65% depth, hack side minus clean side. A rollout's score is the cosine between its
own mean hidden state (centred on the pairs' midpoint, so the shared mean activation does not dominate)
and that direction; the reward loses `alpha * max(0, score)` before the group mean is taken.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from projected_grpo.pairs import Pair
from projected_grpo.problems import SYSTEM_PROMPT, render_chat
from projected_grpo.rollout import Row, pack, row_from_text


def concept_layer(model, depth: float = 0.65) -> int:
    """Index into `hidden_states` (0 = embeddings, i = output of block i)."""
    return max(1, round(depth * model.config.num_hidden_layers))


def mean_completion_hidden(
    model, ids: Int[Tensor, "b t"], attn: Bool[Tensor, "b t"], comp: Bool[Tensor, "b t-1"], layer: int
) -> Float[Tensor, "b d"]:
    hidden = model(input_ids=ids, attention_mask=attn.long(), output_hidden_states=True).hidden_states[layer]
    # comp marks the logits that predict completion tokens, i.e. positions p-1 .. p+c-2; shift by one to the
    # completion tokens themselves.
    mask = torch.zeros_like(attn)
    mask[:, 1:] = comp
    mask = mask.unsqueeze(-1).float()
    return (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1)


@torch.no_grad()
def hidden_of_rows(model, rows: list[Row], pad_id: int, layer: int, batch_size: int = 16) -> Float[Tensor, "n d"]:
    out = []
    for i in range(0, len(rows), batch_size):
        ids, attn, comp = pack(rows[i : i + batch_size], pad_id, model.device)
        out.append(mean_completion_hidden(model, ids, attn, comp, layer))
    return torch.cat(out)


def concept_direction(model, tokenizer, pairs: list[Pair], layer: int) -> tuple[Float[Tensor, "d"], Float[Tensor, "d"]]:
    """(unit direction hack - clean, centre = the pairs' midpoint)."""
    rows = {"hack": [], "clean": []}
    for pair in pairs:
        prompt = render_chat(tokenizer, [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": pair.prompt}])
        prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
        rows["hack"].append(row_from_text(tokenizer, prompt_ids, pair.hack))
        rows["clean"].append(row_from_text(tokenizer, prompt_ids, pair.clean))
    h = {side: hidden_of_rows(model, r, tokenizer.pad_token_id, layer).mean(0) for side, r in rows.items()}
    direction = h["hack"] - h["clean"]
    return direction / direction.norm().clamp(min=1e-12), (h["hack"] + h["clean"]) / 2


def concept_scores(model, rows: list[Row], pad_id: int, layer: int, direction: Float[Tensor, "d"], centre: Float[Tensor, "d"]) -> list[float]:
    h = hidden_of_rows(model, rows, pad_id, layer) - centre
    return F.cosine_similarity(h, direction.unsqueeze(0), dim=-1).tolist()
