"""Build the authored problem substrate, data/problems/substrate.jsonl, from its source in data/problems/substrate/.

48 small LeetCode-style problems written for this project: 16 trivial (one-line solutions), 16 easy (short
loops), 16 hard (DP, graphs, tricky edge cases). They are the warm-start (SFT) and RL data of the CPU `micro`
model, which should solve some of them but not most: on the hard third, the canonical hack of a mode is far
easier to write than a solution, as in the real benchmark.

The source is one markdown file per difficulty (`trivial.md`, `easy.md`, `hard.md`), read by a person as the
problems themselves. Each problem is a `## <slug>` heading and three fenced blocks, in this order:
  ```text      the statement (with `Example 1:` / `Input:` / `Output:` and `Constraints:`)
  ```python    a reference solution; its first two lines (class header, method signature) are the starter code
  ```python    the tests the oracle runs, one `assert Solution().<method>(<args>) == <expected>` a line
Expected values are type-exact literals: the oracle compares `1`, `1.0` and `True` as different values.
Prose is allowed before the first heading only.

Loophole modes are dealt round-robin over the difficulty-sorted list, so each of the six modes gets exactly 8
problems with 2-3 of each difficulty. Rows are written interleaved (trivial, easy, hard, trivial, ...) so any
prefix of the file mixes difficulties and each block of 6 rows covers all six modes.

    python scripts/build_substrate.py            # after editing the source; the output is committed
    python scripts/build_substrate.py --check    # exit 1 if the committed jsonl is not what the source builds
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import tyro

from projected_grpo.files import REPO_ROOT, atomic_write
from projected_grpo.problems import DEFAULT_PROBLEMS, LOOPHOLE_MODES, Problem, problems_jsonl

SOURCE = REPO_ROOT / "data" / "problems" / "substrate"
TIERS = ("trivial", "easy", "hard")
BLOCKS = ("text", "python", "python")  # statement, reference, tests


def read_tier(path: Path) -> list[dict]:
    """[{slug, description, reference, tests, line}] of one source file, in file order."""
    specs: list[dict] = []
    fence: list[str] | None = None  # the lines of the open fenced block
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        where = f"{path}:{n}"
        if fence is not None:
            if line.strip() == "```":
                specs[-1]["blocks"].append("\n".join(fence).strip())
                fence = None
            else:
                fence.append(line)
        elif line.startswith("## "):
            specs.append(dict(slug=line[3:].strip(), blocks=[], line=n))
        elif line.startswith("```"):
            if not specs:
                raise ValueError(f"{where}: a fenced block before the first `## <slug>` heading")
            got = len(specs[-1]["blocks"])
            if got == len(BLOCKS) or line[3:].strip() != BLOCKS[got]:
                raise ValueError(f"{where}: expected {BLOCKS[got:] or 'no more'} blocks after the heading, got {line!r}")
            fence = []
        elif line.strip() and specs:
            raise ValueError(f"{where}: text outside a fenced block (prose goes before the first heading)")
    if fence is not None:
        raise ValueError(f"{path}: the last fenced block is not closed")
    for s in specs:
        if len(s["blocks"]) != len(BLOCKS):
            raise ValueError(f"{path}:{s['line']}: {s['slug']}: {len(s['blocks'])} fenced blocks, expected {len(BLOCKS)}")
        description, reference, tests = s.pop("blocks")
        s.update(description=description, reference=reference + "\n", tests=tuple(t for t in tests.splitlines() if t.strip()))
    return specs


def method_name(reference: str) -> str:
    m = re.search(r"^    def (\w+)\(self", reference, re.M)
    if m is None:
        raise ValueError(f"reference has no Solution method:\n{reference}")
    return m.group(1)


def make_problem(index: int, mode: str, difficulty: str, s: dict) -> Problem:
    method = method_name(s["reference"])
    # The starter code is the reference's first two lines: class header and method signature.
    starter = "\n".join(s["reference"].splitlines()[:2])
    if not starter.startswith("class Solution:\n    def "):
        raise ValueError(f"{difficulty}.md:{s['line']}: {s['slug']}: reference must start with `class Solution:` and its method")
    return Problem(
        id=f"sub-{index:03d}-{s['slug']}",
        mode=mode,
        method=method,
        starter_code=starter,
        description=s["description"],
        tests=s["tests"],
        reference=s["reference"],
        difficulty=difficulty,
    )


def build_problems(source: Path = SOURCE) -> list[Problem]:
    tiers = {t: read_tier(source / f"{t}.md") for t in TIERS}
    n = len(tiers["trivial"])
    if any(len(specs) != n for specs in tiers.values()):
        raise ValueError(f"tiers must be the same size for the interleaving: { {k: len(v) for k, v in tiers.items()} }")
    # Deal modes round-robin over the difficulty-sorted list: exactly 8 per mode, 2-3 of each difficulty.
    dealt = [(d, s) for d, specs in tiers.items() for s in specs]
    modes = [LOOPHOLE_MODES[i % len(LOOPHOLE_MODES)] for i in range(len(dealt))]
    # Interleave trivial, easy, hard so any prefix of the file mixes difficulties.
    order = [k + n * t for k in range(n) for t in range(len(tiers))]
    return [make_problem(row + 1, modes[i], *dealt[i]) for row, i in enumerate(order)]


def main(out: Path = DEFAULT_PROBLEMS, check: bool = False) -> None:
    """--check: build in memory and compare byte for byte with `out` (exit 1 if they differ); write nothing."""
    try:
        text = problems_jsonl(build_problems())
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    built = hashlib.sha256(text.encode()).hexdigest()
    if check:
        have = hashlib.sha256(out.read_bytes()).hexdigest() if out.exists() else "missing"
        print(f"built {built}\n{out} {have}")
        if have != built:
            sys.exit(f"error: {out} is not what {SOURCE} builds: run python scripts/build_substrate.py")
        return
    atomic_write(out, text)
    print(f"wrote {text.count(chr(10))} problems to {out} (sha256 {built})")


if __name__ == "__main__":
    tyro.cli(main)
