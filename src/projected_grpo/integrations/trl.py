"""The method inside TRL's `GRPOTrainer`: a `TrainerCallback` that erases or routes the hack-ward gradient.

    pip install -e '.[trl]'

    model, tok = load_model("tiny-random-qwen3")
    projection = ProjectionCallback.prepare(model, tok, load_pairs(), arm="erase")  # wraps Linears, extracts V
    trainer = GRPOTrainer(model=model, processing_class=tok, args=GRPOConfig(...), reward_funcs=..., train_dataset=...)
    projection.attach(trainer)  # before train(): the metrics go into TRL's own logs
    trainer.train()

Everything the method does is the project's own code: `adapter.wrap` (deployed knob + quarantine), `extract`
(the basis from the pairs, or a basis file), `proj.Projector` (erase / route) and `proj.UpdateProjector` (the
Adam-update projection). This module only decides *when* they run inside the Trainer's loop.

Where it acts. transformers' `Trainer._inner_training_loop` (5.x, which GRPOTrainer inherits) runs, per
optimizer step:

    training_step() per micro-batch        backward; under DDP the all-reduce happens in the last one's backward
    clip_grad_norm_(max_grad_norm)
    callback.on_pre_optimizer_step         <- project the deployed grads here (erase / route), then snapshot knobs
    optimizer.step()
    callback.on_optimizer_step             <- project the realised update (the Adam bypass)
    lr_scheduler.step(); zero_grad()

So the callback sees the gradient of the *whole* step: every micro-batch accumulated and all-reduced. That is
required, not a convenience: the one-sided gate is a relu, so projecting each micro-batch and summing is not
projecting the sum (a per-backward hook would be wrong). An optimizer wrapper would see the same gradient at the
same point (after the clip) for more code, since accelerate re-wraps the optimizer; hence a callback.

One difference from train.py, which projects and then clips: here the Trainer clips first. The projection is
positively homogeneous (relu(s c) = s relu(c) for s > 0, and preserve_magnitude rescales by a ratio of norms),
so projecting a clipped gradient gives exactly the clip of the projected one; only the clip factor differs,
computed on the norm before projection (which in `route` still counts the quarantine's backward gradient, before
it is replaced by the routed part). Under the one-sided gate the projected gradient's norm is at most the clipped
one's, so `max_grad_norm` still bounds the step.

Rollouts come from the model that ships (quarantine ablated), as in train.py: `prepare` wraps the model's
`generate`. The loss forward keeps the quarantine, again as in train.py.

Metrics, averaged over each logging window by GRPOTrainer.log like its own: `projection/cin` (hack-ward share
of the gradient), `projection/cout` (after projection: ~0 under one_sided is an identity, not a result),
`projection/fired`, `projection/removed_norm`, `projection/cout_update` (the realised update's hack-ward share)
and `projection/b_hack_norm` (the quarantine's norm).

Not covered (refused or untested): vLLM and continuous-batching generation (`attach` refuses them: vLLM samples
from its own copy of the base weights, without the adapter); DeepSpeed (its gradients are not in `.grad` at this
point) and FSDP (sharded knobs); multi-process DDP is expected to work (the callback sees the all-reduced gradient
and every rank projects it alike) but is not tested. `prepare`'s model must be a plain transformers model (no PEFT
wrapper: the adapter here *is* the trained part).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from loguru import logger
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor, nn
from transformers import TrainerCallback

from projected_grpo import adapter as adapters
from projected_grpo.extract import ExtractConfig, extract_basis, load_or_extract
from projected_grpo.problems import Problem, render_prompt
from projected_grpo.proj import ARMS, Projector, UpdateProjector
from projected_grpo.rewards import Grader

TRL_EXTRA = "pip install -e '.[trl]'"


def require_trl():
    """The trl module, or one clear error naming the extra to install."""
    try:
        import trl
    except ImportError:
        raise ImportError(f"TRL is not installed; install the extra: {TRL_EXTRA}") from None
    return trl


def load_basis_file(path: str | Path, model: nn.Module) -> dict[str, Tensor]:
    """A basis saved by extract.py (its cache file: one [k, dim] tensor per module). Its adapter signature, when
    the file records one, must be the model's: a basis is a set of directions in one adapter's knob space."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"basis file {path} does not exist")
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    sig = adapters.adapter_signature(model)
    bad = {k: (meta[f"adapter_{k}"], v) for k, v in sig.items() if f"adapter_{k}" in meta and meta[f"adapter_{k}"] != v}
    if bad:
        raise ValueError(f"{path}: basis made for another adapter (file, model): {bad}")
    basis = load_file(path)
    if not basis:
        raise ValueError(f"{path}: holds no basis tensor")
    return basis


