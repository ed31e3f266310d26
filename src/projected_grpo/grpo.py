"""The Dr.GRPO objective: group-relative advantages, the PPO-clipped token-sum loss, and the two ways a step's rows
are backpropagated (by part, so the hack alignment of teacher and student gradients is measured apart; or one row
at a time, for gated routing)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from projected_grpo import adapter as adapters
from projected_grpo.cli import Failure
from projected_grpo.distributed import SINGLE, Dist
from projected_grpo.rollout import Row, token_logprobs

# (rows, their advantages) -> (loss, mean KL or None), already checked finite: what the backward functions call
LossFn = Callable[[list[Row], list[float]], tuple[Tensor, float | None]]
# (row, advantage, tag): tag "" for a student row, else the teacher row's grade: "hack" | "correct" | "other"
RowAdv = tuple[Row, float, str]


def advantages(rewards: list[float], group_sizes: list[int], dropped: list[bool] | None = None, scale: bool = False) -> list[float]:
    """Dr.GRPO: reward minus its group's mean, no std normalisation. `dropped` rows (screened by a monitor) leave
    their group before the mean is taken and get advantage 0; a group left with one row has no signal. `scale`:
    GRPO's (r - mean) / (std + 1e-4), with the sample std (n - 1), as TRL computes it; Dr.GRPO drops it because it
    up-weights low-variance groups."""
    dropped = dropped or [False] * len(rewards)
    out, i = [], 0
    for n in group_sizes:
        rs, ds = rewards[i : i + n], dropped[i : i + n]
        kept = [r for r, d in zip(rs, ds, strict=True) if not d]
        mean = sum(kept) / len(kept) if kept else 0.0
        std = math.sqrt(sum((r - mean) ** 2 for r in kept) / (len(kept) - 1)) if scale and len(kept) > 1 else None
        out += [0.0 if d else (r - mean) / (std + 1e-4) if std is not None else r - mean for r, d in zip(rs, ds, strict=True)]
        i += n
    return out


def grpo_loss(
    model,
    ids: Int[Tensor, "b t"],
    attn: Bool[Tensor, "b t"],
    comp: Bool[Tensor, "b t-1"],
    adv: Float[Tensor, " b"],
    *,
    normaliser: float,
    clip_eps: float,
    kl_coef: float,
) -> tuple[Float[Tensor, ""], float | None]:
    """PPO-clipped Dr.GRPO token-sum loss over the completion tokens `comp`, divided by a constant `normaliser`
    (not by each row's length: Dr.GRPO's fix of GRPO's length bias). One inner epoch, so the old log-probs are the
    detached current ones. With kl_coef > 0, the K3 KL to the zeroed-adapter reference; without, no reference
    forward at all (the KL is then None)."""
    logp = token_logprobs(model, ids, attn, comp)
    a = adv.to(logp.device).unsqueeze(1)
    ratio = torch.exp(logp - logp.detach())
    per_token = -torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
    kl_mean = None
    if kl_coef > 0:
        with torch.no_grad(), adapters.adapter_zeroed(model):
            ref = token_logprobs(model, ids, attn, comp)  # zeroed adapter = the initial policy, for free
        delta = ref - logp
        kl = torch.exp(delta) - delta - 1  # K3 estimator, >= 0
        per_token = per_token + kl_coef * kl
        kl_mean = ((kl.detach() * comp).sum() / comp.sum().clamp(min=1)).item()
    loss = (per_token * comp).sum() / normaliser
    return loss, kl_mean


PARTS = (("th", "hack"), ("tc", "correct"), (None, "other"), ("s", ""))  # (cin key, row tag), in backward order


def backward_by_part(rows_adv: list[RowAdv], loss_fn: LossFn, knobs: dict, proj, dist: Dist = SINGLE) -> tuple[float, float | None, dict]:
    """One backward per part, each part's gradient measured alone: teacher rows graded hacked (cin_th), teacher rows
    the oracle passes (cin_tc), other teacher rows, then student rows (cin_s); cin_t on all teacher rows together.
    Teacher gradients are put aside while the student part runs; .grad ends holding the sum of all parts.

    Several processes (distributed.py): `rows_adv` are this process's rows. Which parts run is decided on the
    global row counts, so every process makes the same collectives (one without rows in a part contributes zeros);
    each part's gradient is summed over processes before its cin is measured, and loss and KL are global."""
    loss_total, kls, metrics = 0.0, [], {}
    deployed = {n: p for n, (p, _) in knobs.items()}
    teacher: dict[str, Tensor | None] = {n: None for n in knobs}
    counts = dist.sum_ints([sum(t == tag for _, _, t in rows_adv) for _, tag in PARTS])
    for (key, tag), n in zip(PARTS, counts, strict=True):
        if not n:
            continue
        rows = [(r, a) for r, a, t in rows_adv if t == tag]
        kl = None
        if rows:
            loss, kl = loss_fn([r for r, _ in rows], [a for _, a in rows])
            loss.backward()
            loss_total += loss.item()
        dist.sum_grads(deployed)
        kls.append(dist.token_mean(kl, sum(len(r.completion_ids) for r, _ in rows)))
        if key:
            metrics[f"cin_{key}"] = proj("none")["cin"]
        if tag:  # a teacher part: set its gradient aside
            for n, (p, _) in knobs.items():
                if p.grad is not None:
                    teacher[n] = p.grad if teacher[n] is None else teacher[n] + p.grad
                p.grad = None
    if any(g is not None for g in teacher.values()):
        metrics["cin_t"] = proj.measure(teacher)["cin"]
        for n, (p, _) in knobs.items():
            if teacher[n] is not None:
                p.grad = teacher[n] if p.grad is None else p.grad + teacher[n]
    return dist.sum_floats([loss_total])[0], mean(kls), metrics


def backward_gated(rows_adv: list[RowAdv], loss_fn: LossFn, knobs: dict, proj, gate) -> tuple[float, float | None, dict]:
    """One backward per rollout: score its deployed-knob gradient against the gate basis, then send it to the
    deployed knob (keep), both (mid) or the quarantine only (rout)."""
    sums = {n: [None, None] for n in knobs}  # deployed, quarantine
    loss_total, kls, scores, cins = 0.0, [], [], {"s": [], "t": []}
    per_row = []
    for row, a, tag in rows_adv:
        for p, _ in knobs.values():
            p.grad = None
        loss, kl = loss_fn([row], [a])
        loss.backward()
        loss_total += loss.item()
        kls.append(kl)
        grads = {n: p.grad for n, (p, _) in knobs.items()}
        scores.append(gate.score(grads))
        cins["t" if tag else "s"].append(proj.measure(grads)["cin"])
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


def mean(xs) -> float | None:
    xs = [float(x) for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


class NonFiniteError(Failure):
    pass


def check_finite(x: Tensor, step: int, what: str) -> None:
    if not torch.isfinite(x).all():
        raise NonFiniteError(f"step {step}: non-finite {what} ({x.item()})")
