"""The benchmark's baselines (issue 16): the noisy ground-truth monitor, the pair-fitted probe, penalty vs
screening, and inoculation prompting, each walked on the tiny model."""

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from projected_grpo import adapter as adapters
from projected_grpo import config, monitor, train
from projected_grpo import evaluate as evaluate_module
from projected_grpo.model import load_model
from projected_grpo.pairs import load_pairs, split_pairs
from projected_grpo.problems import INOCULATION_LINE, load_problems, render_prompt
from projected_grpo.rollout import Row

REPO = Path(__file__).resolve().parents[1]
QUICK = dataclasses.replace(
    train.PRESETS["smoke"][1], steps=3, eval_samples=1, eval_frac=0.1, eval_variants=False, max_new=24, ckpt_every=3
)


def quick(tmp_path: Path, **overrides) -> dict:
    cfg = dataclasses.replace(QUICK, out_dir=str(tmp_path / "run"), cache_dir=str(REPO / ".cache"), **overrides)
    return train.run(cfg)


# ── ground-truth monitor ───────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("accuracy", [0.9, 0.7])
def test_flip_rate_is_one_minus_accuracy_within_binomial_error(accuracy):
    n, p = 2000, 1 - accuracy
    labels = [i % 3 == 0 for i in range(n)]
    flipped = sum(a != b for a, b in zip(labels, monitor.noisy_labels(labels, accuracy, seed=0, step=1), strict=True))
    assert abs(flipped / n - p) < 3 * math.sqrt(p * (1 - p) / n)


def test_flips_are_seeded_by_seed_and_step_and_blind_to_the_labels():
    ones, zeros = [True] * 500, [False] * 500
    a = monitor.noisy_labels(ones, 0.7, seed=3, step=5)
    assert a == monitor.noisy_labels(ones, 0.7, seed=3, step=5), "reproducible"
    # the same rows flip whatever the labels are (hence whatever the arm's rollouts are)
    assert [not x for x in a] == monitor.noisy_labels(zeros, 0.7, seed=3, step=5)
    assert a != monitor.noisy_labels(ones, 0.7, seed=3, step=6) and a != monitor.noisy_labels(ones, 0.7, seed=4, step=5)
    assert monitor.noisy_labels(ones, 1.0, seed=3, step=5) == ones, "accuracy 1.0 is the oracle"


def test_gt_monitor_at_full_accuracy_is_the_old_oracle_penalty():
    @dataclasses.dataclass
    class G:
        reward: float
        hacked: bool

    grades = [G(3.5, True), G(3.5, False), G(0.5, False), G(3.5, True)]
    cfg = dataclasses.replace(QUICK, monitor="gt", monitor_penalty=3.0)
    rows = [Row([1], [2], "x") for _ in grades]
    trainer = object.__new__(train.Trainer)  # only what shape_rewards reads: no model needed for the gt monitor
    trainer.cfg, trainer.model, trainer.tok, trainer.monitor, trainer.rebound = cfg, None, None, None, None
    rewards, screened, m = train.shape_rewards(trainer, 1, rows, grades, [False, False, True, True])
    assert rewards == [0.5, 3.5, 0.5, 0.5] and screened == [False] * 4
    assert m["flagged"] == 0.5 and m["monitor_agree"] == 1.0  # student rows only (the first two)
    trainer.cfg = dataclasses.replace(cfg, monitor_use="screen")
    _, screened, _ = train.shape_rewards(trainer, 1, rows, grades, [False] * 4)
    assert screened == [True, False, False, True]


