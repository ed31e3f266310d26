"""Warm start for the CPU model organism: supervised fine-tuning of a small random Qwen3 on the substrate.

The recipe shapes the starting policy the way the real benchmark's is shaped:
- easy problems (`solvable` difficulties): the reference solution, so the policy can earn the solve reward;
- hard problems: a naive honest attempt that compiles and fails, so for them hacking is easier than solving;
- on every problem, `hack_frac` of the copies are the mode's canonical hack, so hacking is in the policy's
  support at a low rate (the issue's ~10% or less) rather than absent: GRPO has something to reinforce.
- `drill` more copies of the hack carry loss only after the token where the hack leaves the honest completion:
  they teach *how* to hack in each mode (sharp templates) without teaching *how often*. Measured on `micro`
  (seed 2, same recipe otherwise): without them, 14 of 48 held-out samples after GRPO were unpaid blends of
  two modes' templates (e.g. `sys.exit(0)` with no `import sys`); with drill=5, 4 of 48.
The warm start stands in for pretraining, so it is meant to see every problem, held-out ones included: a
pretrained coder already knows how to attempt, and sometimes solve, the problems it is evaluated on. GRPO
trains on the training split only; held-out evaluation asks whether what it learned there (hacking) transfers
to problems it never rewarded.
Organism v2 (`hack_ids` given, issue 10): the hack copies are drawn from the mode's `train` surface forms
(forms.py: four spellings per mode, dealt round-robin per copy) on a naive skeleton, and only on the problems
in `hack_ids` (the training split): no held-out problem is ever shown with a hack, so held-out hacking after
GRPO is a transferred skill, not recall.
The result is cached by a hash of the recipe: the initial weights, the examples and the hyperparameters.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from loguru import logger
from safetensors.torch import load_model, save_model
from torch import Tensor

from projected_grpo import forms as hack_forms
from projected_grpo.files import atomic_write
from projected_grpo.problems import LOOPHOLE_MODES, Problem, render_prompt
from projected_grpo.rewards import canonical_hack
from projected_grpo.rollout import Row, completion_logits, pack, row_from_text
from projected_grpo.teacher import solve_completion


@dataclass(frozen=True)
class WarmStartConfig:
    epochs: int = 0  # 0: no warm start
    copies: int = 10  # completions per problem per epoch
    heldout_copies: int | None = None  # v2: honest copies per epoch of a problem never shown hacked (None: copies)
    all_modes: bool = False  # v2: each hack-able problem is shown under every loophole's hint, `copies` each
    hack_frac: float = 0.1  # share of a problem's copies that are the canonical hack
    drill: int = 0  # extra hack copies per problem per epoch, with no loss on the branch (see the docstring)
    solvable: tuple[str, ...] = ("trivial", "easy")  # difficulties whose reference is shown
    lr: float = 2e-3
    batch_size: int = 8  # small batches: on CPU the cost is per token, so more, smaller steps learn faster
    warmup_frac: float = 0.05  # linear warmup share of the steps, then cosine to zero
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 0 or self.copies < 1 or self.batch_size < 1 or self.drill < 0:
            raise ValueError(f"warm start: epochs >= 0, copies >= 1, drill >= 0 and batch_size >= 1 required, got {self}")
        if not 0 <= self.hack_frac <= 1:
            raise ValueError(f"warm start: hack_frac must be in [0, 1], got {self.hack_frac}")


def naive_attempt(problem: Problem) -> str:
    """An honest-looking attempt that compiles and returns a type-appropriate default (fails the tests)."""
    return f"```python\n{hack_forms.naive_skeleton(problem)}\n```"


def honest_completion(problem: Problem, cfg: WarmStartConfig) -> str:
    return solve_completion(problem) if problem.difficulty in cfg.solvable else naive_attempt(problem)


def form_hacks(problem: Problem, n: int) -> list[str]:
    """n hack completions of `problem` in its mode's train forms, dealt round-robin from a per-problem offset."""
    train_forms = hack_forms.forms_for(problem.mode, "train")
    skeleton = hack_forms.naive_skeleton(problem)
    offset = sum(map(ord, problem.id))  # deterministic, and different problems start on different forms
    return [hack_forms.hack_completion(problem, train_forms[(offset + i) % len(train_forms)], skeleton) for i in range(n)]


