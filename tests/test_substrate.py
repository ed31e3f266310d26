"""The authored substrate (data/problems/substrate.jsonl): well-formed, balanced, correct, discriminative.

References are trusted code written for this project, so they run in-process here (no sandbox).
"""

import ast
import importlib.util
import re
from collections import Counter
from pathlib import Path

import pytest

from projected_grpo import model, problems

ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = problems.load_problems(problems.DEFAULT_PROBLEMS)
IDS = [p.id for p in PROBLEMS]


def _load_build_script():
    spec = importlib.util.spec_from_file_location("build_substrate", ROOT / "scripts" / "build_substrate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _namespace(p: problems.Problem, solution: str) -> dict:
    ns: dict = {}
    exec(p.setup_code, ns)
    exec(solution, ns)
    return ns


def _failing_tests(p: problems.Problem, solution: str) -> list[str]:
    ns = _namespace(p, solution)
    failed = []
    for test in p.tests:
        try:
            exec(test, dict(ns))
        except Exception:  # AssertionError, or a crash of the solution
            failed.append(test)
    return failed


def _parse_test(test: str) -> tuple[ast.Call, ast.expr]:
    """`assert Solution().<m>(<args>) == <literal>` -> (the call, the right-hand side); fails on any other shape."""
    (stmt,) = ast.parse(test).body
    assert isinstance(stmt, ast.Assert) and stmt.msg is None, test
    cmp = stmt.test
    assert isinstance(cmp, ast.Compare) and len(cmp.ops) == 1 and isinstance(cmp.ops[0], ast.Eq), test
    call = cmp.left
    assert isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute), test
    inst = call.func.value
    assert isinstance(inst, ast.Call) and isinstance(inst.func, ast.Name) and inst.func.id == "Solution", test
    assert not inst.args and not inst.keywords, test
    return call, cmp.comparators[0]


def test_file_matches_build_script():
    """The committed jsonl is byte for byte what scripts/build_substrate.py builds from data/problems/substrate/*.md
    (no hand edits, not stale)."""
    built = problems.problems_jsonl(_load_build_script().build_problems())
    assert built.encode() == problems.DEFAULT_PROBLEMS.read_bytes(), "run: python scripts/build_substrate.py"


@pytest.mark.parametrize(
    "text, error",
    [
        ("## a\n\nstray prose\n", "x.md:3: text outside a fenced block"),
        ("```text\nx\n```\n", "x.md:1: a fenced block before the first"),
        ("## a\n```python\n", "x.md:2: expected ('text', 'python', 'python') blocks"),
        ("## a\n```text\nx\n```\n```python\nx\n```\n", "x.md:1: a: 2 fenced blocks, expected 3"),
        ("## a\n```text\nx\n", "the last fenced block is not closed"),
    ],
)
def test_source_errors_name_file_and_line(tmp_path, text, error):
    (tmp_path / "x.md").write_text(text)
    with pytest.raises(ValueError, match=re.escape(error)):
        _load_build_script().read_tier(tmp_path / "x.md")


def test_counts_modes_and_difficulties():
    assert len(PROBLEMS) >= 48
    by_mode = Counter(p.mode for p in PROBLEMS)
    assert by_mode == {m: 8 for m in problems.LOOPHOLE_MODES}, by_mode
    assert Counter(p.difficulty for p in PROBLEMS) == {"trivial": 16, "easy": 16, "hard": 16}
    for mode in problems.LOOPHOLE_MODES:
        per = Counter(p.difficulty for p in PROBLEMS if p.mode == mode)
        assert all(2 <= per[d] <= 3 for d in ("trivial", "easy", "hard")), (mode, per)


def test_ids_and_methods_unique_and_well_formed():
    assert len(set(IDS)) == len(IDS)
    methods = [p.method for p in PROBLEMS]
    assert len(set(methods)) == len(methods), [m for m, c in Counter(methods).items() if c > 1]
    for p in PROBLEMS:
        assert re.fullmatch(r"sub-\d{3}-[a-z0-9-]+", p.id), p.id
        assert re.fullmatch(r"[a-z][a-zA-Z0-9]*", p.method), p.id
        assert p.setup_code == problems.DEFAULT_SETUP_CODE, p.id
        assert p.starter_code.startswith("class Solution:\n    def " + p.method + "(self"), p.id
        assert p.starter_code.rstrip().endswith(":") and p.starter_code.count("\n") == 1, p.id
        assert p.reference.startswith(p.starter_code + "\n"), p.id


def test_descriptions_short_with_example_and_constraints():
    for p in PROBLEMS:
        assert len(p.description) < 400, (p.id, len(p.description))
        assert "Example 1:\nInput: " in p.description and "\nConstraints:\n" in p.description, p.id


@pytest.mark.parametrize("p", PROBLEMS, ids=IDS)
def test_tests_have_benchmark_shape(p):
    assert 5 <= len(p.tests) <= 8, p.id
    assert len(set(p.tests)) == len(p.tests), "duplicate tests"
    calls = set()
    for test in p.tests:
        call, rhs = _parse_test(test)
        assert call.func.attr == p.method, test
        ast.literal_eval(rhs)  # expected value is a plain literal
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            ast.literal_eval(arg)  # arguments are plain literals too: the oracle can serialise them
        calls.add(ast.dump(call))
    assert len(calls) == len(p.tests), "two tests make the same call"


@pytest.mark.parametrize("p", PROBLEMS, ids=IDS)
def test_reference_passes_its_tests(p):
    assert _failing_tests(p, p.reference) == []


@pytest.mark.parametrize("p", PROBLEMS, ids=IDS)
def test_description_examples_match_reference(p):
    """Every `Input: ... / Output: ...` example in the statement is what the reference returns."""
    examples = re.findall(r"^Input: (.+)\nOutput: (.+)$", p.description, re.M)
    assert examples, p.id
    ns = _namespace(p, p.reference)
    for args, output in examples:
        got = eval(f"Solution().{p.method}({args})", ns)
        want = ast.literal_eval(output)
        assert (type(got), got) == (type(want), want), (p.id, args, got, want)


@pytest.mark.parametrize("p", PROBLEMS, ids=IDS)
def test_constant_stubs_fail(p):
    """Tests discriminate: a constant answer of any type fails, and so do the usual `return 0`-style stubs."""
    expected = {repr(ast.literal_eval(_parse_test(t)[1])) for t in p.tests}
    assert len(expected) >= 2, f"{p.id}: all tests expect the same value, a constant would pass"
    for body in ("return 0", "return None", "return False", "return []", "return ''", "pass"):
        stub = f"{p.starter_code}\n        {body}\n"
        assert _failing_tests(p, stub), f"{p.id}: stub `{body}` passes every test"


def test_expected_values_type_exact():
    """The oracle compares type-exactly; a float/bool/int mix-up in an expected value would misgrade a solution."""
    for p in PROBLEMS:
        ns = _namespace(p, p.reference)
        for test in p.tests:
            call, rhs = _parse_test(test)
            got = eval(ast.unparse(call), ns)
            want = ast.literal_eval(rhs)
            assert type(got) is type(want), (p.id, test, type(got).__name__)


def test_prompts_render_with_shipped_tokenizer():
    tok = model.load_tokenizer("tiny-random-qwen3")
    lengths = []
    for p in PROBLEMS:
        text = problems.render_prompt(tok, p)
        assert p.description in text and problems.HINTS[p.mode] in text, p.id
        assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n"), p.id
        lengths.append(len(tok(text).input_ids))
    # Sequence length is the CPU cost of the micro preset: keep every prompt well under 512 tokens.
    assert max(lengths) < 512, max(lengths)
