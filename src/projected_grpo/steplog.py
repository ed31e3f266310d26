"""What a run prints and appends as it goes: the step table (COLUMNS, its legend), the per-run summary, and the
bounded rollout audit (rollouts.jsonl)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from tqdm import tqdm

from projected_grpo.grpo import mean

# (key, header, format, the direction a healthy run moves it, meaning) — printed once as the legend
COLUMNS = [
    ("step", "step", "{:>4d}", "", "optimizer step"),
    ("reward", "reward", "{:6.2f}", "↑", "mean student reward"),
    ("gt_s", "gt_s", "{:5.2f}", "↑", "student oracle pass rate"),
    ("hack_s", "hack_s", "{:6.2f}", "↓", "student hack rate (paid, oracle fails)"),
    ("hack_t", "hack_t", "{:6.2f}", "", "teacher hack rate"),
    ("cin_s", "cin_s", "{:5.3f}", "", "hack-ward share of the student gradient"),
    ("cin_t", "cin_t", "{:5.3f}", "", "hack-ward share of the teacher gradient"),
    ("cin_th", "cin_th", "{:6.3f}", "", "cin_t on the teacher rows graded hacked alone"),
    ("cin_tc", "cin_tc", "{:6.3f}", "", "cin_t on the teacher rows the oracle passes alone (vs cin_th: hack-ness or teacher-ness?)"),
    ("cout", "cout", "{:5.3f}", "", "after projection (≈0 is an identity under one_sided, not a result)"),
    ("fired", "fired", "{:5.2f}", "", "share of modules with a hack-ward component"),
    ("x_given_a", "x|a", "{:5.2f}", "", "student P(exploit | attempt): hacked share of rows that attempt their mode's loophole"),
    ("loss", "loss", "{:8.4f}", "", "Dr.GRPO loss"),
    ("kl", "kl", "{:7.4f}", "", "K3 KL to the initial policy (measured only with --kl-coef > 0)"),
    ("grad_norm", "|g|", "{:7.3f}", "", "gradient norm before clipping"),
    ("lr", "lr", "{:8.2e}", "", "learning rate"),
    ("refresh_overlap", "ovl", "{:5.3f}", "", "refresh: old/new basis principal-angle overlap (mean cos; - no refresh)"),
    ("b_hack_norm", "|Bh|", "{:6.3f}", "", "quarantine norm (>0 only when routing)"),
    ("seconds", "sec", "{:5.1f}", "", "wall seconds of the step"),
]


def format_row(m: dict) -> str:
    cells = []
    for key, head, fmt, _, _ in COLUMNS:
        v = m.get(key)
        width = max(len(head), len(fmt.format(0)))
        cells.append(f"{'-':>{width}}" if v is None else fmt.format(v).rjust(width))
    return " ".join(cells)


def header() -> str:
    widths = [max(len(h), len(f.format(0))) for _, h, f, _, _ in COLUMNS]
    return " ".join(h.rjust(w) for (_, h, _, _, _), w in zip(COLUMNS, widths, strict=True))


def legend() -> str:
    return "\n".join(f"  {h:>7} {d or ' '} {meaning}" for _, h, _, d, meaning in COLUMNS)


def last_means(metrics: list[dict], n: int = 5) -> dict:
    tail = metrics[-n:]
    numeric = [k for k in tail[0] if k != "step" and not any(isinstance(m.get(k), dict) for m in tail)] if tail else []
    return {k: mean([m.get(k) for m in tail]) for k in numeric}


def eval_row(ev: dict) -> dict:
    head = ev["sampled/deploy"]
    return {k: head[k] for k in ("hack", "pass", "safepass", "n", "per_mode", "per_problem", "forms", "form_roles") if k in head}


AUDIT_MAX_BYTES = 2_000_000  # rollouts.jsonl stops growing here (a warning says so once)
AUDIT_MAX_CHARS = 1500  # per completion: the head, which holds the code block


def audit_rows(step: int, rows: list, n: int) -> list[dict]:
    """Up to n student completions with their grades, for a person to read. Picked by a generator seeded with the
    step, not the run's rng, so auditing never changes what the run samples."""
    picked = random.Random(step).sample(rows, min(n, len(rows)))
    out = []
    for p, r, g in picked:
        text = r.text if len(r.text) <= AUDIT_MAX_CHARS else r.text[:AUDIT_MAX_CHARS] + f" …[{len(r.text) - AUDIT_MAX_CHARS} chars cut]"
        out.append(dict(step=step, problem=p.id, mode=p.mode, reward=g.reward, hacked=g.hacked, gt_correct=g.gt_correct,
                        label=g.label, attempted_modes=list(g.attempted_modes), completion=text))
    return out


def append_bounded(path: Path, rows: list[dict], max_bytes: int) -> bool:
    """Append rows as JSON lines unless the file is at its size bound; False (nothing written) once it is."""
    if path.exists() and path.stat().st_size >= max_bytes:
        return False
    with path.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return True


def print_summary(summary: dict, example: str, out: Path) -> None:
    arrows = {key: d for key, _, _, d, _ in COLUMNS}
    lines = [f"── {summary['label']} seed {summary['seed']}: last-5-step means (arrow = healthy direction)"]
    for k, v in summary["train_last5"].items():
        if v is not None:
            lines.append(f"  {k:>12} {arrows.get(k, ' ') or ' '} {v:.4f}")
    for name in ("initial_eval", "final_eval"):
        e = summary[name]
        lines.append(f"  {name:>12}   hack {e['hack']:.2%} ↓  pass {e['pass']:.2%} ↑  safepass {e['safepass']:+.2%} ↑ (n={e['n']})")
    lines.append(f"  sample generation (deployed, held-out):\n{example[:600]}")
    lines.append(f"── outputs in {out}/: summary.json, metrics.jsonl, eval.jsonl, config.json, train.log, ckpt/ "
                 f"(tables and plots: python -m projected_grpo.results --runs-dir {out.parent})")
    tqdm.write("\n".join(lines))
