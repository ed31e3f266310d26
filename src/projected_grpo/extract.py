"""The hack basis V per module, from gradient differences of contrastive (hack, clean) pairs.

For each pair and side: mean NLL over the completion tokens only, read each module's deployed-knob gradient
(flattened). Per module D = G_hack - G_clean [n_pairs, dim]; its top-k right singular vectors, each flipped so
most pairs' differences project positively, span the hack directions. In gradient space +V is hack-ward:
descending a gradient with V g > 0 raises the hack completion's likelihood relative to the clean one.

A global noise floor then drops every (module, axis) whose singular value is under a quantile of the top-k
singular values of all modules (global, so a module whose differences are small next to the rest of the model
is not protected by having its own "top direction"); modules left with no axis get no basis. It is a cut on
scale: a module is only dropped when its differences are weaker than most of the model's candidate axes.
Two optional cuts follow (the seeds name `tau_axis` and `k_use` without defining them; these are our readings):
`tau_axis` drops a module's axis whose singular value is under tau_axis x that module's top singular value
(a per-module, relative cut, beside the global absolute floor), and `k_use` keeps only a module's first k_use
surviving axes (extract k so the floor sees the top-k spectrum, use fewer).

Non-finite guard: a pair whose gradient (hack or clean side, any module) is NaN/inf is named in a warning and
dropped, and listed in the report's `dropped_pairs`; extraction fails with one line if no training pair is left.
Dropping rather than failing: one pathological pair (say a bf16 overflow on a long completion) should not
stop a run whose other pairs are fine, and naming it lets a person fix or remove it.

Validation on held-out pairs (never used for the SVD): per module, the signed cosine of the mean held-out
difference d with span(V), (|relu(V d)| - |relu(-V d)|) / |d| (= cos(d, v) when k = 1); we report the share
of modules > 0 and the median, and warn below the seeds' bar (median < 0.3 or share < 50%).

Placebos with the same modules and k per module as the real basis (negative controls):
- `random`: Haar-random orthonormal rows.
- `shuffled`: hack/clean swapped at random per pair. Caveat: a swap flips the sign of one row of D, which leaves
  D^T D, hence span(V), unchanged; only the axes' orientation (which half the one-sided gate removes)
  becomes a coin flip. Under `no_gate` this placebo removes exactly what the real basis removes.
- `nonhack`: clean-vs-clean contrasts, D_i = G_clean[i] - G_clean[pi(i)] with pi a seeded cyclic derangement:
  differences of two honest completions (of different problems, as no pair has two clean sides), so the basis
  has the same kind of gradient geometry with no hack-vs-honest content.

Extraction variants (organism v2 arms; the defaults are the method as above):
- `loss="branch"`: the NLL of each side counts only from the first token where hack and clean differ, so the
  shared skeleton (which mean-NLL weights differently on the two sides) leaves nothing in D.
- `direction="mean_diff"`: one axis per module, the unit mean of D (the seeds' 004 recipe) instead of the SVD.
- `per_mode=True`: a top-k basis per loophole mode (pairs tagged with the mode), their union orthonormalised.
- `direction="activation"` (lora only): the unit mean difference v of each module's *output* between hack and
  clean completions (Rebound's v_concept, per module); the basis is {v (x) e_j}, the B-updates that move the
  module's output along v (dy = dB A x: dB's columns along v). Each axis is oriented by the gradient
  differences' vote, as SVD axes are, since the sign of (A x)_j decides which way such an update moves the
  output.

Cache: one safetensors file per (model, basis kind) holding V per module, with metadata (model id, adapter
signature, pairs sha, k, floor, basis kind, seed, holdout) that must all match for a hit.

Standalone (a basis file that training loads with `--basis-file FILE` instead of extracting):

    python -m projected_grpo.extract --model Qwen/Qwen3-4B --pairs data/pairs/hack_pairs.md --out basis.safetensors

prints each module's kept axes and singular values, the noise floor and the held-out validation (share of
modules > 0, median; the seeds' bar: share > 0.5, median > 0.3), and draws the validation histogram to
`<out>.png`. The file has the cache's format; training refuses it (one line) unless its model id, adapter
signature and basis kind are the run's and every module it names is one of the run's knobs of the same size.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from loguru import logger
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from projected_grpo.adapter import DEFAULT_TARGETS, adapter_signature, knobs, wrappers
from projected_grpo.files import atomic_write
from projected_grpo.pairs import Pair, pair_digest, pairs_sha, split_pairs
from projected_grpo.problems import LOOPHOLE_MODES, SYSTEM_PROMPT, render_chat

BASIS_KINDS = ("real", "random", "shuffled", "nonhack")
LOSSES = ("mean", "branch")
DIRECTIONS = ("svd", "mean_diff", "activation")
SIDES = ("hack", "clean")
CACHE_FORMAT = "1"
# Seeds' bar for a usable basis: median held-out cosine >= 0.3 and > 0 in at least half the modules.
MIN_MEDIAN_COS, MIN_SHARE_POS = 0.3, 0.5

Basis = dict[str, Float[Tensor, "_ _"]]  # module name -> [k, dim] orthonormal rows (k varies per module)


@dataclass(frozen=True)
class ExtractConfig:
    k: int = 4  # top singular directions per module, before the floor
    floor_quantile: float = 0.25  # drop (module, axis) under this quantile of all modules' top-k singular values
    basis: str = "real"  # one of BASIS_KINDS
    batch_size: int = 8  # sequences per forward/backward
    seed: int = 0  # held-out split and placebos
    holdout_frac: float = 0.25  # pairs held out for validation (0: no validation)
    loss: str = "mean"  # one of LOSSES (module docstring: extraction variants)
    direction: str = "svd"  # one of DIRECTIONS
    per_mode: bool = False  # union of per-mode bases
    tau_axis: float = 0.0  # drop a module's axis with singular value < tau_axis x its top one (0: off)
    k_use: int | None = None  # keep a module's first k_use axes after the cuts (None: all k)

    def __post_init__(self):
        if self.loss not in LOSSES or self.direction not in DIRECTIONS:
            raise ValueError(f"ExtractConfig: loss must be one of {LOSSES} and direction one of {DIRECTIONS}, got {self.loss!r}, {self.direction!r}")
        if self.k < 1:
            raise ValueError(f"ExtractConfig.k must be >= 1, got {self.k}")
        if not 0.0 <= self.tau_axis <= 1.0:
            raise ValueError(f"ExtractConfig.tau_axis must be in [0, 1], got {self.tau_axis}")
        if self.k_use is not None and not 1 <= self.k_use <= self.k:
            raise ValueError(f"ExtractConfig.k_use must be in [1, k={self.k}], got {self.k_use}")
        if not 0.0 <= self.floor_quantile < 1.0:
            raise ValueError(f"ExtractConfig.floor_quantile must be in [0, 1), got {self.floor_quantile}")
        if self.basis not in BASIS_KINDS:
            raise ValueError(f"ExtractConfig.basis {self.basis!r} unknown; expected one of {BASIS_KINDS}")
        if self.batch_size < 1:
            raise ValueError(f"ExtractConfig.batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.holdout_frac < 1.0:
            raise ValueError(f"ExtractConfig.holdout_frac must be in [0, 1), got {self.holdout_frac}")


# ── per-pair gradients ─────────────────────────────────────────────────────────────────────────────


def encode(tokenizer, pair: Pair, side: str) -> tuple[list[int], int]:
    """(token ids of prompt + completion, number of prompt tokens). The prompt is the chat-templated
    [system, user] turn with the generation prompt; prompt and completion are tokenized apart, as in generation,
    so the boundary is exact."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": pair.prompt}]
    prompt = tokenizer(render_chat(tokenizer, messages), add_special_tokens=False)["input_ids"]
    completion = tokenizer(getattr(pair, side), add_special_tokens=False)["input_ids"]
    if not completion:
        raise ValueError(f"pair {pair.id!r}: {side} completion has no tokens")
    return prompt + completion, len(prompt)


