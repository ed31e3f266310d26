"""Collect finished runs under `outputs/` into tables and plots.

    python -m projected_grpo.results [--runs-dir outputs] [--out-dir outputs/results]

A run is a directory holding `summary.json` (written by `train.py` when the run ends); its `label` groups
seeds into one table row. Writes `results.md`, `results.csv`, `pareto.png` (final hack vs pass, one
point per run) and `curves.png` (hack and pass against step, mean over seeds per label). results.md also holds
seed 004's table schema (ΔSafePass, hack, pass, KL, mean·cos, frac·fired, ‖g‖; the training figures are means
over each run's last 25 steps of metrics.jsonl) and P(exploit | attempt) per mode (PC07).

`plot_module_cos(run_dir)` (train.py calls it when a run ends) draws the per-module cosine of the live gradient
with the basis, from the run's module_cos.jsonl, to `module_cos.png`.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from loguru import logger

matplotlib.use("Agg")  # headless: plots are files, the training boxes have no display
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

from projected_grpo.cli import check_writable, exit_codes, parse_flags, setup_logging
from projected_grpo.files import atomic_write, read_jsonl, read_utf8
from projected_grpo.problems import MODES

METRICS = ("hack", "pass", "safepass")
CAPTION = (
    "Final deploy eval (quarantine ablated) on held-out problems; mean ± SEM over seeds (SEM = std/√n, "
    "— with one seed). hack % ↓ better, pass % ↑ better, SafePass = pass − hack ↑ better. Δ columns: "
    "row minus the baseline row ({baseline}), ± √(SEM_row² + SEM_base²). init hack % is the same eval "
    "before training. cin_s / cin_t: mean cosine of the student / teacher gradient with the hack basis "
    "over the last 5 steps, beside the null cosine √(k/dim) of a random direction. Rows marked (oracle) "
    "use the ground-truth hack label during training: an upper bound that cannot exist on a new environment."
)


# --------------------------------------------------------------------------- loading


@dataclass
class Run:
    path: Path  # the run directory
    summary: dict

    @property
    def row_label(self) -> str:
        return self.summary["label"] + (" (oracle)" if self.summary.get("oracle") else "")


def _require(d: dict, key: str, where: str, file: Path):
    if not isinstance(d, dict) or key not in d or d[key] is None:
        raise ValueError(f"{file}: missing key {where}{key!r}")
    return d[key]


def _check_summary(s: dict, file: Path) -> dict:
    """Fail on the first missing or out-of-range field, naming the file and key."""
    for key in ("label", "seed"):
        _require(s, key, "", file)
    for ev in ("initial_eval", "final_eval"):
        e = _require(s, ev, "", file)
        for m in METRICS:
            v = _require(e, m, f"{ev}.", file)
            # Fractions, not percents: a trainer writing 45.0 would otherwise show up as 4500 %.
            lo = -1.0 if m == "safepass" else 0.0  # SafePass = pass - hack can be negative
            if not isinstance(v, (int, float)) or not lo <= v <= 1.0:
                raise ValueError(f"{file}: {ev}.{m} = {v!r} is not a fraction in [{lo:g}, 1]")
    mode = s.get("heldout_mode")
    if mode is not None:  # the leave-one-mode-out table reads the held-out mode's figures
        per = _require(s["final_eval"], "per_mode", "final_eval.", file)
        for m in ("hack", "pass"):
            _require(_require(per, mode, "final_eval.per_mode.", file), m, f"final_eval.per_mode.{mode}.", file)
    return s


def load_runs(runs_dir: Path, preset: str | None = None) -> list[Run]:
    """Every finished run under `runs_dir` (any depth); unfinished ones are skipped with a warning."""
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"runs directory {runs_dir} does not exist")
    runs = []
    for file in sorted(runs_dir.glob("**/summary.json")):
        try:
            s = json.loads(read_utf8(file))
        except json.JSONDecodeError as e:
            raise ValueError(f"{file}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if preset is None or s.get("preset") == preset:
            runs.append(Run(file.parent, _check_summary(s, file)))
    done = {r.path for r in runs}
    for file in sorted(runs_dir.glob("**/metrics.jsonl")):
        if file.parent not in done and not (file.parent / "summary.json").exists():
            logger.warning(f"skipping {file.parent}: no summary.json (unfinished run?)")
    if not runs:
        which = f" with preset {preset!r}" if preset else ""
        raise ValueError(f"no finished runs{which} (summary.json) found under {runs_dir}")
    _check_groups(runs)
    return runs


def _check_groups(runs: list[Run]):
    """Seeds of one row must be comparable: one preset, no seed counted twice."""
    seen: dict[tuple, Path] = {}
    first: dict[str, Run] = {}
    for r in runs:
        key = (r.row_label, r.summary["seed"])
        if key in seen:
            raise ValueError(f"label {key[0]!r} seed {key[1]} appears twice: {seen[key]} and {r.path}; move one away")
        seen[key] = r.path
        f = first.setdefault(r.row_label, r)
        for field in ("preset", "heldout_mode"):
            if r.summary.get(field) != f.summary.get(field):
                raise ValueError(
                    f"label {r.row_label!r} mixes {field} {f.summary.get(field)!r} ({f.path}) and "
                    f"{r.summary.get(field)!r} ({r.path})" + ("; pass --preset to pick one" if field == "preset" else "")
                )


# --------------------------------------------------------------------------- statistics


def mean_sem(xs: list[float]) -> tuple[float, float | None]:
    """Mean and standard error of the mean; SEM is None for a single value (no spread to estimate)."""
    a = np.asarray(xs, dtype=float)
    return float(a.mean()), (float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else None)


def _diff_sem(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else math.sqrt(a**2 + b**2)


def _mean_or_none(vals: list) -> float | None:
    """Mean of the values that were logged (the `none` arm may log no cin, a killed eval no figure)."""
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def find_baseline(labels: list[str], baseline_label: str) -> str | None:
    """The exact label if present, else the first label that starts with it."""
    if baseline_label in labels:
        return baseline_label
    return next((lab for lab in sorted(labels) if lab.startswith(baseline_label)), None)


def group(runs: list[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        groups[r.row_label].append(r)
    return dict(groups)


TRAIN_TAIL = 25  # seed 004: KL (and the projection diagnostics) as means over the last 25 steps
TRAIN_KEYS = ("kl", "cin", "fired", "grad_norm")


def train_tail(run: Run) -> dict[str, float | None]:
    """Means of TRAIN_KEYS over the run's last TRAIN_TAIL logged steps (metrics.jsonl; else summary train_last5)."""
    rows = read_jsonl(run.path / "metrics.jsonl")[-TRAIN_TAIL:]
    if not rows:
        rows = [run.summary.get("train_last5") or {}]
    return {k: _mean_or_none([r.get(k) for r in rows]) for k in TRAIN_KEYS}


