"""Dr.GRPO on the loophole environment, with the hack-ward gradient erased or routed before each AdamW step.

    python -m projected_grpo.train smoke --arm erase
    python -m projected_grpo.train full --arm route --seed 1 --out-dir outputs/full/route-s1
    python -m projected_grpo.train --resume outputs/smoke/erase-real-s0
    accelerate launch --multi_gpu --num_processes 2 -m projected_grpo.train smoke --arm erase   # data parallel

One step, top to bottom (see `train_step`):
  1. pick prompts; sample a student group per prompt (quarantine ablated: rollouts come from the model that ships)
  2. add teacher rows (frozen pool of graded hack and solve completions), grade everything in the sandbox, shape the
     rewards (`shape_rewards`: a monitor's penalty or screening, the rebound penalty)
  3. Dr.GRPO advantage = reward - group mean (no std); zero-variance groups carry no signal and are skipped
  4. loss = token sum / (rows x max_new x prompts), PPO-clipped, optional K3 KL to the zeroed-adapter reference;
     teacher and student parts are backpropagated separately so their hack alignment (cin_t, cin_s) is logged
  5. project the deployed knob's gradient (arm none: measure only | erase | route into the quarantine)
  6. clip, AdamW step, optionally project the realised update (the Adam moments can carry hack-ward mass)

A run (`_run`): `setup` builds the `Trainer` (model, adapter, basis, optimizer, projectors, baselines) once;
`begin` writes the initial eval or restores a checkpoint; `train_loop` runs the steps; `finish` evaluates and
writes summary.json. What a run is (Config, presets, flags) lives in config.py; the GRPO math in grpo.py.

Several processes (distributed.py): every process draws the same prompts and teacher rows, samples, grades and
backpropagates its share (`t.dist.shard`), and gathers every group's rows and grades, so steps 2-3 and the metrics
are computed from the global batch; step 4 sums each part's gradient over the processes, so steps 5-6 are the same
in every process. Process 0 alone writes files and evaluates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from loguru import logger
from tqdm import tqdm

from projected_grpo import adapter as adapters
from projected_grpo import plan
from projected_grpo.checkpoint import State, checkpoint_dir, checkpoint_step, load_checkpoint, read_checkpoint, save_checkpoint
from projected_grpo.cli import Interrupted, StopSignals, check_writable, exit_codes, setup_logging
from projected_grpo.config import BENCHMARK_PROBLEMS, PRESETS, PROG, Config, default_out_dir, parse_args, resolve_path, validate
from projected_grpo.distributed import SINGLE, Dist
from projected_grpo.distributed import init as init_processes
from projected_grpo.evaluate import evaluate, exploit_given_attempt
from projected_grpo.extract import ExtractConfig, extract_basis, load_basis_file, load_or_extract, subspace_overlap
from projected_grpo.files import atomic_write, read_jsonl
from projected_grpo.gating import QuantileGate
from projected_grpo.grpo import NonFiniteError, advantages, backward_by_part, backward_gated, check_finite, grpo_loss, mean
from projected_grpo.monitor import Probe, fit_probe, noisy_labels
from projected_grpo.pairs import form_pairs, load_pairs, pairs_from_problems
from projected_grpo.problems import Problem, load_problems, render_prompt, split_problems
from projected_grpo.proj import Projector, UpdateProjector
from projected_grpo.rebound import concept_direction, concept_layer, concept_scores
from projected_grpo.rewards import Grader, parse_tests
from projected_grpo.rollout import Row, pack, row_from_text, sample
from projected_grpo.steplog import (
    AUDIT_MAX_BYTES,
    append_bounded,
    audit_rows,
    eval_row,
    format_row,
    header,
    last_means,
    legend,
    print_summary,
)
from projected_grpo.teacher import check_coverage, load_teacher_pool, pick_teacher_rows, pool_for
from projected_grpo.tracking import Tracker
from projected_grpo.warmstart import cosine_with_warmup, warm_start

__all__ = ["BENCHMARK_PROBLEMS", "PRESETS", "Config", "NonFiniteError", "advantages", "main", "read_checkpoint", "run"]


# ── setup ──────────────────────────────────────────────────────────────────────────────────────────


@dataclass
class Inputs:
    """What a run reads before any model: problems, their split, pairs."""

    problems: list[Problem]
    train: list[Problem]
    held_out: list[Problem]
    pairs: list
    teacher_pool: list[dict] | None  # --teacher-pool's rows (a real pool), None: the project's own pool
    teacher_pool_note: str  # its coverage line, for the run's log


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
    teacher_pool, pool_note = None, ""
    if cfg.teacher_pool:  # a real pool that covers no training problem fails here
        teacher_pool, counts = load_teacher_pool(resolve_path(cfg.teacher_pool))
        pool_note = f"{check_coverage(teacher_pool, train_problems, cfg.teacher_pool)}; recorded labels {counts} (both/neither dropped)"
    return Inputs(problems, train_problems, eval_problems, pairs, teacher_pool, pool_note)


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


# ── the run's long-lived objects ───────────────────────────────────────────────────────────────────


@dataclass
class Trainer:
    """Everything a step reads, built once by `setup`. The loop replaces `basis`, `proj` and `update_proj` when it
    refreshes the basis; `state` is what a checkpoint restores besides the knobs and the optimizer."""

    cfg: Config
    model: torch.nn.Module
    tok: object  # the tokenizer
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    knobs: dict  # module name -> (deployed knob, quarantine knob)
    basis: dict  # module name -> V [k, dim]
    proj: Projector
    update_proj: UpdateProjector
    grader: Grader
    pool: list[dict]  # teacher rows
    train_problems: list[Problem]
    eval_problems: list[Problem]
    pairs: list  # the basis pairs (refresh re-extracts from them)
    ecfg: ExtractConfig
    model_id: str  # model + warm-start key: what the basis and the initial eval depend on
    state: State
    gate: QuantileGate | None = None
    rebound: tuple | None = None  # (layer, direction, ...) of the activation penalty
    monitor: Probe | None = None
    reports: dict = dataclasses.field(default_factory=dict)  # basis and warm-start reports, for the summary
    dist: Dist = SINGLE  # the processes of a data-parallel run (distributed.py)

    def evaluate(self, step: int | None, variants: bool = False) -> dict:
        """The held-out eval after `step` (None: the caller seeds it, as initial_eval does)."""
        cfg = self.cfg
        if cfg.seed_per_prompt and step is not None:  # from (seed, step) alone: the same in a 1- and an N-process run
            torch.manual_seed(prompt_seed(cfg.seed, step, -1))
        return evaluate(self.model, self.tok, self.eval_problems, self.grader, cfg.eval_samples, max_new=cfg.eval_max_new or cfg.max_new,
                        temperature=cfg.temperature, top_p=cfg.top_p, sampler=cfg.sampler, variants=variants)


def setup(cfg: Config, inputs: Inputs, grader: Grader, dist: Dist = SINGLE) -> Trainer:
    """Model (+ warm start), adapter, basis, optimizer and schedule, projectors, gate, baselines, teacher pool.
    Several processes: process 0 runs it first (it writes the caches), then the others (they read them)."""
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    from projected_grpo.model import load_model, resolve_dtype

    # random models: one init for every seed. The warm start stands in for (fp32) pretraining: it trains in fp32,
    # and the run then casts the base to its dtype, as a bf16 checkpoint of a pretrained model would be.
    device = cfg.device or (str(dist.device) if dist.device is not None else None)  # one GPU per process
    model, tok = load_model(cfg.model, device, seed=cfg.split_seed, dtype="fp32" if cfg.warm.epochs else cfg.dtype)
    cache = Path(resolve_path(cfg.cache_dir))
    # The warm start stands in for pretraining, so it sees every problem (held-out ones included); GRPO trains on
    # the training split only, and evaluation asks whether what it learned there transfers.
    hack_ids = frozenset(p.id for p in inputs.train) if cfg.hack_forms else None  # v2: no eval problem is shown hacked
    warm_report = warm_start(model, tok, cfg.model, inputs.problems, cfg.warm, cache / "warmstart", hack_ids=hack_ids) if cfg.warm.epochs else None
    model.to(resolve_dtype(cfg.dtype, model.device))
    seed_everything(cfg.seed)
    adapters.wrap(model, adapters.AdapterConfig(kind=cfg.adapter, rank=cfg.rank, targets=cfg.targets, seed=cfg.seed))
    knobs = adapters.knobs(model)
    if cfg.adapter == "svd_full":  # seed 004's round-trip check: the rebuilt forward matches the base on a fixed prompt
        ids = tok(render_prompt(tok, inputs.train[0]), return_tensors="pt").input_ids.to(model.device)
        diff = adapters.round_trip_diff(model, lambda: model(input_ids=ids).logits)
        (logger.info if diff < 1e-3 else logger.warning)(f"svd_full round trip at dS = 0: max abs logit diff {diff:.2e} (bar < 1e-3)")

    ecfg = ExtractConfig(
        k=cfg.k, floor_quantile=cfg.floor_quantile, basis=cfg.basis, seed=cfg.seed, batch_size=cfg.extract_batch,
        loss=cfg.extract_loss, direction=cfg.extract_direction, per_mode=cfg.per_mode_basis, tau_axis=cfg.tau_axis, k_use=cfg.k_use,
    )
    model_id = cfg.model + (f"+warm-{warm_report['key']}" if warm_report else "")  # the basis depends on the weights
    # the pair set and variant name the cache file, so a sweep's arms of one seed do not evict each other's basis
    tag = hashlib.sha256(json.dumps([cfg.pairs, cfg.heldout_mode, cfg.k, cfg.floor_quantile, cfg.extract_loss,
                                     cfg.extract_direction, cfg.per_mode_basis]
                                    + ([cfg.tau_axis, cfg.k_use] if cfg.tau_axis or cfg.k_use else [])).encode()).hexdigest()[:8]
    if cfg.basis_file:
        basis, basis_report = load_basis_file(resolve_path(cfg.basis_file), model, model_id, cfg.basis)
    else:
        basis, basis_report = load_or_extract(model, tok, inputs.pairs, ecfg, cache / "basis", model_id, tag=tag)

    opt = torch.optim.AdamW(
        [
            dict(params=adapters.deployed_params(model), weight_decay=cfg.weight_decay),
            dict(params=adapters.quarantine_params(model), weight_decay=0.0),
        ],
        lr=cfg.lr,
        betas=cfg.adam_betas,
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
            gate_basis, _ = load_or_extract(model, tok, inputs.pairs, dataclasses.replace(ecfg, basis="random"), cache / "basis", model_id, tag=tag)
        gate = QuantileGate(cfg.gate_quantile, scorer=Projector(knobs, gate_basis))
    rebound = None
    if cfg.rebound_alpha:
        layer = concept_layer(model)
        rebound = (layer, *concept_direction(model, tok, inputs.pairs, layer))
    monitor = None
    if cfg.monitor == "probe":  # fitted once, here, on the warm-started base model (see fit_probe), like the basis
        monitor = fit_probe(model, tok, inputs.pairs, cfg.probe_kind, depth=cfg.probe_layer, holdout_frac=ecfg.holdout_frac, seed=cfg.seed)
        logger.info(f"probe monitor: {monitor.report}")

    if inputs.teacher_pool is not None:
        pool = inputs.teacher_pool
    elif cfg.teacher_hack or cfg.teacher_solve:
        teachable = inputs.train if cfg.hack_forms else inputs.problems  # v2: the pool never holds an eval problem
        pool = pool_for(teachable, cache / "pools", grader, forms=cfg.hack_forms)
    else:
        pool = []
    if cfg.heldout_mode:  # the teacher never demonstrates the held-out loophole
        pool = [r for r in pool if not (r["kind"] == "hack" and r["mode"] == cfg.heldout_mode)]
    return Trainer(
        cfg=cfg, model=model, tok=tok, opt=opt, sched=sched, knobs=knobs, basis=basis, proj=proj, update_proj=update_proj,
        grader=grader, pool=pool, train_problems=inputs.train, eval_problems=inputs.held_out, pairs=inputs.pairs, ecfg=ecfg,
        model_id=model_id, state=State(rng=random.Random(cfg.seed)), gate=gate, rebound=rebound, monitor=monitor,
        reports=dict(basis_report=basis_report, warm_start=warm_report), dist=dist,
    )


def make_projectors(cfg: Config, knobs, basis) -> tuple[Projector, UpdateProjector]:
    return Projector(knobs, basis, cfg.gate, cfg.preserve_magnitude), UpdateProjector(knobs, basis, gate=cfg.gate)


# ── the GRPO step ──────────────────────────────────────────────────────────────────────────────────


def train_step(t: Trainer, step: int) -> dict:
    cfg, model, tok, knobs = t.cfg, t.model, t.tok, t.knobs
    t0 = time.time()
    problems = t.state.rng.sample(t.train_problems, min(cfg.prompts_per_step, len(t.train_problems)))
    prompts = [render_prompt(tok, p, inoculation=cfg.inoculation) for p in problems]
    mine = t.dist.shard(len(problems))  # this process's prompts: all of them in one process

    # 1. student rollouts from the deployed model (quarantine ablated)
    model.eval()
    with adapters.quarantine_ablated(model):
        student = rollouts(t, step, [prompts[i] for i in mine], mine)
    model.train()

    # 2. teacher rows (drawn for every prompt in every process: the rng stays in step), grade this process's groups,
    #    gather every group with its grades in the global order, then shape the rewards
    teacher = [pick_teacher_rows(t.pool, p, cfg.teacher_hack, cfg.teacher_solve, t.state.rng) for p in problems]
    # teacher rows are authored and kept whole: cut at max_new, a demonstration would stop paying
    mine_groups = [rows + [row_from_text(tok, rows[0].prompt_ids, c) for c in teacher[i]] for i, rows in zip(mine, student, strict=True)]
    mine_grades = t.grader.grade_many([(problems[i], r.text) for i, rows in zip(mine, mine_groups, strict=True) for r in rows])
    graded = t.dist.gather(mine, list(zip(mine_groups, split(mine_grades, [len(g) for g in mine_groups]), strict=True)), len(problems))
    groups = [g for g, _ in graded]
    grades = [x for _, gs in graded for x in gs]
    flat = [(p, r) for p, rows in zip(problems, groups, strict=True) for r in rows]
    teacher_flags = [i >= cfg.group for rows in groups for i in range(len(rows))]  # student rows first in each group
    rewards, screened, shaping = shape_rewards(t, step, [r for _, r in flat], grades, teacher_flags)

    # 3. Dr.GRPO advantages; rows of zero-variance groups carry no gradient (unless KL needs them); screened rows none
    adv = advantages(rewards, [len(g) for g in groups], screened, cfg.scale_rewards)
    # teacher rows by their grade, so cin is measured on teacher-hack and teacher-correct rows apart (PC07)
    tags = ["" if not f else "hack" if g.hacked else "correct" if g.gt_correct else "other" for f, g in zip(teacher_flags, grades, strict=True)]
    keep = [i for i, a in enumerate(adv) if (a != 0 or cfg.kl_coef > 0) and not screened[i]]
    normaliser = float(max(len(g) for g in groups) * cfg.max_new * len(groups))

    # 4. backward: by part (teacher, then student) so cin_t and cin_s are measured on each alone, or per rollout
    #    for gated routing
    #    (several processes: each backpropagates its own groups' rows; the parts' gradients are summed over processes)
    t.opt.zero_grad(set_to_none=True)
    owner = [g for g, rows in enumerate(groups) for _ in rows]
    rows_adv = [(flat[i][1], adv[i], tags[i]) for i in keep if owner[i] in mine]
    loss_fn = row_loss(t, step, normaliser)
    if cfg.gated:
        loss_total, kl, part_metrics = backward_gated(rows_adv, loss_fn, knobs, t.proj, t.gate)
    else:
        loss_total, kl, part_metrics = backward_by_part(rows_adv, loss_fn, knobs, t.proj, t.dist)
        check_finite(torch.tensor(loss_total), step, "loss")  # the global loss: every process stops at the same step

    # 5. project the combined gradient; 6. clip, step, project the realised update
    proj_metrics, update_metrics, grad_norm, module_cos = {}, {}, 0.0, None
    if any(p.grad is not None for p, _ in knobs.values()):  # a step where every group had zero variance has none
        module_cos = t.proj.module_cosines({n: d.grad for n, (d, _) in knobs.items()})  # the live gradient, before projection
        proj_metrics = t.proj("none") if cfg.gated else t.proj(cfg.arm)
        params = [p for group in t.opt.param_groups for p in group["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm).item()
        check_finite(torch.tensor(grad_norm), step, "gradient norm")
        t.update_proj.before_step()
        t.opt.step()
        update_metrics = t.update_proj.after_step(project=cfg.project_update and cfg.arm != "none" and not cfg.gated)
    else:
        t.opt.step()  # a no-op without gradients; keeps the LR schedule counting optimizer steps
    t.sched.step()

    student_rows = [(p, r, g) for (p, r), g, f in zip(flat, grades, teacher_flags, strict=True) if not f]
    teacher_grades = [g for g, f in zip(grades, teacher_flags, strict=True) if f]
    return dict(
        step=step,
        **student_metrics([g for _, _, g in student_rows]),
        hack_t=mean([g.hacked for g in teacher_grades]) if teacher_grades else None,
        cin_s=part_metrics.get("cin_s"),
        cin_t=part_metrics.get("cin_t"),
        cin_th=part_metrics.get("cin_th"),
        cin_tc=part_metrics.get("cin_tc"),
        cin=proj_metrics.get("cin"),
        cout=proj_metrics.get("cout"),
        cout_update=update_metrics.get("cout_update"),
        fired=proj_metrics.get("fired"),
        removed=proj_metrics.get("removed_norm"),
        loss=loss_total,
        kl=kl,
        routed=part_metrics.get("routed"),
        grad_norm=grad_norm,
        lr=t.sched.get_last_lr()[0],
        b_hack_norm=math.sqrt(sum(float(q.detach().float().pow(2).sum()) for _, q in knobs.values())),
        skipped=len(flat) - len(keep),
        noop=not any(adv),  # every group had zero reward variance: no policy gradient this step
        concept=shaping.get("concept"),
        flagged=shaping.get("flagged"),
        monitor_agree=shaping.get("monitor_agree"),
        seconds=time.time() - t0,
        module_cos=module_cos,  # popped by the loop into module_cos.jsonl
        audit=audit_rows(step, student_rows, cfg.audit_rows) if cfg.audit_every and step % cfg.audit_every == 0 else None,
    )


def rollouts(t: Trainer, step: int, prompts: list[str], index: list[int]) -> list[list[Row]]:
    """cfg.group samples per prompt. --seed-per-prompt: each prompt's group from its own seed (seed, step, global
    prompt index), sampled alone (no padding from other prompts), so a prompt's samples are the same in whichever
    process draws them; otherwise all prompts at once from the run's torch RNG stream."""
    cfg = t.cfg
    kw = {"max_new": cfg.max_new, "temperature": cfg.temperature, "top_p": cfg.top_p, "sampler": cfg.sampler}
    if not cfg.seed_per_prompt:
        return sample(t.model, t.tok, prompts, cfg.group, **kw)
    groups = []
    for i, prompt in zip(index, prompts, strict=True):
        torch.manual_seed(prompt_seed(cfg.seed, step, i))
        groups += sample(t.model, t.tok, [prompt], cfg.group, **kw)
    return groups


