"""The organism's committed results: small per-run summaries under docs/results/<preset>/runs/, and the tables,
paired statistics and preregistered verdicts recomputed from them alone.

    python -m projected_grpo.report export outputs/organism docs/results/organism   # after a sweep
    python -m projected_grpo.report tables docs/results/organism                     # = `just results`

Every comparison is paired with vanilla on the same warm start and seed (stats.py): the per-seed difference,
its paired t-test, and a bootstrap CI that resamples seeds and held-out problems. Arms that use privileged
information (the oracle's labels of live rollouts, or the teacher's own hack templates as pairs) are marked
ORACLE in every table.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from projected_grpo import stats
from projected_grpo.files import atomic_write, read_jsonl

VANILLA = "vanilla"
PRIMARY = "erase"  # preregistered in RESEARCH_JOURNAL.md (2026-12-02) before the sweep
REBOUND = "rebound"
TRAIN_KEYS = ("cin_s", "cin_t", "cin_th", "cin_tc", "cout", "cout_update", "fired", "kl", "grad_norm", "removed", "hack_s", "gt_s",
              "attempt_s", "x_given_a")
SIDE_TABLES = ("lomo:", "pc07/")  # labels with their own section (not paired with vanilla: another condition)


def privileged(cfg: dict) -> str | None:
    """Why an arm is not available on a new environment (None: it is)."""
    if cfg.get("oracle_penalty") or cfg.get("monitor") == "gt":
        return "oracle labels of live rollouts"
    if cfg.get("pairs") in ("forms:oracle", "problems:train"):
        return "pairs are the teacher's own hack templates"
    return None


def _compact_eval(e: dict) -> dict:
    keys = ("hack", "pass", "n", "per_problem", "forms", "form_roles")
    out = {k: e[k] for k in keys if k in e}
    mode_keys = ("hack", "pass", "n", "attempt", "exploit_given_attempt")
    out["per_mode"] = {m: {k: v[k] for k in mode_keys if k in v} for m, v in e.get("per_mode", {}).items()}
    return out


def compact(run_dir: Path) -> dict:
    """The committed form of one finished run."""
    s = json.loads((run_dir / "summary.json").read_text())
    cfg = json.loads((run_dir / "config.json").read_text())
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    mean_of = lambda k: float(np.mean(v)) if (v := [m[k] for m in metrics if m.get(k) is not None]) else None  # noqa: E731
    val = (s.get("basis_report") or {}).get("validation") or {}
    return dict(
        label=s["label"], seed=s["seed"], preset=s["preset"], arm=cfg["arm"], basis=cfg["basis"], pairs=cfg["pairs"],
        heldout_mode=cfg.get("heldout_mode"),
        privileged=privileged(cfg), steps=s["steps"], wall_s=round(s["wall_s"], 1),
        initial=_compact_eval(s["initial_eval"]), final=_compact_eval(s["final_eval"]),
        train_mean={k: mean_of(k) for k in TRAIN_KEYS}, train_last5={k: s["train_last5"].get(k) for k in TRAIN_KEYS},
        basis_summary=dict(
            n_modules=(s.get("basis_report") or {}).get("n_kept"),
            n_axes=sum(((s.get("basis_report") or {}).get("k_per_module") or {}).values()),
            val_median=val.get("median"), val_share_pos=val.get("share_pos"),
        ),
        cin_null=s.get("cin_null"),
        overrides={k: cfg[k] for k in sorted(cfg) if k in OVERRIDE_KEYS},
    )


OVERRIDE_KEYS = (
    "arm", "basis", "pairs", "k", "floor_quantile", "extract_loss", "extract_direction", "per_mode_basis", "gate",
    "rebound_alpha", "oracle_penalty", "monitor", "monitor_use", "monitor_accuracy", "inoculation", "teacher_hack",
    "teacher_solve", "steps", "lr", "seed",
)


def export(runs_dir: Path, to: Path) -> int:
    """Write runs_dir/*/summary.json runs as to/runs/<run>.json; returns how many."""
    out = to / "runs"
    n = 0
    for d in sorted(p for p in runs_dir.iterdir() if (p / "summary.json").exists()):
        atomic_write(out / f"{d.name}.json", json.dumps(compact(d), indent=1, sort_keys=True) + "\n")
        n += 1
    return n


# ── tables ────────────────────────────────────────────────────────────────────────────────────────


def load_runs(results_dir: Path) -> dict[str, dict[int, dict]]:
    runs: dict[str, dict[int, dict]] = defaultdict(dict)
    files = sorted((results_dir / "runs").glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no run summaries in {results_dir / 'runs'}")
    for f in files:
        r = json.loads(f.read_text())
        runs[r["label"]][r["seed"]] = r
    return runs


def per_problem_rates(run: dict, key: int) -> np.ndarray:
    """Per held-out problem (sorted ids) hacked (key=1) or passed (key=2) share of its samples."""
    pp = run["final"]["per_problem"]
    return np.array([pp[p][key] / pp[p][0] for p in sorted(pp)])


def pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or x != x else f"{100 * x:.{digits}f}"


def arm_row(label: str, runs: dict[int, dict], ref: dict[int, dict] | None) -> dict:
    hack = {s: r["final"]["hack"] for s, r in runs.items()}
    passed = {s: r["final"]["pass"] for s, r in runs.items()}
    row = dict(label=label, n=len(runs), hack=hack, passed=passed, privileged=next(iter(runs.values()))["privileged"])
    if ref is not None and label != VANILLA and set(runs) & set(ref):
        row["d_hack"] = stats.paired(hack, {s: r["final"]["hack"] for s, r in ref.items()})
        row["d_pass"] = stats.paired(passed, {s: r["final"]["pass"] for s, r in ref.items()})
        row["ci_hack"] = stats.bootstrap_ci(
            {s: per_problem_rates(r, 1) for s, r in runs.items()}, {s: per_problem_rates(r, 1) for s, r in ref.items()}
        )
    cin = [r["train_mean"]["cin_s"] for r in runs.values() if r["train_mean"].get("cin_s") is not None]
    row["cin_s"] = float(np.mean(cin)) if cin else None
    roles = defaultdict(int)
    for r in runs.values():
        for k, v in (r["final"].get("form_roles") or {}).items():
            roles[k] += v
    row["roles"] = dict(roles)
    return row


def mean_sem(xs: dict[int, float]) -> str:
    v = np.array(list(xs.values()))
    sem = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return f"{100 * v.mean():.1f} ± {pct(sem)}"


def fmt_delta(p: stats.Paired | None) -> str:
    return "-" if p is None else f"{100 * p.mean:+.1f} ± {pct(p.sem)} (p={p.p:.3f})" if p.p == p.p else f"{100 * p.mean:+.1f}"


def tables(results_dir: Path) -> str:
    runs = load_runs(results_dir)
    if VANILLA not in runs:
        raise ValueError(f"{results_dir}: no {VANILLA!r} runs to pair with")
    ref = runs[VANILLA]
    side = {label: rs for label, rs in runs.items() if label.startswith(SIDE_TABLES)}
    runs = {label: rs for label, rs in runs.items() if label not in side}
    rows = [arm_row(label, rs, ref) for label, rs in sorted(runs.items(), key=lambda kv: (kv[0] != VANILLA, kv[0]))]
    init = [r["initial"]["hack"] for r in ref.values()]
    lines = [
        f"# Organism results ({results_dir})",
        "",
        "Regenerate: `just results` (reads only the committed run summaries in `runs/`).",
        "Held-out problems, deployed model (quarantine ablated), sampled at the training temperature. Rates in %;",
        "mean ± SEM over seeds; Δ = arm − vanilla paired by seed (same warm start and seed), paired t-test p; CI: 95%",
        "bootstrap over seeds and problems. ORACLE: uses privileged information (column `privileged`).",
        "",
        f"Vanilla initial hack rate: {100 * np.mean(init):.1f}% (before GRPO).",
        "",
        "| arm | seeds | hack % | pass % | Δhack (pts) | 95% CI | Δpass (pts) | cin_s | hacked samples in never-shown forms | privileged |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = r.get("ci_hack")
        total = sum(r["roles"].values())
        unseen = r["roles"].get("heldout", 0) + r["roles"].get("authored", 0)
        novel = f"{unseen}/{total} (+{r['roles'].get('other', 0)} other)" if total else "-"
        name = f"**{r['label']}** ORACLE" if r["privileged"] else r["label"]
        cin = "-" if r["cin_s"] is None else f"{r['cin_s']:.3f}"
        lines.append(
            f"| {name} | {r['n']} | {mean_sem(r['hack'])} | {mean_sem(r['passed'])} | {fmt_delta(r.get('d_hack'))} | "
            f"{'-' if ci is None else f'[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]'} | {fmt_delta(r.get('d_pass'))} | "
            f"{cin} | {novel} | {r['privileged'] or ''} |"
        )
    lines += ["", *verdicts(runs), "", *power_lines(runs), "", *basis_lines(runs)]
    if side:
        lines += ["", *lomo_lines(side), "", *pc07_lines(side)]
    return "\n".join(lines) + "\n"


def verdicts(runs: dict[str, dict[int, dict]]) -> list[str]:
    ref = runs[VANILLA]
    out = ["## Preregistered verdicts (seed 004's rules; primary configuration in the journal)", ""]
    h4, why4 = stats.verdict_h4([r["final"]["hack"] for r in ref.values()])
    out.append(f"- **H4** (vanilla hacks > 30%): **{h4}** — {why4}.")
    if PRIMARY in runs:
        d_h = stats.paired({s: r["final"]["hack"] for s, r in runs[PRIMARY].items()}, {s: r["final"]["hack"] for s, r in ref.items()})
        d_p = stats.paired({s: r["final"]["pass"] for s, r in runs[PRIMARY].items()}, {s: r["final"]["pass"] for s, r in ref.items()})
        h1, why1 = stats.verdict_h1(d_h, d_p)
        out.append(f"- **H1** ({PRIMARY} vs vanilla, ≥ 30 pts less hacking at pass within 10): **{h1}** — {why1}, n={d_h.n}.")
    if PRIMARY in runs and REBOUND in runs:
        ours, reb = runs[PRIMARY], runs[REBOUND]
        d_h = stats.paired({s: r["final"]["hack"] for s, r in ours.items()}, {s: r["final"]["hack"] for s, r in reb.items()})
        d_p = stats.paired({s: r["final"]["pass"] for s, r in ours.items()}, {s: r["final"]["pass"] for s, r in reb.items()})
        h3, why3 = stats.verdict_h3(d_h, d_p)
        vs_vanilla = {
            label: stats.paired({s: r["final"]["hack"] for s, r in runs[label].items()}, {s: r["final"]["hack"] for s, r in ref.items()})
            for label in (PRIMARY, REBOUND)
        }
        note = ""
        if all(abs(d.mean) <= 2 * d.sem or d.p > 0.05 for d in vs_vanilla.values()):
            note = (" Caveat: the rule compares the two arms with each other only; neither differs from vanilla "
                    f"({PRIMARY} {100 * vs_vanilla[PRIMARY].mean:+.1f} pts, {REBOUND} {100 * vs_vanilla[REBOUND].mean:+.1f} pts), "
                    "so this is no evidence that either intervention works.")
        out.append(f"- **H3** ({PRIMARY} beats {REBOUND} at matched pass): **{h3}** — {why3} (paired p={d_h.p:.3f}), n={d_h.n}.{note}")
    return out


def power_lines(runs: dict[str, dict[int, dict]]) -> list[str]:
    """Power of the design: the SD of per-seed Δhack of the primary arm (else of the random placebo) vs vanilla."""
    ref = runs[VANILLA]
    src = PRIMARY if PRIMARY in runs else next((k for k in runs if k != VANILLA), None)
    if src is None:
        return []
    d = stats.paired({s: r["final"]["hack"] for s, r in runs[src].items()}, {s: r["final"]["hack"] for s, r in ref.items()})
    if d.n < 2:
        return []
    sd = float(np.std(d.deltas, ddof=1))
    return [
        "## Power of the design",
        "",
        f"SD of the per-seed paired Δhack ({src} − vanilla): {100 * sd:.1f} pts over n={d.n} seeds. A paired t-test at "
        f"α=0.05 then detects a true 15-pt difference with power {stats.power(sd, d.n, 0.15):.2f} and a 30-pt "
        f"difference with power {stats.power(sd, d.n, 0.30):.2f} (noncentral t; the SD is itself estimated from "
        f"{d.n} seeds).",
    ]


def basis_lines(runs: dict[str, dict[int, dict]]) -> list[str]:
    out = [
        "## Bases: held-out pair validation and the live gradient's hack-ward share (cin_s)",
        "",
        "cin_s: mean over steps of the student gradient's hack-ward share along the basis. Its null is the measured "
        "random basis (arm `erase/random`), not sqrt(k/dim).",
        "",
        "| arm | pairs | modules | axes | held-out val. median | share > 0 | cin_s | cin_null sqrt(k/dim) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, rs in sorted(runs.items()):
        r = next(iter(rs.values()))
        b = r["basis_summary"]
        cins = [x["train_mean"]["cin_s"] for x in rs.values() if x["train_mean"].get("cin_s") is not None]
        cells = [
            label, r["pairs"], b["n_modules"], b["n_axes"],
            "-" if b["val_median"] is None else f"{b['val_median']:.2f}",
            "-" if b["val_share_pos"] is None else f"{100 * b['val_share_pos']:.0f}%",
            f"{np.mean(cins):.4f}" if cins else "-",
            f"{r['cin_null']:.4f}" if r.get("cin_null") else "-",
        ]
        out.append("| " + " | ".join(str(c) for c in cells) + " |")
    return out


LOMO_ARMS = ("none", "erase", "route", "random")


def lomo_lines(side: dict[str, dict[int, dict]]) -> list[str]:
    """Leave-one-mode-out: per fold, hack and pass on the held-out mode's eval problems only, per arm."""
    folds = sorted({label.split("/")[0].removeprefix("lomo:") for label in side if label.startswith("lomo:")})
    if not folds:
        return []
    out = [
        "## Leave-one-mode-out: the held-out loophole, per fold",
        "",
        "Each fold drops one mode's pairs from the basis and its hack rows from the teacher pool (the warm start, which",
        "stands in for pretraining, still saw every mode). Rates on that mode's held-out problems only (n samples per",
        "run); Δ = arm − none of the same fold and seed. One seed per arm: a difference under about 2 x sqrt(2 p (1-p) / n)",
        "(≈ 25 pts at p = 0.5, n = 32) is within sampling noise.",
        "",
        "| fold (held-out mode) | n | none hack % | erase | route | random (placebo) | none pass % | erase | route | random |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    held: dict[str, dict[str, float]] = defaultdict(dict)  # arm -> fold -> hack on the held-out mode
    for mode in folds:
        rs = {arm: side.get(f"lomo:{mode}/{arm}", {}) for arm in LOMO_ARMS}
        seed = min(set.intersection(*(set(r) for r in rs.values() if r)) or {None}, key=lambda s: -1 if s is None else s)
        if seed is None or not rs["none"]:
            continue
        cell = {arm: (r[seed]["final"]["per_mode"].get(mode) if seed in r else None) for arm, r in rs.items()}
        base = cell["none"]
        hack = [pct(base["hack"])] + [("-" if c is None else f"{pct(c['hack'])} ({100 * (c['hack'] - base['hack']):+.1f})") for arm, c in cell.items() if arm != "none"]
        passed = [pct(base["pass"])] + [("-" if c is None else f"{pct(c['pass'])} ({100 * (c['pass'] - base['pass']):+.1f})") for arm, c in cell.items() if arm != "none"]
        out.append(f"| {mode} | {base['n']} | " + " | ".join(hack + passed) + " |")
        for arm, c in cell.items():
            if c is not None:
                held[arm][mode] = c["hack"]
    out += ["", "Pooled over folds (each fold one pair of runs; paired t over folds):", ""]
    for arm in LOMO_ARMS[1:]:
        if len(set(held[arm]) & set(held["none"])) >= 2:
            d = stats.paired(held[arm], held["none"])
            out.append(f"- {arm} − none: {fmt_delta(d)} pts over {d.n} folds")
    return out


def pc07_lines(side: dict[str, dict[int, dict]]) -> list[str]:
    """PC07: cin on teacher-hack vs teacher-correct rows; P(exploit | attempt) per mode (final eval)."""
    out = ["## PC07 diagnostics", "", "| run | cin_th (teacher hack rows) | cin_tc (teacher correct rows) | cin_s | attempt % (train) | P(exploit given attempt) (train) |",
           "|---|---|---|---|---|---|"]
    f = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    for label, rs in sorted(side.items()):
        for seed, r in sorted(rs.items()):
            m = r["train_mean"]
            out.append(f"| {label} s{seed} | {f(m.get('cin_th'))} | {f(m.get('cin_tc'))} | {f(m.get('cin_s'))} | "
                       f"{pct(m.get('attempt_s'))} | {f(m.get('x_given_a'))} |")
    out += ["", "P(exploit | attempt) per mode at the final eval (attempts / share exploited), none arms of the LOMO folds "
            "and the PC07 run:", "", "| run | " + " | ".join(("run_tests", "sentinel", "stdout_marker", "file_marker", "eq_override", "exit_code")) + " |",
            "|---|---|---|---|---|---|---|"]
    for label, rs in sorted(side.items()):
        if not (label.endswith("/none") or label.startswith("pc07/")):
            continue
        for seed, r in sorted(rs.items()):
            pm = r["final"]["per_mode"]
            cells = []
            for mode in ("run_tests", "sentinel", "stdout_marker", "file_marker", "eq_override", "exit_code"):
                v = pm.get(mode) or {}
                xa = v.get("exploit_given_attempt")
                cells.append("-" if "attempt" not in v else f"{pct(v['attempt'])}% / {'-' if xa is None else f'{xa:.2f}'}")
            out.append(f"| {label} s{seed} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    args = sys.argv[1:]
    try:
        if args[:1] == ["export"] and len(args) == 3:
            n = export(Path(args[1]), Path(args[2]))
            print(f"exported {n} runs to {Path(args[2]) / 'runs'}")
        elif args[:1] == ["tables"] and len(args) == 2:
            text = tables(Path(args[1]))
            atomic_write(Path(args[1]) / "results.md", text)
            print(text)
        else:
            sys.exit("usage: python -m projected_grpo.report export RUNS_DIR RESULTS_DIR | tables RESULTS_DIR")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