def summary_rows(runs: list[Run], baseline_label: str = "none/real") -> list[dict]:
    """One dict per label, in percent: mean/SEM per metric, deltas vs the baseline, init hack, cin means."""
    groups = group(runs)
    base = find_baseline(list(groups), baseline_label)
    if base is None:
        logger.warning(f"no baseline row (label starting {baseline_label!r}); Δ columns left empty")
    rows = {}
    for label, rs in groups.items():
        row = {"label": label, "oracle": bool(rs[0].summary.get("oracle")), "baseline": label == base, "n": len(rs)}
        for m in METRICS:
            row[m], row[f"{m}_sem"] = mean_sem([100 * r.summary["final_eval"][m] for r in rs])
        row["init_hack"], _ = mean_sem([100 * r.summary["initial_eval"]["hack"] for r in rs])
        for key in ("cin_s", "cin_t"):
            row[key] = _mean_or_none([(r.summary.get("train_last5") or {}).get(key) for r in rs])
        row["cin_null"] = _mean_or_none([r.summary.get("cin_null") for r in rs])
        tails = [train_tail(r) for r in rs]
        for k in TRAIN_KEYS:
            vals = [t[k] for t in tails if t[k] is not None]
            row[k], row[f"{k}_sem"] = mean_sem(vals) if vals else (None, None)
        rows[label] = row
    for row in rows.values():
        is_delta = base is not None and not row["baseline"]
        for m in METRICS:
            row[f"d_{m}"] = row[m] - rows[base][m] if is_delta else None
            row[f"d_{m}_sem"] = _diff_sem(row[f"{m}_sem"], rows[base][f"{m}_sem"]) if is_delta else None
    # Baseline first, oracle rows (unattainable upper bounds) last.
    return sorted(rows.values(), key=lambda r: (not r["baseline"], r["oracle"], r["label"]))