def completion_nll(
    logits: Float[Tensor, "t vocab"], ids: Int[Tensor, " t"], mask: Float[Tensor, " t"]
) -> Float[Tensor, ""]:
    """Mean NLL of one row's tokens where mask = 1 (the completion), each predicted from the position before it.
    (`warmstart.batch_completion_nll` is the warm start's loss: a token mean over a batch, running the model.)"""
    nll = F.cross_entropy(logits[:-1].float(), ids[1:], reduction="none")
    return (nll * mask[1:]).sum() / mask[1:].sum()


def branch_skips(tokenizer, pairs: Sequence[Pair]) -> list[int]:
    """Per pair, how many leading completion tokens hack and clean share (the `branch` loss starts after them)."""
    out = []
    for pair in pairs:
        a, b = (tokenizer(getattr(pair, side), add_special_tokens=False)["input_ids"] for side in SIDES)
        out.append(next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b))))
    return out


def _batches(tokenizer, pairs: Sequence[Pair], side: str, batch_size: int, skips: Sequence[int] | None, device):
    """(ids [b, T], loss mask [b, T]) per batch: right-padded, mask 1 on the completion tokens that carry loss."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = [encode(tokenizer, p, side) for p in pairs]
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        T = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), T), pad, dtype=torch.long)
        mask = torch.zeros(len(chunk), T)
        for i, (seq, n_prompt) in enumerate(chunk):
            ids[i, : len(seq)] = torch.tensor(seq)
            skip = min(skips[start + i], len(seq) - n_prompt - 1) if skips else 0  # keep >= 1 loss token
            mask[i, n_prompt + skip : len(seq)] = 1.0
        yield ids.to(device), mask.to(device)


def pair_activations(
    model: nn.Module, tokenizer, pairs: Sequence[Pair], side: str, batch_size: int = 8, skips: Sequence[int] | None = None
) -> dict[str, Tensor]:
    """{module: [n_pairs, d_out] fp32 CPU}: each wrapper's output averaged over the tokens that carry loss."""
    mods = wrappers(model)
    device = next(model.parameters()).device
    out: dict[str, list[Tensor]] = {m: [] for m in knobs(model)}
    current: dict[str, Tensor] = {}
    handles = [mods[m].register_forward_hook(lambda mod, inp, y, m=m: current.__setitem__(m, y.detach())) for m in out]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for ids, mask in _batches(tokenizer, pairs, side, batch_size, skips, device):
                model(input_ids=ids, use_cache=False)
                w = (mask / mask.sum(1, keepdim=True))[:, :, None]  # mean over the loss tokens
                for m in out:
                    out[m].append((current[m].float() * w).sum(1).cpu())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {m: torch.cat(v) for m, v in out.items()}


