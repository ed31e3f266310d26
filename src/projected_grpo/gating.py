"""Gated routing (the seeds' later design): route whole rollouts, not gradient components.

Each rollout's own gradient is scored by its hack-ward alignment with the basis (mean over modules of
|relu(V g)| / |g|). A running buffer of recent scores sets two thresholds, t_lo = quantile(1 - 2q) and
t_hi = quantile(1 - q): rollouts above t_hi train the quarantine only, those between train both adapters,
the rest (the bulk) train the deployed adapter only. Scoring with a Haar-random basis is the placebo.
"""

from __future__ import annotations

from collections import deque

import torch
from torch import Tensor

from projected_grpo.proj import Projector


class QuantileGate:
    def __init__(self, q: float, scorer: Projector, size: int = 512, warmup: int = 16):
        if not 0 < q < 0.5:
            raise ValueError(f"gate quantile q must be in (0, 0.5), got {q}")
        self.q, self.scorer, self.warmup = q, scorer, warmup
        self.buffer: deque[float] = deque(maxlen=size)

    def score(self, grads: dict[str, Tensor | None]) -> float:
        """Hack-ward alignment of one rollout's deployed-knob gradient: mean over modules of |relu(V g)| / |g|."""
        return self.scorer.measure(grads)["cin"]

    def zones(self, scores: list[float]) -> list[str]:
        """'keep' (deployed only) | 'mid' (both) | 'rout' (quarantine only); then remember the scores.

        Until `warmup` scores are buffered the thresholds come from the current batch together with the buffer.
        """
        ref = torch.tensor(list(self.buffer) + (scores if len(self.buffer) < self.warmup else []))
        t_lo, t_hi = (torch.quantile(ref, torch.tensor([1 - 2 * self.q, 1 - self.q])).tolist() if len(ref) else (0.0, 0.0))
        self.buffer.extend(scores)
        return ["rout" if s > t_hi else "mid" if s > t_lo else "keep" for s in scores]

    def state_dict(self) -> dict:
        return {"buffer": list(self.buffer)}

    def load_state_dict(self, state: dict) -> None:
        self.buffer.clear()
        self.buffer.extend(state["buffer"])