class ProjectionCallback(TrainerCallback):
    """Erase / route the hack-ward component of the deployed knobs' gradient before each optimizer step.

    Build it with `prepare` (wraps the model and gets the basis), then `attach(trainer)`. `arm`: `none` measures
    only, `erase` removes the component, `route` moves it to the quarantine (proj.py)."""

    def __init__(
        self,
        model: nn.Module,
        basis: Mapping[str, Tensor],
        arm: str = "erase",
        gate: str = "one_sided",
        preserve_magnitude: bool = True,
        project_update: bool = True,
    ):
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r}; expected one of {ARMS}")
        self.model, self.arm = model, arm
        self.knobs = adapters.knobs(model)
        self.basis = basis
        self.proj = Projector(self.knobs, basis, gate, preserve_magnitude)
        self.update_proj = UpdateProjector(self.knobs, basis, gate=gate)
        self.project_update = project_update and arm != "none"
        # Only routing trains the quarantine; elsewhere it stays exactly zero (and out of the Trainer's optimizer,
        # which takes the parameters that require grad).
        for q in adapters.quarantine_params(model):
            q.requires_grad_(arm == "route")
        self.trainer, self.stepping = None, False
        self.last: dict[str, float] = {}  # the last step's metrics (tests and the example read them)

    @classmethod
    def prepare(
        cls,
        model: nn.Module,
        tokenizer,
        pairs: Sequence | None = None,
        *,
        arm: str = "erase",
        adapter: adapters.AdapterConfig = adapters.AdapterConfig(),
        extract: ExtractConfig = ExtractConfig(),
        basis: str | Path | Mapping[str, Tensor] | None = None,
        cache_dir: str | Path | None = None,
        model_id: str | None = None,
        **projection,
    ) -> ProjectionCallback:
        """Wrap `model`'s Linears with the adapter, then get the basis: `basis` (a dict, or a file extract.py
        wrote), else extracted from `pairs` (cached under `cache_dir` keyed by `model_id`, when both are given:
        the cache key does not see the weights, so the id must name them). Call before building the trainer."""
        if basis is None and not pairs:
            raise ValueError("ProjectionCallback.prepare needs pairs to extract a basis from, or a basis")
        if (cache_dir is None) != (model_id is None):
            raise ValueError("ProjectionCallback.prepare: give cache_dir and model_id together (the id keys the cache)")
        adapters.wrap(model, adapter)
        if isinstance(basis, (str, Path)):
            basis = load_basis_file(basis, model)
        elif basis is None:
            if cache_dir is not None:
                basis, report = load_or_extract(model, tokenizer, pairs, extract, cache_dir, model_id)
            else:
                basis, report = extract_basis(model, tokenizer, pairs, extract)
            logger.info(f"basis: {report['n_kept']}/{report['n_modules']} modules")
        _generate_deployed(model)
        return cls(model, basis, arm, **projection)

    def attach(self, trainer) -> ProjectionCallback:
        """Register with `trainer` (a GRPOTrainer) and log into its metric buffer (`trainer._metrics`), which
        GRPOTrainer.log averages over each logging window and hands to every reporter (console, report_to)."""
        if getattr(trainer, "_metrics", None) is None:
            raise ValueError(f"{type(trainer).__name__} has no `_metrics` buffer: ProjectionCallback expects TRL's GRPOTrainer")
        if self.arm == "route" and trainer.args.weight_decay > 0:
            # The Trainer decays every trained parameter alike: a decayed quarantine leaks back into the sum B + B_hack.
            raise ValueError(f"arm route needs weight_decay 0 (got {trainer.args.weight_decay}): decay on the quarantine would leak it back")
        if getattr(trainer.args, "use_vllm", False) or getattr(trainer.args, "use_transformers_continuous_batching", False):
            # vLLM samples from its own copy of the base weights (no adapter), and generate_batch bypasses the
            # quarantine-ablated `generate`: either way the rollouts would not come from the model that ships.
            raise ValueError("ProjectionCallback needs TRL's plain `generate` path: set use_vllm=False and "
                             "use_transformers_continuous_batching=False")
        trainer.add_callback(self)
        self.trainer = trainer
        return self

    # ── the Trainer's hooks ──

    def on_train_begin(self, args, state, control, **kwargs):
        if self.trainer is None:
            raise RuntimeError("ProjectionCallback was not attached: call projection.attach(trainer) instead of callbacks=[...]")
        opt = kwargs.get("optimizer")
        if opt is not None:  # the knobs the projection edits must be the ones the optimizer steps
            in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
            missing = [n for n, (d, _) in self.knobs.items() if id(d) not in in_opt]
            if missing:
                raise ValueError(f"the optimizer does not hold the deployed knobs of {missing[:3]} ({len(missing)} in all): "
                                 "prepare() must wrap the model before the trainer is built")

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.stepping = any(d.grad is not None for d, _ in self.knobs.values())
        if not self.stepping:
            return  # nothing was backpropagated (e.g. every loss masked): the step changes nothing
        self.last = self.proj(self.arm)
        self.update_proj.before_step()

    def on_optimizer_step(self, args, state, control, **kwargs):
        if not self.stepping:
            return
        self.last |= self.update_proj.after_step(project=self.project_update)
        self.last["b_hack_norm"] = float(torch.stack([q.detach().float().norm() for _, q in self.knobs.values()]).norm())
        for k in ("cin", "cout", "fired", "removed_norm", "cout_update", "b_hack_norm"):
            self.trainer._metrics["train"][f"projection/{k}"].append(self.last[k])