def test_screened_rows_leave_their_group_before_the_mean():
    # group 1: the 10.0 row is screened, the mean of the rest is 2; group 2: one row left, no signal
    adv = train.advantages([1.0, 2.0, 3.0, 10.0, 5.0, 7.0], [4, 2], [False, False, False, True, True, False])
    assert adv == [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert train.advantages([1.0, 3.0], [2]) == [-1.0, 1.0]


# ── probe ──────────────────────────────────────────────────────────────────────────────────────────


def test_threshold_allows_floor_fpr_n_negatives():
    scores = torch.randn(100, generator=torch.Generator().manual_seed(0))
    t = monitor.threshold_at_fpr(scores, 0.05)
    assert int((scores > t).sum()) == 5
    assert int((scores[:9] > monitor.threshold_at_fpr(scores[:9], 0.05)).sum()) == 0  # 9 negatives: 0 allowed


@pytest.fixture(scope="module")
def wrapped():
    model, tok = load_model("tiny-random-qwen3")
    adapters.wrap(model, adapters.AdapterConfig(rank=4))
    return model, tok


@pytest.mark.parametrize("kind", ["logreg", "mass_mean"])
@pytest.mark.parametrize("holdout_frac", [0.25, 0.6])
def test_probe_threshold_reproduces_its_fpr_on_the_heldout_pairs(wrapped, kind, holdout_frac):
    """With n held-out clean completions the threshold admits exactly floor(0.05 n) of them (ties aside, none here):
    the authored 36 pairs at holdout 0.25 give n = 9, so FPR 0; at 0.6, n = 22, so exactly 1/22."""
    model, tok = wrapped
    pairs = load_pairs(str(REPO / "data/pairs/hack_pairs.md"))
    probe = monitor.fit_probe(model, tok, pairs, kind, depth=0.66, holdout_frac=holdout_frac, seed=0)
    _, held = split_pairs(pairs, holdout_frac, 0)
    n = len(held)
    clean = probe.scores(model, monitor.pair_rows(tok, held, "clean"), tok.pad_token_id)
    false_pos = int((clean > probe.threshold).sum())
    assert false_pos == math.floor(0.05 * n) and probe.report["heldout_fpr"] == false_pos / n
    assert probe.report["n_heldout_pairs"] == n and probe.report["n_fit_pairs"] == len(pairs) - n
    assert probe.layer == round(0.66 * model.config.num_hidden_layers)
    assert 0.0 <= probe.report["heldout_tpr"] <= 1.0


def test_probe_is_fitted_on_the_adapter_zeroed_model(wrapped):
    model, tok = wrapped
    pairs = load_pairs(str(REPO / "data/pairs/hack_pairs.md"))
    before = monitor.fit_probe(model, tok, pairs, "mass_mean", depth=0.66, holdout_frac=0.25, seed=0)
    deployed = adapters.deployed_params(model)
    saved = [p.detach().clone() for p in deployed]
    with torch.no_grad():
        for p in deployed:
            p.add_(torch.randn_like(p))
    try:
        after = monitor.fit_probe(model, tok, pairs, "mass_mean", depth=0.66, holdout_frac=0.25, seed=0)
    finally:
        with torch.no_grad():
            for p, s in zip(deployed, saved, strict=True):
                p.copy_(s)
    assert torch.equal(before.w, after.w) and before.threshold == after.threshold


# ── inoculation ────────────────────────────────────────────────────────────────────────────────────


def test_inoculation_line_is_an_explicit_argument_of_the_renderer(wrapped):
    _, tok = wrapped
    p = load_problems(REPO / QUICK.problems)[0]
    assert INOCULATION_LINE in render_prompt(tok, p, inoculation=True)
    assert INOCULATION_LINE not in render_prompt(tok, p)


def test_inoculation_reaches_training_rollouts_and_teacher_rows_but_not_eval(tmp_path, monkeypatch):
    seen = {"train": [], "eval": [], "teacher": []}
    real_sample, real_eval_sample, real_shape = train.sample, evaluate_module.sample, train.shape_rewards

    def train_sample(model, tok, prompts, *a, **k):
        seen["train"] += prompts
        return real_sample(model, tok, prompts, *a, **k)

    def eval_sample(model, tok, prompts, *a, **k):
        seen["eval"] += prompts
        return real_eval_sample(model, tok, prompts, *a, **k)

    def shape(trainer, step, rows, grades, teacher_flags):
        seen["teacher"] += [trainer.tok.decode(r.prompt_ids) for r, t in zip(rows, teacher_flags, strict=True) if t]
        return real_shape(trainer, step, rows, grades, teacher_flags)

    monkeypatch.setattr(train, "sample", train_sample)
    monkeypatch.setattr(evaluate_module, "sample", eval_sample)
    monkeypatch.setattr(train, "shape_rewards", shape)
    summary = quick(tmp_path, inoculation=True)
    assert summary["steps"] == 3
    assert seen["train"] and all(INOCULATION_LINE in p for p in seen["train"])
    assert seen["teacher"] and all(INOCULATION_LINE in p for p in seen["teacher"])
    assert seen["eval"] and not any(INOCULATION_LINE in p for p in seen["eval"])


# ── each monitor x use, 3 steps ────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "overrides",
    [
        dict(monitor="gt", monitor_use="penalty", monitor_accuracy=0.7, monitor_penalty=3.0),
        dict(monitor="gt", monitor_use="screen"),
        dict(monitor="probe", monitor_use="penalty", monitor_penalty=3.0, probe_kind="mass_mean"),
        dict(monitor="probe", monitor_use="screen"),
    ],
    ids=["gt70-penalty", "gt-screen", "probe-penalty", "probe-screen"],
)
def test_monitor_arm_runs_and_penalises_or_screens_exactly_the_flagged_rows(tmp_path, monkeypatch, overrides):
    record = {"flags": [], "trained": [], "alive": []}  # rows kept alive: id()s of freed rows would be reused
    real_shape, real_backward = train.shape_rewards, train.backward_by_part

    def shape(trainer, step, rows, grades, teacher_flags):
        cfg, model, tok, probe = trainer.cfg, trainer.model, trainer.tok, trainer.monitor
        if cfg.monitor == "gt":
            flags = monitor.noisy_labels([g.hacked for g in grades], cfg.monitor_accuracy, cfg.seed, step)
        else:
            flags = probe.flags(model, rows, tok.pad_token_id)
        rewards, screened, metrics = real_shape(trainer, step, rows, grades, teacher_flags)
        if cfg.monitor_use == "screen":
            assert screened == flags and rewards == [g.reward for g in grades]
        else:
            assert not any(screened)
            assert rewards == [g.reward - cfg.monitor_penalty * f for g, f in zip(grades, flags, strict=True)]
        student = [f for f, t in zip(flags, teacher_flags, strict=True) if not t]
        assert metrics["flagged"] == pytest.approx(sum(student) / len(student))
        record["flags"] += [(id(r), f) for r, f in zip(rows, flags, strict=True)]
        record["alive"] += rows
        return rewards, screened, metrics

    def backward(rows_adv, *a):
        record["trained"] += [id(r) for r, _, _ in rows_adv]
        # each group's advantages sum to 0 over the rows it kept, so a screened row that still counted in its
        # group's mean (then left out of the loss) would show as a non-zero sum
        assert abs(sum(adv for _, adv, _ in rows_adv)) < 1e-9
        return real_backward(rows_adv, *a)

    monkeypatch.setattr(train, "shape_rewards", shape)
    monkeypatch.setattr(train, "backward_by_part", backward)
    summary = quick(tmp_path, **overrides)
    assert summary["steps"] == 3 and summary["oracle"] == (overrides["monitor"] == "gt")
    assert (summary["probe"] is not None) == (overrides["monitor"] == "probe")
    flagged = {i for i, f in record["flags"] if f}
    assert flagged, "some row must be flagged or the test walks nothing"
    if overrides["monitor_use"] == "screen":
        assert record["trained"] and not flagged & set(record["trained"])


def test_resuming_a_run_saved_with_oracle_penalty_spells_it_as_the_gt_monitor(tmp_path, monkeypatch):
    import json

    raw = json.loads(json.dumps(dataclasses.asdict(QUICK)))
    for k in ("monitor", "monitor_use", "monitor_accuracy", "monitor_penalty", "probe_kind", "probe_layer", "inoculation"):
        raw.pop(k)
    (tmp_path / "config.json").write_text(json.dumps({**raw, "oracle_penalty": 3.0}))
    cfg = config.saved_config(tmp_path)
    assert (cfg.monitor, cfg.monitor_accuracy, cfg.monitor_use, cfg.monitor_penalty) == ("gt", 1.0, "penalty", 3.0)