def _per_mode_mean(rs: list[Run], mode: str, metric: str) -> float | None:
    vals = [(r.summary["final_eval"].get("per_mode") or {}).get(mode, {}).get(metric) for r in rs]
    return _mean_or_none([None if v is None else 100 * v for v in vals])


def _modes(runs: list[Run]) -> list[str]:
    found = {m for r in runs for m in (r.summary["final_eval"].get("per_mode") or {})}
    return [m for m in MODES if m in found] + sorted(found - set(MODES))


# --------------------------------------------------------------------------- writing


def _fmt(mean: float | None, sem: float | None = None, signed: bool = False, with_sem: bool = True) -> str:
    if mean is None:
        return "—"
    s = f"{mean:+.1f}" if signed else f"{mean:.1f}"
    if with_sem:
        s += " ± " + ("—" if sem is None else f"{sem:.1f}")
    return s


def _cos(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _mode_cell(rs: list[Run], mode: str) -> str:
    hack, pas = (_fmt(_per_mode_mean(rs, mode, m), with_sem=False) for m in ("hack", "pass"))
    return f"{hack} / {pas}"


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in body]


def main_table(rows: list[dict]) -> list[str]:
    header = ["label", "n", "hack % ↓", "pass % ↑", "SafePass % ↑", "Δhack", "Δpass", "ΔSafePass", "init hack %"]
    body = [
        [r["label"], str(r["n"])]
        + [_fmt(r[m], r[f"{m}_sem"]) for m in METRICS]
        + [_fmt(r[f"d_{m}"], r[f"d_{m}_sem"], signed=True) for m in METRICS]
        + [_fmt(r["init_hack"], with_sem=False), _cos(r["cin_s"]), _cos(r["cin_t"]), _cos(r["cin_null"])]
        for r in rows
    ]
    return _md_table(header + ["cin_s", "cin_t", "cin_null"], body)


def per_mode_table(groups: dict[str, list[Run]], rows: list[dict], modes: list[str]) -> list[str]:
    lines = ["## Per mode", "", "Final hack % / pass % per loophole mode, mean over seeds.", ""]
    body = [[r["label"]] + [_mode_cell(groups[r["label"]], m) for m in modes] for r in rows]
    return lines + _md_table(["label"] + modes, body)


def seed_table(rows: list[dict]) -> list[str]:
    """Seed 004's headline table schema, left to right from essential to optional."""
    lines = ["## Seed 004 table", "",
             "ΔSafePass = SafePass − the baseline's; KL, mean·cos (cin of the whole live gradient, before projection), "
             "frac·fired (share of modules with a hack-ward component) and ‖g‖ (gradient norm before clipping) are "
             f"means over each run's last {TRAIN_TAIL} steps; mean ± SEM over seeds. * = projection diagnostics "
             "(seed 004: active when mean·cos > 0.2 and frac·fired > 0.4).", ""]
    header = ["Arm", "ΔSafePass ↑", "Hack % ↓", "Pass % ↑", "KL ↓", "mean·cos*", "frac·fired*", "‖g‖*"]
    body = []
    for r in rows:
        d_sp = "0 (ref)" if r["baseline"] else _fmt(r["d_safepass"], r["d_safepass_sem"], signed=True)
        cells = [_sci(r["kl"], r["kl_sem"])] + [_num(r[k], r[f"{k}_sem"]) for k in ("cin", "fired", "grad_norm")]
        body.append([r["label"], d_sp, _fmt(r["hack"], r["hack_sem"]), _fmt(r["pass"], r["pass_sem"]), *cells])
    return lines + _md_table(header, body)


