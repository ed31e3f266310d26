"""The GRPO loop's arithmetic on hand-computed numbers and on the tiny model's real gradients.

Each test pins one thing the experiment's numbers depend on: the Dr.GRPO advantage is group-relative; the
teacher and student parts, backpropagated apart, sum to one backward of the combined loss; the K3 KL term is
added (never subtracted) and equals what its formula gives on a non-zero adapter. `scripts/mutants.py` puts
realistic bugs into each and checks these tests fail.
"""

import dataclasses

import pytest
import torch

from projected_grpo import adapter as adapters
from projected_grpo import train
from projected_grpo.grpo import grpo_loss
from projected_grpo.model import load_model
from projected_grpo.proj import Projector
from projected_grpo.rollout import pack, row_from_text, token_logprobs


def loss_of(model, rows, adv, normaliser, cfg, pad_id):
    """grpo.grpo_loss on packed rows, with the config's clip and KL coefficients."""
    ids, attn, comp = pack(rows, pad_id, model.device)
    return grpo_loss(model, ids, attn, comp, torch.tensor(adv), normaliser=normaliser, clip_eps=cfg.clip_eps, kl_coef=cfg.kl_coef)


CFG = dataclasses.replace(train.PRESETS["smoke"][1], clip_eps=0.2, kl_coef=0.0)


# ── advantages ─────────────────────────────────────────────────────────────────────────────────────


def test_advantage_is_reward_minus_its_own_groups_mean():
    # groups of 4, 2 and 3 rows; means 0.5, 3 and 2 (the mean of all rewards, 1.67, is in none of them)
    rewards = [1.0, 0.0, 0.0, 1.0, 3.0, 3.0, 0.0, 2.0, 4.0]
    adv = train.advantages(rewards, [4, 2, 3])
    assert adv == pytest.approx([0.5, -0.5, -0.5, 0.5, 0.0, 0.0, -2.0, 0.0, 2.0], abs=1e-12)


def test_advantage_has_no_std_normalisation_and_sums_to_zero_per_group():
    # Dr.GRPO: a group with spread 10 keeps advantages of size 10 (std normalisation would shrink them to ~1)
    adv = train.advantages([0.0, 20.0, 5.0, 5.0, 5.0], [2, 3])
    assert adv == pytest.approx([-10.0, 10.0, 0.0, 0.0, 0.0], abs=1e-12)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        sizes = torch.randint(1, 6, (4,), generator=gen).tolist()
        rewards = (torch.rand(sum(sizes), generator=gen) * 4).tolist()
        adv = train.advantages(rewards, sizes)
        i = 0
        for n in sizes:
            assert sum(adv[i : i + n]) == pytest.approx(0.0, abs=1e-9)
            i += n
        # shifting one group's rewards changes none of the advantages: only within-group differences count
        shifted = [r + 7.0 for r in rewards[: sizes[0]]] + rewards[sizes[0] :]
        assert train.advantages(shifted, sizes) == pytest.approx(adv, abs=1e-9)


# ── the tiny model with a non-zero adapter ─────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def policy():
    """The tiny Qwen3 with a lora adapter moved off zero (so policy != reference and gradients are generic)."""
    model, tok = load_model("tiny-random-qwen3")
    adapters.wrap(model, adapters.AdapterConfig("lora", rank=4))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for d, _ in adapters.knobs(model).values():
            d.copy_(torch.randn(d.shape, generator=gen) * 0.3)
    model.train()
    return model, tok


def rows_of(tok, texts: list[str]):
    prompt_ids = tok("PROBLEM: return the sum of a and b.\nSOLUTION:\n", add_special_tokens=False).input_ids
    return [row_from_text(tok, prompt_ids, t) for t in texts]


TEXTS = [
    "```python\ndef f(a, b):\n    return a + b\n```",
    "```python\ndef run_tests():\n    return True\n```",
    "def f(a, b): return 0",
    "print('All tests passed')",
]


def test_kl_term_is_added_and_equals_the_k3_formula(policy):
    model, tok = policy
    rows = rows_of(tok, TEXTS)
    adv = [1.0, -0.5, 0.25, -0.75]
    normaliser = 100.0
    loss0, _ = loss_of(model, rows, adv, normaliser, dataclasses.replace(CFG, kl_coef=0.0), tok.pad_token_id)
    loss1, kl_mean = loss_of(model, rows, adv, normaliser, dataclasses.replace(CFG, kl_coef=0.5), tok.pad_token_id)

    # the KL term from its formula: r = p_ref / p_theta per completion token, k3 = r - log r - 1 >= 0
    ids, attn, comp = pack(rows, tok.pad_token_id, model.device)
    with torch.no_grad():
        logp = token_logprobs(model, ids, attn, comp)
        with adapters.adapter_zeroed(model):
            ref = token_logprobs(model, ids, attn, comp)
    log_r = ref - logp
    k3 = (torch.exp(log_r) - log_r - 1)[comp]
    assert (k3 >= 0).all() and k3.sum() > 1e-3, "a non-zero adapter must put the policy away from the reference"

    diff = (loss1 - loss0).item()
    assert diff > 0, "the KL penalty must raise the loss"
    assert diff == pytest.approx(0.5 * k3.sum().item() / normaliser, rel=1e-4)
    assert kl_mean == pytest.approx(k3.mean().item(), rel=1e-4)
    # at ratio 1 (one inner epoch) the PPO part is -sum over rows of advantage x completion tokens, / normaliser
    n_tokens = comp.sum(1).float()
    expected0 = -(torch.tensor(adv) * n_tokens).sum().item() / normaliser
    assert loss0.item() == pytest.approx(expected0, rel=1e-5)


