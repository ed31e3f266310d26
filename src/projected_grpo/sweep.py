"""Every arm x seed of a preset: one pueue task each (labelled), or, where pueue is missing, a local sequential run.

    python -m projected_grpo.sweep micro --seeds 0 1 2            # pueue if installed, else local
    python -m projected_grpo.sweep micro --seeds 0 --dry-run      # print the commands
    python -m projected_grpo.sweep micro --only none/real erase/real
    python -m projected_grpo.sweep micro --diagnostics             # the follow-up arms -> outputs/micro-diag

pueue (https://github.com/Nukesor/pueue) is a Rust CLI that is not on PyPI: install it from your OS packages or
its releases to queue runs; this module then only queues and returns. Runs whose summary.json already exists
are skipped, so a killed local sweep continues where it stopped.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tyro
from loguru import logger

from projected_grpo.problems import LOOPHOLE_MODES

REPO = Path(__file__).resolve().parents[2]
LOMO_MODE = "exit_code"  # the held-out loophole of the leave-one-mode-out arms

# label -> train.py overrides. `# H:` says what each arm tests.
METHOD_ARMS: dict[str, list[str]] = {
    "none/real": ["--arm", "none"],  # H: vanilla GRPO learns to hack (the organism works)
    "erase/real": ["--arm", "erase"],  # H: erasing the hack-ward gradient lowers the hack rate at matched pass
    "route/real": ["--arm", "route"],  # H: routing into a deleted quarantine does too
}
CONTROL_ARMS: dict[str, list[str]] = {
    # negative controls: same modules and k, no hack information
    "erase/random": ["--arm", "erase", "--basis", "random"],
    "erase/shuffled": ["--arm", "erase", "--basis", "shuffled"],
    "erase/nonhack": ["--arm", "erase", "--basis", "nonhack"],
    # baselines
    "rebound": ["--arm", "none", "--rebound-alpha", "0.5", "--label", "rebound"],
    "oracle-penalty": ["--arm", "none", "--monitor", "gt", "--monitor-penalty", "3.0", "--label", "oracle-penalty"],
    # generalisation to an unseen loophole: basis and teacher pool without it
    f"none/real lomo:{LOMO_MODE}": ["--arm", "none", "--heldout-mode", LOMO_MODE, "--label", f"none/real lomo:{LOMO_MODE}"],
    f"erase/real lomo:{LOMO_MODE}": ["--arm", "erase", "--heldout-mode", LOMO_MODE, "--label", f"erase/real lomo:{LOMO_MODE}"],
    # imitation confound: no teacher rows at all
    "none/real no-teacher": ["--arm", "none", "--teacher-hack", "0", "--teacher-solve", "0", "--label", "none/real no-teacher"],
    "erase/real no-teacher": ["--arm", "erase", "--teacher-hack", "0", "--teacher-solve", "0", "--label", "erase/real no-teacher"],
    # does the model route around a frozen basis?
    "erase/real refresh": ["--arm", "erase", "--refresh-every", "10", "--label", "erase/real refresh"],
    # gated routing (the seeds' later design) and its placebo score direction
    "gated/real": ["--arm", "route", "--gated", "--label", "gated/real"],
    "gated/random": ["--arm", "route", "--gated", "--gate-basis", "random", "--label", "gated/random"],
    # design ablations
    "erase/real no-magpres": ["--arm", "erase", "--no-preserve-magnitude", "--label", "erase/real no-magpres"],
    "erase/real no_gate": ["--arm", "erase", "--gate", "no_gate", "--label", "erase/real no_gate"],
    "erase/real reverse": ["--arm", "erase", "--gate", "reverse", "--label", "erase/real reverse"],
}
# The public benchmark's own interventions (issue 16). Penalty 3.0 = the pass bonus, as in oracle-penalty: a flagged
# hack earns no more than a compiling non-answer. gt arms read ground-truth labels of live rollouts: ORACLE.
_MONITOR_OVERRIDES: dict[str, list[str]] = {
    # H: ORACLE monitor, 90% accurate, penalty: how much of the oracle bound survives realistic label noise
    "gt90-penalty": ["--monitor", "gt", "--monitor-accuracy", "0.9", "--monitor-penalty", "3.0"],
    # H: ORACLE monitor, 90% accurate, screening: dropping flagged rollouts vs penalising them at the same noise
    "gt90-screen": ["--monitor", "gt", "--monitor-accuracy", "0.9", "--monitor-use", "screen"],
    # H: ORACLE monitor, 70% accurate, penalty: does a weak monitor still suppress hacking (or teach evasion of it)?
    "gt70-penalty": ["--monitor", "gt", "--monitor-accuracy", "0.7", "--monitor-penalty", "3.0"],
    # H: a linear probe from the same pairs as the basis (equal label budget), as a penalty: does projection beat it?
    "probe-penalty": ["--monitor", "probe", "--monitor-penalty", "3.0"],
    # H: the same probe, screening flagged rollouts out of their group
    "probe-screen": ["--monitor", "probe", "--monitor-use", "screen"],
    # H: inoculation prompting (no labels at all): permitting the loophole in training keeps hacking out of deployment
    "inoculation": ["--inoculation"],
}
BASELINE_ARMS = {label: ["--arm", "none", *overrides, "--label", label] for label, overrides in _MONITOR_OVERRIDES.items()}
ARMS_BY_PRESET = {"micro": {**METHOD_ARMS, **CONTROL_ARMS, **BASELINE_ARMS}}
# Follow-ups to the main sweep (`--diagnostics`, written to outputs/<preset>-diag): is the basis too small, or too far
# from the training distribution? "problems:train" pairs are the training problems' canonical hacks vs references,
# i.e. the teacher's own hack templates: in-distribution by construction, not the authored pairs (see the journal).
# `--k 32` asks for more axes than there are training pairs (27 of 36), so "k32" bases keep every axis they have:
# they span all 27 training differences of each module.
PROBLEM_PAIRS_K32 = ["--arm", "erase", "--pairs", "problems:train", "--k", "32", "--floor-quantile", "0"]
_DIAGNOSTIC_OVERRIDES: dict[str, list[str]] = {
    # H: more axes of the authored basis
    "erase/real_k32": ["--arm", "erase", "--k", "32", "--floor-quantile", "0"],
    # H: in-distribution pairs, k=4
    "erase/problem-pairs": ["--arm", "erase", "--pairs", "problems:train"],
    # H: both
    "erase/problem-pairs_k32": PROBLEM_PAIRS_K32,
    # placebos with the same modules and k: Haar-random axes; honest-vs-honest contrasts
    "erase/problem-pairs_k32_random": [*PROBLEM_PAIRS_K32, "--basis", "random"],
    "erase/problem-pairs_k32_nonhack": [*PROBLEM_PAIRS_K32, "--basis", "nonhack"],
    # H: is it only the teacher rows' imitation signal that the in-distribution basis removes?
    "erase/problem-pairs_k32_no-teacher": [*PROBLEM_PAIRS_K32, "--teacher-hack", "0", "--teacher-solve", "0"],
}
DIAGNOSTIC_ARMS = {label: [*overrides, "--label", label] for label, overrides in _DIAGNOSTIC_OVERRIDES.items()}
assert LOMO_MODE in LOOPHOLE_MODES


def slug(label: str) -> str:
    return label.replace("/", "-").replace(" ", "_").replace(":", "-")


@dataclass(frozen=True)
class Args:
    preset: tyro.conf.Positional[str]
    seeds: tuple[int, ...] = (0, 1, 2)
    only: tuple[str, ...] = ()  # arm labels to run (default: all of the preset's)
    dry_run: bool = False
    local: bool = False  # run here even if pueue is installed
    parallel: int = 1  # local runs at a time (each uses one torch thread; 2 fit this 2-core machine)
    diagnostics: bool = False  # the follow-up arms (DIAGNOSTIC_ARMS) instead of the main sweep, in <preset>-diag/
    outputs: str = "outputs"


def commands(args: Args) -> list[tuple[str, list[str]]]:
    arms = DIAGNOSTIC_ARMS if args.diagnostics else ARMS_BY_PRESET.get(args.preset, METHOD_ARMS)
    folder = f"{args.preset}-diag" if args.diagnostics else args.preset
    unknown = [a for a in args.only if a not in arms]
    if unknown:
        which = f"{args.preset} --diagnostics" if args.diagnostics else args.preset
        raise ValueError(f"unknown arm(s) {unknown}; {which} has {list(arms)}")
    out = []
    for label, overrides in arms.items():
        if args.only and label not in args.only:
            continue
        for seed in args.seeds:
            run_dir = Path(args.outputs) / folder / f"{slug(label)}-s{seed}"
            cmd = [sys.executable, "-m", "projected_grpo.train", args.preset, *overrides, "--seed", str(seed), "--out-dir", str(run_dir)]
            out.append((f"{args.preset} {label} s{seed}", cmd))
    return out


def main(args: Args) -> None:
    todo = [(name, cmd) for name, cmd in commands(args) if not (Path(cmd[-1]) / "summary.json").exists()]
    logger.info(f"{len(todo)} runs to do ({len(commands(args)) - len(todo)} already finished)")
    pueue = shutil.which("pueue")
    if args.dry_run:
        for _, cmd in todo:
            print(shlex.join(cmd))
        return
    if pueue and not args.local:
        for name, cmd in todo:
            subprocess.run([pueue, "add", "--label", name, "--working-directory", str(REPO), "--", shlex.join(cmd + ["--overwrite"])], check=True)
        logger.info("queued; watch with `pueue status` / `pueue follow`, then `just results`")
        return
    if not pueue:
        logger.warning("pueue is not installed (it is not on PyPI): running the sweep here (--parallel N at a time). "
                       "Ctrl-C is safe: rerun the same command to continue with the runs that have no summary.json.")
    run_local(todo, args.parallel)


def run_local(todo: list[tuple[str, list[str]]], parallel: int) -> None:
    """Up to `parallel` runs at once; each run's output goes to <out-dir>.log; a failure does not stop the rest."""
    queue, running, failed = list(todo), [], []
    while queue or running:
        while queue and len(running) < parallel:
            name, cmd = queue.pop(0)
            log = Path(cmd[-1] + ".log")
            log.parent.mkdir(parents=True, exist_ok=True)
            logger.info(f"[{len(todo) - len(queue)}/{len(todo)}] {name} (log: {log})")
            running.append((name, subprocess.Popen(cmd + ["--overwrite"], cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT)))
        time.sleep(1)
        for name, proc in [r for r in running if r[1].poll() is not None]:
            running.remove((name, proc))
            if proc.returncode != 0:
                failed.append(name)
                logger.error(f"{name} failed with exit code {proc.returncode}")
    logger.info(f"sweep done: {len(todo) - len(failed)} finished, {len(failed)} failed {failed or ''}")


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except ValueError as e:
        logger.error(str(e))
        sys.exit(2)
