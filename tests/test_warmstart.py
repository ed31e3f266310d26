"""Unit tests of warmstart.py: the naive honest attempt, the SFT mix, and the recipe-keyed cache."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from projected_grpo.model import load_model, load_tokenizer
from projected_grpo.problems import DEFAULT_PROBLEMS, load_problems
from projected_grpo.rewards import Grader, canonical_hack, compiles, extract_code
from projected_grpo.rollout import pack
from projected_grpo.teacher import solve_completion
from projected_grpo.warmstart import (
    WarmStartConfig,
    mask_leading,
    naive_attempt,
    recipe_key,
    sft_examples,
    sft_rows,
    warm_start,
    weights_digest,
)

PROBLEMS = load_problems(DEFAULT_PROBLEMS)


def test_naive_attempt_compiles_for_every_substrate_problem():
    for p in PROBLEMS:
        code = extract_code(naive_attempt(p))
        assert code is not None and compiles(code), f"{p.id}: naive attempt does not compile:\n{code}"
        assert f"def {p.method}(" in code, p.id


def test_naive_attempt_fails_the_tests_and_hacks_nothing():
    # one problem per return type the default table covers, across difficulties and modes
    picked = {}
    for p in PROBLEMS:
        ret = p.starter_code.rsplit("->", 1)[-1].strip(" :").split("[")[0]
        picked.setdefault(ret, p)
    assert len(picked) >= 3, f"expected several return types in the substrate, got {sorted(picked)}"
    with Grader(workers=1) as grader:
        grades = grader.grade_many([(p, naive_attempt(p)) for p in picked.values()])
    for p, g in zip(picked.values(), grades, strict=True):
        assert g.compiles and not g.gt_correct and not g.passed, f"{p.id}: {g.label} ({g.error})"
        assert g.reward == 0.5, f"{p.id}: a compiling failure earns only the format reward, got {g.reward}"


def test_naive_attempt_returns_a_default_of_the_declared_type():
    by_method = {p.method: p for p in PROBLEMS}
    attempts = {m: extract_code(naive_attempt(p)).splitlines()[-1].strip() for m, p in by_method.items()}
    assert attempts["sumList"] == "return 0"
    assert attempts["prefixSums"] == "return []"


def test_sft_examples_mix():
    problems = [p for p in PROBLEMS if p.difficulty in ("trivial", "hard")][:6]
    cfg = WarmStartConfig(epochs=1, copies=10, hack_frac=0.2, drill=3)
    examples = sft_examples(problems, cfg)
    assert len(examples) == (10 + 3) * len(problems)
    per_problem = Counter(examples)
    for p in problems:
        honest = solve_completion(p) if p.difficulty == "trivial" else naive_attempt(p)
        assert per_problem[(p, canonical_hack(p), False)] == 2, p.id
        assert per_problem[(p, honest, False)] == 8, p.id
        assert per_problem[(p, canonical_hack(p), True)] == 3, f"{p.id}: drill copies are hacks"
        assert sum(n for (q, _, _), n in per_problem.items() if q.id == p.id) == 13, p.id
    hard = next(p for p in problems if p.difficulty == "hard")
    assert all(c != solve_completion(hard) for q, c, _ in examples if q.id == hard.id), "a hard problem's reference is never shown"


def test_sft_examples_hack_frac_bounds():
    p = PROBLEMS[:1]
    assert all(c != canonical_hack(p[0]) for _, c, _ in sft_examples(p, WarmStartConfig(copies=5, hack_frac=0.0)))
    assert all(c == canonical_hack(p[0]) for _, c, _ in sft_examples(p, WarmStartConfig(copies=5, hack_frac=1.0)))
    with pytest.raises(ValueError, match="hack_frac"):
        WarmStartConfig(hack_frac=1.5)


def test_drill_rows_carry_no_loss_on_the_branch():
    tok = load_tokenizer("tiny-random-qwen3")
    cfg = WarmStartConfig(copies=1, hack_frac=0.0, drill=1, solvable=("trivial",))
    by_mode = {p.mode: p for p in PROBLEMS if p.difficulty == "hard"}
    for mode, p in sorted(by_mode.items()):
        (_, honest, _), (_, hack, drilled) = sft_examples([p], cfg)
        assert drilled and hack == canonical_hack(p)
        rows, skips = sft_rows(tok, sft_examples([p], cfg), cfg)
        assert skips[0] == 0, "honest rows keep every token"
        hack_ids, honest_ids = rows[1].completion_ids, rows[0].completion_ids
        k = skips[1]
        assert 1 <= k < len(hack_ids), f"{mode}: skip {k} of {len(hack_ids)}"
        assert hack_ids[: k - 1] == honest_ids[: k - 1] and hack_ids[k - 1] != honest_ids[k - 1], f"{mode}: skip ends on the branch"
        _, _, comp = pack(rows, tok.pad_token_id, "cpu")
        masked = mask_leading(comp, [len(r.prompt_ids) for r in rows], skips)
        assert torch.equal(masked[0], comp[0])
        assert masked[1].sum() == comp[1].sum() - k == len(hack_ids) - k


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_cache_miss_then_hit(tmp_path):
    torch.set_num_threads(1)
    problems = [p for p in PROBLEMS if p.difficulty == "trivial"][:2]
    cfg = WarmStartConfig(epochs=1, copies=2, hack_frac=0.5, drill=1, batch_size=3, lr=1e-2)

    model, tok = load_model("tiny-random-qwen3", "cpu", seed=0)
    init = _state(model)
    report = warm_start(model, tok, "tiny-random-qwen3", problems, cfg, tmp_path)
    files = sorted(f.name for f in tmp_path.iterdir())
    assert files == [f"warmstart-{report['key']}.json", f"warmstart-{report['key']}.safetensors"]
    assert report["n_examples"] == 6 and len(report["epoch_nll"]) == 1
    trained = _state(model)
    assert any(not torch.equal(init[k], trained[k]) for k in init), "a MISS must fine-tune the weights"

    fresh, _ = load_model("tiny-random-qwen3", "cpu", seed=0)
    hit = warm_start(fresh, tok, "tiny-random-qwen3", problems, cfg, tmp_path)
    assert hit == report
    assert all(torch.equal(trained[k], v) for k, v in _state(fresh).items()), "a HIT must load the cached weights"
    assert sorted(f.name for f in tmp_path.iterdir()) == files, "a HIT writes nothing"



def test_weights_written_last(tmp_path, monkeypatch):
    """The weights file is the HIT, so it is written after its report: a kill while writing the weights leaves
    the report and no weights (the next call is a MISS), never weights without a report, and no temp file."""
    import projected_grpo.warmstart as ws

    def killed(model, filename):
        Path(filename).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(ws, "save_model", killed)
    problems = [p for p in PROBLEMS if p.difficulty == "trivial"][:1]
    cfg = WarmStartConfig(epochs=1, copies=1, hack_frac=0.0, drill=0, batch_size=2, lr=1e-2)
    model, tok = load_model("tiny-random-qwen3", "cpu", seed=0)
    with pytest.raises(KeyboardInterrupt):
        warm_start(model, tok, "tiny-random-qwen3", problems, cfg, tmp_path)
    assert [f.suffix for f in tmp_path.iterdir()] == [".json"]

def test_recipe_key_covers_weights_recipe_and_data():
    model_a, tok = load_model("tiny-random-qwen3", "cpu", seed=0)
    model_b, _ = load_model("tiny-random-qwen3", "cpu", seed=1)
    cfg = WarmStartConfig(epochs=1)
    ex = sft_examples(PROBLEMS[:2], cfg)
    wa, wb = weights_digest(model_a), weights_digest(model_b)
    base = recipe_key("m", ex, cfg, tok, wa)
    assert wa != wb and recipe_key("m", ex, cfg, tok, wb) != base, "another initialisation is another recipe"
    assert recipe_key("m", ex, WarmStartConfig(epochs=2), tok, wa) != base
    assert recipe_key("m", sft_examples(PROBLEMS[:3], cfg), cfg, tok, wa) != base
    assert recipe_key("m", ex, cfg, tok, wa) == base
