"""Whole-process wall time of `just smoke` with warm caches: best and median of several runs, side by side for
each extra argument set (default: `--sampler hf` vs `--sampler own`).

    python scripts/bench_smoke.py                      # 5 interleaved runs of each
    python scripts/bench_smoke.py --runs 3 --variants "" "--kl-coef 0.001"

Each run is a fresh process (`just smoke ... --out-dir <tmp>`), so imports, model build, basis and pool cache
loads, evaluations and the 30 steps all count; one warm-up run per variant fills `.cache` first. Runs alternate
between variants so load from other processes hits them alike; CPU seconds (user + sys of the process tree,
grader workers included) are printed beside the wall, as they are what load from other processes does not
inflate. Target (issue 13): best wall <= 10 s on an otherwise idle 2-core machine.
"""

from __future__ import annotations

import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import tyro

from projected_grpo.files import REPO_ROOT


@dataclass
class Args:
    runs: int = 5
    variants: list[str] = field(default_factory=lambda: ["--sampler hf", "--sampler own"])


def smoke(extra: str, out_dir: Path) -> tuple[float, float]:
    """(wall s, CPU s of the process tree: user + sys, which other processes' load does not inflate)."""
    just = Path(sys.executable).parent / "just"
    cmd = [str(just), "smoke", "--out-dir", str(out_dir), *shlex.split(extra)]
    before, t = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=os.environ.copy(), capture_output=True, text=True)
    wall, after = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if done.returncode != 0:
        sys.exit(f"`{shlex.join(cmd)}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, cpu


def main(args: Args) -> None:
    walls: dict[str, list[tuple[float, float]]] = {v: [] for v in args.variants}
    with tempfile.TemporaryDirectory() as tmp:
        for v in args.variants:
            smoke(v, Path(tmp) / "warmup")  # fills .cache (basis, pool): every timed run hits it
        for _ in range(args.runs):
            for v in args.variants:
                walls[v].append(smoke(v, Path(tmp) / "run"))
    print(f"`just smoke` whole-process wall, {args.runs} runs each, warm caches")
    print(f"{'variant':<28} {'best wall s':>11} {'median wall s':>13} {'best CPU s':>10} {'median CPU s':>12}")
    for v, runs in walls.items():
        wall, cpu = [w for w, _ in runs], [c for _, c in runs]
        print(f"{v or '(defaults)':<28} {min(wall):>11.1f} {statistics.median(wall):>13.1f} {min(cpu):>10.1f} {statistics.median(cpu):>12.1f}")


if __name__ == "__main__":
    main(tyro.cli(Args))
