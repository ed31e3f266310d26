"""Step time of one process vs N processes (data parallel, distributed.py) on the same global batch, side by side.

    python scripts/bench_ddp.py                          # smoke preset, 1 vs 2 processes, 3 interleaved runs each
    python scripts/bench_ddp.py --runs 2 --steps 6 --extra "--prompts-per-step 8 --group 4"

Each run is a fresh launch (`python -m projected_grpo.train` with --seed-per-prompt, or `accelerate launch
--multi_gpu --num_processes N -m projected_grpo.train`, which is torchrun underneath and gloo on CPU). The step
time is the `seconds` column of metrics.jsonl (process 0's wall per step: sampling, grading, backward, the
collectives, the update), median over steps 2.. of every run; the whole-process wall (launch, imports, setup,
evals) is printed beside it. Runs alternate between the two settings so load from other processes hits both alike.

On a machine with C cores and N processes, each process has C / N cores for its own sampling and backward and the
grader's sandbox workers are split between them: N processes can only help when one process leaves cores idle.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tyro

from projected_grpo.files import REPO_ROOT


@dataclass
class Args:
    processes: int = 2  # compared with 1
    runs: int = 3
    steps: int = 5
    extra: str = "--prompts-per-step 4 --eval-samples 1 --no-eval-variants"  # train flags for both settings


def launch(n: int, args: Args, out: Path) -> tuple[list[float], float]:
    """(step seconds of steps 2.., whole wall) of one run with n processes."""
    train = ["-m", "projected_grpo.train", "smoke", "--overwrite", "--seed-per-prompt", "--steps", str(args.steps),
             "--out-dir", str(out), *shlex.split(args.extra)]
    if n == 1:
        cmd = [sys.executable, *train]
    else:
        cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", str(n),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *train]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO_ROOT / "src")}
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        sys.exit(f"`{shlex.join(cmd)}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["seconds"] for r in rows[1:]], wall


def main(args: Args) -> None:
    settings = (1, args.processes)
    steps: dict[int, list[float]] = {n: [] for n in settings}
    walls: dict[int, list[float]] = {n: [] for n in settings}
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for n in settings:  # warm-up: fills .cache (basis, pool, initial eval) so every timed run hits it
            launch(n, args, Path(tmp) / "warmup")
        for _ in range(args.runs):
            for n in settings:
                s, w = launch(n, args, Path(tmp) / f"run{n}")
                steps[n] += s
                walls[n].append(w)
    print(f"smoke, {args.steps} steps, `{args.extra}`, {args.runs} interleaved runs per setting; {os.cpu_count()} cores, "
          f"load average before {load[0]:.1f} / after {os.getloadavg()[0]:.1f}")
    print(f"{'processes':>9} {'median step s':>13} {'best step s':>11} {'median wall s':>13}")
    for n in settings:
        print(f"{n:>9} {statistics.median(steps[n]):>13.2f} {min(steps[n]):>11.2f} {statistics.median(walls[n]):>13.1f}")
    ratio = statistics.median(steps[1]) / statistics.median(steps[args.processes])
    print(f"step-time speed-up of {args.processes} processes over 1: {ratio:.2f}x (median step)")


if __name__ == "__main__":
    main(tyro.cli(Args))