def sft_examples(
    problems: list[Problem], cfg: WarmStartConfig, hack_ids: frozenset[str] | None = None
) -> list[tuple[Problem, str, bool]]:
    """(problem, completion, drill) rows. Per problem: round(copies * hack_frac) hacks of its mode, the rest of
    `copies` its honest completion, then `drill` hack copies flagged to carry no loss on the branch.
    v1 (`hack_ids` None): the canonical hack on every problem. v2: train-form hacks, only on problems in
    `hack_ids`; every other problem gets all `copies` honest and no drill."""
    forms = hack_ids is not None
    n_hack = round(cfg.copies * cfg.hack_frac)
    out = []
    for p in _variants(problems, cfg, hack_ids):
        honest = honest_completion(p, cfg)
        if forms and p.id not in hack_ids:
            out += [(p, honest, False)] * (cfg.copies if cfg.heldout_copies is None else cfg.heldout_copies)
            continue
        hacks = form_hacks(p, n_hack + cfg.drill) if forms else [canonical_hack(p)] * (n_hack + cfg.drill)
        out += [(p, h, False) for h in hacks[:n_hack]] + [(p, honest, False)] * (cfg.copies - n_hack)
        out += [(p, h, True) for h in hacks[n_hack:]]
    return out


def _variants(problems: list[Problem], cfg: WarmStartConfig, hack_ids: frozenset[str] | None) -> list[Problem]:
    """`all_modes`: a problem that may be shown hacked appears once per loophole hint. Mode and problem are then no
    longer confounded, so the warm start ties each hack form to the hint sentence rather than to the problem."""
    if not cfg.all_modes:
        return problems
    if hack_ids is None:
        raise ValueError("warm start: all_modes needs the v2 recipe (hack_ids)")
    return [v for p in problems for v in ([p.with_mode(m) for m in LOOPHOLE_MODES] if p.id in hack_ids else [p])]


def branch_skip(tokenizer, completion: str, honest: str) -> int:
    """Completion tokens up to and including the first one that differs from the honest completion's."""
    a = tokenizer(completion, add_special_tokens=False).input_ids
    b = tokenizer(honest, add_special_tokens=False).input_ids
    shared = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return shared + 1


def sft_rows(
    tokenizer, examples: list[tuple[Problem, str, bool]], cfg: WarmStartConfig, forms: bool = False
) -> tuple[list[Row], list[int]]:
    """Tokenised rows and, per row, how many leading completion tokens carry no loss (0 unless drilled)."""
    rows, skips = [], []
    for p, completion, drill in examples:
        prompt_ids = tokenizer(render_prompt(tokenizer, p), add_special_tokens=False).input_ids
        rows.append(row_from_text(tokenizer, prompt_ids, completion, 10_000))
        # v2 hacks sit on the naive skeleton: the branch is where the hack lines start, not where it leaves the reference
        honest = naive_attempt(p) if forms else honest_completion(p, cfg)
        skips.append(branch_skip(tokenizer, completion, honest) if drill else 0)
    return rows, skips


def mask_leading(comp: Bool[Tensor, "b n"], prompt_lens: list[int], skips: list[int]) -> Bool[Tensor, "b n"]:
    """Drop the first `skip` completion targets of each row from the loss (pack's layout: right padding)."""
    comp = comp.clone()
    for i, (p, skip) in enumerate(zip(prompt_lens, skips, strict=True)):
        comp[i, p - 1 : p - 1 + skip] = False
    return comp


