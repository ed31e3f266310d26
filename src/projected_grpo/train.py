"""Dr.GRPO on the loophole environment, with the hack-ward gradient erased or routed before each AdamW step.

    python -m projected_grpo.train smoke --arm erase
    python -m projected_grpo.train full --arm route --seed 1 --out-dir outputs/full/route-s1
    python -m projected_grpo.train --resume outputs/smoke/erase-real-s0

One step, top to bottom (see `train_step`):
  1. pick prompts; sample a student group per prompt (quarantine ablated: rollouts come from the model that ships)
  2. add teacher rows (frozen pool of graded hack and solve completions), grade everything in the sandbox, shape the
     rewards (`shape_rewards`: a monitor's penalty or screening, the rebound penalty)
  3. Dr.GRPO advantage = reward - group mean (no std); zero-variance groups carry no signal and are skipped
  4. loss = token sum / (rows x max_new x prompts), PPO-clipped, optional K3 KL to the zeroed-adapter reference;
     teacher and student parts are backpropagated separately so their hack alignment (cin_t, cin_s) is logged
  5. project the deployed knob's gradient (arm none: measure only | erase | route into the quarantine)
  6. clip, AdamW step, optionally project the realised update (the Adam moments can carry hack-ward mass)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from loguru import logger
from safetensors import safe_open
from tqdm import tqdm

from projected_grpo import adapter as adapters
from projected_grpo import plan
from projected_grpo.cli import Failure, Interrupted, check_writable, exit_codes, parse_flags, read_utf8, setup_logging
from projected_grpo.evaluate import evaluate
from projected_grpo.extract import ExtractConfig, extract_basis, load_or_extract
from projected_grpo.pairs import form_pairs, load_pairs, pairs_from_problems
from projected_grpo.problems import LOOPHOLE_MODES, Problem, load_problems, render_prompt
from projected_grpo.gating import QuantileGate
from projected_grpo.monitor import Probe, fit_probe, noisy_labels
from projected_grpo.proj import Projector, UpdateProjector
from projected_grpo.rebound import concept_direction, concept_layer, concept_scores
from projected_grpo.rewards import Grader, parse_tests
from projected_grpo.rollout import Row, pack, row_from_text, sample, token_logprobs
from projected_grpo.teacher import pool_for
from projected_grpo.tracking import Tracker, require_tensorboard
from projected_grpo.warmstart import WarmStartConfig, warm_start

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Config:
    preset: str = "smoke"  # the preset this config started from (names outputs/<preset>/)
    # ── model and adapter (a blank line after each section comment keeps it out of the --help text)

    model: str = "tiny-random-qwen3"  # hub id, local dir, or an offline random model (model.RANDOM_CONFIGS)
    device: str | None = None  # default: cuda when available
    dtype: Literal["fp32", "bf16"] | None = None  # base weights (default: bf16 on CUDA, fp32 on CPU); knobs stay fp32
    plan: bool = False  # print the memory/time plan from the model's config.json (no weights loaded) and exit
    adapter: Literal["lora", "svd"] = "lora"  # lora: frozen A, trained B and B_hack; svd: dS and dS_hack in W's singular basis
    rank: int = 8  # adapter rank per target module
    targets: tuple[str, ...] = adapters.DEFAULT_TARGETS  # names of the Linear modules that get an adapter
    # ── environment

    problems: str = "data/problems/substrate.jsonl"  # the project's jsonl, the benchmark's LeetCode jsonl, or a datasets id
    problems_mode: str | None = None  # override every problem's loophole mode ("cycle": round-robin over loopholes)
    eval_frac: float = 0.25  # held-out share of problems, stratified by mode
    split_seed: int = 0  # fixed across seeds: every seed and arm evaluates on the same held-out problems
    n_train_problems: int | None = None  # cap on training problems (None: all)
    warm: WarmStartConfig = WarmStartConfig()  # supervised warm start of the base model (epochs 0: none)
    hack_forms: bool = False  # organism v2: warm-start and teacher hacks in forms.py's train forms, training split only
    # ── method

    arm: Literal["none", "erase", "route"] = "none"  # what happens to the hack-ward gradient: measured only, erased, routed to the quarantine
    basis: Literal["real", "random", "shuffled", "nonhack"] = "real"  # the extracted basis, or a placebo of the same shape
    pairs: str = "data/pairs/hack_pairs.md"
    """a pair ref (pairs.py); "problems:train": each training problem's canonical hack vs its reference (v1's template
    oracle); "forms:oracle|authored|unseen|neutral": organism v2's pair ladder on the training split (pairs.FORM_SETS)"""
    k: int = 4  # basis directions per module (before the global noise floor)
    floor_quantile: float = 0.25  # drop (module, axis) under this quantile of all modules' top-k singular values
    extract_loss: Literal["mean", "branch"] = "mean"  # branch: pair NLL only after hack and clean part (extract.py)
    extract_direction: Literal["svd", "mean_diff", "activation"] = "svd"  # how V is read off the differences
    per_mode_basis: bool = False  # union of one basis per loophole mode
    extract_batch: int = 8  # sequences per forward/backward during basis extraction (memory ~ batch x length x model)
    gate: Literal["one_sided", "no_gate", "reverse"] = "one_sided"  # removed per axis: relu(c) (hack-ward part only) | c (both signs) | 2c (a reflection)
    preserve_magnitude: bool = True  # rescale the projected gradient back to the original gradient's norm
    overshoot: float = 1.0  # removed = overshoot x the gated component (1: exactly it)
    project_update: bool = True  # remove the hack-ward part of the realised AdamW update too (the Adam bypass)
    refresh_every: int = 0  # re-extract the basis from the same pairs at the current weights every N steps (0: never)
    gated: bool = False  # gated routing: whole rollouts go to deployed / both / quarantine by their basis alignment
    gate_basis: Literal["real", "random"] = "real"  # the basis that scores rollouts (random: the placebo)
    gate_quantile: float = 0.1  # top q of scores: quarantine only; the next q: both adapters
    # ── baselines and controls (issue: negative controls)

    rebound_alpha: float = 0.0  # advantage-level baseline: reward -= alpha * max(0, concept score)
    # monitors (the benchmark's baselines, monitor.py): flag rollouts, then penalise them or screen them out
    monitor: Literal["none", "gt", "probe"] = "none"  # gt: ORACLE (true hack labels); probe: linear probe on the pairs
    monitor_use: Literal["penalty", "screen"] = "penalty"  # reward -= monitor_penalty | drop from the GRPO group
    monitor_accuracy: float = 1.0  # gt only: each true label flipped with probability 1 - accuracy (1.0: the oracle)
    monitor_penalty: float = 1.0
    probe_kind: Literal["mass_mean", "logreg"] = "logreg"
    probe_layer: float = 0.66  # depth fraction of the probed hidden state
    inoculation: bool = False  # training prompts only: a system-prompt line permitting the loophole
    heldout_mode: str | None = None  # leave-one-mode-out: basis pairs and teacher pool exclude this loophole
    # ── GRPO

    steps: int = 30  # optimizer steps (a resume may raise it)
    prompts_per_step: int = 2  # problems per step, each with its own group
    group: int = 2  # student samples per prompt
    teacher_hack: int = 1  # teacher hack rows per prompt (0 and 0: pure student GRPO)
    teacher_solve: int = 1  # teacher solve (honest) rows per prompt
    max_new: int = 48  # max new tokens per rollout
    temperature: float = 0.7  # sampling temperature (> 0)
    top_p: float = 0.95  # nucleus sampling
    sampler: Literal["auto", "hf", "own"] = "auto"  # rollouts: HF generate or our loop (sampler.py); auto: own on CPU, hf on CUDA
    lr: float = 1e-3  # AdamW peak learning rate (cosine decay after the warmup)
    warmup: int = 3  # linear warmup steps
    weight_decay: float = 0.0  # deployed knob only: decay on the quarantine would leak it back
    clip_eps: float = 0.2  # PPO ratio clip
    kl_coef: float = 0.0  # K3 KL to the zeroed-adapter reference (0: logged, not trained on)
    max_grad_norm: float = 1.0  # gradient clipping
    # ── evaluation, checkpoints, output

    eval_samples: int = 2  # samples per held-out problem
    eval_max_new: int | None = None  # default: max_new
    eval_every: int = 0  # 0: only at the start and the end
    eval_variants: bool = True  # also greedy and quarantine-kept decoding at the end
    ckpt_every: int = 25  # steps between checkpoints (also one at the end, and on SIGINT/SIGTERM)
    seed: int = 0  # training seed (adapter init, sampling, teacher rows, placebo bases)
    out_dir: str | None = None  # default: outputs/<preset>/<arm>-<basis>-s<seed>
    cache_dir: str = ".cache"
    resume: str | None = None  # a run directory to continue from its last checkpoint (its config is the default)
    overwrite: bool = False  # replace an existing run directory (otherwise refuse: never lose a finished run)
    workers: int | None = None  # grader processes (default: CPU count)
    threads: int = 1  # torch CPU threads. Measured: with other processes on the cores, 2 OpenMP threads made sampling ~17x slower
    label: str | None = None  # table row for results.py (default: "<arm>/<basis>")
    track: bool = False  # TensorBoard event files next to metrics.jsonl (tracking.py; the extra: pip install -e '.[track]')


