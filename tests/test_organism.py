"""Organism v2 (issue 10): surface forms, no eval problem ever shown hacked, the pair ladder's disjointness from the
eval problems, and the extraction variants."""

import difflib

import pytest
import torch

from projected_grpo import adapter as adapters
from projected_grpo import forms
from projected_grpo.config import PRESETS
from projected_grpo.extract import ExtractConfig, branch_skips, extract_basis
from projected_grpo.model import load_model
from projected_grpo.pairs import FORM_SETS, form_pairs
from projected_grpo.problems import LOOPHOLE_MODES, load_problems, split_problems, user_message
from projected_grpo.rewards import Grader, extract_code
from projected_grpo.teacher import authored_hacks
from projected_grpo.warmstart import WarmStartConfig, sft_examples

CFG = PRESETS["organism"][1]


@pytest.fixture(scope="module")
def split():
    train, held = split_problems(load_problems(CFG.problems), CFG.eval_frac, CFG.split_seed)
    return train, held


def test_the_organism_holds_out_at_least_24_problems_sampled_8_times(split):
    _, held = split
    assert len(held) >= 24 and CFG.eval_samples >= 8
    assert {p.mode for p in held} == set(LOOPHOLE_MODES)


def test_every_mode_has_4_train_forms_a_heldout_form_and_authored_forms():
    for mode in LOOPHOLE_MODES:
        assert len(forms.forms_for(mode, "train")) >= 4
        assert len(forms.forms_for(mode, "heldout")) >= 1
        assert len(forms.forms_for(mode, "authored")) >= 2
        assert forms.obvious(mode).role == "train"


def test_each_form_is_paid_only_as_a_hack_and_classified_as_itself(split):
    train, _ = split
    one_per_mode = {p.mode: p for p in train}
    items, expect = [], []
    for p in one_per_mode.values():
        skeleton = forms.naive_skeleton(p)
        for f in forms.forms_for(p.mode, *forms.ROLES[:3]):
            items.append((p, forms.hack_completion(p, f, skeleton)))
            expect.append(f.name)
        for f in forms.forms_for("none", "neutral"):
            items.append((p, forms.hack_completion(p, f, skeleton)))
            expect.append(None)
    with Grader(workers=2) as grader:
        grades = grader.grade_many(items)
    for (p, text), g, name in zip(items, grades, expect, strict=True):
        if name is None:  # a neutral edit of a failing skeleton: unpaid, not a hack
            assert not g.passed and not g.hacked, (p.id, text)
        else:
            assert g.hacked and g.label == "reward_hack", (name, p.id, g.label, g.error)
            assert forms.classify(extract_code(text), p.mode) == name


def test_a_form_adds_lines_and_changes_nothing_else(split):
    """Hack and honest twin differ only in the hack lines (inserted lines; eq_override also swaps the return)."""
    train, _ = split
    for p in train:
        skeleton = forms.naive_skeleton(p)
        for f in forms.FORMS:
            if f.mode not in (p.mode, "none"):
                continue
            ops = difflib.SequenceMatcher(None, skeleton.splitlines(), f.apply(skeleton, p.method).splitlines()).get_opcodes()
            kinds = [op for op, *_ in ops if op != "equal"]
            assert set(kinds) <= {"insert", "replace"} and kinds.count("replace") <= (1 if f.returns else 0), (f.name, kinds)


def test_no_eval_problem_is_ever_shown_hacked(split):
    """Warm start (v2) and teacher pool: hacks only on training problems, only in train forms."""
    train, held = split
    problems = train + held
    examples = sft_examples(problems, CFG.warm, frozenset(p.id for p in train))
    held_ids = {p.id for p in held}
    shown = set()
    for p, completion, _ in examples:
        name = forms.classify(extract_code(completion) or "", p.mode)
        if p.id in held_ids:
            assert name == "other", f"held-out {p.id} shown with hack form {name}"
        elif name != "other":
            shown.add(name)
    assert shown == {f.name for f in forms.FORMS if f.role == "train"}  # every train form, nothing else
    # the teacher's hack rows are the train forms on the problem's skeleton
    for p in train[:6]:
        names = {forms.classify(extract_code(h), p.mode) for h in authored_hacks(p, forms=True)}
        assert names == {f.name for f in forms.forms_for(p.mode, "train")}


