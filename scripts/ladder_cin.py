"""Before any behaviour: how much of the live GRPO gradient does each pair set's basis see?

On the organism's warm-started policy (zero adapter: step 0, nothing trained), sample student groups on training
problems, add the teacher's hack row as training does, grade, take Dr.GRPO advantages and the loss gradient, and
measure cin (the hack-ward share of the gradient along the basis, relu per axis) for the basis of every pair set
and for Haar-random bases with the same modules and k (the measured null). Mean ± SEM over batches.

    python scripts/ladder_cin.py [--seed 0] [--batches 8]   # writes docs/results/organism/ladder_cin.json
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys

import numpy as np
import torch
import tyro

from projected_grpo import adapter as adapters
from projected_grpo.config import PRESETS, resolve_path
from projected_grpo.extract import ExtractConfig, load_or_extract
from projected_grpo.files import REPO_ROOT, atomic_write
from projected_grpo.grpo import advantages, grpo_loss
from projected_grpo.model import load_model
from projected_grpo.pairs import FORM_SETS
from projected_grpo.problems import load_problems, render_prompt, split_problems
from projected_grpo.proj import Projector
from projected_grpo.rewards import Grader
from projected_grpo.rollout import pack, row_from_text, sample
from projected_grpo.teacher import pool_for
from projected_grpo.train import pairs_for
from projected_grpo.warmstart import warm_start


@dataclasses.dataclass(frozen=True)
class Args:
    seed: int = 0
    batches: int = 8
    out: str = "docs/results/organism/ladder_cin.json"


def main(args: Args) -> None:
    cfg = dataclasses.replace(PRESETS["organism"][1], seed=args.seed)
    torch.set_num_threads(1)
    problems = load_problems(resolve_path(cfg.problems))
    train, _ = split_problems(problems, cfg.eval_frac, cfg.split_seed)
    model, tok = load_model(cfg.model, seed=cfg.split_seed)
    cache = REPO_ROOT / cfg.cache_dir
    warm = warm_start(model, tok, cfg.model, problems, cfg.warm, cache / "warmstart", hack_ids=frozenset(p.id for p in train))
    torch.manual_seed(cfg.seed)
    adapters.wrap(model, adapters.AdapterConfig(kind=cfg.adapter, rank=cfg.rank, targets=cfg.targets, seed=cfg.seed))
    knobs = adapters.knobs(model)
    model_id = f"{cfg.model}+warm-{warm['key']}"
    ecfg = ExtractConfig(k=cfg.k, floor_quantile=cfg.floor_quantile, seed=cfg.seed, batch_size=cfg.extract_batch)
    bases = {}
    for which in FORM_SETS:
        pairs = pairs_for(f"forms:{which}", train)
        bases[which], _ = load_or_extract(model, tok, pairs, ecfg, cache / "basis", model_id, tag=f"ladder-{which}")
        rand, _ = load_or_extract(model, tok, pairs, dataclasses.replace(ecfg, basis="random"), cache / "basis", model_id, tag=f"ladder-{which}")
        bases[f"{which}/random"] = rand
    rng = random.Random(cfg.seed)
    cins: dict[str, list[float]] = {name: [] for name in bases}
    with Grader() as grader:
        pool = pool_for(train, cache / "pools", grader, forms=True)
        for _ in range(args.batches):
            picked = rng.sample(train, cfg.prompts_per_step)
            groups = sample(model, tok, [render_prompt(tok, p) for p in picked], cfg.group, max_new=cfg.max_new, temperature=cfg.temperature, top_p=cfg.top_p)
            rows, flat = [], []
            for p, g in zip(picked, groups, strict=True):
                hacks = [r["completion"] for r in pool if r["problem_id"] == p.id and r["kind"] == "hack"]
                g = g + [row_from_text(tok, g[0].prompt_ids, rng.choice(hacks))]
                rows.append(g)
                flat += [(p, r) for r in g]
            grades = grader.grade_many([(p, r.text) for p, r in flat])
            adv = advantages([g.reward for g in grades], [len(g) for g in rows])
            keep = [i for i, a in enumerate(adv) if a != 0]
            if not keep:
                continue
            model.zero_grad(set_to_none=True)
            normaliser = float(max(len(g) for g in rows) * cfg.max_new * len(rows))
            loss, _ = grpo_loss(model, *pack([flat[i][1] for i in keep], tok.pad_token_id, model.device), torch.tensor([adv[i] for i in keep]),
                               normaliser=normaliser, clip_eps=cfg.clip_eps, kl_coef=cfg.kl_coef)
            loss.backward()
            grads = {m: d.grad for m, (d, _) in knobs.items()}
            for name, basis in bases.items():
                cins[name].append(Projector(knobs, basis).measure(grads)["cin"])
    out = {}
    for name, xs in cins.items():
        v = np.array(xs)
        out[name] = dict(mean=float(v.mean()), sem=float(v.std(ddof=1) / np.sqrt(len(v))), n=len(v))
        print(f"{name:>20}: cin {v.mean():.4f} ± {out[name]['sem']:.4f} (n={len(v)} batches)")
    path = REPO_ROOT / args.out
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(dict(seed=cfg.seed, batches=args.batches, warm_key=warm["key"], cin=out), indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    try:
        main(tyro.cli(Args))
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
