"""TRL's GRPOTrainer on the project's environment, with the hack-ward gradient erased or routed (offline, CPU).

    pip install -e '.[trl]'
    python scripts/trl_example.py --arm erase --steps 4
    just trl-example --arm route

Reward = the project's sandboxed grader (rewards.py) under each problem's loophole mode; prompts = the project's
problems (problems.py), chat-rendered as train.py renders them; the model = the offline tiny random Qwen3 (or any
`--model` model.py loads). Dr.GRPO as in train.py: `loss_type="dr_grpo"`, no reward std scaling, no KL.

On the tiny random model the completions are noise, so the grader pays nothing and most steps have zero reward
variance (no policy gradient: cin = cout = 0). That is honest: this script shows the wiring, not a result. The
test (tests/test_trl.py) adds a length reward so every step has a gradient to project.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from typing import Literal

import tyro

from projected_grpo.cli import exit_codes, parse_flags, say, setup_logging


@dataclass(frozen=True)
class Args:
    arm: Literal["none", "erase", "route"] = "erase"
    model: str = "tiny-random-qwen3"  # model.py: an offline random Qwen3, a local dir or a cached hub id
    problems: str = "data/problems/substrate.jsonl"
    pairs: str = "data/pairs/hack_pairs.md"
    steps: int = 4  # optimizer steps
    prompts_per_step: int = 2
    group: int = 4  # completions per prompt (TRL's num_generations)
    max_new: int = 48
    lr: float = 1e-3
    seed: int = 0
    out_dir: str | None = None  # TRL's output_dir (default: a temp dir; nothing is saved)


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    with exit_codes():
        args = parse_flags(lambda: tyro.cli(Args, args=argv, prog="python scripts/trl_example.py"), "trl_example")
        try:
            run(args)
        except ImportError as e:
            say(f"error: {e}")
            sys.exit(2)


def run(args: Args) -> list[dict]:
    from projected_grpo.integrations.trl import GraderReward, ProjectionCallback, problems_dataset, require_trl

    trl = require_trl()
    import torch

    from projected_grpo.model import load_model
    from projected_grpo.pairs import load_pairs
    from projected_grpo.problems import load_problems
    from projected_grpo.rewards import Grader
    from projected_grpo.config import resolve_path

    torch.manual_seed(args.seed)
    problems = load_problems(resolve_path(args.problems))
    pairs = load_pairs(resolve_path(args.pairs))
    model, tok = load_model(args.model, "cpu", seed=args.seed, dtype="fp32")
    projection = ProjectionCallback.prepare(model, tok, pairs, arm=args.arm)
    config = trl.GRPOConfig(
        output_dir=args.out_dir or tempfile.mkdtemp(prefix="trl-example-"),
        max_steps=args.steps,
        per_device_train_batch_size=args.prompts_per_step * args.group,  # one generation batch per optimizer step
        num_generations=args.group,
        max_completion_length=args.max_new,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        loss_type="dr_grpo",
        scale_rewards="none",  # Dr.GRPO: advantage = reward - group mean
        beta=0.0,
        temperature=0.7,
        max_grad_norm=1.0,
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,  # the tiny model needs none, and it would recompute the frozen base
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=args.seed,
        dataloader_num_workers=0,
    )
    with Grader(workers=2) as grader:
        trainer = trl.GRPOTrainer(
            model=model,
            processing_class=tok,
            reward_funcs=[GraderReward(problems, grader)],
            args=config,
            train_dataset=problems_dataset(problems, tok),
        )
        projection.attach(trainer)
        trainer.train()
    rows = [r for r in trainer.state.log_history if "projection/cin" in r]
    for r in rows:
        say(f"step {r['step']}: reward {r['reward']:.2f}  cin {r['projection/cin']:.3f}  cout {r['projection/cout']:.3g}  "
            f"fired {r['projection/fired']:.2f}  cout_update {r['projection/cout_update']:.3g}  |Bh| {r['projection/b_hack_norm']:.3g}")
    return rows


if __name__ == "__main__":
    main()