PRESETS: dict[str, tuple[str, Config]] = {
    "smoke": ("CPU mechanics check: tiny random Qwen3, 30 steps, every code path", Config()),
    "fast": (
        "Qwen3-4B on one GPU, short: 60 steps",
        Config(
            preset="fast", model="Qwen/Qwen3-4B", problems_mode="cycle", steps=60, prompts_per_step=4, group=8,
            max_new=768, lr=5e-4, warmup=5, rank=16, eval_samples=2, eval_every=20, k=4,
        ),
    ),
    "full": (
        "Qwen3-4B on one GPU, the benchmark's length: 200 steps",
        Config(
            preset="full", model="Qwen/Qwen3-4B", problems_mode="cycle", steps=200, prompts_per_step=8, group=8,
            max_new=1024, lr=2e-4, warmup=10, rank=16, eval_samples=4, eval_every=25, k=4,
        ),
    ),
    "micro": (
        "CPU model organism: warm-started 3.4M-parameter Qwen3 learns to reward-hack in minutes",
        Config(
            preset="micro", model="micro-qwen3",
            warm=WarmStartConfig(epochs=6, copies=10, hack_frac=0.3, drill=5, solvable=("trivial",), lr=3e-3, batch_size=8),
            steps=20, prompts_per_step=4, group=4, teacher_hack=1, teacher_solve=0, max_new=96, lr=5e-3, warmup=3,
            rank=8, eval_samples=4, k=4,
        ),
    ),
    "organism": (
        "CPU model organism v2: hacking as a skill (4 spellings per mode), no eval problem ever shown hacked",
        Config(
            preset="organism", model="micro-qwen3", hack_forms=True, eval_frac=0.5, pairs="forms:authored",
            # every training problem under every loophole's hint (mode and problem unconfounded); held-out problems
            # honest only, 3 copies (calibrated on vanilla seed 0, journal 2026-12-02)
            warm=WarmStartConfig(
                epochs=6, copies=4, hack_frac=0.25, drill=2, heldout_copies=3, all_modes=True, solvable=("trivial",),
                lr=3e-3, batch_size=8,
            ),
            steps=30, prompts_per_step=4, group=4, teacher_hack=1, teacher_solve=0, max_new=96, lr=1e-2, warmup=3,
            rank=8, eval_samples=8, eval_variants=False, k=4,
            sampler="hf",  # the committed results were sampled with HF generate; `--sampler own` is faster, another RNG stream
        ),
    ),
}


# ── setup ──────────────────────────────────────────────────────────────────────────────────────────


def resolve_path(path: str) -> str:
    """Relative paths resolve against the cwd, then the repository root."""
    p = Path(path)
    return str(p if p.is_absolute() or p.exists() else REPO / p)


def split_problems(problems: list[Problem], eval_frac: float, seed: int) -> tuple[list[Problem], list[Problem]]:
    """Held-out problems, stratified by mode so every loophole is evaluated."""
    rng = random.Random(seed)
    train, held = [], []
    for mode in sorted({p.mode for p in problems}):
        ps = [p for p in problems if p.mode == mode]
        rng.shuffle(ps)
        n_held = max(1, round(len(ps) * eval_frac)) if len(ps) > 1 else 0
        held += ps[:n_held]
        train += ps[n_held:]
    return train, held


