"""Grader throughput vs a naive baseline, measured side by side in one run.

Programs: the 60 sample problems' canonical solutions + one canonical hack per loophole mode per problem
(each hack graded under its own mode). Baseline: one fresh `python -c` per program, serial, running the
setup + program + the tests as type-exact asserts, then printing a marker (so an early exit or an
always-equal object fails there too); its verdict must equal our gt_correct on every program.

    python scripts/bench_grader.py [--workers N] [--n-problems 60]

Grader overhead (issue 13): the CPU the grader spends on the canonical solutions (parent, zygotes and
children, zygote start-up excluded) beside the tests' own CPU (setup + program + every call, run in one
plain process, no sandbox). Side by side with other trees and with hardening measures off (issue 18):

    python scripts/bench_grader.py --compare c59670c HEAD --measures --reps 3

runs each variant in its own process, reps interleaved (variant order rotated per rep), and prints medians:
throughput, CPU, overhead, and whether its grades equal this tree's on every program (full Grade for
trees that grade the same way; gt_correct for all).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
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
    compare: tuple[str, ...] = ()  # git revisions whose grader runs side by side with this tree's
    measures: bool = False  # also this tree with each hardening measure off, one at a time
    reps: int = 3  # interleaved repetitions of each variant (--compare / --measures)
    variant: str = ""  # internal: run one variant in this process and print its figures as JSON


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

# ── side by side: trees, hardening measures off, the tests' own CPU (each variant in its own process) ──

REPO = Path(__file__).resolve().parents[1]
# Issue 18's per-child measures, switched off in the zygote by a wrapper program (the sandbox itself has no
# off switch); "decode-bound" is switched off in the grader process.
MEASURES = {
    "seccomp": "iso.syscall_filter = lambda: (None, 'off for the benchmark')",
    "keyring": "iso.Libc.join_fresh_session_keyring = lambda self: None",
    "decode-bound": None,
}
ZYGOTE_WRAPPER = """import signal, sys
sys.path.insert(0, {src!r})
from projected_grpo import sandbox_isolation as iso
{patch}
from projected_grpo.sandbox_zygote import main
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
main()
"""


def bench_items(problems: list[Problem]) -> dict[str, list[tuple[int, str, str]]]:
    """(problem index, mode, completion) per group: every variant grades the same completions."""
    return {
        "solutions": [(i, p.mode, f"```python\n{p.reference}\n```") for i, p in enumerate(problems)],
        "hacks": [(i, m, canonical_hack(p.with_mode(m), m)) for i, p in enumerate(problems) for m in LOOPHOLE_MODES],
        # the per-program fixed cost (fork, limits, filter, keyring, records, grading), on one test each
        "trivial": [(-1, "none", f"```python\n{problems[0].reference}\n```") for _ in range(300)],  # -1: problem 0, first test only
    }


def proc_cpu_s(pids: list[int]) -> float:
    """CPU of these processes and of their reaped children (a zygote reaps each program as it ends)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def tests_own_cpu(problems: list[Problem]) -> float:
    """setup + program + every test's call of each canonical solution in this plain process: the floor."""
    from projected_grpo.rewards import parse_tests
    from projected_grpo.sandbox import _SETUP_MODULES

    for m in _SETUP_MODULES:  # the zygotes import these once, before any program
        __import__(m)
    total = 0.0
    for p in problems:
        setup = compile(p.setup_code, "<setup>", "exec")
        calls = [compile(s.call, "<call>", "eval") for s in parse_tests(p.id, p.tests)]
        ns: dict = {"__name__": "__main__"}
        random.seed(0)
        t = time.process_time()
        exec(setup, ns)
        exec(compile(p.reference, "<solution>", "exec"), ns)
        for c in calls:
            try:
                eval(c, ns)
            except Exception:  # noqa: BLE001,S112 -- the grader counts a raising test too
                continue
        total += time.process_time() - t
    return total


def run_variant(spec: dict, args: Args) -> dict:
    from projected_grpo.rewards import Grader

    problems = load_problems(SAMPLE)[: args.n_problems]
    if spec["off"] == "tests":
        return {"own_cpu": tests_own_cpu(problems)}
    if spec["off"] == "decode-bound":
        from projected_grpo import sandbox_codec

        sandbox_codec._hashable = lambda items: items
    elif spec["off"]:
        from projected_grpo import sandbox

        wrapper = Path(tempfile.mkdtemp()) / "zygote.py"
        wrapper.write_text(ZYGOTE_WRAPPER.format(src=spec["src"], patch=MEASURES[spec["off"]]))
        sandbox.ZYGOTE = str(wrapper)
    problems.append(dataclasses.replace(problems[0], tests=problems[0].tests[:1]))  # index -1 (bench_items)
    items = json.loads(Path(spec["items"]).read_text())
    out: dict = {"grades": {}, "wall": {}, "cpu": {}}
    with Grader(workers=args.workers) as g:
        for name, its in items.items():
            pids = g.sandbox.zygote_pids
            c0, s0, t0 = proc_cpu_s(pids), cpu_s("self"), time.perf_counter()
            grades = g.grade_many([(problems[i].with_mode(m), c) for i, m, c in its])
            out["wall"][name] = time.perf_counter() - t0
            out["cpu"][name] = proc_cpu_s(pids) - c0 + cpu_s("self") - s0
            out["grades"][name] = [{k: list(v) if isinstance(v, tuple) else v for k, v in g_.__dict__.items()} for g_ in grades]
        # The same solutions again, their tests now parsed (parse_tests is cached per problem): the steady
        # state of training, which grades the same problems every step.
        pids, its = g.sandbox.zygote_pids, items["solutions"]
        c0, s0 = proc_cpu_s(pids), cpu_s("self")
        g.grade_many([(problems[i].with_mode(m), c) for i, m, c in its])
        out["cpu"]["solutions, parsed"] = proc_cpu_s(pids) - c0 + cpu_s("self") - s0
    return out