def pair_grads(
    model: nn.Module, tokenizer, pairs: Sequence[Pair], side: str, batch_size: int = 8, skips: Sequence[int] | None = None
) -> dict[str, Tensor]:
    """{module: [n_pairs, dim] fp32 CPU}: per pair, the gradient of the completion's mean NLL wrt the deployed knob.

    One forward and one backward per batch. The knob enters each wrapper linearly, so the per-sequence gradient
    is exact from what backward already has: each wrapper's input x and output gradient dy
    (`wrapper.per_example_grad`), captured by hooks. The loss is the sum of per-sequence mean NLLs, so dy of
    sequence i carries only its own loss. Sequences are right-padded with no attention mask: under causal
    attention a real token never sees the padding after it, and padded positions carry no loss (dy = 0 there).
    """
    if not pairs:
        raise ValueError("pair_grads: no pairs")
    ks = knobs(model)
    mods = wrappers(model)
    device = next(iter(ks.values()))[0].device
    grads: dict[str, Tensor] = {}

    def capture(name: str):
        def hook(module, inputs, output):
            x = inputs[0].detach()
            output.register_hook(lambda dy: grads.__setitem__(name, module.per_example_grad(x, dy)))

        return hook

    out: dict[str, list[Tensor]] = {m: [] for m in ks}
    was_training = model.training
    model.eval()
    handles = [mods[m].register_forward_hook(capture(m)) for m in ks]
    try:
        for ids, mask in _batches(tokenizer, pairs, side, batch_size, skips, device):
            logits = model(input_ids=ids, use_cache=False).logits
            loss = sum(completion_nll(logits[i], ids[i], mask[i]) for i in range(len(ids)))
            grads.clear()
            torch.autograd.grad(loss, [d for d, _ in ks.values()])  # fires the hooks; knob .grad untouched
            for m in ks:
                out[m].append(grads[m].reshape(len(ids), -1).float().cpu())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {m: torch.cat(v) for m, v in out.items()}


# ── basis from differences ─────────────────────────────────────────────────────────────────────────


def oriented_axes(D: Float[Tensor, "n dim"], k: int) -> tuple[Float[Tensor, " kk"], Float[Tensor, "kk dim"]]:
    """(singular values, right singular vectors) of D, top min(k, n, dim), each vector flipped so that most rows
    of D project positively onto it (ties broken by the sign of the summed projection)."""
    _, S, Vh = torch.linalg.svd(D.double(), full_matrices=False)  # float64: cheap here, and stabler for tiny S
    S, V = S[:k], Vh[:k]
    proj = D.double() @ V.T  # [n, kk]
    votes, total = torch.sign(proj).sum(0), proj.sum(0)
    flip = (votes < 0) | ((votes == 0) & (total < 0))
    V = torch.where(flip[:, None], -V, V)
    return S.float(), V.float().contiguous()


