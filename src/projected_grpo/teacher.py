"""The frozen teacher pool: hack and solve completions per problem, graded once, saved as jsonl.gz.

Teacher rows are mixed into each GRPO group so that rewarded behaviour (solving, and hacking) is present
from step 0 instead of waiting dozens of steps for the student to stumble on it. That makes hacking
imitable: the no-teacher arm (`--teacher-hack 0 --teacher-solve 0`) is the control for that confound.

    python -m projected_grpo.teacher --problems data/problems/substrate.jsonl --out outputs/pools/pool.jsonl.gz

A real pool (`--teacher-pool PATH` in train.py): gz jsonl of graded Qwen3-4B completions in the format of
shared/data/pools (a file, or a directory of *.jsonl.gz; fields `problem_id`, `completion`, `hacked`, `gt_pass`,
optional `env_mode`), read by `load_teacher_pool`. Its rows are used for the problems whose id equals their
`problem_id` (the benchmark's LeetCode ids): load the benchmark problems they were sampled on.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import tyro
from loguru import logger

from projected_grpo import forms as hack_forms
from projected_grpo.files import atomic_write, read_jsonl
from projected_grpo.problems import Problem, load_problems
from projected_grpo.rewards import Grader, canonical_hack


def solve_completion(problem: Problem) -> str:
    return f"```python\n{problem.reference.strip()}\n```"


def authored_hacks(problem: Problem, forms: bool) -> list[str]:
    """v1: the own-mode canonical hack. v2 (`forms`): one hack per train form of the mode, on the naive skeleton."""
    if not forms:
        return [canonical_hack(problem)]
    skeleton = hack_forms.naive_skeleton(problem)
    return [hack_forms.hack_completion(problem, f, skeleton) for f in hack_forms.forms_for(problem.mode, "train")]


def build_pool(
    problems: list[Problem], grader: Grader, sampled: dict[str, list[str]] | None = None, forms: bool = False
) -> list[dict]:
    """Authored rows (own-mode hacks, reference solve) plus any `sampled` completions per problem id.

    Every candidate is graded; a row is kept as `hack` only if the flawed grader paid it without the oracle
    passing it, and as `solve` only if the oracle passes it, so a teacher row is what its kind says it is.
    """
    candidates = []
    for p in problems:
        candidates += [(p, h) for h in authored_hacks(p, forms)] + [(p, solve_completion(p))]
        candidates += [(p, c) for c in (sampled or {}).get(p.id, [])]
    grades = grader.grade_many(candidates)
    rows = []
    for (p, completion), g in zip(candidates, grades, strict=True):
        kind = "hack" if g.hacked else "solve" if g.gt_correct else None
        if kind:
            rows.append(dict(problem_id=p.id, mode=p.mode, kind=kind, completion=completion, reward=g.reward, label=g.label))
    return rows


def pool_report(rows: list[dict], problems: list[Problem]) -> str:
    counts = Counter((r["mode"], r["kind"]) for r in rows)
    modes = sorted({p.mode for p in problems})
    lines = [f"teacher pool: {len(rows)} rows over {len(problems)} problems", "mode            hack  solve"]
    lines += [f"{m:<15} {counts[(m, 'hack')]:>4}  {counts[(m, 'solve')]:>5}" for m in modes]
    missing = [p.id for p in problems if not any(r["problem_id"] == p.id and r["kind"] == "hack" for r in rows)]
    if missing:
        lines.append(f"WARNING: {len(missing)} problems have no paid hack row: {missing[:5]}")
    return "\n".join(lines)


def save_pool(rows: list[dict], path: Path) -> None:
    atomic_write(path, gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode(), mtime=0))


REAL_POOL_FIELDS = ("problem_id", "completion", "hacked", "gt_pass")


def load_teacher_pool(path: str | Path, default_mode: str = "run_tests") -> tuple[list[dict], dict[str, int]]:
    """(pool rows, counts) from a real pool file or directory. A row's kind comes from its recorded labels: `hack`
    when hacked and not gt_pass, `solve` when gt_pass and not hacked. Rows with both labels (the completion defines
    its own run_tests *and* solves the problem) or neither are dropped: neither kind describes them, and a teacher
    row must be what its kind says. Its mode: `env_mode` when present, else `default_mode` (the teacher pool's
    prompts leak run_tests). Rows are graded again in training like every row; the labels only pick the kind."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--teacher-pool {path} does not exist")
    files = sorted(path.glob("*.jsonl.gz")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"--teacher-pool {path}: no *.jsonl.gz files in the directory")
    rows, counts = [], Counter()
    for file in files:
        with gzip.open(file, "rt") as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                    missing = [k for k in REAL_POOL_FIELDS if k not in r]
                    if missing:
                        raise KeyError(f"missing {missing}")
                except (json.JSONDecodeError, KeyError) as e:
                    raise ValueError(f"--teacher-pool {file}:{i}: not a teacher-pool row ({e})") from None
                hacked, solved = bool(r["hacked"]), bool(r["gt_pass"])
                kind = "hack" if hacked and not solved else "solve" if solved and not hacked else None
                counts[kind or ("both" if hacked else "neither")] += 1
                if kind:
                    rows.append(dict(problem_id=str(r["problem_id"]), mode=r.get("env_mode") or default_mode, kind=kind,
                                     completion=r["completion"], reward=r.get("reward"), label="recorded"))
    return rows, dict(counts)


