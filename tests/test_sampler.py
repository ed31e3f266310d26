"""Our sampler (sampler.py) against HF `generate`: same tokens greedily, same distribution when sampling."""

import math

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from projected_grpo.model import load_model
from projected_grpo.rollout import sample
from projected_grpo.sampler import generate, sample_top_p

PROMPTS = ["def add(a, b):", "Write a function that returns the sum of a list of integers, then test it."]  # unequal


@pytest.fixture(scope="module")
def tiny():
    """The tiny random model with its final norm re-drawn: with tied embeddings the untouched model greedily repeats
    one token forever, which would make token-for-token equality nearly vacuous."""
    model, tok = load_model("tiny-random-qwen3", "cpu", seed=0)
    with torch.no_grad():
        model.model.norm.weight.copy_(torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(2)) * 8)
    return model.eval(), tok


def hf_distribution(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """What generate samples from: its own temperature and top-p warpers, then softmax."""
    scores = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(None, logits.clone()))
    return torch.softmax(scores, dim=-1)


def test_greedy_rows_equal_hf_generate_token_for_token(tiny):
    model, tok = tiny
    own = sample(model, tok, PROMPTS, 2, max_new=24, temperature=0.7, top_p=0.95, greedy=True, sampler="own")
    hf = sample(model, tok, PROMPTS, 2, max_new=24, temperature=0.7, top_p=0.95, greedy=True, sampler="hf")
    assert own == hf  # Row dataclasses: prompt ids, completion ids and text
    assert len(own) == 2 and all(len(rows) == 2 and len(rows[0].completion_ids) == 24 for rows in own)


def test_eos_stops_a_row_pads_after_it_and_stops_the_batch_like_generate(tiny):
    model, tok = tiny
    enc = tok(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    free = generate(model, enc.input_ids, enc.attention_mask, 1, max_new=20, eos_id=-1, pad_id=tok.pad_token_id, temperature=1.0, top_p=1.0, greedy=True)
    # call "eos" the first new token row 0 emits after step 2 (the random model rarely emits the real one)
    stop = next(i for i in range(3, 20) if free[0, i] not in free[0, :i])
    eos = int(free[0, stop])
    own = generate(model, enc.input_ids, enc.attention_mask, 1, max_new=20, eos_id=eos, pad_id=tok.pad_token_id, temperature=1.0, top_p=1.0, greedy=True)
    hf = model.generate(**enc, max_new_tokens=20, do_sample=False, eos_token_id=eos, pad_token_id=tok.pad_token_id)
    assert torch.equal(own, hf[:, enc.input_ids.shape[1] :])
    assert own[0, stop] == eos and (own[0, stop + 1 :] == tok.pad_token_id).all() and eos not in own[1].tolist()
    # a batch whose rows all stop ends there
    one = generate(model, enc.input_ids[:1], enc.attention_mask[:1], 1, max_new=20, eos_id=eos, pad_id=tok.pad_token_id, temperature=1.0, top_p=1.0, greedy=True)
    assert one.shape == (1, stop + 1)


def test_a_padded_batch_decodes_as_each_prompt_alone(tiny):
    model, tok = tiny
    batch = sample(model, tok, PROMPTS, 1, max_new=24, temperature=0.7, top_p=0.95, greedy=True, sampler="own")
    alone = [sample(model, tok, [p], 1, max_new=24, temperature=0.7, top_p=0.95, greedy=True, sampler="own")[0] for p in PROMPTS]
    assert batch == alone
    # n copies of each prompt share its prefill: rows i*n .. i*n+n-1 continue prompt i
    enc = tok(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    rows = generate(model, enc.input_ids, enc.attention_mask, 2, max_new=24, eos_id=-1, pad_id=tok.pad_token_id, temperature=1.0, top_p=1.0, greedy=True).tolist()
    assert rows == [r for rows in alone for r in [rows[0].completion_ids] * 2]


def tv_bound(p: torch.Tensor, n: int) -> float:
    """3x the expected total-variation distance of n samples from p (E|f - p| ~ sqrt(2 p (1-p) / (pi n)))."""
    return 3 * 0.5 * float((2 * p * (1 - p) / (math.pi * n)).sqrt().sum())


@pytest.mark.parametrize("max_rounds", [16, 0])  # 0: every row takes the sorted fallback
@pytest.mark.parametrize("temperature,top_p", [(0.7, 0.95), (1.0, 0.5), (0.7, 1.0)])
def test_sample_top_p_draws_from_hf_warpers_distribution(temperature, top_p, max_rounds):
    torch.manual_seed(0)
    logits = torch.randn(1, 40)
    n = 100_000
    want = hf_distribution(logits, temperature, top_p)[0]
    assert (want > 0.01).sum() >= 5  # a spread-out nucleus, or the test says little
    got = torch.bincount(sample_top_p(logits.expand(n, -1), temperature, top_p, max_rounds), minlength=40) / n
    bound = tv_bound(want, n)
    assert 0.5 * (got - want).abs().sum() < bound
    assert got[want == 0].sum() == 0  # never outside the nucleus
    # power: a wrong temperature or top-p is further from the truth than the bound, by a margin
    for t, p in {(temperature * 1.3, top_p), (temperature, 1.0), (temperature, top_p - 0.1)} - {(temperature, top_p)}:
        assert 0.5 * (hf_distribution(logits, t, p)[0] - want).abs().sum() > 2 * bound


@pytest.mark.parametrize("sampler", ["own", "hf"])
def test_first_token_frequencies_match_the_models_distribution(tiny, sampler):
    """End to end on the model (its first token has a long tail over the vocabulary): bucket the vocabulary by
    the reference distribution (top 8 tokens, rest of the nucleus, outside it) and chi-square."""
    model, tok = tiny
    torch.manual_seed(0)
    enc = tok([PROMPTS[0]], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logits = model(**enc).logits[:, -1].float()
    n = 3000
    rows = sample(model, tok, [PROMPTS[0]], n, max_new=1, temperature=0.7, top_p=0.95, sampler=sampler)[0]
    want = hf_distribution(logits, 0.7, 0.95)[0]
    first = torch.tensor([r.completion_ids[0] for r in rows])
    order = want.argsort(descending=True)
    top = order[:8]
    counts = torch.stack([(first == t).sum() for t in top] + [(want[first] > 0).sum() - sum((first == t).sum() for t in top)]).float()
    expected = torch.cat([want[top], (1 - want[top].sum()).reshape(1)]) * n
    assert (want[first] == 0).sum() == 0  # nothing outside the nucleus
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 27.9  # the 99.9% quantile of chi-square with 8 degrees of freedom is 26.1