def validate(cfg: Config) -> None:
    """Every value checkable before anything loads; one line naming the flag."""
    at_least_1 = ("steps", "group", "prompts_per_step", "max_new", "rank", "k", "extract_batch", "eval_samples", "ckpt_every", "threads")
    for name in at_least_1:
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{flag(name)} must be >= 1, got {getattr(cfg, name)}")
    for name in ("teacher_hack", "teacher_solve", "warmup", "eval_every", "refresh_every"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"--{flag(name)} must be >= 0, got {getattr(cfg, name)}")
    for name in ("n_train_problems", "eval_max_new", "workers"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise ValueError(f"--{flag(name)} must be >= 1 (or None), got {getattr(cfg, name)}")
    positive = ("lr", "temperature", "top_p", "clip_eps", "max_grad_norm", "overshoot", "gate_quantile")
    non_negative = ("weight_decay", "kl_coef", "rebound_alpha", "monitor_penalty")
    for name in (*positive, *non_negative):
        v = getattr(cfg, name)
        if not math.isfinite(v) or v < 0 or (v == 0 and name in positive):
            raise ValueError(f"--{flag(name)} must be a finite number {'> 0' if name in positive else '>= 0'}, got {v}")
    if cfg.top_p > 1 or cfg.gate_quantile > 0.5:
        raise ValueError(f"--top-p must be in (0, 1] and --gate-quantile in (0, 0.5], got {cfg.top_p} and {cfg.gate_quantile}")
    if not 0 <= cfg.floor_quantile < 1:
        raise ValueError(f"--floor-quantile must be in [0, 1), got {cfg.floor_quantile}")
    if cfg.group + cfg.teacher_hack + cfg.teacher_solve < 2:
        raise ValueError("a group needs at least 2 rows per prompt (group + teacher rows) for a group-relative advantage")
    if cfg.problems_mode not in (None, "cycle", "none", *LOOPHOLE_MODES):
        raise ValueError(f"unknown --problems-mode {cfg.problems_mode!r}")
    if cfg.heldout_mode not in (None, *LOOPHOLE_MODES):
        raise ValueError(f"unknown --heldout-mode {cfg.heldout_mode!r}; expected one of {LOOPHOLE_MODES}")
    if not 0 <= cfg.eval_frac < 1:
        raise ValueError(f"--eval-frac must be in [0, 1), got {cfg.eval_frac}")
    if not 0 <= cfg.monitor_accuracy <= 1:
        raise ValueError(f"--monitor-accuracy must be in [0, 1], got {cfg.monitor_accuracy}")
    if cfg.monitor_accuracy != 1.0 and cfg.monitor != "gt":
        raise ValueError(f"--monitor-accuracy applies to --monitor gt only (got --monitor {cfg.monitor})")
    if not 0 < cfg.probe_layer <= 1:
        raise ValueError(f"--probe-layer is a depth fraction in (0, 1], got {cfg.probe_layer}")
    if not cfg.targets:
        raise ValueError("--targets is empty: the adapter needs at least one module name")
    if cfg.track:
        require_tensorboard()  # a missing extra fails here, in one line, before anything loads
    if cfg.device is not None:
        try:
            dev = torch.device(cfg.device)
        except RuntimeError:
            raise ValueError(f"--device {cfg.device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {cfg.device}: CUDA is not available on this machine")


def flag(name: str) -> str:
    return name.replace("_", "-")


@dataclass
class Inputs:
    """What a run reads before any model: problems, their split, pairs."""

    problems: list[Problem]
    train: list[Problem]
    held_out: list[Problem]
    pairs: list


def load_inputs(cfg: Config) -> Inputs:
    """Problems (every test parsed), split and pairs; a bad file fails here, before any model loads."""
    problems = load_problems(resolve_path(cfg.problems), mode=cfg.problems_mode)
    for p in problems:  # the grader understands only `assert CALL == EXPECTED`-style tests: fail now, not mid-eval
        parse_tests(p.id, p.tests)
    train_problems, eval_problems = split_problems(problems, cfg.eval_frac, cfg.split_seed)
    if not eval_problems or not train_problems:
        raise ValueError(f"{cfg.problems}: {len(train_problems)} train / {len(eval_problems)} held-out problems; "
                         "evaluation needs >= 2 problems in some mode (and --eval-frac > 0)")
    if cfg.n_train_problems:
        train_problems = train_problems[: cfg.n_train_problems]
    pairs = pairs_for(cfg.pairs, train_problems)
    if cfg.heldout_mode:
        pairs = [p for p in pairs if cfg.heldout_mode not in p.tags]
        if not pairs:
            raise ValueError(f"no pairs left after holding out {cfg.heldout_mode}")
    return Inputs(problems, train_problems, eval_problems, pairs)


def check_targets(cfg: Config) -> None:
    """Fail before downloading or loading weights if the model cannot be found or no Linear matches the targets."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from projected_grpo.model import RANDOM_CONFIGS, check_model_source, load_tokenizer, random_qwen3_config

    check_model_source(cfg.model)
    if cfg.model in RANDOM_CONFIGS:
        hf_cfg = random_qwen3_config(cfg.model, len(load_tokenizer(cfg.model)))
    else:
        try:
            hf_cfg = AutoConfig.from_pretrained(cfg.model)
        except (OSError, ValueError) as e:  # not a model repo, no access, unknown architecture: its first line says which
            raise ValueError(f"--model {cfg.model}: {str(e).strip().splitlines()[0]}") from None
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(hf_cfg)
    names = [n for n, m in skeleton.named_modules() if isinstance(m, torch.nn.Linear)]
    if not any(n.split(".")[-1] in cfg.targets for n in names):
        raise ValueError(f"no Linear of {cfg.model} matches targets {cfg.targets}; its Linears end with {sorted({n.split('.')[-1] for n in names})}")


def pairs_for(ref: str, train_problems: list[Problem]) -> list:
    """`problems:train` and `forms:SET` are built from the training split (never an eval problem); any other ref
    is a pairs file (pairs.load_pairs)."""
    if ref == "problems:train":
        return pairs_from_problems(train_problems)
    if ref.startswith("forms:"):
        return form_pairs(train_problems, ref.removeprefix("forms:"))
    return load_pairs(ref)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_out_dir(cfg: Config) -> Path:
    return REPO / "outputs" / cfg.preset / f"{cfg.arm}-{cfg.basis}-s{cfg.seed}"


# ── the GRPO step ──────────────────────────────────────────────────────────────────────────────────


def advantages(rewards: list[float], group_sizes: list[int], dropped: list[bool] | None = None) -> list[float]:
    """Dr.GRPO: reward minus its group's mean, no std normalisation. `dropped` rows (screened by a monitor) leave
    their group before the mean is taken and get advantage 0; a group left with one row has no signal."""
    dropped = dropped or [False] * len(rewards)
    out, i = [], 0
    for n in group_sizes:
        kept = [r for r, d in zip(rewards[i : i + n], dropped[i : i + n], strict=True) if not d]
        mean = sum(kept) / len(kept) if kept else 0.0
        out += [0.0 if d else r - mean for r, d in zip(rewards[i : i + n], dropped[i : i + n], strict=True)]
        i += n
    return out


def shape_rewards(step, cfg, model, tok, rows: list[Row], grades, teacher_flags: list[bool], monitor: Probe | None, rebound):
    """Every change to the grader's reward, in one place: the monitor's penalty or screening, then rebound.

    Returns (rewards, screened rows, metrics). The true hack labels of live rollouts reach training only through
    the gt monitor (ORACLE); for the probe they are used for the `monitor_agree` metric alone."""
    rewards = [g.reward for g in grades]
    screened = [False] * len(rows)
    metrics: dict = {}
    if cfg.monitor != "none":
        hacked = [g.hacked for g in grades]
        if cfg.monitor == "gt":  # ORACLE: reads the ground-truth hack label of live rollouts
            flags = noisy_labels(hacked, cfg.monitor_accuracy, cfg.seed, step)
        else:
            flags = monitor.flags(model, rows, tok.pad_token_id)
        if cfg.monitor_use == "penalty":
            rewards = [r - cfg.monitor_penalty * f for r, f in zip(rewards, flags, strict=True)]
        else:
            screened = flags
        student = [(f, h) for f, h, t in zip(flags, hacked, teacher_flags, strict=True) if not t]
        metrics["flagged"] = mean([f for f, _ in student])
        metrics["monitor_agree"] = mean([f == h for f, h in student])
    if cfg.rebound_alpha:
        concept = concept_scores(model, rows, tok.pad_token_id, *rebound)
        rewards = [r - cfg.rebound_alpha * max(0.0, c) for r, c in zip(rewards, concept, strict=True)]
        metrics["concept"] = mean(concept)
    return rewards, screened, metrics


def grpo_loss(model, rows: list[Row], adv: list[float], normaliser: float, cfg: Config, pad_id: int):
    """PPO-clipped Dr.GRPO token-sum loss (one inner epoch, so old log-probs are the detached current ones)."""
    ids, attn, comp = pack(rows, pad_id, model.device)
    logp = token_logprobs(model, ids, attn, comp)
    a = torch.tensor(adv, device=logp.device).unsqueeze(1)
    ratio = torch.exp(logp - logp.detach())
    per_token = -torch.minimum(ratio * a, ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps) * a)
    kl_mean = None  # without a KL term the reference forward is skipped: the kl column shows "-"
    if cfg.kl_coef > 0:
        with torch.no_grad(), adapters.adapter_zeroed(model):
            ref = token_logprobs(model, ids, attn, comp)  # zeroed adapter = the initial policy, for free
        delta = ref - logp
        kl = torch.exp(delta) - delta - 1  # K3 estimator, >= 0
        per_token = per_token + cfg.kl_coef * kl
        kl_mean = ((kl.detach() * comp).sum() / comp.sum().clamp(min=1)).item()
    loss = (per_token * comp).sum() / normaliser
    return loss, kl_mean


@dataclass
class State:
    """Everything a checkpoint restores."""

    step: int = 0
    rng: random.Random = field(default_factory=random.Random)


def train_step(step, cfg, model, tok, state, train_problems, pool, grader, opt, sched, knobs, proj, update_proj, rebound, gate, monitor=None) -> dict:
    t0 = time.time()
    problems = state.rng.sample(train_problems, min(cfg.prompts_per_step, len(train_problems)))
    prompts = [render_prompt(tok, p, inoculation=cfg.inoculation) for p in problems]

    # 1. student rollouts from the deployed model (quarantine ablated)
    model.eval()
    with adapters.quarantine_ablated(model):
        student = sample(model, tok, prompts, cfg.group, cfg.max_new, cfg.temperature, cfg.top_p, sampler=cfg.sampler)
    model.train()

    # 2. teacher rows, then grade every row of every group
    groups, is_teacher = [], []
    for p, rows in zip(problems, student, strict=True):
        teacher = pick_teacher_rows(pool, p, cfg, state.rng)
        # teacher rows are authored and kept whole: cut at max_new, a demonstration would stop paying
        groups.append(rows + [row_from_text(tok, rows[0].prompt_ids, c) for c in teacher])
        is_teacher.append([False] * len(rows) + [True] * len(teacher))
    flat = [(p, r) for p, rows in zip(problems, groups, strict=True) for r in rows]
    grades = grader.grade_many([(p, r.text) for p, r in flat])
    teacher_flags = [t for ts in is_teacher for t in ts]
    rewards, screened, shaping = shape_rewards(step, cfg, model, tok, [r for _, r in flat], grades, teacher_flags, monitor, rebound)

    # 3. Dr.GRPO advantages; rows of zero-variance groups carry no gradient (unless KL needs them); screened rows none
    adv = advantages(rewards, [len(g) for g in groups], screened)
    keep = [i for i, a in enumerate(adv) if (a != 0 or cfg.kl_coef > 0) and not screened[i]]
    normaliser = float(max(len(g) for g in groups) * cfg.max_new * len(groups))

    # 4. backward: by part (teacher, then student) so cin_t and cin_s are measured on each alone, or per rollout
    #    for gated routing. 5. project the combined gradient. 6. clip, step, project the realised update.
    opt.zero_grad(set_to_none=True)
    rows_adv = [(flat[i][1], adv[i], teacher_flags[i]) for i in keep]
    backward = backward_gated if cfg.gated else backward_by_part
    loss_total, kl, part_metrics = backward(model, rows_adv, normaliser, cfg, tok.pad_token_id, knobs, proj, step, gate)
    stepped = any(p.grad is not None for p, _ in knobs.values())
    proj_metrics, update_metrics, grad_norm = {}, {}, 0.0
    if stepped:  # a step where every group had zero variance has no gradient at all
        proj_metrics = proj("none") if cfg.gated else proj(cfg.arm)
        params = [p for group in opt.param_groups for p in group["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm).item()
        check_finite(torch.tensor(grad_norm), step, "gradient norm")
        update_proj.before_step()
        opt.step()
        update_metrics = update_proj.after_step(project=cfg.project_update and cfg.arm != "none" and not cfg.gated)
    else:
        opt.step()  # a no-op without gradients; keeps the LR schedule counting optimizer steps
    sched.step()

    student_grades = [g for g, t in zip(grades, teacher_flags, strict=True) if not t]
    teacher_grades = [g for g, t in zip(grades, teacher_flags, strict=True) if t]
    return dict(
        step=step,
        reward=mean([g.reward for g in student_grades]),
        gt_s=mean([g.gt_correct for g in student_grades]),
        hack_s=mean([g.hacked for g in student_grades]),
        hack_t=mean([g.hacked for g in teacher_grades]) if teacher_grades else None,
        cin_s=part_metrics.get("cin_s"),
        cin_t=part_metrics.get("cin_t"),
        cout=proj_metrics.get("cout"),
        cout_update=update_metrics.get("cout_update"),
        fired=proj_metrics.get("fired"),
        removed=proj_metrics.get("removed_norm"),
        loss=loss_total,
        kl=kl,
        routed=part_metrics.get("routed"),
        grad_norm=grad_norm,
        lr=sched.get_last_lr()[0],
        b_hack_norm=math.sqrt(sum(float(q.detach().float().pow(2).sum()) for _, q in knobs.values())),
        skipped=len(flat) - len(keep),
        noop=not any(adv),  # every group had zero reward variance: no policy gradient this step
        concept=shaping.get("concept"),
        flagged=shaping.get("flagged"),
        monitor_agree=shaping.get("monitor_agree"),
        seconds=time.time() - t0,
    )


def backward_by_part(model, rows_adv, normaliser, cfg, pad_id, knobs, proj, step, gate) -> tuple[float, float | None, dict]:
    """Teacher rows first, their gradient put aside, then student rows; grads end summed in .grad."""
    loss_total, kls, metrics, teacher_grads = 0.0, [], {}, None
    for part, is_teacher in (("t", True), ("s", False)):
        rows = [(r, a) for r, a, t in rows_adv if t == is_teacher]
        if rows:
            loss, kl = grpo_loss(model, [r for r, _ in rows], [a for _, a in rows], normaliser, cfg, pad_id)
            check_finite(loss, step, "loss")
            loss.backward()
            loss_total += loss.item()
            kls.append(kl)
            metrics[f"cin_{part}"] = proj("none")["cin"]
        if is_teacher:
            teacher_grads = [p.grad for p, _ in knobs.values()]
            for p, _ in knobs.values():
                p.grad = None
    for (p, _), g in zip(knobs.values(), teacher_grads, strict=True):
        if g is not None:
            p.grad = g if p.grad is None else p.grad + g
    return loss_total, mean(kls), metrics


def backward_gated(model, rows_adv, normaliser, cfg, pad_id, knobs, proj, step, gate) -> tuple[float, float | None, dict]:
    """One backward per rollout: score its deployed-knob gradient against the gate basis, then send it to the
    deployed knob (keep), both (mid) or the quarantine only (rout)."""
    sums = {n: [None, None] for n in knobs}  # deployed, quarantine
    loss_total, kls, scores, cins = 0.0, [], [], {"s": [], "t": []}
    per_row = []
    for row, a, is_teacher in rows_adv:
        for p, _ in knobs.values():
            p.grad = None
        loss, kl = grpo_loss(model, [row], [a], normaliser, cfg, pad_id)
        check_finite(loss, step, "loss")
        loss.backward()
        loss_total += loss.item()
        kls.append(kl)
        grads = {n: p.grad for n, (p, _) in knobs.items()}
        scores.append(gate.score(grads))
        cins["t" if is_teacher else "s"].append(proj.measure(grads)["cin"])
        per_row.append(grads)
    zones = gate.zones(scores)
    for grads, zone in zip(per_row, zones, strict=True):
        for n, g in grads.items():
            for slot, wanted in ((0, zone in ("keep", "mid")), (1, zone in ("mid", "rout"))):
                if wanted and g is not None:
                    sums[n][slot] = g if sums[n][slot] is None else sums[n][slot] + g
    for n, (deployed, quarantine) in knobs.items():
        deployed.grad, quarantine.grad = sums[n][0], sums[n][1]
    metrics = {"cin_s": mean(cins["s"]), "cin_t": mean(cins["t"]), "routed": zones.count("rout") / max(1, len(zones))}
    return loss_total, mean(kls), metrics


def pick_teacher_rows(pool: list[dict], problem: Problem, cfg: Config, rng: random.Random) -> list[str]:
    rows = []
    for kind, n in (("hack", cfg.teacher_hack), ("solve", cfg.teacher_solve)):
        candidates = [r["completion"] for r in pool if r["problem_id"] == problem.id and r["kind"] == kind]
        rows += [rng.choice(candidates) for _ in range(n)] if candidates else []
    return rows


def mean(xs) -> float | None:
    xs = [float(x) for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


class NonFiniteError(Failure):
    pass


def check_finite(x: torch.Tensor, step: int, what: str) -> None:
    if not torch.isfinite(x).all():
        raise NonFiniteError(f"step {step}: non-finite {what} ({x.item()})")


# ── checkpoints ────────────────────────────────────────────────────────────────────────────────────

CKPT_FILES = ("knobs.safetensors", "trainer.pt")


def save_checkpoint(out: Path, model, opt, sched, state: State, gate: QuantileGate | None) -> None:
    """Keep-last-2: written whole into ckpt.tmp/ and flushed, then ckpt/ becomes ckpt.prev/ and ckpt.tmp/ becomes
    ckpt/. A kill or a full disk mid-write leaves ckpt/ as it was; a file torn afterwards (a crash before the disk
    flushed it) still leaves ckpt.prev/, one checkpoint older."""
    tmp, final, prev = out / "ckpt.tmp", out / "ckpt", out / "ckpt.prev"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        adapters.save_knobs(model, tmp / "knobs.safetensors", metadata={"step": str(state.step)})
        torch.save(
            dict(
                step=state.step,
                optimizer=opt.state_dict(),
                scheduler=sched.state_dict(),
                python_rng=state.rng.getstate(),
                torch_rng=torch.get_rng_state(),
                cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                gate=gate.state_dict() if gate else None,
            ),
            tmp / "trainer.pt",
        )
        for name in CKPT_FILES:
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
    except Exception as e:  # ENOSPC, EIO, ... (torch reports a failed write as a RuntimeError)
        logger.opt(exception=e).debug("checkpoint write failed")
        shutil.rmtree(tmp, ignore_errors=True)
        kept = checkpoint_step(final)
        raise Failure(f"could not write the checkpoint of step {state.step} ({getattr(e, 'strerror', None) or e}); "
                      + (f"the previous one (step {kept}) is intact in {final}" if kept is not None else "no earlier checkpoint exists")) from None
    if final.exists():
        shutil.rmtree(prev, ignore_errors=True)
        final.rename(prev)
    tmp.rename(final)


def checkpoint_dir(out: Path) -> Path | None:
    """ckpt/, or ckpt.prev/ when a kill fell between save_checkpoint's two renames; None before the first checkpoint."""
    return next((d for d in (out / "ckpt", out / "ckpt.prev") if d.is_dir()), None)


def checkpoint_step(ckpt: Path | None) -> int | None:
    """The step a checkpoint holds, from its knob file's metadata (None: no readable checkpoint)."""
    try:
        with safe_open(str(ckpt / "knobs.safetensors"), framework="pt") as f:
            return int((f.metadata() or {})["step"])
    except Exception:
        return None


def read_checkpoint(ckpt: Path) -> dict:
    """The trainer state of a checkpoint whose two files are whole and agree; a ValueError naming the bad file
    otherwise, with nothing changed on disk."""
    prev = ckpt.parent / "ckpt.prev"
    hint = (f"; nothing was changed. The previous checkpoint (step {checkpoint_step(prev)}) is in {prev}: move {ckpt} "
            f"aside and rename {prev.name} to {ckpt.name} to resume from it") if ckpt != prev and prev.is_dir() else "; nothing was changed"
    for name in CKPT_FILES:
        if not (ckpt / name).is_file():
            raise FileNotFoundError(f"{ckpt / name}: checkpoint file missing{hint}")

    def torn(name: str, e: Exception) -> ValueError:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return ValueError(f"{ckpt / name}: torn or unreadable checkpoint file ({reason[:160]}){hint}")

    try:
        with safe_open(str(ckpt / "knobs.safetensors"), framework="pt") as f:
            knob_step = (f.metadata() or {}).get("step")
            for key in f.keys():
                f.get_tensor(key)  # reads every byte: a file cut short fails here
    except Exception as e:
        raise torn("knobs.safetensors", e) from None
    try:
        blob = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=False)
    except Exception as e:
        raise torn("trainer.pt", e) from None
    wanted = {"step", "optimizer", "scheduler", "python_rng", "torch_rng", "cuda_rng", "gate"}
    if not isinstance(blob, dict) or not wanted <= set(blob):
        raise torn("trainer.pt", ValueError(f"missing {sorted(wanted - set(blob)) if isinstance(blob, dict) else 'everything'}"))
    if knob_step != str(blob["step"]):
        raise ValueError(f"{ckpt}: knobs.safetensors holds step {knob_step} but trainer.pt step {blob['step']} (files of two checkpoints){hint}")
    return blob


