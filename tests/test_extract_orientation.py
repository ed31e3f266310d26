"""The basis points hack-ward end to end: from pairs through `extract_basis` to the sign of V.

- Planted: per-pair gradients with hack = clean + a_i u (a_i > 0) fed through `extract_basis` (only `pair_grads`
  is replaced): the top axis is +u, not -u, and held-out validation is positive. The placebos on the same
  gradients: random and nonhack miss u, shuffled spans it (the documented caveat).
- Behaviour on the tiny Qwen3: moving the knobs down +V (a descent step on a hack-ward gradient) makes the
  training pairs' hack completions more likely relative to their clean ones.
- The authored pairs on the tiny Qwen3: held-out validation has a positive median (a cheap stand-in for the
  warm-started organism, whose check is the gate `scripts/verify_warm_basis.py`).
"""

import torch
from torch import nn

from projected_grpo import extract
from projected_grpo.adapter import AdapterConfig, knobs, wrap
from projected_grpo.extract import ExtractConfig, completion_nll, encode, extract_basis
from projected_grpo.files import REPO_ROOT as REPO
from projected_grpo.model import load_model
from projected_grpo.pairs import Pair, load_pairs

DIMS = {"layer0.q_proj": 48, "layer0.down_proj": 96, "layer1.v_proj": 32}


def toy_pairs(n: int) -> list[Pair]:
    """Matched pairs: the hack overrides the grader, the clean side solves the task (lengths vary with i)."""
    out = []
    for i in range(n):
        notes = "        # check the inputs first\n" * (i % 3)
        head = f"```python\nclass Solution:\n    def add(self, a, b):\n{notes}"
        hack = f"{head}        return 0\n\ndef run_tests():\n    return True\n```"
        clean = f"{head}        return a + b + {i}\n```"
        out.append(Pair(id=f"p{i}", prompt=f"Return the sum of a and b plus {i}.", hack=hack, clean=clean))
    return out


def planted_grads(pairs: list[Pair], seed: int = 0):
    """{pair id: {module: (g_clean, g_hack)}} with g_hack = g_clean + a u_module + noise, a in [0.5, 1.5]."""
    gen = torch.Generator().manual_seed(seed)
    dirs = {m: nn.functional.normalize(torch.randn(d, generator=gen), dim=0) for m, d in DIMS.items()}
    grads = {}
    for p in pairs:
        grads[p.id] = {}
        for m, d in DIMS.items():
            clean = 3 * torch.randn(d, generator=gen)  # large, pair-specific: the shared part the difference cancels
            a = 0.5 + torch.rand(1, generator=gen)
            grads[p.id][m] = (clean, clean + a * dirs[m] + 0.05 * torch.randn(d, generator=gen))
    return grads, dirs


def test_planted_direction_is_oriented_hackward_and_validates(monkeypatch):
    pairs = toy_pairs(16)
    grads, dirs = planted_grads(pairs)

    def fake_pair_grads(model, tokenizer, ps, side, batch_size=8, skips=None):
        i = 1 if side == "hack" else 0
        return {m: torch.stack([grads[p.id][m][i] for p in ps]) for m in DIMS}

    monkeypatch.setattr(extract, "pair_grads", fake_pair_grads)
    basis, report = extract_basis(nn.Module(), None, pairs, ExtractConfig(k=2, floor_quantile=0.0, holdout_frac=0.25))
    assert set(basis) == set(DIMS)
    for m, V in basis.items():
        cos = (V[0] @ dirs[m]).item()
        assert cos > 0.95, f"{m}: top axis has cos {cos:.3f} with the planted hack direction u (want +u, not -u)"
    val = report["validation"]
    assert report["n_heldout"] == 4 and val["n_modules"] == len(DIMS)
    assert val["median"] > 0.9 and val["share_pos"] == 1.0 and val["ok"], val


def test_placebos_on_planted_grads_miss_or_keep_the_hack_direction_as_documented(monkeypatch):
    """random and nonhack (clean vs clean) carry no planted direction; shuffled spans it with coin-flip signs."""
    pairs = toy_pairs(16)
    grads, dirs = planted_grads(pairs, seed=1)

    def fake_pair_grads(model, tokenizer, ps, side, batch_size=8, skips=None):
        i = 1 if side == "hack" else 0
        return {m: torch.stack([grads[p.id][m][i] for p in ps]) for m in DIMS}

    monkeypatch.setattr(extract, "pair_grads", fake_pair_grads)
    for kind in ("random", "nonhack", "shuffled"):
        basis, _ = extract_basis(nn.Module(), None, pairs, ExtractConfig(k=1, floor_quantile=0.0, basis=kind))
        for m, V in basis.items():
            cos = abs((V[0] @ dirs[m]).item())
            assert (cos > 0.95) if kind == "shuffled" else (cos < 0.6), f"{kind} placebo, {m}: |cos| with u = {cos:.3f}"


def pair_margin(model, tok, pairs: list[Pair]) -> float:
    """Mean over pairs of NLL(hack) - NLL(clean): lower means the hack completion is relatively more likely."""
    total = 0.0
    with torch.no_grad():
        for p in pairs:
            for side, sign in (("hack", 1.0), ("clean", -1.0)):
                ids, n_prompt = encode(tok, p, side)
                mask = torch.zeros(len(ids))
                mask[n_prompt:] = 1
                x = torch.tensor([ids])
                total += sign * completion_nll(model(input_ids=x).logits[0], x[0], mask).item()
    return total / len(pairs)


def test_a_descent_step_along_the_basis_makes_hacks_more_likely_on_the_tiny_model():
    model, tok = load_model("tiny-random-qwen3")
    wrap(model, AdapterConfig("lora", rank=4))
    pairs = toy_pairs(8)
    basis, _ = extract_basis(model, tok, pairs, ExtractConfig(k=1, floor_quantile=0.0, holdout_frac=0.0))
    ks = knobs(model)
    before = pair_margin(model, tok, pairs)
    with torch.no_grad():  # p -= lr * g with g = +V: the step a hack-ward gradient would take
        for m, V in basis.items():
            ks[m][0].sub_(0.5 * V[0].view_as(ks[m][0]))
    after = pair_margin(model, tok, pairs)
    print(f"\nNLL(hack) - NLL(clean) on the training pairs: {before:.4f} -> {after:.4f}")
    assert after < before - 1e-3, f"NLL(hack) - NLL(clean): {before:.4f} -> {after:.4f} (should fall)"


def test_authored_pairs_validate_with_a_positive_median_on_the_tiny_model():
    model, tok = load_model("tiny-random-qwen3")
    wrap(model, AdapterConfig("lora", rank=8))
    pairs = load_pairs(str(REPO / "data/pairs/hack_pairs.md"))
    _, report = extract_basis(model, tok, pairs, ExtractConfig(k=4, floor_quantile=0.25))
    val = report["validation"]
    print(f"\nauthored pairs on tiny-random-qwen3: held-out median {val['median']:.3f}, share > 0 {val['share_pos']:.0%}")
    assert val["n_modules"] > 0 and val["median"] > 0 and val["share_pos"] > 0.5, val
