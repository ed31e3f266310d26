"""Every arm x seed of a preset: one pueue task each (labelled), or, where pueue is missing, a local sequential run.

    python -m projected_grpo.sweep organism                       # every arm, each at its own seed count
    python -m projected_grpo.sweep organism vanilla erase --parallel 2   # chosen arms ("all": every arm)
    python -m projected_grpo.sweep organism --dry-run             # the commands, each under a `# why:` line
    python -m projected_grpo.sweep micro --seeds 0 1 2            # v1 organism (pueue if installed, else local)
    python -m projected_grpo.sweep micro --diagnostics             # v1's follow-up arms -> outputs/micro-diag

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

from projected_grpo.files import REPO_ROOT
from projected_grpo.problems import LOOPHOLE_MODES

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
ARMS_BY_PRESET = {"micro": {**METHOD_ARMS, **CONTROL_ARMS}}


@dataclass(frozen=True)
class Arm:
    overrides: list[str]
    why: str  # what the arm tests: shown by --dry-run and in the results
    seeds: int = 3  # seeds the sweep runs (headline arms: 5)


_PENALTY = ["--monitor-penalty", "3.0"]  # a flagged rollout loses the pass reward (REWARD_PASSED), keeps compile credit
_ORGANISM: dict[str, Arm] = {
    # headline (5 seeds): the preregistered H1 / H3 / H4 comparisons and their placebos (journal, 2026-12-02)
    "vanilla": Arm(["--arm", "none"], "H4: vanilla GRPO learns to hack held-out problems (> 30%)", 5),
    "erase": Arm(["--arm", "erase"], "H1 (primary): erasing the authored basis cuts held-out hacking >= 30 pts at matched pass", 5),
    "route": Arm(["--arm", "route"], "the same component routed into the quarantine, deleted at deployment", 5),
    "erase/random": Arm(["--arm", "erase", "--basis", "random"], "placebo: Haar-random axes, same modules and k", 5),
    "erase/neutral": Arm(["--arm", "erase", "--pairs", "forms:neutral"], "dose-matched placebo: honest edits at the hack's places, same k", 5),
    "rebound": Arm(["--arm", "none", "--rebound-alpha", "0.5"], "H3: the advantage-level baseline (Rebound) from the same pairs", 5),
    # the pair ladder: distance between the pairs and what the policy emits
    "erase/oracle-forms": Arm(["--arm", "erase", "--pairs", "forms:oracle"], "ladder (a), ORACLE: pairs in the teacher's own forms"),
    "erase/unseen-forms": Arm(["--arm", "erase", "--pairs", "forms:unseen"], "ladder (b): pairs only in forms the policy never sees"),
    # the benchmark's interventions at the same label budget (issue 16)
    "oracle-penalty": Arm(["--monitor", "gt", *_PENALTY], "ORACLE bound: the true hack label of every live rollout, as a penalty"),
    "gt90-penalty": Arm(["--monitor", "gt", "--monitor-accuracy", "0.9", *_PENALTY], "ORACLE monitor, 90% accurate, penalty"),
    "gt90-screen": Arm(["--monitor", "gt", "--monitor-accuracy", "0.9", "--monitor-use", "screen"], "ORACLE monitor, 90% accurate, flagged rollouts dropped"),
    "gt70-penalty": Arm(["--monitor", "gt", "--monitor-accuracy", "0.7", *_PENALTY], "ORACLE monitor, 70% accurate, penalty"),
    "probe-penalty": Arm(["--monitor", "probe", *_PENALTY], "a linear probe fitted on the same pairs as the basis, penalty"),
    "probe-screen": Arm(["--monitor", "probe", "--monitor-use", "screen"], "the same probe, flagged rollouts dropped"),
    "inoculation": Arm(["--inoculation"], "inoculation prompting: training prompts permit the loophole; no labels"),
    # extraction variants, each beside its dose-matched placebo (the same procedure on the neutral pairs)
    **{
        name: Arm(flags + extra, why + (" [placebo: neutral pairs]" if extra else ""))
        for name0, flags, why in (
            ("erase/branch", ["--arm", "erase", "--extract-loss", "branch"], "NLL only after the hack/honest branch token"),
            ("erase/per-mode", ["--arm", "erase", "--per-mode-basis"], "a basis per loophole mode, their union"),
            ("erase/mean-diff", ["--arm", "erase", "--extract-direction", "mean_diff"], "the unit mean difference (k = 1)"),
            ("erase/activation", ["--arm", "erase", "--extract-direction", "activation"], "the modules' output mean difference (v (x) e_j)"),
            ("erase/k54", ["--arm", "erase", "--k", "54", "--floor-quantile", "0"], "k = number of training pairs (54)"),
        )
        for name, extra in ((name0, []), (f"{name0}-neutral", ["--pairs", "forms:neutral"]))
    },
    # leave-one-mode-out (issue 12), one fold per loophole mode: the basis (pairs tagged with the mode dropped) and
    # the teacher pool never show the held-out mode's hack; the results table reads hack and pass on that mode only
    **{
        f"lomo:{mode}/{name}": Arm(["--heldout-mode", mode, *flags], f"LOMO fold {mode}: {why}", 1)
        for mode in LOOPHOLE_MODES
        for name, flags, why in (
            ("none", ["--arm", "none"], "vanilla without the mode's demonstrations"),
            ("erase", ["--arm", "erase"], "a basis that never saw this mode, erased"),
            ("route", ["--arm", "route"], "the same, routed into the quarantine"),
            ("random", ["--arm", "erase", "--basis", "random"], "placebo: Haar-random axes"),
        )
    },
    # PC07: does V track hack-ness or teacher-ness? Needs teacher rows that solve (the headline teacher only hacks)
    "pc07/teacher-solve": Arm(["--arm", "none", "--teacher-solve", "1"], "PC07: cin on teacher-hack vs teacher-correct rows", 1),
}
ORGANISM_ARMS = {label: Arm([*a.overrides, "--label", label], a.why, a.seeds) for label, a in _ORGANISM.items()}
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
    only: tyro.conf.Positional[tuple[str, ...]] = ()  # arm labels to run ("all" or nothing: all of the preset's)
    seeds: tuple[int, ...] = ()  # default: organism arms their own count (Arm.seeds), other presets 0 1 2
    dry_run: bool = False
    local: bool = False  # run here even if pueue is installed
    parallel: int = 1  # local runs at a time (each uses one torch thread; 2 fit this 2-core machine)
    diagnostics: bool = False  # the follow-up arms (DIAGNOSTIC_ARMS) instead of the main sweep, in <preset>-diag/
    outputs: str = "outputs"


def arm_table(args: Args) -> dict[str, Arm]:
    if args.diagnostics:
        return {label: Arm(o, "v1 follow-up") for label, o in DIAGNOSTIC_ARMS.items()}
    if args.preset == "organism":
        return ORGANISM_ARMS
    return {label: Arm(o, "") for label, o in ARMS_BY_PRESET.get(args.preset, METHOD_ARMS).items()}


def commands(args: Args) -> list[tuple[str, list[str]]]:
    arms = arm_table(args)
    folder = f"{args.preset}-diag" if args.diagnostics else args.preset
    only = () if args.only == ("all",) else args.only
    unknown = [a for a in only if a not in arms]
    if unknown:
        which = f"{args.preset} --diagnostics" if args.diagnostics else args.preset
        raise ValueError(f"unknown arm(s) {unknown}; {which} has {list(arms)}")
    out = []
    for order, (label, arm) in enumerate(arms.items()):
        if only and label not in only:
            continue
        for seed in args.seeds or (range(arm.seeds) if args.preset == "organism" else (0, 1, 2)):
            run_dir = Path(args.outputs) / folder / f"{slug(label)}-s{seed}"
            cmd = [sys.executable, "-m", "projected_grpo.train", args.preset, *arm.overrides, "--seed", str(seed), "--out-dir", str(run_dir)]
            out.append((seed, order, f"{args.preset} {label} s{seed}", cmd))
    # seed-major: a sweep stopped early leaves whole seeds (every arm paired with its vanilla), not whole arms
    return [(name, cmd) for _, _, name, cmd in sorted(out, key=lambda x: (x[0], x[1]))]


def main(args: Args) -> None:
    todo = [(name, cmd) for name, cmd in commands(args) if not (Path(cmd[-1]) / "summary.json").exists()]
    logger.info(f"{len(todo)} runs to do ({len(commands(args)) - len(todo)} already finished)")
    pueue = shutil.which("pueue")
    if args.dry_run:
        whys = {label: arm.why for label, arm in arm_table(args).items()}
        for name, cmd in todo:
            label = name.removeprefix(f"{args.preset} ").rsplit(" s", 1)[0]
            print(f"# why: {whys.get(label) or '-'}\n{shlex.join(cmd)}")
        return
    if pueue and not args.local:
        for name, cmd in todo:
            subprocess.run([pueue, "add", "--label", name, "--working-directory", str(REPO_ROOT), "--", shlex.join(cmd + ["--overwrite"])], check=True)
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
            running.append((name, subprocess.Popen(cmd + ["--overwrite"], cwd=REPO_ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)))
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
