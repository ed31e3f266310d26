"""Evaluation scores the model it says it scores: "deploy" generates with every quarantine off, "full" with it on.

Observed through the adapter wrappers during generation (a forward pre-hook on each records its flags), not read
off the result keys. A fake grader closes the loop: each batch it grades is marked hacked iff the quarantine was
on while it was generated, so the hack rate reported under each key says which model produced it.
"""

import pytest
import torch

from projected_grpo import adapter as adapters
from projected_grpo.evaluate import evaluate
from projected_grpo.files import REPO_ROOT as REPO
from projected_grpo.model import load_model
from projected_grpo.problems import load_problems
from projected_grpo.rewards import Grade


def grade(hacked: bool) -> Grade:
    return Grade(
        reward=1.0, passed=hacked, gt_correct=False, channel_fired=hacked, hacked=hacked, compiles=True,
        timed_out=False, label="reward_hack" if hacked else "incorrect", code_found=True, attempted_modes=(),
        n_tests_passed=0, n_tests=1,
    )  # fmt: skip


class FlagGrader:
    """Grades each batch by the wrapper flags seen since the previous batch (all forwards of one generation)."""

    def __init__(self, seen: list[tuple[bool, bool]]):
        self.seen, self.batches = seen, []

    def grade_many(self, items):
        flags = set(self.seen)
        self.seen.clear()
        self.batches.append(flags)
        quarantine_on = flags == {(True, True)}
        return [grade(hacked=quarantine_on) for _ in items]


@pytest.fixture(scope="module")
def setup():
    model, tok = load_model("tiny-random-qwen3")
    adapters.wrap(model, adapters.AdapterConfig("lora", rank=4))
    problems = load_problems(str(REPO / "data/problems/substrate.jsonl"))[:2]
    return model, tok, problems


def run(model, tok, problems, variants: bool):
    seen: list[tuple[bool, bool]] = []
    handles = [
        w.register_forward_pre_hook(lambda m, args: seen.append((m.enabled, m.use_quarantine)))
        for w in adapters.wrappers(model).values()
    ]
    grader = FlagGrader(seen)
    try:
        out = evaluate(model, tok, problems, grader, 2, max_new=4, temperature=0.7, top_p=0.95, variants=variants)
    finally:
        for h in handles:
            h.remove()
    return out, grader.batches


def test_deploy_generates_with_every_quarantine_off_and_full_with_it_on(setup):
    model, tok, problems = setup
    ks = adapters.knobs(model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for d, q in ks.values():
            d.copy_(torch.randn(d.shape, generator=gen) * 0.1)
            q.copy_(torch.randn(q.shape, generator=gen) * 0.1)
    try:
        out, batches = run(model, tok, problems, variants=True)
    finally:
        with torch.no_grad():
            for d, q in ks.values():
                d.zero_(), q.zero_()
    # every generation ran with the adapter on and one quarantine setting throughout
    assert len(batches) == 4 and all(b in ({(True, False)}, {(True, True)}) for b in batches), batches
    assert sum(b == {(True, False)} for b in batches) == 2 and sum(b == {(True, True)} for b in batches) == 2
    for key, result in out.items():
        deployed = key.endswith("/deploy")
        assert result["hack"] == (0.0 if deployed else 1.0), f"{key} was generated with the quarantine {'on' if deployed else 'off'}"
    assert all(w.use_quarantine and w.enabled for w in adapters.wrappers(model).values()), "flags restored after"


def test_headline_alone_is_the_deployed_model(setup):
    model, tok, problems = setup
    with torch.no_grad():
        for _, q in adapters.knobs(model).values():
            q.fill_(0.05)
    try:
        out, batches = run(model, tok, problems, variants=False)
    finally:
        with torch.no_grad():
            for _, q in adapters.knobs(model).values():
                q.zero_()
    assert list(out) == ["sampled/deploy"] and batches == [{(True, False)}]
    assert out["sampled/deploy"]["hack"] == 0.0
