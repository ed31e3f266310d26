"""TRL's GRPOTrainer with ProjectionCallback, 2 steps per arm on the tiny model: the gradient the optimizer steps on.

Skipped when trl is not installed (the `[trl]` extra); `just test-trl` installs it and runs this file."""

import tempfile

import pytest
import torch

pytest.importorskip("trl")  # the optional extra; the core suite runs without it
import trl  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from projected_grpo.integrations.trl import GraderReward, ProjectionCallback, problems_dataset  # noqa: E402
from projected_grpo.model import load_model  # noqa: E402
from projected_grpo.pairs import load_pairs  # noqa: E402
from projected_grpo.problems import load_problems  # noqa: E402
from projected_grpo.rewards import Grader  # noqa: E402

STEPS, GROUP, PROMPTS, MAX_NEW = 2, 4, 2, 16


class GradProbe(TrainerCallback):
    """Copies every knob's grad at on_pre_optimizer_step: added before the projection sees what it gets, after it
    what the optimizer steps on."""

    def __init__(self, knobs):
        self.knobs, self.seen = knobs, []

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.seen.append({n: tuple(None if p.grad is None else p.grad.detach().clone() for p in pair) for n, pair in self.knobs.items()})


def length_reward(completions, **kwargs):
    # On the random model the grader pays 0 to every completion; a length term gives every group reward variance,
    # hence a policy gradient to project.
    return [len(c) / 100 for c in completions]


@pytest.fixture(scope="module")
def env():
    problems = load_problems()
    with Grader(workers=1) as grader:
        yield problems, load_pairs(), grader


def run_arm(env, arm: str, basis=None):
    problems, pairs, grader = env
    torch.manual_seed(0)
    model, tok = load_model("tiny-random-qwen3", "cpu", dtype="fp32")
    projection = ProjectionCallback.prepare(model, tok, pairs, arm=arm, basis=basis, preserve_magnitude=False)
    config = trl.GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="test-trl-"), max_steps=STEPS, per_device_train_batch_size=PROMPTS * GROUP,
        num_generations=GROUP, max_completion_length=MAX_NEW, learning_rate=1e-2, loss_type="dr_grpo",
        scale_rewards="none", beta=0.0, max_grad_norm=1.0, use_cpu=True, bf16=False, gradient_checkpointing=False,
        logging_steps=1, report_to="none", save_strategy="no", seed=0,
    )
    trainer = trl.GRPOTrainer(
        model=model, processing_class=tok, reward_funcs=[GraderReward(problems, grader), length_reward], args=config,
        train_dataset=problems_dataset(problems[:8], tok),
    )
    before = GradProbe(projection.knobs)
    trainer.add_callback(before)
    projection.attach(trainer)
    after = GradProbe(projection.knobs)
    trainer.add_callback(after)
    trainer.train()
    assert len(before.seen) == len(after.seen) == STEPS
    return projection, before.seen, after.seen, trainer.state.log_history


def hackward(V, g):
    """|relu(V g)| / |g|: the share of g the one-sided gate removes."""
    g = g.reshape(-1).float()
    return (torch.relu(V @ g).norm() / g.norm().clamp_min(1e-30)).item()


@pytest.fixture(scope="module")
def basis(env):
    """Extracted once (through prepare, on the same seeded model) and shared by the three arms."""
    return run_arm(env, "none")


def test_none_leaves_the_gradient(basis):
    projection, before, after, logs = basis
    for b, a in zip(before, after, strict=True):
        for name in b:
            assert torch.equal(b[name][0], a[name][0]), name
    shares = [hackward(V, before[0][n][0]) for n, V in projection.basis.items()]
    assert max(shares) > 1e-2, "the gradient has a hack-ward component for the other arms to remove"
    rows = [r for r in logs if "projection/cin" in r]
    assert len(rows) == STEPS and rows[0]["projection/cin"] > 0 and rows[0]["projection/cout"] == rows[0]["projection/cin"]


def test_erase_removes_the_hackward_component_before_the_step(env, basis):
    projection, before, after, logs = run_arm(env, "erase", basis[0].basis)
    for b, a in zip(before, after, strict=True):
        assert max(hackward(V, b[n][0]) for n, V in projection.basis.items()) > 1e-2, "there was something to erase"
        for n, V in projection.basis.items():
            g = a[n][0]
            assert hackward(V, g) < 1e-6, (n, hackward(V, g))
            assert a[n][1] is None, "erase never trains the quarantine"
    rows = [r for r in logs if "projection/cin" in r]
    assert len(rows) == STEPS and all(r["projection/cout"] < 1e-6 < r["projection/cin"] for r in rows)
    assert all(r["projection/cout_update"] < 1e-5 for r in rows), "the Adam-update projection ran"


def test_route_moves_the_hackward_component_to_the_quarantine(env, basis):
    projection, before, after, logs = run_arm(env, "route", basis[0].basis)
    for b, a in zip(before, after, strict=True):
        for n, (deployed, quarantine) in a.items():
            V = projection.basis.get(n)
            if V is None:
                assert quarantine is None, f"{n}: no basis, so nothing is routed and the quarantine does not step"
                continue
            g = b[n][0].reshape(-1)
            assert hackward(V, deployed) < 1e-6, n
            removed = torch.relu(V @ g) @ V  # exactly the gated component (preserve_magnitude off)
            torch.testing.assert_close(quarantine.reshape(-1), removed, rtol=1e-5, atol=1e-9)
            torch.testing.assert_close(deployed.reshape(-1) + quarantine.reshape(-1), g, rtol=1e-5, atol=1e-7)
    rows = [r for r in logs if "projection/cin" in r]
    assert rows[-1]["projection/b_hack_norm"] > 0, "the quarantine trained"


def test_attach_refuses_weight_decay_on_a_routed_quarantine(env, basis):
    problems, pairs, grader = env
    model, tok = load_model("tiny-random-qwen3", "cpu", dtype="fp32")
    projection = ProjectionCallback.prepare(model, tok, basis=basis[0].basis, arm="route")
    config = trl.GRPOConfig(output_dir=tempfile.mkdtemp(), max_steps=1, per_device_train_batch_size=4, num_generations=4,
                            use_cpu=True, bf16=False, weight_decay=0.1, report_to="none")
    trainer = trl.GRPOTrainer(model=model, processing_class=tok, reward_funcs=[length_reward], args=config,
                              train_dataset=problems_dataset(problems[:4], tok))
    with pytest.raises(ValueError, match="weight_decay"):
        projection.attach(trainer)


def test_prepare_loads_a_basis_file_and_refuses_another_adapters(tmp_path, basis):
    from projected_grpo.adapter import AdapterConfig
    from projected_grpo.extract import cache_meta, ExtractConfig, write_cache

    first = basis[0]
    path = tmp_path / "basis.safetensors"
    write_cache(path, first.basis, {}, cache_meta(first.model, load_pairs(), ExtractConfig(), "tiny"))
    model, tok = load_model("tiny-random-qwen3", "cpu", dtype="fp32")
    loaded = ProjectionCallback.prepare(model, tok, basis=path, arm="erase")
    assert loaded.basis.keys() == first.basis.keys()
    assert all(torch.equal(loaded.basis[m], first.basis[m]) for m in first.basis)
    model, tok = load_model("tiny-random-qwen3", "cpu", dtype="fp32")
    with pytest.raises(ValueError, match="another adapter"):
        ProjectionCallback.prepare(model, tok, basis=path, adapter=AdapterConfig(rank=4))