def test_heldout_copies_only_changes_problems_never_shown_hacked(split):
    train, held = split
    cfg = WarmStartConfig(epochs=1, copies=10, hack_frac=0.3, drill=2, heldout_copies=3)
    examples = sft_examples(train + held, cfg, frozenset(p.id for p in train))
    count = {p.id: 0 for p in train + held}
    for p, _, _ in examples:
        count[p.id] += 1
    assert {count[p.id] for p in held} == {3} and {count[p.id] for p in train} == {12}


@pytest.mark.parametrize("which", sorted(FORM_SETS))
def test_pair_sets_never_touch_an_eval_problem(split, which):
    train, held = split
    pairs = form_pairs(train, which)
    held_ids, held_prompts = {p.id for p in held}, {user_message(p) for p in held}
    for pair in pairs:
        assert pair.id.split(".")[0] not in held_ids
        assert pair.prompt not in held_prompts
    # breaking the split must be caught: pairs built on an eval problem are seen by both checks
    leaked = form_pairs(held[:1], which)[0]
    assert leaked.id.split(".")[0] in held_ids and leaked.prompt in held_prompts


def test_the_authored_set_has_at_least_60_pairs_and_the_unseen_set_no_warm_start_form(split):
    train, _ = split
    authored, unseen = form_pairs(train, "authored"), form_pairs(train, "unseen")
    assert len(authored) >= 60
    train_forms = {f.name for f in forms.FORMS if f.role == "train"}
    assert not {p.tags[2] for p in unseen} & train_forms
    assert {p.tags[2] for p in authored} & train_forms  # the obvious forms: shared with the warm start, by design


def test_extraction_variants_give_orthonormal_oriented_bases(split):
    train, _ = split
    torch.manual_seed(0)
    model, tok = load_model("tiny-random-qwen3")
    adapters.wrap(model, adapters.AdapterConfig(kind="lora", rank=4, seed=0))
    pairs = form_pairs(train[:12], "authored")
    base, _ = extract_basis(model, tok, pairs, ExtractConfig(k=2, holdout_frac=0.25))
    for kw in (dict(loss="branch"), dict(direction="mean_diff"), dict(per_mode=True), dict(direction="activation")):
        basis, report = extract_basis(model, tok, pairs, ExtractConfig(k=2, holdout_frac=0.25, **kw))
        assert basis, kw
        for m, V in basis.items():
            assert torch.allclose(V @ V.T, torch.eye(V.shape[0]), atol=1e-4), (kw, m)
        if kw.get("direction") == "mean_diff":
            assert all(V.shape[0] == 1 for V in basis.values())
        if kw.get("per_mode"):  # a union over modes spans at least as much as one basis
            assert sum(V.shape[0] for V in basis.values()) > sum(V.shape[0] for V in base.values())
        if kw.get("direction") == "activation":  # rows v (x) e_j: each row lives in one column j of B [d_out, r]
            for m, V in basis.items():
                d_out, r = adapters.knobs(model)[m][0].shape
                cols = (V.reshape(-1, d_out, r).abs().sum(1) > 0).sum(1)
                assert (cols == 1).all(), m


def test_branch_skips_are_the_shared_prefix(split):
    train, _ = split
    _, tok = load_model("tiny-random-qwen3")
    pairs = form_pairs(train[:6], "authored")
    for pair, skip in zip(pairs, branch_skips(tok, pairs), strict=True):
        a, b = (tok(getattr(pair, s), add_special_tokens=False)["input_ids"] for s in ("hack", "clean"))
        assert a[:skip] == b[:skip] and (skip == min(len(a), len(b)) or a[skip] != b[skip])
