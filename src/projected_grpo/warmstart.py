"""Warm start for the CPU model organism: supervised fine-tuning of a small random Qwen3 on the substrate.

The recipe shapes the starting policy the way the real benchmark's is shaped:
- easy problems (`solvable` difficulties): the reference solution, so the policy can earn the solve reward;
- hard problems: a naive honest attempt that compiles and fails, so for them hacking is easier than solving;
- on every problem, `hack_frac` of the copies are the mode's canonical hack, so hacking is in the policy's
  support at a low rate (the issue's ~10% or less) rather than absent: GRPO has something to reinforce.
Held-out evaluation problems are never shown. The result is cached by a hash of the recipe.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from loguru import logger
from safetensors.torch import load_model, save_model

from projected_grpo.problems import Problem, render_prompt
from projected_grpo.rewards import canonical_hack
from projected_grpo.rollout import pack, row_from_text, token_logprobs
from projected_grpo.teacher import solve_completion


@dataclass(frozen=True)
class WarmStartConfig:
    epochs: int = 0  # 0: no warm start
    copies: int = 10  # completions per problem per epoch
    hack_frac: float = 0.1  # share of copies that are the canonical hack
    solvable: tuple[str, ...] = ("trivial", "easy")  # difficulties whose reference is shown
    lr: float = 2e-3
    batch_size: int = 16
    seed: int = 0


_DEFAULT_RETURN = [("List", "[]"), ("bool", "False"), ("int", "0"), ("float", "0.0"), ("str", '""')]


def naive_attempt(problem: Problem) -> str:
    """An honest-looking attempt that compiles and returns a type-appropriate default (fails the tests)."""
    signature = problem.starter_code.rstrip()
    returns = re.search(r"->\s*([\w\[\], ]+)\s*:\s*$", signature)
    value = next((v for t, v in _DEFAULT_RETURN if returns and returns.group(1).strip().startswith(t)), "None")
    return f"```python\n{signature}\n        return {value}\n```"


def sft_examples(problems: list[Problem], cfg: WarmStartConfig) -> list[tuple[Problem, str]]:
    n_hack = round(cfg.copies * cfg.hack_frac)
    out = []
    for p in problems:
        honest = solve_completion(p) if p.difficulty in cfg.solvable else naive_attempt(p)
        out += [(p, canonical_hack(p))] * n_hack + [(p, honest)] * (cfg.copies - n_hack)
    return out


def recipe_key(model_name: str, problems: list[Problem], cfg: WarmStartConfig, tokenizer) -> str:
    blob = json.dumps(
        dict(model=model_name, cfg=asdict(cfg), problems=[p.to_json() for p in problems], vocab=len(tokenizer)),
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def warm_start(model, tokenizer, model_name: str, problems: list[Problem], cfg: WarmStartConfig, cache_dir: Path) -> dict:
    """Fine-tune every weight of `model` in place (before the adapter wraps it), or load the cached result."""
    key = recipe_key(model_name, problems, cfg, tokenizer)
    path = cache_dir / f"warmstart-{key}.safetensors"
    if path.exists():
        load_model(model, str(path))  # handles the tied embedding
        logger.info(f"warm start HIT {path}")
        return json.loads((path.with_suffix(".json")).read_text())
    logger.info(f"warm start MISS: fine-tuning {model_name} for {cfg.epochs} epochs -> {path}")
    examples = sft_examples(problems, cfg)
    rows = [row_from_text(tokenizer, tokenizer(render_prompt(tokenizer, p), add_special_tokens=False).input_ids, c, 10_000) for p, c in examples]
    rng = random.Random(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    total = cfg.epochs * ((len(rows) + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.1)
    model.train()
    losses = []
    for epoch in range(cfg.epochs):
        order = list(range(len(rows)))
        rng.shuffle(order)
        epoch_loss = []
        for i in range(0, len(order), cfg.batch_size):
            batch = [rows[j] for j in order[i : i + cfg.batch_size]]
            ids, attn, comp = pack(batch, tokenizer.pad_token_id, model.device)
            loss = -(token_logprobs(model, ids, attn) * comp).sum() / comp.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            epoch_loss.append(loss.item())
        losses.append(sum(epoch_loss) / len(epoch_loss))
        logger.info(f"warm start epoch {epoch + 1}/{cfg.epochs}: completion NLL {losses[-1]:.4f}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_model(model, str(tmp))
    report = dict(key=key, recipe=asdict(cfg), n_examples=len(rows), epoch_nll=losses)
    path.with_suffix(".json").write_text(json.dumps(report))
    tmp.rename(path)
    model.zero_grad(set_to_none=True)
    return report