def compare(args: Args) -> None:
    problems = load_problems(SAMPLE)[: args.n_problems]
    tmp = Path(tempfile.mkdtemp(prefix="bench_grader_"))
    items_path = tmp / "items.json"
    items_path.write_text(json.dumps(bench_items(problems)))
    this = str(REPO / "src")
    variants = [{"name": "this tree", "src": this, "off": ""}]
    for rev in args.compare:
        out = tmp / rev
        out.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
        variants.append({"name": f"tree {rev}", "src": str(out / "src"), "off": ""})
    variants += [{"name": f"this tree, {m} off", "src": this, "off": m} for m in MEASURES if args.measures]
    variants.append({"name": "tests' own CPU", "src": this, "off": "tests"})
    runs: dict[str, list[dict]] = {v["name"]: [] for v in variants}
    loads = []
    for rep in range(args.reps):
        for v in variants[rep % len(variants) :] + variants[: rep % len(variants)]:  # rotate: no variant always first
            cmd = [sys.executable, __file__, "--n-problems", str(args.n_problems), "--variant", json.dumps({**v, "items": str(items_path)})]
            cmd += ["--workers", str(args.workers)] if args.workers else []
            r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": v["src"]}, cwd=tmp)
            if r.returncode != 0:
                raise SystemExit(f"variant {v['name']!r} failed:\n{r.stderr[-3000:]}")
            runs[v["name"]].append(json.loads(r.stdout.strip().splitlines()[-1]))
            loads.append(os.getloadavg()[0])
    owns = [r["own_cpu"] for r in runs["tests' own CPU"]]  # rep by rep: each variant's overhead against the same rep
    own = statistics.median(owns)
    ref = runs["this tree"][0]["grades"]
    n = {name: len(its) for name, its in ref.items()}
    print(f"{n['solutions'] + n['hacks']} programs ({n['solutions']} canonical solutions + {n['hacks']} canonical hacks) + {n['trivial']} trivial, "
          f"{args.reps} interleaved reps, medians; load average {min(loads):.1f}-{max(loads):.1f} during the runs")  # fmt: skip
    print(f"tests' own CPU (canonical solutions, one plain process): {own:.2f} s (reps: {', '.join(f'{o:.2f}' for o in owns)})")
    head = f"{'variant':32}{'prog/s':>7}{'sol. CPU':>9}{'overhead':>9}{'parsed':>8}{'hacks CPU':>10}{'ms/trivial':>11}{'vs this':>8}  grades equal to this tree's"
    print(head)
    base = None
    groups = ("solutions", "hacks")
    for v in variants[:-1]:
        rs = runs[v["name"]]
        med = lambda f: statistics.median(f(r) for r in rs)  # noqa: E731
        rate = med(lambda r: sum(n[k] for k in groups) / sum(r["wall"][k] for k in groups))
        over = statistics.median((r["cpu"]["solutions"] - o) / o for r, o in zip(rs, owns, strict=True))
        warm = statistics.median((r["cpu"]["solutions, parsed"] - o) / o for r, o in zip(rs, owns, strict=True))
        base = base or rate
        gs = rs[0]["grades"]
        pairs = [(a, b) for k in groups for a, b in zip(ref[k], gs[k], strict=True)]
        full, gt = sum(a == b for a, b in pairs), sum(a["gt_correct"] == b["gt_correct"] for a, b in pairs)
        print(f"{v['name']:32}{rate:7.1f}{med(lambda r: r['cpu']['solutions']):9.2f}{over:9.1%}{warm:8.1%}"
              f"{med(lambda r: r['cpu']['hacks']):10.2f}{med(lambda r: r['cpu']['trivial']) / n['trivial'] * 1e3:11.2f}{rate / base - 1:+8.1%}"
              f"  full {full}/{len(pairs)}, gt_correct {gt}/{len(pairs)}")  # fmt: skip
        by_rep = ", ".join(f"{r['cpu']['solutions']:.2f}" for r in rs)
        print(f"{'':32}  sol. CPU by rep: {by_rep}")
    print("overhead = (grader CPU on the canonical solutions - the tests' own CPU) / the tests' own CPU; grader CPU = "
          "this process + zygotes + programs, zygote start-up excluded; median over reps of the ratio to the same rep's "
          "own CPU; target <= 10% (issue 13). parsed: the same, graded again with the tests already parsed (cached per "
          "problem, as in training). prog/s: solutions + hacks, wall. ms/trivial: CPU per one-test program")  # fmt: skip


def main(args: Args) -> None:
    if args.variant:
        print(json.dumps(run_variant(json.loads(args.variant), args)))
        return
    if args.compare or args.measures:
        compare(args)
        return
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
