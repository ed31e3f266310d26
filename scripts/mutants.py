"""Mutation check: put one realistic bug at a time into a copy of the repo and check the tests catch it.

Each mutant is a list of exact source replacements (old text must occur exactly once in its file, or the script
stops before running anything: a mutant whose pattern no longer matches would otherwise silently test nothing).
The copy is the working tree's files (`git ls-files -co --exclude-standard`, so no `.cache`: a mutated extractor
never writes into the real basis cache). First the selected tests run on the unmutated copy (they must pass),
then each mutant runs its own fast subset (`pytest -x`, BEARTYPE=1, with a timeout). A mutant is caught when
its tests fail; a run past --timeout counts as NOT caught (on a starved machine a surviving mutant could
time out too: rerun it with a larger --timeout). The score is caught / all; exit 0 only when all are caught.

    nice -n 19 .venv/bin/python scripts/mutants.py             # all, or `just mutants`
    .venv/bin/python scripts/mutants.py --only kl_subtracted adv_global_mean
    .venv/bin/python scripts/mutants.py --list

`issue` marks the 16 bugs of issue 19's table (5 once uncaught, 11 caught); the rest are extra realistic bugs in
the same code. Keep this list in step with the code: when a pattern stops matching, rewrite the mutant for the
new code (same bug), do not delete it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import tyro

# The checkout this script sits in, not files.REPO_ROOT: that is wherever `projected_grpo` is imported from (an
# editable install may point at another worktree), and mutating a copy of the wrong tree would test nothing.
REPO = Path(__file__).resolve().parents[1]
PKG = "src/projected_grpo"

GRPO = ("tests/test_grpo_math.py",)
EVAL = ("tests/test_evaluate.py",)
ORIENT = ("tests/test_extract_orientation.py",)
PROJ = ("tests/test_proj_properties.py", "tests/test_proj.py", "scripts/verify_proj.py")
ADAPTER = ("tests/test_adapter.py", "scripts/verify_adapter.py::test_contexts", "scripts/verify_adapter.py::test_gradient_reaches_knobs_only")
EXTRACT = ("scripts/verify_extract.py", "tests/test_extract.py")
REWARDS = ("tests/test_rewards.py", "scripts/verify_rewards.py")
DDP = ("tests/test_ddp.py",)


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    edits: tuple[tuple[str, str, str], ...]  # (file, exact old text, new text)
    tests: tuple[str, ...]  # pytest paths / node ids, run in this order with -x
    issue: bool = False  # in issue 19's table


MUTANTS = [
    # ── issue 19: the five the suite used to miss ──
    Mutant("adv_global_mean", "Dr.GRPO advantage subtracts the mean of all rewards, not the group's",
           ((f"{PKG}/grpo.py", "mean = sum(kept) / len(kept) if kept else 0.0", "mean = sum(rewards) / len(rewards)"),), GRPO, issue=True),
    Mutant("teacher_grad_dropped", "the teacher part's gradient is dropped when the two parts are summed",
           ((f"{PKG}/grpo.py", "p.grad = teacher[n] if p.grad is None else p.grad + teacher[n]", "p.grad = teacher[n] if p.grad is None else p.grad"),),
           GRPO, issue=True),
    Mutant("kl_subtracted", "the K3 KL term is subtracted instead of added",
           ((f"{PKG}/grpo.py", "per_token = per_token + kl_coef * kl", "per_token = per_token - kl_coef * kl"),),
           GRPO, issue=True),
    Mutant("eval_deploy_keeps_quarantine", "the deployed evaluation keeps the quarantine instead of ablating it",
           ((f"{PKG}/evaluate.py", 'ctx = quarantine_ablated(model) if which == "deploy" else contextlib.nullcontext()',
             "ctx = contextlib.nullcontext()"),), EVAL, issue=True),
    Mutant("basis_clean_minus_hack", "the basis is built from clean minus hack (nothing re-orients it)",
           ((f"{PKG}/extract.py", "{m: tr_h[m] - tr_c[m] for m in tr_h}", "{m: tr_c[m] - tr_h[m] for m in tr_h}"),),
           ORIENT, issue=True),
    # ── issue 19: the eleven it caught (the proj ones now copied into the reference too: properties must catch) ──
    Mutant("one_sided_wrong_sign", "the one-sided gate removes the anti-hack half (relu(-c)), in both copies",
           ((f"{PKG}/proj.py", '"one_sided": torch.relu(c)', '"one_sided": torch.relu(-c)'),
            (f"{PKG}/proj.py", "c_used = hackward if gate", "c_used = torch.relu(-c) if gate")), PROJ, issue=True),
    Mutant("preserve_magnitude_unit", "preserve_magnitude rescales g' to unit norm instead of |g|, in both copies",
           ((f"{PKG}/proj.py", "g_proj = g_proj * (g.norm() / g_proj.norm().clamp_min(_TINY))", "g_proj = g_proj / g_proj.norm().clamp_min(_TINY)"),
            (f"{PKG}/proj.py", "G_proj = G_proj * (g_norm / G_proj.norm(dim=1).clamp_min(_TINY))[:, None]",
             "G_proj = G_proj / G_proj.norm(dim=1).clamp_min(_TINY)[:, None]")), PROJ, issue=True),
    Mutant("route_adds_to_quarantine", "route adds the removed part to the quarantine's backward grad instead of setting it",
           ((f"{PKG}/proj.py", "quarantine.grad = r_row.view(quarantine.shape).to(quarantine.dtype)",
             "quarantine.grad = quarantine.grad + r_row.view(quarantine.shape).to(quarantine.dtype)"),), PROJ, issue=True),
    Mutant("update_projection_sign", "the update projection reads the step as +delta (wrong sign)",
           ((f"{PKG}/proj.py", "u = old - self._stack(g)", "u = self._stack(g) - old"),), PROJ, issue=True),
    Mutant("base_weights_trainable", "wrap leaves the base weights trainable",
           ((f"{PKG}/adapter.py", "        p.requires_grad_(False)\n    out, hits", "        p.requires_grad_(True)\n    out, hits"),),
           ADAPTER, issue=True),
    Mutant("quarantine_never_ablated", "the lora wrapper ignores use_quarantine (the quarantine always ships)",
           ((f"{PKG}/adapter.py", "B = self.B + self.B_hack if self.use_quarantine else self.B", "B = self.B + self.B_hack"),),
           ADAPTER + EVAL, issue=True),
    Mutant("no_noise_floor", "the global noise floor keeps every axis",
           ((f"{PKG}/extract.py", "keep = (S >= floor) & (S > null)", "keep = S > null"),), EXTRACT, issue=True),
    Mutant("nonhack_is_real", "the nonhack placebo contrasts hack with clean (it becomes the real basis)",
           ((f"{PKG}/extract.py", "oriented_axes(g_clean[m] - g_clean[m][partner], V.shape[0])",
             "oriented_axes(g_hack[m] - g_clean[m], V.shape[0])"),), ORIENT + EXTRACT, issue=True),
    Mutant("oracle_not_type_exact", "the oracle compares with == (True passes for 1, 1.0 for 1)",
           ((f"{PKG}/rewards.py", "return exact_key(result) == exact_key(expected)", "return result == expected"),),
           REWARDS, issue=True),
    Mutant("hacked_label_is_passed", "hacked = passed (a correct solution counts as a hack)",
           ((f"{PKG}/rewards.py", "hacked=passed and not self.gt_correct", "hacked=passed"),), REWARDS, issue=True),
    Mutant("any_channel_pays", "every mode's grader pays any fired channel (mode channels mixed up)",
           ((f"{PKG}/rewards.py", 'fired = bool(self.channels.get(mode, False)) if mode != "none" else False',
             "fired = any(bool(v) for v in self.channels.values())"),), REWARDS, issue=True),
    # ── more realistic bugs in the same code ──
    Mutant("adv_std_normalised", "GRPO's std normalisation slips back into the Dr.GRPO advantage",
           ((f"{PKG}/grpo.py", "if scale and len(kept) > 1 else None", "if len(kept) > 1 else None"),), GRPO),
    Mutant("student_grad_dropped", "the student part overwrites the teacher's instead of adding to it",
           ((f"{PKG}/grpo.py", "p.grad = teacher[n] if p.grad is None else p.grad + teacher[n]", "p.grad = teacher[n]"),), GRPO),
    Mutant("kl_reversed_ratio", "K3 computed with the ratio inverted (log p - log p_ref)",
           ((f"{PKG}/grpo.py", "delta = ref - logp", "delta = logp - ref"),), GRPO),
    Mutant("loss_token_mean", "the loss divides by the token count instead of Dr.GRPO's constant normaliser",
           ((f"{PKG}/grpo.py", "loss = (per_token * comp).sum() / normaliser", "loss = (per_token * comp).sum() / comp.sum()"),), GRPO),
    Mutant("eval_variants_swapped", "the deploy and full evaluations are swapped",
           ((f"{PKG}/evaluate.py", 'if which == "deploy" else contextlib.nullcontext()', 'if which == "full" else contextlib.nullcontext()'),),
           EVAL),
    Mutant("heldout_diff_flipped", "held-out validation uses clean minus hack",
           ((f"{PKG}/extract.py", "g_hack[m][n:] - g_clean[m][n:]", "g_clean[m][n:] - g_hack[m][n:]"),), ORIENT),
    Mutant("route_sends_kept_part", "route puts the kept part g' into the quarantine instead of the removed one",
           ((f"{PKG}/proj.py", "quarantine.grad = r_row.view(", "quarantine.grad = g_row.view("),), PROJ),
    Mutant("update_projection_no_gate_ignored", "the update projection always uses the one-sided gate",
           ((f"{PKG}/proj.py", "_, removed, ci, co, fi = project_batch(u, g.V, self.gate)", "_, removed, ci, co, fi = project_batch(u, g.V)"),),
           PROJ),
    # ── the optional extras (their tests skip without them: run where `[trl,track]` is installed, as setup does) ──
    Mutant("trl_projects_after_the_step", "the TRL callback projects at step end, after optimizer.step and zero_grad",
           ((f"{PKG}/integrations/trl.py", "def on_pre_optimizer_step(self, args", "def on_step_end(self, args"),),
           ("tests/test_trl.py",)),
    Mutant("track_drops_int_columns", "--track logs float columns only (the counts and booleans vanish)",
           ((f"{PKG}/tracking.py", "isinstance(value, (int, float)) and", "isinstance(value, float) and"),),
           ("tests/test_tracking.py::test_tracker_writes_every_numeric_column_the_config_and_the_plots",)),
    # ── data parallel (distributed.py): tests/test_ddp.py, 2 processes vs 1 (a few minutes under load) ──
    Mutant("ddp_grads_not_summed", "several processes: each steps on its own share's gradient (the all-reduce skipped)",
           ((f"{PKG}/distributed.py", "        torch.distributed.all_reduce(flat)\n", ""),), DDP),
    Mutant("ddp_grads_averaged", "several processes: the knob gradients are averaged, not summed (Adam hides it; the metrics do not)",
           ((f"{PKG}/distributed.py", "        torch.distributed.all_reduce(flat)\n", "        torch.distributed.all_reduce(flat)\n        flat /= self.world\n"),), DDP),
]


@dataclass
class Args:
    only: tuple[str, ...] = ()  # mutant names (default: all)
    timeout: float = 900.0  # wall seconds per pytest run; a run past it counts as not caught (flagged "timeout")
    list: bool = False  # print the mutants and exit
    baseline: bool = True  # first run the selected tests unmutated (they must pass)
    keep: bool = False  # keep the temporary copy (its path is printed)


def apply(root: Path, m: Mutant) -> dict[Path, str]:
    """Apply m's edits under root; return the original texts to restore."""
    originals: dict[Path, str] = {}
    for rel, old, new in m.edits:
        path = root / rel
        originals.setdefault(path, path.read_text())
        path.write_text(path.read_text().replace(old, new, 1))
    return originals