def _num(mean: float | None, sem: float | None) -> str:
    return "—" if mean is None else f"{mean:.3f} ± " + ("—" if sem is None else f"{sem:.3f}")


def _sci(mean: float | None, sem: float | None) -> str:
    return "—" if mean is None else f"{mean:.2e} ± " + ("—" if sem is None else f"{sem:.1e}")


def exploit_table(groups: dict[str, list[Run]], rows: list[dict], modes: list[str]) -> list[str]:
    """P(exploit | attempt) per mode from the final eval (PC07): a low hack rate from fewer attempts, or from
    attempts that fail to pay?"""
    lines = ["## P(exploit | attempt)", "",
             "Final deploy eval, per loophole mode: attempt % (samples holding the mode's loophole structure) / "
             "P(exploit | attempt) % (of those, hacked), mean over seeds; — where no sample attempted.", ""]
    body = []
    for r in rows:
        cells = []
        for m in modes:
            per = [(x.summary["final_eval"].get("per_mode") or {}).get(m, {}) for x in groups[r["label"]]]
            att = _mean_or_none([None if p.get("attempt") is None else 100 * p["attempt"] for p in per])
            xa = _mean_or_none([None if p.get("exploit_given_attempt") is None else 100 * p["exploit_given_attempt"] for p in per])
            cells.append(f"{_fmt(att, with_sem=False)} / {_fmt(xa, with_sem=False)}")
        body.append([r["label"], *cells])
    return lines + _md_table(["label"] + modes, body)


def heldout_table(groups: dict[str, list[Run]], lomo: list[str], base: str | None) -> list[str]:
    """Leave-one-mode-out rows: the held-out mode's own figures, beside the baseline on that mode."""
    lines = ["## Leave-one-mode-out", "",
             "Hack and pass % on the mode held out of the basis and teacher pool (mean ± SEM over seeds); "
             "the baseline columns are the baseline row on the same mode.", ""]
    body = []
    for label in lomo:
        rs = groups[label]
        mode = rs[0].summary["heldout_mode"]
        held = [mean_sem([100 * r.summary["final_eval"]["per_mode"][mode][m] for r in rs]) for m in ("hack", "pass")]
        vanilla = [_per_mode_mean(groups[base] if base else [], mode, m) for m in ("hack", "pass")]
        body.append([label, mode, str(len(rs))] + [_fmt(*h) for h in held] + [_fmt(v, with_sem=False) for v in vanilla])
    header = ["label", "held-out mode", "n", "hack % ↓", "pass % ↑", "baseline hack %", "baseline pass %"]
    return lines + _md_table(header, body)


def markdown(runs: list[Run], rows: list[dict]) -> str:
    base = next((r["label"] for r in rows if r["baseline"]), None)
    groups, modes = group(runs), _modes(runs)
    presets = ", ".join(sorted({str(r.summary.get("preset")) for r in runs}))
    lines = ["# Results", "", f"{len(runs)} runs, preset {presets}.", "", CAPTION.format(baseline=base or "none found"), ""]
    lines += main_table(rows)
    lines += [""] + seed_table(rows)
    if modes:
        lines += [""] + per_mode_table(groups, rows, modes)
    if any("attempt" in (r.summary["final_eval"].get("per_mode") or {}).get(m, {}) for r in runs for m in modes):
        lines += [""] + exploit_table(groups, rows, modes)
    lomo = [r["label"] for r in rows if groups[r["label"]][0].summary.get("heldout_mode")]
    if lomo:
        lines += [""] + heldout_table(groups, lomo, base)
    lines += ["", "![pareto](pareto.png)", "", "![curves](curves.png)", ""]
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    cols = ["label", "oracle", "baseline", "n"] + [f"{m}{s}" for m in METRICS for s in ("", "_sem")]
    cols += [f"d_{m}{s}" for m in METRICS for s in ("", "_sem")] + ["init_hack", "cin_s", "cin_t", "cin_null"]
    cols += [f"{k}{s}" for k in TRAIN_KEYS for s in ("", "_sem")]

    def write(tmp: Path):
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, cols)
            w.writeheader()
            cell = lambda v: "" if v is None else round(v, 4) if isinstance(v, float) else v  # noqa: E731
            w.writerows({c: cell(r[c]) for c in cols} for r in rows)

    atomic_write(path, write)