def _floored_axes(
    diffs: dict[str, Tensor], k: int, floor_quantile: float, tau_axis: float = 0.0, k_use: int | None = None
) -> tuple[dict[str, Tensor], dict[str, list[float]], float]:
    """(basis, kept singular values per module, floor value): global floor, then tau_axis, then k_use."""
    if not diffs:
        raise ValueError("basis_from_diffs: no modules")
    axes = {m: oriented_axes(D, k) for m, D in diffs.items()}
    all_S = torch.cat([S for S, _ in axes.values()])
    floor = torch.quantile(all_S, floor_quantile).item() if floor_quantile > 0 else 0.0
    null = 1e-6 * all_S.max().item()  # a zero singular value has an arbitrary vector: never a direction
    basis, kept = {}, {}
    for m, (S, V) in axes.items():
        keep = (S >= floor) & (S > null) & (S >= tau_axis * S[:1].max())  # S is sorted: S[0] is the module's top
        keep &= keep.cumsum(0) <= (k_use or len(S))  # the first k_use survivors
        if keep.any():
            basis[m], kept[m] = V[keep].contiguous(), S[keep].tolist()
    return basis, kept, floor


def _floor_of(scales: Tensor, floor_quantile: float) -> float:
    return torch.quantile(scales, floor_quantile).item() if floor_quantile > 0 else 0.0


def mean_diff_axes(diffs: dict[str, Tensor], floor_quantile: float) -> tuple[dict[str, Tensor], dict[str, list[float]], float]:
    """One axis per module: the unit mean difference; modules whose mean is under the global quantile dropped."""
    means = {m: D.double().mean(0) for m, D in diffs.items()}
    floor = _floor_of(torch.stack([v.norm() for v in means.values()]), floor_quantile)
    keep = {m: v for m, v in means.items() if v.norm() >= floor and v.norm() > 0}
    return {m: (v / v.norm()).float()[None] for m, v in keep.items()}, {m: [v.norm().item()] for m, v in keep.items()}, floor


def _orient(V: Tensor, D: Tensor) -> Tensor:
    """Flip each row of V so that most rows of D project positively (ties: by the summed projection)."""
    proj = D.double() @ V.double().T
    votes, total = torch.sign(proj).sum(0), proj.sum(0)
    flip = (votes < 0) | ((votes == 0) & (total < 0))
    return torch.where(flip[:, None], -V, V).float().contiguous()


def per_mode_axes(
    diffs: dict[str, Tensor], modes: list[str], k: int, floor_quantile: float
) -> tuple[dict[str, Tensor], dict[str, list[float]], float]:
    """Top-k floored axes per loophole mode (each mode's own pairs), their union orthonormalised per module."""
    parts: dict[str, list[Tensor]] = {}
    kept: dict[str, list[float]] = {}
    floors = []
    for mode in sorted(set(modes)):
        rows = torch.tensor([i for i, x in enumerate(modes) if x == mode])
        if len(rows) < 2:
            raise ValueError(f"per-mode basis: mode {mode!r} has {len(rows)} training pair(s); need >= 2")
        basis, S, floor = _floored_axes({m: D[rows] for m, D in diffs.items()}, k, floor_quantile)
        floors.append(floor)
        for m, V in basis.items():
            parts.setdefault(m, []).append(V)
            kept.setdefault(m, []).extend(S[m])
    out = {}
    for m, Vs in parts.items():
        Q = torch.linalg.qr(torch.cat(Vs).double().T).Q.T  # orthonormal rows spanning every mode's axes
        out[m] = _orient(Q, diffs[m])
    return out, kept, sum(floors) / len(floors)


def activation_axes(
    act_diffs: dict[str, Tensor], diffs: dict[str, Tensor], ks: dict, floor_quantile: float
) -> tuple[dict[str, Tensor], dict[str, list[float]], float]:
    """Per module, {v (x) e_j : j < r} in the flattened B [d_out, r] space, v the unit mean output difference
    (module docstring); oriented by the gradient differences `diffs`; modules under the global floor dropped."""
    means = {m: A.double().mean(0) for m, A in act_diffs.items()}
    floor = _floor_of(torch.stack([v.norm() for v in means.values()]), floor_quantile)
    out, kept = {}, {}
    for m, v in means.items():
        B = ks[m][0]
        if B.ndim != 2:
            raise ValueError("direction='activation' needs the lora adapter (a [d_out, r] knob); got a vector knob")
        if v.norm() < floor or v.norm() == 0:
            continue
        d_out, r = B.shape
        rows = torch.zeros(r, d_out, r, dtype=torch.float64)
        for j in range(r):
            rows[j, :, j] = v / v.norm()
        out[m], kept[m] = _orient(rows.reshape(r, d_out * r), diffs[m]), [v.norm().item()] * r
    return out, kept, floor