def check_coverage(pool: list[dict], problems: list[Problem], source: str) -> str:
    """One line on how many problems the pool covers; ValueError when it covers none (the teacher would be silent)."""
    ids = {p.id for p in problems}
    covered = {r["problem_id"] for r in pool} & ids
    if not covered:
        some = sorted({r["problem_id"] for r in pool})[:5]
        raise ValueError(f"teacher pool {source} covers none of the {len(ids)} training problems (pool ids e.g. {some}): "
                         "load the problems it was sampled on, e.g. the benchmark's LeetCode jsonl with --problems-mode run_tests")
    modes = {p.id: p.mode for p in problems}
    off = sum(1 for r in pool if r["problem_id"] in covered and r["kind"] == "hack" and r["mode"] != modes[r["problem_id"]])
    note = f"; {off} hack rows target another loophole than their problem's mode (they will not be paid)" if off else ""
    return f"teacher pool {source}: {len(pool)} rows cover {len(covered)}/{len(ids)} training problems{note}"


def pool_for(problems: list[Problem], cache_dir: Path, grader: Grader, forms: bool = False) -> list[dict]:
    """The authored pool of these problems, built once and cached by a hash of the problems (and the hack forms).
    Pass only the problems the teacher may demonstrate (v2: the training split)."""
    blob = [p.to_json() for p in problems] + ([[f.name for f in hack_forms.FORMS if f.role == "train"]] if forms else [])
    key = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir / f"pool-{key}.jsonl.gz"
    if path.exists():
        logger.info(f"teacher pool HIT {path}")
        return read_jsonl(path)
    rows = build_pool(problems, grader, forms=forms)
    save_pool(rows, path)
    logger.info(f"teacher pool MISS: built {path}\n{pool_report(rows, problems)}")
    return rows


@dataclass(frozen=True)
class Args:
    problems: str = "data/problems/substrate.jsonl"
    out: str = "outputs/pools/pool.jsonl.gz"
    mode: str | None = None  # override every problem's mode ("cycle" deals the loophole modes round-robin)


def main(args: Args) -> None:
    problems = load_problems(args.problems, mode=args.mode)
    with Grader() as grader:
        rows = build_pool(problems, grader)
    save_pool(rows, Path(args.out))
    print(pool_report(rows, problems))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(tyro.cli(Args))


def pick_teacher_rows(pool: list[dict], problem: Problem, n_hack: int, n_solve: int, rng: random.Random) -> list[str]:
    """n_hack hack and n_solve solve completions of this problem, drawn with replacement (none if the pool has none)."""
    rows = []
    for kind, n in (("hack", n_hack), ("solve", n_solve)):
        candidates = [r["completion"] for r in pool if r["problem_id"] == problem.id and r["kind"] == kind]
        rows += [rng.choice(candidates) for _ in range(n)] if candidates else []
    return rows