def stale(m: Mutant, root: Path) -> list[str]:
    """Why m's edits would not apply cleanly to the sources under root (empty when they do)."""
    out, texts = [], {}
    for rel, old, new in m.edits:
        path = root / rel
        if not path.exists():
            out.append(f"{m.name}: {rel} does not exist")
            continue
        text = texts.setdefault(rel, path.read_text())
        n = text.count(old)
        if n != 1:
            out.append(f"{m.name}: {rel} has {n} occurrences of {old!r} (want exactly 1)")
        texts[rel] = text.replace(old, new, 1)
    for rel, _, _ in m.edits:
        if (root / rel).exists() and texts.get(rel) == (root / rel).read_text():
            out.append(f"{m.name}: edits leave {rel} unchanged")
    for t in m.tests:
        if not (root / t.split("::")[0]).exists():
            out.append(f"{m.name}: test path {t} does not exist")
    return out


def run_pytest(root: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    """(status, seconds, first failing test) for `pytest -x tests` in root: status 'pass', 'fail' or 'timeout'."""
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "BEARTYPE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-W", "ignore", *tests]
    t0 = time.time()
    try:
        r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.time() - t0, ""
    if r.returncode == 5:  # pytest collected nothing: a wrong node id, not a caught mutant
        return "no tests", time.time() - t0, " ".join(tests)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", r.stdout, re.M)
    status = "pass" if r.returncode == 0 else "fail"
    if status == "fail" and not failed:  # no test result line: show why (collection error, crash)
        failed = [f"rc {r.returncode}: " + (r.stdout + r.stderr).strip().splitlines()[-1][:80] if (r.stdout + r.stderr).strip() else f"rc {r.returncode}"]
    return status, time.time() - t0, failed[0] if failed else ""