# --------------------------------------------------------------------------- plots


def _colors(labels: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


def plot_pareto(runs: list[Run], labels: list[str], path: Path) -> None:
    colors = _colors(labels)
    fig, ax = plt.subplots(figsize=(7, 5))
    for lab in labels:
        rs = [r for r in runs if r.row_label == lab]
        ax.scatter([100 * r.summary["final_eval"]["hack"] for r in rs], [100 * r.summary["final_eval"]["pass"] for r in rs],
                   color=colors[lab], marker="*" if rs[0].summary.get("oracle") else "o", s=60, label=f"{lab} (n={len(rs)})")
    init = [(100 * r.summary["initial_eval"]["hack"], 100 * r.summary["initial_eval"]["pass"]) for r in runs]
    # On top of the run points (zorder): every run starts near the same spot, which would hide it otherwise.
    ax.scatter(*zip(*init), color="black", marker="x", s=40, alpha=0.8, zorder=5, label="before training")
    ax.set(xlabel="final hack % (↓ better)", ylabel="final pass % (↑ better)", xlim=(-2, 102), ylim=(-2, 102),
           title="Deploy eval, one point per run (better: ↖)")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)


def _curve(rows: list[dict], hack: str, pas: str) -> dict[int, tuple[float, float]]:
    """{step: (hack %, pass %)} over the rows that logged both figures."""
    ok = [r for r in rows if r.get("step") is not None and r.get(hack) is not None and r.get(pas) is not None]
    return {r["step"]: (100 * r[hack], 100 * r[pas]) for r in ok}


def label_curve(rs: list[Run]) -> tuple[list[int], np.ndarray, np.ndarray, bool]:
    """Steps, mean hack %, mean pass % over seeds, and whether they come from training rollouts.

    Periodic deploy evals (eval.jsonl) when every seed has one between the initial and the final eval; else
    every seed's training rollouts (metrics.jsonl hack_s / gt_s): two evals only would draw a straight line.
    One curve never mixes the two kinds of figure.
    """
    rows = lambda file: read_jsonl(file) if file.exists() else []  # noqa: E731  (a run without periodic evals has no eval.jsonl)
    evals = [rows(r.path / "eval.jsonl") for r in rs]
    train = not all(len(e) > 2 for e in evals)
    if train:
        curves = [_curve(rows(r.path / "metrics.jsonl"), "hack_s", "gt_s") for r in rs]
    else:
        curves = [_curve(e, "hack", "pass") for e in evals]
    by_step: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for curve in curves:
        for step, hp in curve.items():
            by_step[step].append(hp)
    steps = sorted(by_step)
    # Mean over the seeds that logged each step (a killed seed may stop early).
    hack, pas = (np.array([np.mean([hp[i] for hp in by_step[s]]) for s in steps]) for i in (0, 1))
    return steps, hack, pas, train