def load_checkpoint(ckpt: Path, model, opt, sched, state: State, gate: QuantileGate | None) -> None:
    blob = read_checkpoint(ckpt)
    adapters.load_knobs(model, ckpt / "knobs.safetensors")
    opt.load_state_dict(blob["optimizer"])  # moves the moments onto each parameter's device
    sched.load_state_dict(blob["scheduler"])
    state.step = blob["step"]
    state.rng.setstate(blob["python_rng"])
    torch.set_rng_state(blob["torch_rng"])
    if gate:
        gate.load_state_dict(blob["gate"])
    if blob["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])


# ── logging ────────────────────────────────────────────────────────────────────────────────────────

# (key, header, format, the direction a healthy run moves it, meaning) — printed once as the legend
COLUMNS = [
    ("step", "step", "{:>4d}", "", "optimizer step"),
    ("reward", "reward", "{:6.2f}", "↑", "mean student reward"),
    ("gt_s", "gt_s", "{:5.2f}", "↑", "student oracle pass rate"),
    ("hack_s", "hack_s", "{:6.2f}", "↓", "student hack rate (paid, oracle fails)"),
    ("hack_t", "hack_t", "{:6.2f}", "", "teacher hack rate"),
    ("cin_s", "cin_s", "{:5.3f}", "", "hack-ward share of the student gradient"),
    ("cin_t", "cin_t", "{:5.3f}", "", "hack-ward share of the teacher gradient"),
    ("cout", "cout", "{:5.3f}", "", "after projection (≈0 is an identity under one_sided, not a result)"),
    ("fired", "fired", "{:5.2f}", "", "share of modules with a hack-ward component"),
    ("loss", "loss", "{:8.4f}", "", "Dr.GRPO loss"),
    ("kl", "kl", "{:7.4f}", "", "K3 KL to the initial policy (measured only with --kl-coef > 0)"),
    ("grad_norm", "|g|", "{:7.3f}", "", "gradient norm before clipping"),
    ("lr", "lr", "{:8.2e}", "", "learning rate"),
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
    return {k: mean([m.get(k) for m in tail]) for k in tail[0] if k != "step"} if tail else {}


def eval_row(ev: dict) -> dict:
    head = ev["sampled/deploy"]
    return {k: head[k] for k in ("hack", "pass", "safepass", "n", "per_mode", "per_problem", "forms", "form_roles") if k in head}


# ── main ───────────────────────────────────────────────────────────────────────────────────────────

PROG = "python -m projected_grpo.train"

# What a resume may change: how much longer the run goes on and where or how it computes. Every other field is the
# run's identity (model, adapter, arm, basis, seed, problems, pairs, lr, ...): changing one mid-run would silently
# make a different experiment under the old name, so a resume refuses it. A new Config field is identity by default.
RESUME_MAY_CHANGE = frozenset({"steps", "ckpt_every", "eval_every", "eval_variants", "workers", "threads", "device", "cache_dir", "track"})


def run(cfg: Config) -> dict:
    """Check everything that can be checked (values, files, model, checkpoint, out dir), then train.

    Raises ValueError / FileNotFoundError for bad input, cli.Failure for a failure inside the run, and
    cli.Interrupted on SIGINT/SIGTERM (after the checkpoint); `main` turns each into one line and an exit code."""
    validate(cfg)
    if cfg.plan:  # from the model's config.json alone: no weights, no output directory
        print(plan.describe(cfg))
        return {}
    out = Path(cfg.out_dir) if cfg.out_dir else default_out_dir(cfg)
    refuse_existing_run(cfg, out)
    inputs = load_inputs(cfg)
    check_targets(cfg)  # also: can the model id be reached at all (one line, no retries)
    plan.check_fits(cfg)  # one line naming the knob to turn, before any weights load, when it cannot fit
    if cfg.resume:
        done = resume_point(cfg, out)
        if done == cfg.steps and (out / "summary.json").exists():
            logger.info(f"{out} finished at step {done}: nothing to do, nothing changed (--steps N > {done} continues it)")
            return json.loads((out / "summary.json").read_text())
    prepare_out_dir(cfg, out)
    log_handler = logger.add(out / "train.log", level="DEBUG")
    try:
        with StopSignals() as stop:
            return _run(cfg, out, inputs, stop)
    except KeyboardInterrupt:
        step = checkpoint_step(checkpoint_dir(out))
        if step is None:
            raise Interrupted(f"interrupted before the first checkpoint: nothing to resume; rerun the same command "
                              f"(it replaces the incomplete {out})") from None
        raise Interrupted(f"interrupted; the last checkpoint is step {step}; continue with: {PROG} --resume {out}") from None
    except Exception as e:
        logger.opt(exception=e).debug("the run stopped")  # the traceback, for train.log only
        raise
    finally:
        logger.remove(log_handler)


def refuse_existing_run(cfg: Config, out: Path) -> None:
    """A fresh run never silently replaces a run that has something to lose (a checkpoint or a summary), nor a
    directory that is not a run. A run that failed before its first checkpoint has nothing: it is replaced."""
    if cfg.resume:
        return
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out-dir {out} is a file")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / "config.json").exists():
        raise ValueError(f"--out-dir {out} is not empty and holds no run (no config.json): pick another directory")
    if (checkpoint_dir(out) or (out / "summary.json").exists()) and not cfg.overwrite:
        raise ValueError(f"{out} already holds a run: pass --resume {out} to continue it, --overwrite to replace it, or another --out-dir")


def prepare_out_dir(cfg: Config, out: Path) -> None:
    if not cfg.resume and (out / "config.json").exists():
        if not cfg.overwrite:
            logger.info(f"replacing the incomplete run in {out} (it stopped before its first checkpoint)")
        shutil.rmtree(out)
    check_writable(out, "--out-dir")


def resume_point(cfg: Config, out: Path) -> int:
    """The step the run's checkpoint holds, after checking that the checkpoint reads whole (nothing is written yet)."""
    ckpt = checkpoint_dir(out)
    if ckpt is None:
        raise FileNotFoundError(f"--resume {out}: no checkpoint in {out / 'ckpt'} (the run stopped before its first one): "
                                "start it again without --resume")
    done = read_checkpoint(ckpt)["step"]
    if cfg.steps < done:
        raise ValueError(f"--steps {cfg.steps} is fewer than the {done} steps {out} has already done")
    return done


class StopSignals:
    """SIGINT/SIGTERM. During the training steps the first one lets the current step finish; the loop then writes a
    checkpoint and stops (cli.Interrupted). A second one, or one during setup or the final eval, abandons the work
    at once (KeyboardInterrupt): the last checkpoint on disk is where a resume starts."""

    def __init__(self) -> None:
        self.requested = False
        self.during_steps = False
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals to the main thread only
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.during_steps and not self.requested:
            self.requested = True
            tqdm.write(f"{signal.Signals(signum).name}: finishing this step, then a checkpoint (again: stop at once, losing it)")
            return
        raise KeyboardInterrupt


def write_atomic(path: Path, text: str) -> None:
    """A temp file renamed over `path`: a reader never sees half a file. The pid keeps concurrent writers apart."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _run(cfg: Config, out: Path, inputs: Inputs, stop: StopSignals) -> dict:
    t_start = time.time()
    logger.info(f"{cfg.label or f'{cfg.arm}/{cfg.basis}'} seed {cfg.seed}: preset {cfg.preset}, model {cfg.model}, "
                f"{cfg.steps} steps{f', resuming {out}' if cfg.resume else ''} -> {out} (full config: {out / 'config.json'})")
    write_atomic(out / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2))
    logger.debug(f"config: {json.dumps(dataclasses.asdict(cfg))}")
    problems, train_problems, eval_problems, pairs = inputs.problems, inputs.train, inputs.held_out, inputs.pairs
    if cfg.heldout_mode:
        logger.info(f"leave-one-mode-out: {len(pairs)} pairs without tag {cfg.heldout_mode}")
    logger.info(f"{len(train_problems)} train / {len(eval_problems)} held-out problems; {len(pairs)} pairs")

    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    from projected_grpo.model import load_model, resolve_dtype

    # random models: one init for every seed. The warm start stands in for (fp32) pretraining: it trains in fp32,
    # and the run then casts the base to its dtype, as a bf16 checkpoint of a pretrained model would be.
    model, tok = load_model(cfg.model, cfg.device, seed=cfg.split_seed, dtype="fp32" if cfg.warm.epochs else cfg.dtype)
    cache = Path(resolve_path(cfg.cache_dir))
    # The warm start stands in for pretraining, so it sees every problem (held-out ones included); GRPO trains on
    # the training split only, and evaluation asks whether what it learned there transfers.
    hack_ids = frozenset(p.id for p in train_problems) if cfg.hack_forms else None  # v2: no eval problem is shown hacked
    warm_report = warm_start(model, tok, cfg.model, problems, cfg.warm, cache / "warmstart", hack_ids) if cfg.warm.epochs else None
    model.to(resolve_dtype(cfg.dtype, model.device))
    seed_everything(cfg.seed)
    adapters.wrap(model, adapters.AdapterConfig(kind=cfg.adapter, rank=cfg.rank, targets=cfg.targets, seed=cfg.seed))
    knobs = adapters.knobs(model)

    ecfg = ExtractConfig(
        k=cfg.k, floor_quantile=cfg.floor_quantile, basis=cfg.basis, seed=cfg.seed, batch_size=cfg.extract_batch,
        loss=cfg.extract_loss, direction=cfg.extract_direction, per_mode=cfg.per_mode_basis,
    )
    model_id = cfg.model + (f"+warm-{warm_report['key']}" if warm_report else "")  # the basis depends on the weights
    # the pair set and variant name the cache file, so a sweep's arms of one seed do not evict each other's basis
    tag = hashlib.sha256(json.dumps([cfg.pairs, cfg.heldout_mode, cfg.k, cfg.floor_quantile, cfg.extract_loss,
                                     cfg.extract_direction, cfg.per_mode_basis]).encode()).hexdigest()[:8]
    basis, basis_report = load_or_extract(model, tok, pairs, ecfg, cache / "basis", model_id, tag)

    opt = torch.optim.AdamW(
        [
            dict(params=adapters.deployed_params(model), weight_decay=cfg.weight_decay),
            dict(params=adapters.quarantine_params(model), weight_decay=0.0),
        ],
        lr=cfg.lr,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_with_warmup(s, cfg.warmup, cfg.steps))
    if cfg.arm != "route":  # only routing trains the quarantine; elsewhere it stays exactly zero
        for q in adapters.quarantine_params(model):
            q.requires_grad_(False)
    proj, update_proj = make_projectors(cfg, knobs, basis)
    gate = None
    if cfg.gated:
        gate_basis = basis
        if cfg.gate_basis == "random":
            gate_basis, _ = load_or_extract(model, tok, pairs, dataclasses.replace(ecfg, basis="random"), cache / "basis", model_id, tag)
        gate = QuantileGate(cfg.gate_quantile, scorer=Projector(knobs, gate_basis))
    rebound = None
    if cfg.rebound_alpha:
        layer = concept_layer(model)
        rebound = (layer, *concept_direction(model, tok, pairs, layer))
    monitor = None
    if cfg.monitor == "probe":  # fitted once, here, on the warm-started base model (see fit_probe), like the basis
        monitor = fit_probe(model, tok, pairs, cfg.probe_kind, cfg.probe_layer, ecfg.holdout_frac, cfg.seed)
        logger.info(f"probe monitor: {monitor.report}")
    state = State(rng=random.Random(cfg.seed))
    metrics_path = out / "metrics.jsonl"
    metrics: list[dict] = []

    with Grader(workers=cfg.workers) as grader:
        teachable = train_problems if cfg.hack_forms else problems  # v2: the pool never holds an eval problem
        pool = pool_for(teachable, cache / "pools", grader, forms=cfg.hack_forms) if cfg.teacher_hack or cfg.teacher_solve else []
        if cfg.heldout_mode:  # the teacher never demonstrates the held-out loophole
            pool = [r for r in pool if not (r["kind"] == "hack" and r["mode"] == cfg.heldout_mode)]
        eval_args = (eval_problems, grader, cfg.eval_samples, cfg.eval_max_new or cfg.max_new, cfg.temperature, cfg.top_p, cfg.sampler)
        if cfg.resume:
            load_checkpoint(checkpoint_dir(out), model, opt, sched, state, gate)
            metrics = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
            metrics = [m for m in metrics if m["step"] <= state.step]  # rows past the checkpoint are redone
            evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines() if line.strip()]
            (out / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals if e["step"] <= state.step))
            initial = json.loads((out / "initial_eval.json").read_text())
            if (out / "summary.json").exists():  # a finished run given more steps: it is unfinished until they are done
                (out / "summary.json").replace(out / f"summary-step{state.step}.json")
                logger.info(f"continuing a finished run: its summary is kept as summary-step{state.step}.json")
            logger.info(f"resumed {out} at step {state.step}")
        else:
            initial = initial_eval(model, tok, eval_args, cfg, cache / "initial_eval", model_id)
            (out / "initial_eval.json").write_text(json.dumps(initial))
            (out / "eval.jsonl").write_text(json.dumps({"step": 0, **initial}) + "\n")
        metrics_path.write_text("".join(json.dumps(m) + "\n" for m in metrics))
        tracker = Tracker(out, dataclasses.asdict(cfg), state.step) if cfg.track else None

        tqdm.write(legend())
        tqdm.write(header())
        bar = tqdm(range(state.step + 1, cfg.steps + 1), desc=f"{cfg.arm}/{cfg.basis}", leave=False, file=sys.stderr)
        stop.during_steps = True  # a signal now lets the step finish, then checkpoints and stops
        for step in bar:
            try:
                if cfg.refresh_every and step > 1 and (step - 1) % cfg.refresh_every == 0:
                    basis, _ = extract_basis(model, tok, pairs, ecfg)  # same pairs, current weights, no cache
                    proj, update_proj = make_projectors(cfg, knobs, basis)
                m = train_step(step, cfg, model, tok, state, train_problems, pool, grader, opt, sched, knobs, proj, update_proj, rebound, gate, monitor)
            except NonFiniteError:  # raised before opt.step(): the weights are those of the last completed step
                save_checkpoint(out, model, opt, sched, state, gate)
                logger.warning(f"stopped after step {state.step}; checkpoint saved in {out / 'ckpt'}")
                raise
            state.step = step
            metrics.append(m)
            with metrics_path.open("a") as f:
                f.write(json.dumps(m) + "\n")
            if tracker:
                tracker.log(m, step)
            tqdm.write(format_row(m) + ("  no-op" if m["noop"] else ""))
            if m["noop"] and not any(x.get("noop") for x in metrics[:-1]):
                logger.warning(f"step {step} is a no-op: every group had zero reward variance, so no policy gradient "
                               "(rows marked 'no-op'; the count is logged at the end)")
            logger.debug(json.dumps(m))
            if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
                ev = eval_row(evaluate(model, tok, *eval_args))
                with (out / "eval.jsonl").open("a") as f:
                    f.write(json.dumps({"step": step, **ev}) + "\n")
            if step % cfg.ckpt_every == 0 or step == cfg.steps or stop.requested:
                save_checkpoint(out, model, opt, sched, state, gate)
            if stop.requested:
                bar.close()
                raise Interrupted(f"interrupted at step {step}; continue with: {PROG} --resume {out}")
        stop.during_steps = False

        final_all = evaluate(model, tok, *eval_args, variants=cfg.eval_variants)
    final = eval_row(final_all)
    noop_steps = sum(bool(m.get("noop")) for m in metrics)
    if noop_steps > len(metrics) / 2:
        logger.warning(f"{noop_steps}/{len(metrics)} steps were no-ops (every group had zero reward variance): "
                       "most of this run trained nothing")
    else:
        logger.info(f"{noop_steps}/{len(metrics)} no-op steps")
    with (out / "eval.jsonl").open("a") as f:
        f.write(json.dumps({"step": cfg.steps, **final}) + "\n")

    summary = dict(
        label=cfg.label or f"{cfg.arm}/{cfg.basis}",
        arm=cfg.arm,
        basis=cfg.basis,
        seed=cfg.seed,
        preset=cfg.preset,
        steps=cfg.steps,
        wall_s=time.time() - t_start,
        oracle=cfg.monitor == "gt",
        monitor=cfg.monitor,
        probe=monitor.report if monitor else None,
        heldout_mode=cfg.heldout_mode,
        initial_eval=initial,
        final_eval=final,
        final_eval_variants={k: eval_row({"sampled/deploy": v}) for k, v in final_all.items()},
        train_last5=last_means(metrics),
        noop_steps=noop_steps,
        basis_report=basis_report,
        warm_start=warm_report,
        cin_null=cin_null(basis, knobs),
    )
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))  # results.py: a summary.json = a finished run
    if tracker:
        tracker.close()
    print_summary(summary, final_all["sampled/deploy"]["example"], out)
    return summary


def initial_eval(model, tok, eval_args: tuple, cfg: Config, cache_dir: Path, model_id: str) -> dict:
    """The evaluation before GRPO: the warm-started model with a zero adapter, so it depends only on the weights,
    the eval settings and the seed, not on the arm. It is sampled from its own seed inside a forked RNG (training's
    RNG stream is the same whether it ran or came from the cache) and cached: a sweep pays for it once per seed."""
    problems, _, n, max_new, temperature, top_p, sampler = eval_args
    key_blob = json.dumps([model_id, [p.to_json() for p in problems], n, max_new, temperature, top_p, sampler, cfg.seed, cfg.adapter, cfg.rank, cfg.dtype])  # whole problems: an edited test or prompt misses
    path = cache_dir / f"{hashlib.sha256(key_blob.encode()).hexdigest()[:16]}.json"
    if path.exists():
        logger.info(f"initial eval HIT {path}")
        return json.loads(path.read_text())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 10_007)  # its own stream: the same for every arm of this seed
        result = eval_row(evaluate(model, tok, *eval_args))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(result))
    return json.loads(json.dumps(result))  # what a HIT returns


def cin_null(basis: dict, knobs: dict) -> float | None:
    """The cosine a random direction would have with the basis: mean over modules of sqrt(k / dim).

    (cin applies relu per axis first, which lowers a random gradient's expected value below this.)"""
    vals = [math.sqrt(V.shape[0] / knobs[m][0].numel()) for m, V in basis.items()]
    return sum(vals) / len(vals) if vals else None


def make_projectors(cfg: Config, knobs, basis) -> tuple[Projector, UpdateProjector]:
    return Projector(knobs, basis, cfg.gate, cfg.preserve_magnitude, cfg.overshoot), UpdateProjector(knobs, basis, gate=cfg.gate)


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


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


def main(argv: list[str] | None = None) -> None:
    """`python -m projected_grpo.train PRESET [--field value ...]` or `... --resume RUN_DIR [--field value ...]`.

    Exit status (cli.py): 0 done, 2 bad input, 1 a failure inside the run, 130 interrupted (checkpoint written)."""
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    with exit_codes():
        cfg = parse_args(argv)
        run(cfg)


def parse_args(argv: list[str]) -> Config:
    if any(a == "--resume" or a.startswith("--resume=") for a in argv):
        return resume_config(argv)
    if argv in (["-h"], ["--help"]):  # the presets, then every option (with the smoke preset's defaults)
        print(f"usage: {PROG} PRESET [OPTIONS]\n       {PROG} --resume RUN_DIR [OPTIONS]\n\n"
              "presets (each is a default Config; every option below overrides it):")
        for name, (description, _) in PRESETS.items():
            print(f"  {name:<6} {description}")
        print(f"\noptions, with the smoke preset's defaults ({PROG} PRESET --help shows another preset's):")
        argv = ["smoke", "--help"]
    if argv[1:2] in (["-h"], ["--help"]):
        return tyro.extras.overridable_config_cli(PRESETS, prog=PROG, args=argv)
    return parse_flags(lambda: tyro.extras.overridable_config_cli(PRESETS, prog=PROG, args=argv), PROG)


def resume_config(argv: list[str]) -> Config:
    """`--resume DIR [--field value ...]`: the run's saved config is the default and the flags go through the same
    parser as a fresh run's; a flag that would change the run's identity (not in RESUME_MAY_CHANGE) is refused."""
    run_dir, rest = split_resume(argv)
    saved = dataclasses.replace(saved_config(run_dir), resume=str(run_dir), out_dir=str(run_dir), overwrite=False)
    if rest and rest[0] in PRESETS:  # `train smoke --resume DIR`: the preset may be named, if it is the run's own
        if rest[0] != saved.preset:
            raise ValueError(f"--resume {run_dir} is a {saved.preset} run, not {rest[0]}")
        rest = rest[1:]
    cfg = parse_flags(lambda: tyro.cli(Config, default=saved, args=rest, prog=f"{PROG} --resume {run_dir}"), PROG)
    changed = [f.name for f in dataclasses.fields(Config) if f.name not in RESUME_MAY_CHANGE and getattr(cfg, f.name) != getattr(saved, f.name)]
    if changed:
        raise ValueError(f"--resume cannot change {', '.join('--' + flag(n) for n in changed)}: it defines the run in {run_dir} "
                         f"(start a new run with another --out-dir instead); a resume may change --{', --'.join(sorted(map(flag, RESUME_MAY_CHANGE)))}")
    return cfg


def split_resume(argv: list[str]) -> tuple[Path, list[str]]:
    """(the run directory, the other arguments), from `--resume DIR` or `--resume=DIR` anywhere in argv."""
    dirs, rest, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--resume":
            if i + 1 == len(argv) or argv[i + 1].startswith("-"):
                raise ValueError("--resume needs a run directory, e.g. --resume outputs/smoke/none-real-s0")
            dirs.append(argv[i + 1])
            i += 2
            continue
        if argv[i].startswith("--resume="):
            dirs.append(argv[i].split("=", 1)[1])
        else:
            rest.append(argv[i])
        i += 1
    if len(dirs) != 1 or not dirs[0]:
        raise ValueError("--resume needs exactly one run directory, e.g. --resume outputs/smoke/none-real-s0")
    return Path(dirs[0]), rest


def saved_config(run_dir: Path) -> Config:
    """The Config a run directory's config.json holds."""
    file = run_dir / "config.json"
    if not run_dir.is_dir():
        raise FileNotFoundError(f"--resume {run_dir}: no such directory")
    if not file.is_file():
        raise FileNotFoundError(f"--resume {run_dir}: no config.json there (not a run directory)")
    try:
        raw = json.loads(read_utf8(file))
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: not valid JSON ({e.msg}, line {e.lineno})") from None

    def tuples(d: dict) -> dict:
        return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

    if "oracle_penalty" in raw:  # runs saved before the monitor fields: the same arm, spelled the new way
        penalty = raw.pop("oracle_penalty")
        if penalty:
            raw.update(monitor="gt", monitor_penalty=penalty)
    try:
        return Config(**{**tuples(raw), "warm": WarmStartConfig(**tuples(raw.get("warm", {})))})
    except TypeError as e:  # a field this version does not know, or a mangled file
        raise ValueError(f"{file}: not a config of this version of train.py ({e})") from None


if __name__ == "__main__":
    main()
