"""Whole-process wall time of `just smoke` with warm caches: best and median of several runs, side by side for
each extra argument set (default: `--sampler hf` vs `--sampler own`).

    python scripts/bench_smoke.py                      # 5 interleaved runs of each
    python scripts/bench_smoke.py --runs 3 --variants "" "--kl-coef 0.001"

Each run is a fresh process (`just smoke ... --out-dir <tmp>`), so imports, model build, basis and pool cache
loads, evaluations and the 30 steps all count; one warm-up run per variant fills `.cache` first. Runs alternate
between variants so load from other processes hits them alike. Target (issue 13): best <= 10 s.
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import tyro

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Args:
    runs: int = 5
    variants: list[str] = field(default_factory=lambda: ["--sampler hf", "--sampler own"])


def smoke(extra: str, out_dir: Path) -> float:
    just = Path(sys.executable).parent / "just"
    cmd = [str(just), "smoke", "--out-dir", str(out_dir), *shlex.split(extra)]
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=os.environ.copy(), capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        sys.exit(f"`{shlex.join(cmd)}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall


def main(args: Args) -> None:
    walls: dict[str, list[float]] = {v: [] for v in args.variants}
    with tempfile.TemporaryDirectory() as tmp:
        for v in args.variants:
            smoke(v, Path(tmp) / "warmup")  # fills .cache (basis, pool): every timed run hits it
        for _ in range(args.runs):
            for v in args.variants:
                walls[v].append(smoke(v, Path(tmp) / "run"))
    print(f"`just smoke` whole-process wall, {args.runs} runs each, warm caches")
    print(f"{'variant':<28} {'best s':>7} {'median s':>9}")
    for v, ws in walls.items():
        print(f"{v or '(defaults)':<28} {min(ws):>7.1f} {statistics.median(ws):>9.1f}")


if __name__ == "__main__":
    main(tyro.cli(Args))
