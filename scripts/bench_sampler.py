"""Tokens/s of our sampler (sampler.py) vs HF `generate`, side by side in one run, at the loop's batch shapes.

    python scripts/bench_sampler.py            # smoke and micro shapes, 5 interleaved reps each
    python scripts/bench_sampler.py --reps 9

Both samplers run through `rollout.sample` on the same LoRA-wrapped model (random weights: the speed of a
forward does not depend on them), one torch thread as in training, the same prompts (rendered substrate
problems, ~260-290 tokens). Reps alternate hf / own so load from other processes hits both alike; the figure is
the median over reps of generated row-tokens / wall seconds. Target (issue 13): own >= 2x hf on both shapes.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import tyro

from projected_grpo import adapter as adapters
from projected_grpo.config import PRESETS
from projected_grpo.model import load_model
from projected_grpo.problems import DEFAULT_PROBLEMS, load_problems, render_prompt
from projected_grpo.rollout import sample


@dataclass
class Args:
    reps: int = 5
    threads: int = 1


def shapes() -> list[tuple[str, str, int, int, int]]:
    """(label, model, prompts, samples per prompt, max_new) of each preset the CPU runs."""
    out = []
    for preset in ("smoke", "micro"):
        cfg = PRESETS[preset][1]
        out.append((preset, cfg.model, cfg.prompts_per_step, cfg.group, cfg.max_new))
    return out


def bench(model, tok, prompts, n, max_new, sampler: str) -> tuple[float, float]:
    """(row-tokens per wall second, per CPU second of this process: what load from other processes does not inflate)."""
    t, c = time.perf_counter(), time.process_time()
    groups = sample(model, tok, prompts, n, max_new=max_new, temperature=0.7, top_p=0.95, sampler=sampler)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    # generated positions per row (eos and padding after it count as generate computes them too)
    tokens = len(prompts) * n * max(len(r.completion_ids) for rows in groups for r in rows)
    return tokens / dt, tokens / dc


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    problems = load_problems(DEFAULT_PROBLEMS)
    print(f"median of {args.reps} interleaved reps; tok/s per wall second, and per CPU second of the process")
    print(f"{'shape':<34} {'hf tok/s':>9} {'own tok/s':>9} {'speedup':>8} {'hf tok/cpu-s':>13} {'own tok/cpu-s':>14} {'speedup':>8}")
    for label, name, n_prompts, n, max_new in shapes():
        model, tok = load_model(name, "cpu")
        adapters.wrap(model, adapters.AdapterConfig())
        model.eval()
        prompts = [render_prompt(tok, p) for p in problems[:n_prompts]]
        figures = {"hf": [], "own": []}
        bench(model, tok, prompts, n, max_new, "own")  # warm-up: first-call allocations
        bench(model, tok, prompts, n, max_new, "hf")
        for _ in range(args.reps):
            for s in ("hf", "own"):
                figures[s].append(bench(model, tok, prompts, n, max_new, s))
        hf, own = (statistics.median(w for w, _ in figures[s]) for s in ("hf", "own"))
        hf_cpu, own_cpu = (statistics.median(c for _, c in figures[s]) for s in ("hf", "own"))
        shape = f"{label} ({name}, {n_prompts}x{n}x{max_new})"
        print(f"{shape:<34} {hf:>9.0f} {own:>9.0f} {own / hf:>7.2f}x {hf_cpu:>13.0f} {own_cpu:>14.0f} {own_cpu / hf_cpu:>7.2f}x")


if __name__ == "__main__":
    main(tyro.cli(Args))