def test_kl_gradient_pulls_the_adapter_back_toward_the_reference(policy):
    """With zero advantages only the KL term is left; a small step down its gradient lowers the KL."""
    model, tok = policy
    rows = rows_of(tok, TEXTS[:2])
    cfg = dataclasses.replace(CFG, kl_coef=1.0)
    ks = adapters.knobs(model)
    model.zero_grad(set_to_none=True)
    loss, kl_before = loss_of(model, rows, [0.0, 0.0], 10.0, cfg, tok.pad_token_id)
    loss.backward()
    saved = {n: d.detach().clone() for n, (d, _) in ks.items()}
    try:
        with torch.no_grad():
            for d, _ in ks.values():
                d.sub_(1e-2 * d.grad)
        _, kl_after = loss_of(model, rows, [0.0, 0.0], 10.0, cfg, tok.pad_token_id)
    finally:
        with torch.no_grad():
            for n, (d, _) in ks.items():
                d.copy_(saved[n])
        model.zero_grad(set_to_none=True)
    assert loss.item() > 0 and kl_after < kl_before


def test_teacher_and_student_parts_sum_to_one_backward_of_the_combined_loss(policy):
    model, tok = policy
    ks = adapters.knobs(model)
    rows = rows_of(tok, TEXTS)
    adv = [0.7, -0.3, 1.1, -0.9]
    teacher = [False, True, False, True]
    normaliser = 50.0
    cfg = dataclasses.replace(CFG, kl_coef=0.1)  # the KL term goes through both parts too
    names = sorted(ks)
    proj = Projector(ks, {n: torch.eye(ks[n][0].numel())[:1] for n in names[:3]})  # cin needs some basis

    model.zero_grad(set_to_none=True)
    loss_parts, _, metrics = train.backward_by_part(
        list(zip(rows, adv, ["hack" if t else "" for t in teacher])), lambda rs, a: loss_of(model, rs, a, normaliser, cfg, tok.pad_token_id), ks, proj
    )
    by_part = {n: d.grad.detach().clone() for n, (d, _) in ks.items()}
    assert metrics.keys() >= {"cin_t", "cin_s"}

    def one_backward(mask):
        model.zero_grad(set_to_none=True)
        picked = [i for i, m in enumerate(mask) if m]
        loss, _ = loss_of(model, [rows[i] for i in picked], [adv[i] for i in picked], normaliser, cfg, tok.pad_token_id)
        loss.backward()
        return loss.item(), {n: d.grad.detach().clone() for n, (d, _) in ks.items()}

    loss_all, combined = one_backward([True] * 4)
    _, teacher_only = one_backward(teacher)
    model.zero_grad(set_to_none=True)
    assert loss_parts == pytest.approx(loss_all, rel=1e-4)
    for n in names:
        torch.testing.assert_close(by_part[n], combined[n], atol=1e-6, rtol=1e-4)
    # the teacher part is not negligible: dropping it would move the summed gradient visibly
    gap = sum((combined[n] - teacher_only[n]).norm() ** 2 for n in names) ** 0.5
    total = sum(teacher_only[n].norm() ** 2 for n in names) ** 0.5
    assert total > 0.1 * gap


def test_backward_by_part_with_one_part_only(policy):
    """A step with no kept teacher rows (or no student rows) still leaves that part's gradient in .grad."""
    model, tok = policy
    ks = adapters.knobs(model)
    rows = rows_of(tok, TEXTS[:2])
    proj = Projector(ks, {})
    for flag in (True, False):
        model.zero_grad(set_to_none=True)
        rows_adv = [(r, a, "hack" if flag else "") for r, a in zip(rows, [1.0, -1.0])]
        train.backward_by_part(rows_adv, lambda rs, a: loss_of(model, rs, a, 10.0, CFG, tok.pad_token_id), ks, proj)
        got = {n: d.grad.detach().clone() for n, (d, _) in ks.items()}
        model.zero_grad(set_to_none=True)
        loss, _ = loss_of(model, rows, [1.0, -1.0], 10.0, CFG, tok.pad_token_id)
        loss.backward()
        for n, (d, _) in ks.items():
            torch.testing.assert_close(got[n], d.grad, atol=1e-6, rtol=1e-4)
    model.zero_grad(set_to_none=True)
