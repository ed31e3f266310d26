"""Grader throughput vs a naive baseline, measured side by side in one run.

Programs: the 60 sample problems' canonical solutions + one canonical hack per loophole mode per problem
(each hack graded under its own mode). Baseline: one fresh `python -c` per program, serial, running the
setup + program + the tests as type-exact asserts, then printing a marker (so an early exit or an
always-equal object fails there too); its verdict must equal our gt_correct on every program.

    python scripts/bench_grader.py [--workers N] [--n-problems 60]
"""

from __future__ import annotations

import ast
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

from projected_grpo.files import REPO_ROOT
from projected_grpo.problems import LOOPHOLE_MODES, Problem, load_problems
from projected_grpo.rewards import Grader, canonical_hack, extract_code

SAMPLE = REPO_ROOT / ".." / "shared" / "data" / "leetcode_medhard_sample.jsonl"
MARKER = "__BASELINE_ALL_TESTS_RAN__"

# Type-exact comparison for the baseline (the same rule as the oracle: 1 != 1.0 != True, list != tuple).
EXACT = """
def __exact(a, b):
    if type(a) is not type(b):
        return False
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(__exact(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(__exact(a[k], b[k]) for k in a)
    return a == b
"""


@dataclass
class Args:
    workers: int | None = None  # grader workers (default: all cores)
    n_problems: int = 60


def baseline_program(p: Problem, code: str) -> str:
    checks = []
    for t in p.tests:
        test = ast.parse(t).body[0].test
        checks.append(f"assert __exact({ast.unparse(test.left)}, {ast.unparse(test.comparators[0])})")
    return "\n".join([p.setup_code, code, EXACT, *checks, f"print({MARKER!r})"])


def run_baseline(items: list[tuple[Problem, str]]) -> list[bool]:
    verdicts = []
    for p, completion in items:
        src = baseline_program(p, extract_code(completion))
        try:
            r = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, timeout=60, cwd="/tmp")
            verdicts.append(r.returncode == 0 and MARKER in r.stdout)
        except subprocess.TimeoutExpired:
            verdicts.append(False)
    return verdicts


def cpu_s(who: str) -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN if who == "children" else resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(args: Args) -> None:
    if not SAMPLE.is_file():
        raise SystemExit(f"sample benchmark not found at {SAMPLE}")
    problems = load_problems(SAMPLE)[: args.n_problems]
    groups = {
        "canonical solutions": [(p, f"```python\n{p.reference}\n```") for p in problems],
        "canonical hacks": [(p.with_mode(m), canonical_hack(p, m)) for p in problems for m in LOOPHOLE_MODES],
    }
    items = [it for its in groups.values() for it in its]
    n = len(items)
    print(f"{n} programs: " + " + ".join(f"{len(its)} {name}" for name, its in groups.items()))

    t_base, base, c0 = {}, [], cpu_s("children")
    for name, its in groups.items():
        t = time.perf_counter()
        base += run_baseline(its)
        t_base[name] = time.perf_counter() - t
    cpu_base = cpu_s("children") - c0
    base_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    t_ours, grades, t0, c0, s0 = {}, [], time.perf_counter(), cpu_s("children"), cpu_s("self")
    with Grader(workers=args.workers) as g:
        t_start = time.perf_counter() - t0
        for name, its in groups.items():
            t = time.perf_counter()
            grades += g.grade_many(its)
            t_ours[name] = time.perf_counter() - t
        zygote_mb = max(vm_hwm_mb(pid) for pid in g.sandbox.zygote_pids)
        child_mb, workers = g.sandbox.max_child_rss_kb / 1024, g.sandbox.workers
    cpu_ours = cpu_s("children") - c0 + cpu_s("self") - s0  # zygotes + programs (reaped at close) + this process
    parent_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total_base, total_ours = sum(t_base.values()), t_start + sum(t_ours.values())

    ours = [gr.gt_correct for gr in grades]
    mismatch = [(p.id, p.mode, b, o) for (p, _), b, o in zip(items, base, ours, strict=True) if b != o]
    print(f"{'':22}{'naive baseline':>22}{'sandbox grader':>22}{'speedup':>9}")
    for name, its in groups.items():
        print(f"{name:22}{len(its) / t_base[name]:12.1f} prog/s{len(its) / t_ours[name]:15.1f} prog/s{t_base[name] / t_ours[name]:8.1f}x")
    print(f"{'all (incl. start)':22}{n / total_base:12.1f} prog/s{n / total_ours:15.1f} prog/s{total_base / total_ours:8.1f}x   (target >= 5x)")
    print(f"wall time      : baseline {total_base:.1f} s serial (1 process per program); ours {total_ours:.1f} s "
          f"({t_start:.1f} s start, {workers} workers, isolation = {g.sandbox.isolation})")  # fmt: skip
    print(f"cpu time       : baseline {cpu_base:.1f} s, ours {cpu_ours:.1f} s ({cpu_base / cpu_ours:.1f}x less; the rest of the speedup is parallelism)")
    print(f"peak memory    : grader parent {parent_mb:.0f} MB + {workers} zygotes x {zygote_mb:.0f} MB + largest program {child_mb:.0f} MB;"
          f" baseline: largest program {base_rss:.0f} MB")  # fmt: skip
    print(f"verdicts       : {n - len(mismatch)}/{n} identical (gt pass: ours {sum(ours)}, baseline {sum(base)})")
    print(f"cpus           : {len(os.sched_getaffinity(0))} available, load average {os.getloadavg()[0]:.1f} at the end")
    if mismatch:
        raise SystemExit(f"verdicts differ on {len(mismatch)} programs, e.g. {mismatch[:5]}")


if __name__ == "__main__":
    main(tyro.cli(Args))