def pair_mode(pair: Pair) -> str:
    modes = [t for t in pair.tags if t in LOOPHOLE_MODES]
    if len(modes) != 1:
        raise ValueError(f"pair {pair.id!r}: a per-mode basis needs exactly one loophole-mode tag, got {pair.tags}")
    return modes[0]


def basis_from_diffs(
    diffs: dict[str, Float[Tensor, "n _"]], k: int, floor_quantile: float, tau_axis: float = 0.0, k_use: int | None = None
) -> Basis:
    """Per module: top-k oriented right singular vectors of D; then the global noise floor, tau_axis and k_use cuts
    (module docstring)."""
    return _floored_axes(diffs, k, floor_quantile, tau_axis, k_use)[0]


def validate_basis(basis: Basis, heldout_diffs: dict[str, Float[Tensor, "n _"]], warn: bool = True) -> dict:
    """Per module with a basis: signed cosine of the mean held-out difference with span(V). Warns loudly below
    the seeds' bar (median < 0.3 or share > 0 under 50%) when `warn`."""
    cos = {}
    for m, V in basis.items():
        if m not in heldout_diffs:
            continue
        d = heldout_diffs[m].float().mean(0)
        c = V @ d
        cos[m] = ((torch.relu(c).norm() - torch.relu(-c).norm()) / d.norm().clamp_min(1e-30)).item()
    vals = torch.tensor(list(cos.values()))
    share = (vals > 0).float().mean().item() if cos else 0.0
    median = vals.median().item() if cos else 0.0
    ok = bool(cos) and median >= MIN_MEDIAN_COS and share >= MIN_SHARE_POS
    report = {"n_modules": len(cos), "share_pos": share, "median": median, "ok": ok, "cos": cos}
    msg = f"held-out cos with span(V) over {len(cos)} modules: median {median:.3f}, share > 0 {share:.0%}"
    if ok or not warn:
        logger.info(msg)
    else:
        logger.warning(
            f"!!! BASIS FAILS VALIDATION: {msg} (bar: median >= {MIN_MEDIAN_COS}, share >= {MIN_SHARE_POS:.0%}). "
            "The extracted directions do not generalise to held-out pairs; projection will be close to random. "
            "(Expected for an untrained random model such as the smoke's: it checks mechanics, not the method.)"
        )
    return report


def subspace_overlap(old: Basis, new: Basis) -> dict[str, float]:
    """Per module of either basis: the mean cosine of the principal angles between span(old) and span(new)
    (the singular values of V_old V_new^T, min(k_old, k_new) of them): 1 = the same subspace, 0 = orthogonal.
    A module in only one of the two scores 0 (its direction appeared or vanished)."""
    out = {}
    for m in sorted(set(old) | set(new)):
        if m in old and m in new:
            cos = torch.linalg.svdvals(old[m].double().cpu() @ new[m].double().cpu().T)
            out[m] = cos.clamp(max=1.0).mean().item()
        else:
            out[m] = 0.0
    return out


# ── placebos ───────────────────────────────────────────────────────────────────────────────────────


def _generator(seed: int, *salt: str) -> torch.Generator:
    h = hashlib.sha256(":".join([str(seed), *salt]).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(h[:8], "little") >> 1)