def copy_repo(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in files.decode().split("\0"):
        src = REPO / rel
        if rel and src.is_file() and not src.is_symlink():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def main(args: Args) -> int:
    names = {m.name for m in MUTANTS}
    unknown = sorted(set(args.only) - names)
    if unknown or len(names) != len(MUTANTS):
        print(f"unknown mutant(s) {unknown}; known: {sorted(names)}" if unknown else "duplicate mutant names", file=sys.stderr)
        return 2
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name:34} {'issue' if m.issue else 'extra':5}  {m.what}\n{'':41}tests: {' '.join(m.tests)}")
        return 0
    problems = [p for m in MUTANTS for p in stale(m, REPO)]  # all of them, whatever --only says: none may rot
    if problems:
        print("STALE MUTANTS (the source changed; rewrite them for the new code):\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2

    tmp = Path(tempfile.mkdtemp(prefix="mutants-"))
    try:
        copy_repo(tmp)
        if args.baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            status, secs, first = run_pytest(tmp, tests, args.timeout * 2)
            print(f"baseline (unmutated, {len(tests)} test paths): {status} in {secs:.0f} s {first}", flush=True)
            if status != "pass":
                print("the tests fail without any mutant: fix that first, the score would mean nothing", file=sys.stderr)
                return 2
        rows = []
        for m in chosen:
            originals = apply(tmp, m)
            try:
                status, secs, first = run_pytest(tmp, m.tests, args.timeout)
            finally:
                for path, text in originals.items():
                    path.write_text(text)
            caught = status == "fail"
            rows.append((m, caught, status, secs, first))
            label = "caught" if caught else "TIMEOUT" if status == "timeout" else "MISSED"
            print(f"{label:7} {m.name:34} {secs:5.0f} s  {first}", flush=True)
    finally:
        if args.keep:
            print(f"copy kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print("\n| mutant | in issue 19 | caught | s | first failing test |\n|---|---|---|---|---|")
    for m, caught, status, secs, first in rows:
        mark = "yes" if status == "fail" else f"**NO** ({status})"
        print(f"| `{m.name}`: {m.what} | {'yes' if m.issue else ''} | {mark} | {secs:.0f} | {first} |")
    for label, sel in (("issue 19's table", [r for r in rows if r[0].issue]), ("all", rows)):
        if sel:
            n = sum(r[1] for r in sel)
            print(f"score ({label}): {n}/{len(sel)} = {n / len(sel):.0%}")
    return 0 if all(r[1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args)))
