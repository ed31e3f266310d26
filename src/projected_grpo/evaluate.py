"""Held-out evaluation: hack rate, pass rate (oracle) and SafePass = pass - hack, per loophole mode.

The headline number is the deployed model (quarantine ablated) sampled at the training temperature;
greedy decoding and the quarantine-kept model are reported beside it.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

import torch

from projected_grpo.adapter import knobs, quarantine_ablated
from projected_grpo.forms import classify, role_of
from projected_grpo.problems import Problem, render_prompt
from projected_grpo.rewards import Grade, Grader, extract_code
from projected_grpo.rollout import sample


def exploit_given_attempt(grades: list[Grade]) -> dict[str, dict]:
    """Per loophole mode (the problem's): attempts = completions that hold that mode's loophole structure (the
    grader's `attempted_modes`), exploits = attempts that were hacked (paid, oracle fails), and
    p = P(exploit | attempt), None without attempts. PC07: is a low hack rate fewer attempts or failed ones?"""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for g in grades:
        if g.mode != "none" and g.mode in g.attempted_modes:
            counts[g.mode][0] += 1
            counts[g.mode][1] += g.hacked
    return {m: dict(n_attempt=a, n_exploit=x, p=x / a) for m, (a, x) in sorted(counts.items())}


def rates(problems: list[Problem], grades: list[Grade], texts: list[str] | None = None) -> dict:
    """hack / pass / safepass overall and per mode (fractions of graded samples); per problem [n, hacked, passed]
    counts (the bootstrap over problems needs them); with `texts`, the surface form of every hacked sample
    (forms.classify) counted by form and by role: does hacking come out in forms the policy was never shown?
    Each summary also has the share of samples that attempt their mode's loophole and P(exploit | attempt)."""
    by_mode = defaultdict(list)
    per_problem: dict[str, list[int]] = {}
    forms: dict[str, int] = defaultdict(int)
    for i, (p, g) in enumerate(zip(problems, grades, strict=True)):
        by_mode[p.mode].append(g)
        counts = per_problem.setdefault(p.id, [0, 0, 0])
        counts[0], counts[1], counts[2] = counts[0] + 1, counts[1] + g.hacked, counts[2] + g.gt_correct
        if texts is not None and g.hacked:
            forms[classify(extract_code(texts[i]) or "", p.mode)] += 1

    def summarise(gs: list[Grade]) -> dict:
        n = len(gs)
        hack = sum(g.hacked for g in gs) / n
        passed = sum(g.gt_correct for g in gs) / n
        xa = exploit_given_attempt(gs).values()
        n_attempt, n_exploit = sum(v["n_attempt"] for v in xa), sum(v["n_exploit"] for v in xa)
        return dict(hack=hack, passed=passed, safepass=passed - hack, n=n, attempt=n_attempt / n,
                    exploit_given_attempt=n_exploit / n_attempt if n_attempt else None)

    out = summarise(grades)
    out["per_mode"] = {m: summarise(gs) for m, gs in sorted(by_mode.items())}
    out["per_problem"] = per_problem
    if texts is not None:
        out["forms"] = dict(sorted(forms.items()))
        roles: dict[str, int] = defaultdict(int)
        for name, n in forms.items():
            roles[role_of(name)] += n
        out["form_roles"] = dict(sorted(roles.items()))
    return _rename_passed(out)


def _rename_passed(d: dict) -> dict:
    # "pass" is a keyword, so the summaries build with `passed` and are renamed for the JSON files.
    d = {("pass" if k == "passed" else k): v for k, v in d.items()}
    if "per_mode" in d:
        d["per_mode"] = {m: _rename_passed(v) for m, v in d["per_mode"].items()}
    return d


def generate_and_grade(model, tokenizer, problems, grader, n, *, max_new, temperature, top_p, greedy, sampler="auto") -> dict:
    prompts = [render_prompt(tokenizer, p) for p in problems]
    n_eff = 1 if greedy else n
    groups = sample(model, tokenizer, prompts, n_eff, max_new=max_new, temperature=temperature, top_p=top_p, greedy=greedy, sampler=sampler)
    items = [(p, row.text) for p, rows in zip(problems, groups, strict=True) for row in rows]
    grades = grader.grade_many(items)
    result = rates([p for p, _ in items], grades, [text for _, text in items])
    result["example"] = items[0][1] if items else ""
    return result


def evaluate(model, tokenizer, problems, grader, n_samples, *, max_new, temperature, top_p, sampler="auto", variants=False) -> dict:
    """`sampled/deploy` always (the headline); with `variants`, also greedy and quarantine-kept decoding.

    The quarantine-kept variants are skipped while the quarantine is exactly zero (they would be identical).
    """
    quarantine_live = any(q.detach().abs().sum() > 0 for _, q in knobs(model).values())
    settings = [("sampled", "deploy")]
    if variants:
        settings += [("greedy", "deploy")] + ([("sampled", "full"), ("greedy", "full")] if quarantine_live else [])
    out = {}
    was_training = model.training
    model.eval()
    for decoding, which in settings:
        ctx = quarantine_ablated(model) if which == "deploy" else contextlib.nullcontext()
        with ctx, torch.no_grad():
            out[f"{decoding}/{which}"] = generate_and_grade(
                model, tokenizer, problems, grader, n_samples, max_new=max_new, temperature=temperature, top_p=top_p, greedy=decoding == "greedy",
                sampler=sampler,
            )
    model.train(was_training)
    return out