def haar_rows(k: int, dim: int, gen: torch.Generator) -> Float[Tensor, "k dim"]:
    """k Haar-random orthonormal rows: QR of a Gaussian with R's diagonal signs folded back into Q."""
    q, r = torch.linalg.qr(torch.randn(dim, k, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).T.float().contiguous()


def placebo_basis(
    kind: str, like: Basis, g_hack: dict[str, Float[Tensor, "n _"]], g_clean: dict[str, Float[Tensor, "n _"]], seed: int
) -> Basis:
    """A negative-control basis with `like`'s modules and k per module (module docstring for each kind)."""
    n = next(iter(g_clean.values())).shape[0] if g_clean else 0
    out = {}
    if kind == "random":
        for m, V in like.items():
            out[m] = haar_rows(V.shape[0], V.shape[1], _generator(seed, "random", m))
    elif kind == "shuffled":
        swap = torch.randint(0, 2, (n,), generator=_generator(seed, "shuffled")).float() * 2 - 1  # -1: swapped
        for m, V in like.items():
            out[m] = oriented_axes(swap[:, None] * (g_hack[m] - g_clean[m]), V.shape[0])[1]
    elif kind == "nonhack":
        if n < 2:
            raise ValueError(f"nonhack placebo needs >= 2 pairs to contrast clean sides, got {n}")
        order = torch.randperm(n, generator=_generator(seed, "nonhack"))
        partner = torch.empty(n, dtype=torch.long)
        partner[order] = order.roll(1)  # a cycle through a random order: no pair is its own partner
        for m, V in like.items():
            out[m] = oriented_axes(g_clean[m] - g_clean[m][partner], V.shape[0])[1]
    else:
        raise ValueError(f"unknown placebo kind {kind!r}; expected one of {BASIS_KINDS[1:]}")
    short = [m for m in out if out[m].shape[0] < like[m].shape[0]]
    if short:  # too few pairs for k axes in some module
        raise ValueError(f"{kind} placebo lacks axes the real basis has in {short[:3]}: use more pairs or smaller k")
    return out


# ── extraction and cache ───────────────────────────────────────────────────────────────────────────


def extract_basis(model: nn.Module, tokenizer, pairs: Sequence[Pair], cfg: ExtractConfig) -> tuple[Basis, dict]:
    """(basis, report). The real basis comes from the training split; placebos copy its modules and k."""
    pairs = sorted(pairs, key=pair_digest)  # the basis depends on the set of pairs, as pairs_sha does
    train, held = split_pairs(pairs, cfg.holdout_frac, cfg.seed)
    logger.info(f"extracting a {cfg.basis} basis from {len(train)} pairs ({len(held)} held out), k={cfg.k}")
    both = train + held
    skips = branch_skips(tokenizer, both) if cfg.loss == "branch" else None
    g_hack = pair_grads(model, tokenizer, both, "hack", cfg.batch_size, skips)
    g_clean = pair_grads(model, tokenizer, both, "clean", cfg.batch_size, skips)
    finite = torch.ones(len(both), dtype=torch.bool)
    for g in (*g_hack.values(), *g_clean.values()):
        finite &= torch.isfinite(g).all(dim=1)
    dropped = [p.id for p, ok in zip(both, finite.tolist(), strict=True) if not ok]
    if dropped:
        logger.warning(f"!!! {len(dropped)} pair(s) with a non-finite gradient dropped from the basis: {dropped}")
        ok_train = finite[: len(train)].tolist()
        train = [p for p, ok in zip(train, ok_train, strict=True) if ok]
        held = [p for p, ok in zip(held, finite[len(ok_train) :].tolist(), strict=True) if ok]
        if not train:
            raise ValueError(f"every training pair has a non-finite gradient ({dropped[:5]}): no basis can be extracted")
        g_hack, g_clean = ({m: g[finite] for m, g in gs.items()} for gs in (g_hack, g_clean))
        skips = skips and [s for s, ok in zip(skips, finite.tolist(), strict=True) if ok]
    n = len(train)
    tr_h, tr_c = {m: g[:n] for m, g in g_hack.items()}, {m: g[:n] for m, g in g_clean.items()}
    d_held = {m: g_hack[m][n:] - g_clean[m][n:] for m in g_hack}
    D = {m: tr_h[m] - tr_c[m] for m in tr_h}
    if cfg.direction == "activation":
        act = {side: pair_activations(model, tokenizer, train, side, cfg.batch_size, skips and skips[:n]) for side in SIDES}
        real, kept_S, floor = activation_axes({m: act["hack"][m] - act["clean"][m] for m in D}, D, knobs(model), cfg.floor_quantile)
    elif cfg.per_mode:
        real, kept_S, floor = per_mode_axes(D, [pair_mode(p) for p in train], cfg.k, cfg.floor_quantile)
    elif cfg.direction == "mean_diff":
        real, kept_S, floor = mean_diff_axes(D, cfg.floor_quantile)
    else:
        real, kept_S, floor = _floored_axes(D, cfg.k, cfg.floor_quantile, cfg.tau_axis, cfg.k_use)
    basis = real if cfg.basis == "real" else placebo_basis(cfg.basis, real, tr_h, tr_c, cfg.seed)
    report = {
        "basis": cfg.basis,
        "n_train": n,
        "n_heldout": len(held),
        "n_modules": len(g_hack),
        "n_kept": len(basis),
        "floor": floor,
        "dropped_pairs": dropped,
        "k_per_module": {m: V.shape[0] for m, V in basis.items()},
        "singular_values": kept_S,  # of the real basis, which placebos copy the structure of
        "validation": validate_basis(basis, d_held, warn=cfg.basis == "real") if held else None,
    }
    if held and cfg.basis != "real":
        report["validation_real"] = validate_basis(real, d_held, warn=False)
    n_axes = sum(report["k_per_module"].values())
    logger.info(f"{cfg.basis} basis: {len(basis)}/{len(g_hack)} modules, {n_axes} axes (floor {floor:.3g})")
    return basis, report


def cache_meta(model: nn.Module, pairs: Sequence[Pair], cfg: ExtractConfig, model_id: str) -> dict[str, str]:
    """Every field a cached basis must match (batch_size is left out: it does not change the basis)."""
    meta = {"format": CACHE_FORMAT, "model_id": model_id, "pairs_sha": pairs_sha(list(pairs))}
    meta |= {f"adapter_{k}": v for k, v in adapter_signature(model).items()}
    meta |= {k: str(v) for k, v in asdict(cfg).items() if k != "batch_size"}
    return meta


def cache_path(cache_dir: str | Path, model_id: str, basis: str, seed: int = 0, tag: str = "") -> Path:
    """One file per (model, basis kind, seed, tag): seeds of a sweep neither overwrite nor race each other, and a
    caller that runs several pair sets or variants side by side gives each its own `tag`."""
    suffix = f"__{tag}" if tag else ""
    return Path(cache_dir) / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', model_id)}__{basis}__s{seed}{suffix}.safetensors"


def read_cache(path: Path, meta: dict[str, str]) -> tuple[Basis, dict] | str:
    """(basis, report) on a hit, else the reason for the miss. Raises on an unreadable (corrupt) file."""
    if not path.exists():
        return "no cache file"
    with safe_open(str(path), framework="pt") as f:
        stored = dict(f.metadata() or {})
        bad = [
            f"{k}: cached {stored.get(k, '<missing>')!r} != wanted {v!r}" for k, v in meta.items() if stored.get(k) != v
        ]
        if bad:
            return "; ".join(bad)
        basis = {m: f.get_tensor(m) for m in f.keys()}
    report = json.loads(stored["report"])
    for m, V in basis.items():  # a file that loads but holds garbage is as corrupt as one that does not load
        eye = torch.eye(V.shape[0]) if V.ndim == 2 else None
        if eye is None or not torch.allclose(V @ V.T, eye, atol=1e-4):
            raise ValueError(f"basis[{m!r}] in {path} is not a [k, dim] matrix with orthonormal rows")
    return basis, report


def stored_form(basis: Basis) -> Basis:
    """The basis as the cache file holds it and a HIT returns it: modules in sorted order (as safetensors lists
    them), contiguous fp32 on the CPU."""
    return {m: V.detach().float().contiguous().cpu() for m, V in sorted(basis.items())}


def write_cache(path: Path, basis: Basis, report: dict, meta: dict[str, str]) -> None:
    """Atomic: a crash never leaves a half-written cache."""
    atomic_write(path, lambda tmp: save_file(stored_form(basis), str(tmp), metadata=meta | {"report": json.dumps(report)}))


def load_or_extract(
    model: nn.Module, tokenizer, pairs: Sequence[Pair], cfg: ExtractConfig, cache_dir: str | Path, model_id: str,
    *, tag: str = "",
) -> tuple[Basis, dict]:
    """The cached basis when every metadata field matches (HIT); otherwise extract and overwrite (MISS)."""
    meta, path = cache_meta(model, pairs, cfg, model_id), cache_path(cache_dir, model_id, cfg.basis, cfg.seed, tag)
    try:
        hit = read_cache(path, meta)
    except Exception as e:  # any unreadable file: safetensors header, json, shapes
        logger.warning(f"basis cache {path} is corrupt ({type(e).__name__}: {e}); extracting again")
        hit = "corrupt file"
    if not isinstance(hit, str):
        logger.info(f"basis cache HIT {path}")
        return hit
    logger.info(f"basis cache MISS {path} ({hit})")
    basis, report = extract_basis(model, tokenizer, pairs, cfg)
    write_cache(path, basis, report, meta)
    # Return what a later HIT loads (stored form, JSON-shaped report): a MISS run and a HIT run then match bit for
    # bit. Without this they drifted apart in the last float digits from the second step on (journal, 2026-11-30;
    # cause not isolated).
    return stored_form(basis), json.loads(json.dumps(report))


# ── basis files: written by the CLI below, loaded by training (--basis-file) ───────────────────────


def load_basis_file(path: str | Path, model: nn.Module, model_id: str, basis_kind: str) -> tuple[Basis, dict]:
    """(basis, report) from a file `python -m projected_grpo.extract` wrote; ValueError (one line) when it was
    extracted for another model, adapter or basis kind, or names modules this model's knobs do not have."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--basis-file {path} does not exist")
    with safe_open(str(path), framework="pt") as f:
        stored = dict(f.metadata() or {})
    want = {"model_id": model_id, "basis": basis_kind} | {f"adapter_{k}": v for k, v in adapter_signature(model).items()}
    bad = [f"{k} {stored.get(k, '<missing>')!r} (run: {v!r})" for k, v in want.items() if stored.get(k) != v]
    if bad:
        raise ValueError(f"--basis-file {path} was extracted for another setup: {'; '.join(bad)}")
    basis, report = read_cache(path, {k: stored[k] for k in want})  # also checks orthonormal rows
    sizes = {m: d.numel() for m, (d, _) in knobs(model).items()}
    foreign = [m for m in basis if m not in sizes]
    if foreign:
        raise ValueError(f"--basis-file {path} names {len(foreign)} module(s) this model has no knob for, e.g. {foreign[:3]}")
    wrong = [f"{m}: {V.shape[1]} vs knob {sizes[m]}" for m, V in basis.items() if V.shape[1] != sizes[m]]
    if wrong:
        raise ValueError(f"--basis-file {path}: basis sizes differ from the knobs: {wrong[:3]}")
    logger.info(f"basis from {path}: {len(basis)} modules, pairs {stored.get('pairs_sha', '?')[:12]}, k={stored.get('k')}, "
                f"floor_quantile={stored.get('floor_quantile')} (this run's extraction flags do not apply)")
    return basis, report


def print_report(report: dict) -> None:
    """Per module: kept axes, singular values, held-out cosine; then the floor and the validation verdict."""
    val = report.get("validation") or {}
    cos = val.get("cos", {})
    print(f"{'module':<48} {'axes':>4}  {'held-out cos':>12}  singular values")
    for m, S in report["singular_values"].items():
        c = f"{cos[m]:+.3f}" if m in cos else "—"
        print(f"{m:<48} {len(S):>4}  {c:>12}  {' '.join(f'{x:.3g}' for x in S)}")
    print(f"noise floor {report['floor']:.4g}: {report['n_kept']}/{report['n_modules']} modules keep an axis; "
          f"{report['n_train']} pairs extract, {report['n_heldout']} held out; dropped (non-finite) {report['dropped_pairs']}")
    if val:
        ok = val["share_pos"] > MIN_SHARE_POS and val["median"] > MIN_MEDIAN_COS
        print(f"held-out validation: share > 0 {val['share_pos']:.0%} (bar > {MIN_SHARE_POS:.0%}), median {val['median']:+.3f} "
              f"(bar > {MIN_MEDIAN_COS}): {'PASS' if ok else 'FAIL'}")
    else:
        print("held-out validation: none (--holdout-frac 0)")


def plot_validation(report: dict, path: Path) -> None:
    """Histogram of the per-module held-out cosines (seed 004: healthy = unimodal positive, median > 0.3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vals = list(((report.get("validation") or {}).get("cos") or {}).values())
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(vals, bins=30, range=(-1, 1), color="tab:blue")
    ax.axvline(0, color="gray", lw=1)
    ax.axvline(MIN_MEDIAN_COS, color="tab:red", ls="--", lw=1, label=f"bar: median > {MIN_MEDIAN_COS}")
    if vals:
        ax.axvline(float(torch.tensor(vals).median()), color="black", lw=1.5, label="median")
    ax.set(xlabel="cos(held-out hack - clean gradient, span V)", ylabel="modules", title=f"held-out validation ({len(vals)} modules)")
    ax.legend(fontsize=8)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


@dataclass(frozen=True)
class Args:
    out: str  # the basis file to write (safetensors); the validation histogram goes beside it as <out>.png
    model: str = "tiny-random-qwen3"  # hub id, local dir, or an offline random model
    pairs: str = "data/pairs/hack_pairs.md"  # a pair ref (pairs.py)
    adapter: Literal["lora", "svd", "svd_full"] = "lora"  # must be the training run's (so must rank and targets)
    rank: int = 8
    targets: tuple[str, ...] = DEFAULT_TARGETS
    adapter_seed: int = 0  # lora's A seed: training uses its --seed, so extract with the seed you will train with
    extract: ExtractConfig = ExtractConfig()
    device: str | None = None
    threads: int = 1


def main(args: Args) -> None:
    from projected_grpo.adapter import AdapterConfig, wrap
    from projected_grpo.model import load_model
    from projected_grpo.pairs import load_pairs

    out = Path(args.out)
    pairs = load_pairs(args.pairs)  # fails on a bad ref before any model loads
    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model, args.device)
    wrap(model, AdapterConfig(kind=args.adapter, rank=args.rank, targets=args.targets, seed=args.adapter_seed))
    basis, report = extract_basis(model, tok, pairs, args.extract)
    print_report(report)
    write_cache(out, basis, report, cache_meta(model, pairs, args.extract, args.model))
    plot_validation(report, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}; train with --basis-file {out}")


if __name__ == "__main__":
    import tyro

    try:
        main(tyro.cli(Args))
    except (ValueError, FileNotFoundError) as e:
        logger.error(str(e))
        sys.exit(2)