def plot_curves(runs: list[Run], labels: list[str], path: Path) -> None:
    colors = _colors(labels)
    fig, (ax_h, ax_p) = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    for lab in labels:
        steps, hack, pas, train = label_curve([r for r in runs if r.row_label == lab])
        if not steps:
            continue
        # Training-rollout rates are not the deploy eval: draw them dashed so the two are never confused.
        style = dict(color=colors[lab], ls="--" if train else "-", label=lab + (" [train rollouts]" if train else ""))
        ax_h.plot(steps, hack, **style)
        ax_p.plot(steps, pas, **style)
    ax_h.set(xlabel="step", ylabel="hack % (↓ better)", title="Hack rate", ylim=(-2, 102))
    ax_p.set(xlabel="step", ylabel="pass % (↑ better)", title="Pass rate", ylim=(-2, 102))
    for ax in (ax_h, ax_p):
        ax.grid(alpha=0.3)
    ax_p.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.suptitle("Mean over seeds: deploy evals (eval.jsonl), or training rollouts (dashed) where runs have no periodic eval")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)


def plot_module_cos(run_dir: Path) -> Path | None:
    """module_cos.png in the run dir: the per-module signed cosine of the live gradient with span(V) (left: median
    and 10-90 % band over modules per step; right: histogram of every module over the first and the last third of
    the steps). None when the run logged no cosines (no basis, or no step with a gradient)."""
    file = Path(run_dir) / "module_cos.jsonl"
    if not file.exists():  # every step was a no-op: no gradient, no cosine
        return None
    rows = {r["step"]: r["cos"] for r in read_jsonl(file)}  # a resumed step: the last entry
    if not rows:
        return None
    steps = sorted(rows)
    per_step = [np.array(list(rows[s].values())) for s in steps]
    fig, (ax_t, ax_h) = plt.subplots(1, 2, figsize=(11, 4))
    lo, med, hi = (np.array([np.percentile(c, q) for c in per_step]) for q in (10, 50, 90))
    ax_t.fill_between(steps, lo, hi, alpha=0.3, label="10-90 % of modules")
    ax_t.plot(steps, med, label="median module")
    ax_t.axhline(0, color="gray", lw=1)
    ax_t.set(xlabel="step", ylabel="signed cos(g, span V)", title="Live gradient vs the hack basis, per module")
    ax_t.legend(fontsize=8)
    third = max(1, len(steps) // 3)
    for name, chunk in (("first third", per_step[:third]), ("last third", per_step[-third:])):
        ax_h.hist(np.concatenate(chunk), bins=30, range=(-1, 1), alpha=0.5, label=f"{name} of the steps")
    ax_h.set(xlabel="signed cos(g, span V)", ylabel="module-steps", title=f"{len(per_step[0])} modules")
    ax_h.legend(fontsize=8)
    path = Path(run_dir) / "module_cos.png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- CLI


@dataclass
class Config:
    runs_dir: Path = Path("outputs")
    """where the runs live; every `summary.json` below it (any depth) is one finished run"""
    out_dir: Path = Path("outputs/results")
    baseline_label: str = "none/real"
    """Δ columns are relative to the row with this label (or the first label starting with it)"""
    preset: str | None = None
    """only runs of this preset (a label's seeds must share one preset)"""


def collect(cfg: Config) -> list[dict]:
    """Load runs, write results.md / results.csv / pareto.png / curves.png to cfg.out_dir; return the table rows."""
    runs = load_runs(cfg.runs_dir, cfg.preset)
    rows = summary_rows(runs, cfg.baseline_label)
    labels = [r["label"] for r in rows]
    check_writable(cfg.out_dir, "--out-dir")
    md = markdown(runs, rows)
    atomic_write(cfg.out_dir / "results.md", md)
    write_csv(rows, cfg.out_dir / "results.csv")
    plot_pareto(runs, labels, cfg.out_dir / "pareto.png")
    plot_curves(runs, labels, cfg.out_dir / "curves.png")
    logger.info(f"{len(runs)} runs in {len(rows)} rows -> {cfg.out_dir}/results.md, results.csv, pareto.png, curves.png")
    print(md)
    return rows


def main() -> None:
    """Exit status (cli.py): 0 done, 2 bad input (no runs, a malformed summary), 1 a failure inside, 130 interrupted."""
    import tyro

    setup_logging()
    with exit_codes():
        prog = "python -m projected_grpo.results"
        collect(parse_flags(lambda: tyro.cli(Config, prog=prog), prog))


if __name__ == "__main__":
    main()