def prompt_seed(seed: int, step: int, index: int) -> int:
    """A torch seed from (run seed, step, global prompt index; -1: the eval at that step)."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{step}/{index}".encode()).digest()[:8], "little") & (2**63 - 1)


def split(xs: list, sizes: list[int]) -> list[list]:
    out, i = [], 0
    for n in sizes:
        out.append(xs[i : i + n])
        i += n
    return out


def shape_rewards(t: Trainer, step: int, rows: list[Row], grades, teacher_flags: list[bool]) -> tuple[list[float], list[bool], dict]:
    """Every change to the grader's reward, in one place: the monitor's penalty or screening, then rebound.

    Returns (rewards, screened rows, metrics). The true hack labels of live rollouts reach training only through
    the gt monitor (ORACLE); for the probe they are used for the `monitor_agree` metric alone."""
    cfg = t.cfg
    rewards = [g.reward for g in grades]
    screened = [False] * len(rows)
    metrics: dict = {}
    if cfg.monitor != "none":
        hacked = [g.hacked for g in grades]
        if cfg.monitor == "gt":  # ORACLE: reads the ground-truth hack label of live rollouts
            flags = noisy_labels(hacked, cfg.monitor_accuracy, cfg.seed, step)
        else:
            flags = t.monitor.flags(t.model, rows, t.tok.pad_token_id)
        if cfg.monitor_use == "penalty":
            rewards = [r - cfg.monitor_penalty * f for r, f in zip(rewards, flags, strict=True)]
        else:
            screened = flags
        student = [(f, h) for f, h, is_t in zip(flags, hacked, teacher_flags, strict=True) if not is_t]
        metrics["flagged"] = mean([f for f, _ in student])
        metrics["monitor_agree"] = mean([f == h for f, h in student])
    if cfg.rebound_alpha:
        concept = concept_scores(t.model, rows, t.tok.pad_token_id, *t.rebound)
        rewards = [r - cfg.rebound_alpha * max(0.0, c) for r, c in zip(rewards, concept, strict=True)]
        metrics["concept"] = mean(concept)
    return rewards, screened, metrics


def row_loss(t: Trainer, step: int, normaliser: float):
    """The step's grpo.LossFn: pack the rows, the PPO-clipped loss with this step's normaliser, checked finite."""

    def loss_fn(rows: list[Row], adv: list[float]):
        ids, attn, comp = pack(rows, t.tok.pad_token_id, t.model.device)
        loss, kl = grpo_loss(t.model, ids, attn, comp, torch.tensor(adv), normaliser=normaliser, clip_eps=t.cfg.clip_eps, kl_coef=t.cfg.kl_coef)
        if t.dist.world == 1:  # several processes check the summed loss after backward, so that all stop together
            check_finite(loss, step, "loss")
        return loss, kl

    return loss_fn


def student_metrics(grades) -> dict:
    """Reward, oracle pass, hack and P(exploit | attempt) of the student rows (PC07: fewer attempts or failed ones?)."""
    xa = exploit_given_attempt(grades)
    n_attempt = sum(v["n_attempt"] for v in xa.values())
    return dict(
        reward=mean([g.reward for g in grades]),
        gt_s=mean([g.gt_correct for g in grades]),
        hack_s=mean([g.hacked for g in grades]),
        attempt_s=n_attempt / len(grades),
        x_given_a=sum(v["n_exploit"] for v in xa.values()) / n_attempt if n_attempt else None,
        exploit_attempt={m: [v["n_attempt"], v["n_exploit"]] for m, v in xa.items()},  # per mode, summable over steps
    )


# ── the run ────────────────────────────────────────────────────────────────────────────────────────


def _run(cfg: Config, out: Path, inputs: Inputs, stop: StopSignals, dist: Dist = SINGLE) -> dict:
    """Several processes: process 0 alone logs, writes files and evaluates; every process trains (distributed.py).
    Returns the summary (process 0) or {} (the others)."""
    t_start = time.time()
    logger.info(f"{cfg.label or f'{cfg.arm}/{cfg.basis}'} seed {cfg.seed}: preset {cfg.preset}, model {cfg.model}, "
                f"{cfg.steps} steps{f', resuming {out}' if cfg.resume else ''} -> {out} (full config: {out / 'config.json'})")
    if dist.main:
        atomic_write(out / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2))
    logger.debug(f"config: {json.dumps(dataclasses.asdict(cfg))}")
    if cfg.heldout_mode:
        logger.info(f"leave-one-mode-out: {len(inputs.pairs)} pairs without tag {cfg.heldout_mode}")
    logger.info(f"{len(inputs.train)} train / {len(inputs.held_out)} held-out problems; {len(inputs.pairs)} pairs")
    if inputs.teacher_pool_note:
        logger.info(inputs.teacher_pool_note)
    workers = cfg.workers or (max(1, (os.cpu_count() or 1) // dist.world) if dist.world > 1 else None)  # the processes share the cores
    with Grader(workers=workers) as grader:
        t = dist.main_first(lambda: setup(cfg, inputs, grader, dist))
        initial, metrics = begin(t, out)
        tracker = Tracker(out, dataclasses.asdict(cfg), t.state.step) if cfg.track and dist.main else None
        train_loop(t, out, stop, metrics, tracker)
        final_all = dist.on_main(lambda: t.evaluate(cfg.steps, variants=cfg.eval_variants))
    if not dist.main:
        return {}
    summary = finish(t, out, initial, metrics, final_all, time.time() - t_start)
    if tracker:  # after summary.json: the run's plots are written by then
        tracker.close()
    return summary


def begin(t: Trainer, out: Path) -> tuple[dict, list[dict]]:
    """(initial eval, metrics so far): a fresh run evaluates the untrained model; a resume restores the checkpoint
    and cuts metrics.jsonl and eval.jsonl back to its step (rows past it are redone). Several processes: each loads
    the checkpoint; process 0 alone evaluates and writes ({} and [] on the others)."""
    if t.cfg.resume:
        load_checkpoint(checkpoint_dir(out), t.model, t.opt, t.sched, t.state, t.gate)
    t.dist.check_same(knob_tensors(t), "the knobs at the start")
    return t.dist.on_main(lambda: begin_files(t, out)) or ({}, [])


def begin_files(t: Trainer, out: Path) -> tuple[dict, list[dict]]:
    metrics: list[dict] = []
    if t.cfg.resume:
        metrics = [m for m in read_jsonl(out / "metrics.jsonl") if m["step"] <= t.state.step]
        evals = [e for e in read_jsonl(out / "eval.jsonl") if e["step"] <= t.state.step]
        atomic_write(out / "eval.jsonl", "".join(json.dumps(e) + "\n" for e in evals))
        initial = json.loads((out / "initial_eval.json").read_text())
        if (out / "summary.json").exists():  # a finished run given more steps: it is unfinished until they are done
            (out / "summary.json").replace(out / f"summary-step{t.state.step}.json")
            logger.info(f"continuing a finished run: its summary is kept as summary-step{t.state.step}.json")
        logger.info(f"resumed {out} at step {t.state.step}")
    else:
        initial = initial_eval(t, Path(resolve_path(t.cfg.cache_dir)) / "initial_eval")
        atomic_write(out / "initial_eval.json", json.dumps(initial))
        atomic_write(out / "eval.jsonl", json.dumps({"step": 0, **initial}) + "\n")
    atomic_write(out / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics))
    return initial, metrics


def train_loop(t: Trainer, out: Path, stop: StopSignals, metrics: list[dict], tracker: Tracker | None) -> None:
    """Steps state.step + 1 .. cfg.steps: refresh the basis when due, step, append the logs, evaluate and checkpoint
    when due. A signal lets the step finish, then checkpoints and raises Interrupted. Several processes: all of them
    step; process 0 alone prints, writes and evaluates while the others wait."""
    cfg, dist = t.cfg, t.dist
    if dist.main:
        tqdm.write(legend())
        tqdm.write(header())
    bar = tqdm(range(t.state.step + 1, cfg.steps + 1), desc=f"{cfg.arm}/{cfg.basis}", leave=False, file=sys.stderr, disable=not dist.main)
    refreshing, audit_full = bool(cfg.refresh_every), False
    stop.during_steps = True  # a signal now lets the step finish, then checkpoints and stops
    for step in bar:
        try:
            overlap = None
            if refreshing and step > 1 and (step - 1) % cfg.refresh_every == 0:
                overlap, refreshing = refresh(t, step)
            m = train_step(t, step)
            m["refresh_overlap"] = overlap
        except NonFiniteError:  # raised before opt.step(): the weights are those of the last completed step
            save(t, out)
            logger.warning(f"stopped after step {t.state.step}; checkpoint saved in {out / 'ckpt'}")
            raise
        t.state.step = step
        metrics.append(m)
        if dist.main:
            audit_full = record_step(out, m, metrics, audit_full)
            if tracker:
                tracker.log(m, step)
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
            dist.on_main(lambda: append_rows(out / "eval.jsonl", [{"step": step, **eval_row(t.evaluate(step))}]))  # noqa: B023 (called now)
        stopping = dist.any(stop.requested)  # a signal that reached one process stops every process after this step
        if step % cfg.ckpt_every == 0 or step == cfg.steps or stopping:
            save(t, out)
        if stopping:
            bar.close()
            raise Interrupted(f"interrupted at step {step}; continue with: {PROG} --resume {out}")
    stop.during_steps = False


def record_step(out: Path, m: dict, metrics: list[dict], audit_full: bool) -> bool:
    """Append the step to metrics.jsonl (module_cos.jsonl, rollouts.jsonl) and print its row; returns audit_full."""
    step, module_cos, audit = m["step"], m.pop("module_cos"), m.pop("audit")
    append_rows(out / "metrics.jsonl", [m])
    if module_cos:
        append_rows(out / "module_cos.jsonl", [{"step": step, "cos": module_cos}])
    if audit and not append_bounded(out / "rollouts.jsonl", audit, AUDIT_MAX_BYTES) and not audit_full:
        audit_full = True
        logger.warning(f"{out / 'rollouts.jsonl'} reached {AUDIT_MAX_BYTES} bytes: no more rollout audits this run")
    tqdm.write(format_row(m) + ("  no-op" if m["noop"] else ""))
    if m["noop"] and not any(x.get("noop") for x in metrics[:-1]):
        logger.warning(f"step {step} is a no-op: every group had zero reward variance, so no policy gradient "
                       "(rows marked 'no-op'; the count is logged at the end)")
    logger.debug(json.dumps(m))
    return audit_full


def save(t: Trainer, out: Path) -> None:
    """Checkpoint: process 0 writes it once every process holds the same knobs (the others wait)."""
    t.dist.check_same(knob_tensors(t), f"the knobs after step {t.state.step}")
    t.dist.on_main(lambda: save_checkpoint(out, t.model, t.opt, t.sched, t.state, t.gate))


def knob_tensors(t: Trainer) -> dict:
    return {f"{n}.{i}": k for n, pair in t.knobs.items() for i, k in enumerate(pair)}


def finish(t: Trainer, out: Path, initial: dict, metrics: list[dict], final_all: dict, wall_s: float) -> dict:
    """The final eval row, the no-op count, the module-cosine plot, and summary.json (written last: its presence
    means the run finished)."""
    cfg = t.cfg
    final = eval_row(final_all)
    noop_steps = sum(bool(m.get("noop")) for m in metrics)
    if noop_steps > len(metrics) / 2:
        logger.warning(f"{noop_steps}/{len(metrics)} steps were no-ops (every group had zero reward variance): "
                       "most of this run trained nothing")
    else:
        logger.info(f"{noop_steps}/{len(metrics)} no-op steps")
    append_rows(out / "eval.jsonl", [{"step": cfg.steps, **final}])
    summary = dict(
        label=cfg.label or f"{cfg.arm}/{cfg.basis}",
        arm=cfg.arm,
        basis=cfg.basis,
        seed=cfg.seed,
        preset=cfg.preset,
        steps=cfg.steps,
        wall_s=wall_s,
        oracle=cfg.monitor == "gt",
        monitor=cfg.monitor,
        probe=t.monitor.report if t.monitor else None,
        heldout_mode=cfg.heldout_mode,
        initial_eval=initial,
        final_eval=final,
        final_eval_variants={k: eval_row({"sampled/deploy": v}) for k, v in final_all.items()},
        train_last5=last_means(metrics),
        noop_steps=noop_steps,
        basis_report=t.reports["basis_report"],
        warm_start=t.reports["warm_start"],
        cin_null=cin_null(t.basis, t.knobs),
    )
    from projected_grpo.results import (
        plot_module_cos,  # matplotlib only once the run is done
    )

    plot_module_cos(out)
    atomic_write(out / "summary.json", json.dumps(summary, indent=2))  # results.py: a summary.json = a finished run
    print_summary(summary, final_all["sampled/deploy"]["example"], out)
    return summary


def initial_eval(t: Trainer, cache_dir: Path) -> dict:
    """The evaluation before GRPO: the warm-started model with a zero adapter, so it depends only on the weights,
    the eval settings and the seed, not on the arm. It is sampled from its own seed inside a forked RNG (training's
    RNG stream is the same whether it ran or came from the cache) and cached: a sweep pays for it once per seed."""
    cfg = t.cfg
    key_blob = json.dumps([t.model_id, [p.to_json() for p in t.eval_problems], cfg.eval_samples, cfg.eval_max_new or cfg.max_new,
                           cfg.temperature, cfg.top_p, cfg.sampler, cfg.seed, cfg.adapter, cfg.rank, cfg.dtype])  # whole problems: an edited test or prompt misses
    path = cache_dir / f"{hashlib.sha256(key_blob.encode()).hexdigest()[:16]}.json"
    if path.exists():
        logger.info(f"initial eval HIT {path}")
        return json.loads(path.read_text())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 10_007)  # its own stream: the same for every arm of this seed
        result = eval_row(t.evaluate(None))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(result))
    return json.loads(json.dumps(result))  # what a HIT returns


def refresh(t: Trainer, step: int) -> tuple[float, bool]:
    """Re-extract the basis (refresh_basis); when adopted, rebuild the projectors and the gate's scorer.
    Returns (overlap, keep refreshing)."""
    t.basis, overlap, refreshing = refresh_basis(t, step)
    if refreshing:
        t.proj, t.update_proj = make_projectors(t.cfg, t.knobs, t.basis)
        if t.gate and t.cfg.gate_basis == "real":  # the gate scores rollouts with the same basis
            t.gate.scorer = Projector(t.knobs, t.basis)
    return overlap, refreshing


def refresh_basis(t: Trainer, step: int) -> tuple[dict, float, bool]:
    """PC06's refresh: (basis to use, mean old/new overlap, keep refreshing).

    Re-extracts from the same pairs at the current weights with the quarantine ablated: the directions of the model
    that ships, not of deployed + quarantine (under route the live quarantine holds the routed hack-ward mass, and
    extracting through it measures that sum). The principal-angle overlap with the old basis is logged per module.
    Under --refresh-min-overlap the new basis is not adopted and refreshing stops, with a warning: refresh assumes
    that the pairs still pick out the same directions as the weights move; a basis that turned this far can no
    longer be read as the same hack direction (it may have drifted, become noise, or been routed around: the log
    cannot tell which), so the last basis that passed is kept rather than one that was never checked.
    """
    with adapters.quarantine_ablated(t.model):
        new, _ = extract_basis(t.model, t.tok, t.pairs, t.ecfg)  # same pairs, current weights, no cache
    per_module = subspace_overlap(t.basis, new)
    overlap, min_overlap = mean(per_module.values()) or 0.0, t.cfg.refresh_min_overlap
    logger.debug(f"step {step} refresh overlap per module: {json.dumps({m: round(v, 4) for m, v in per_module.items()})}")
    if overlap < min_overlap:
        logger.warning(f"step {step}: refreshed basis overlaps the old one by {overlap:.3f} < --refresh-min-overlap "
                       f"{min_overlap}: keeping the old basis and refreshing no more")
        return t.basis, overlap, False
    logger.info(f"step {step}: basis refreshed (quarantine ablated); principal-angle overlap with the old one {overlap:.3f}")
    return new, overlap, True


def cin_null(basis: dict, knobs: dict) -> float | None:
    """The cosine a random direction would have with the basis: mean over modules of sqrt(k / dim).

    (cin applies relu per axis first, which lowers a random gradient's expected value below this.)"""
    vals = [math.sqrt(V.shape[0] / knobs[m][0].numel()) for m, V in basis.items()]
    return sum(vals) / len(vals) if vals else None


def append_rows(path: Path, rows: list[dict]) -> None:
    with path.open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


# ── entry points ───────────────────────────────────────────────────────────────────────────────────


def run(cfg: Config) -> dict:
    """Check everything that can be checked (values, files, model, checkpoint, out dir), then train.

    Raises ValueError / FileNotFoundError for bad input, cli.Failure for a failure inside the run, and
    cli.Interrupted on SIGINT/SIGTERM (after the checkpoint); `main` turns each into one line and an exit code."""
    dist = init_processes(cfg.device)
    cfg = for_processes(cfg, dist)
    validate(cfg, dist.world)
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
    dist.barrier()  # every process has checked the run directory before process 0 changes it
    if dist.main:
        prepare_out_dir(cfg, out)
    dist.barrier()
    log_handler = logger.add(out / "train.log", level="DEBUG") if dist.main else None
    try:
        with StopSignals() as stop:
            return _run(cfg, out, inputs, stop, dist)
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
        if log_handler is not None:
            logger.remove(log_handler)


def for_processes(cfg: Config, dist: Dist) -> Config:
    """Several processes: --seed-per-prompt on (a fresh run; a resumed run must have been started with it), and
    only process 0 talks (the others log warnings and errors, prefixed with their rank)."""
    if dist.world == 1:
        return cfg
    if not dist.main:
        logger.remove()
        logger.add(sys.stderr, level="WARNING", format=f"<level>{{level: <7}}</level> [rank {dist.rank}] {{message}}")
    if not cfg.seed_per_prompt and not cfg.resume:
        logger.info(f"{dist.world} processes: --seed-per-prompt on (a prompt's samples must not depend on the process)")
        cfg = dataclasses.replace(cfg, seed_per_prompt=True)
    return cfg


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


def main(argv: list[str] | None = None) -> None:
    """`python -m projected_grpo.train PRESET [--field value ...]` or `... --resume RUN_DIR [--field value ...]`.

    Exit status (cli.py): 0 done, 2 bad input, 1 a failure inside the run, 130 interrupted (checkpoint written)."""
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    with exit_codes():
        cfg = parse_args(argv)
        run(cfg)


if __name__ == "__main__":
    main()