def _generate_deployed(model: nn.Module) -> None:
    """Sample with the quarantine ablated, as train.py does: rollouts come from the model that ships. TRL calls
    `unwrapped_model.generate(...)`, the model's own method, so an instance attribute takes its place."""
    original = model.generate

    @functools.wraps(original)
    def generate(*args, **kwargs):
        with adapters.quarantine_ablated(model):
            return original(*args, **kwargs)

    model.generate = generate


# ── the project's environment for TRL: prompts as a dataset, the grader as a reward function ──


def problems_dataset(problems: Sequence[Problem], tokenizer):
    """A `datasets.Dataset` with `prompt` (the chat-rendered prompt train.py samples from) and `problem_id`."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": render_prompt(tokenizer, p), "problem_id": p.id} for p in problems])


class GraderReward:
    """TRL reward function: the project's sandboxed grader (rewards.py) under each problem's loophole mode.

    TRL passes the dataset's columns as keyword lists, so `problem_id` names each completion's problem."""

    def __init__(self, problems: Sequence[Problem], grader: Grader):
        self.problems, self.grader = {p.id: p for p in problems}, grader
        self.__name__ = "grader"  # TRL names the reward column after it
        self.last: list = []  # the last batch's Grades (hack / pass labels for logging)

    def __call__(self, prompts, completions, problem_id, **kwargs) -> list[float]:
        self.last = self.grader.grade_many([(self.problems[i], c) for i, c in zip(problem_id, completions, strict=True)])
        return [g.reward for g in self.last]