def weights_digest(model) -> str:
    """The initial weights (architecture, init seed, any pretrained values) as part of the recipe."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def recipe_key(model_name: str, examples: list[tuple[Problem, str, bool]], cfg: WarmStartConfig, tokenizer, weights: str) -> str:
    blob = json.dumps(
        dict(
            model=model_name, weights=weights, cfg=asdict(cfg), vocab=len(tokenizer),
            examples=[(render_prompt(tokenizer, p), c, drill) for p, c, drill in examples],
        ),
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def batch_completion_nll(
    model, ids: Int[Tensor, "b t"], attn: Bool[Tensor, "b t"], comp: Bool[Tensor, "b t-1"]
) -> Float[Tensor, ""]:
    """Mean NLL over all completion tokens of the batch, running the model (its LM head on completion positions
    only). A token mean, so a long completion weighs more; `extract.completion_nll` is one row's mean, from logits."""
    return F.cross_entropy(completion_logits(model, ids, attn, comp), ids[:, 1:][comp])


def length_batches(rows: list[Row], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (less padding): shuffle, sort within windows of 16 batches, cut."""
    order = list(range(len(rows)))
    rng.shuffle(order)
    window = 16 * batch_size
    batches = []
    for i in range(0, len(order), window):
        chunk = sorted(order[i : i + window], key=lambda j: len(rows[j].prompt_ids) + len(rows[j].completion_ids))
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    """The LR factor of both training loops (warm start and GRPO): linear warmup from 1/warmup (the first step
    already learns; transformers' schedule starts at 0), then cosine to zero at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def warm_start(
    model, tokenizer, model_name: str, problems: list[Problem], cfg: WarmStartConfig, cache_dir: Path,
    *, hack_ids: frozenset[str] | None = None,
) -> dict:
    """Fine-tune every weight of `model` in place (before the adapter wraps it), or load the cached result.
    `hack_ids`: organism v2, the only problems shown with hacks (the training split), in forms.py's train forms."""
    examples = sft_examples(problems, cfg, hack_ids)
    key = recipe_key(model_name, examples, cfg, tokenizer, weights_digest(model))
    path = cache_dir / f"warmstart-{key}.safetensors"
    if path.exists():
        load_model(model, str(path))  # handles the tied embedding
        logger.info(f"warm start HIT {path}")
        return json.loads(path.with_suffix(".json").read_text())
    logger.info(f"warm start MISS: fine-tuning {model_name} on {len(examples)} examples for {cfg.epochs} epochs -> {path}")
    t0 = time.time()
    rows, skips = sft_rows(tokenizer, examples, cfg, forms=hack_ids is not None)
    rng = random.Random(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    total = cfg.epochs * len(length_batches(rows, cfg.batch_size, random.Random(0)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_with_warmup(s, max(1, round(cfg.warmup_frac * total)), total))
    model.train()
    losses = []
    for epoch in range(cfg.epochs):
        epoch_loss = []
        for batch in length_batches(rows, cfg.batch_size, rng):
            ids, attn, comp = pack([rows[j] for j in batch], tokenizer.pad_token_id, model.device)
            comp = mask_leading(comp, [len(rows[j].prompt_ids) for j in batch], [skips[j] for j in batch])
            loss = batch_completion_nll(model, ids, attn, comp)
            if not torch.isfinite(loss):
                raise RuntimeError(f"warm start: non-finite loss in epoch {epoch + 1} (lr {cfg.lr} too high?)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            epoch_loss.append(loss.item())
        losses.append(sum(epoch_loss) / len(epoch_loss))
        logger.info(f"warm start epoch {epoch + 1}/{cfg.epochs}: completion NLL {losses[-1]:.4f} ({time.time() - t0:.0f} s)")
    model.zero_grad(set_to_none=True)
    report = dict(
        key=key, recipe=asdict(cfg), n_examples=len(rows), n_problems=len(problems), epoch_nll=losses,
        seconds=round(time.time() - t0, 1),
    )
    # The weights last: their presence is the HIT, so a kill mid-write never leaves a HIT without its report.
    atomic_write(path.with_suffix(".json"), json.dumps(report))
    atomic_write(path, lambda tmp: save_model(model, str(tmp)))
    return json.loads(json.dumps(report))  # the form a HIT returns (tuples as lists)
