"""Data parallel over processes: which prompts are this process's, and the few collectives a step needs.

    accelerate launch --multi_gpu --num_processes 2 -m projected_grpo.train smoke ...   (also on CPU: gloo)
    torchrun --nproc_per_node 2 -m projected_grpo.train smoke ...

Every process draws the same global prompt list and teacher rows from the same rng, keeps its share of the prompts
(`shard`: prompt i goes to process i mod world), samples, grades and backpropagates that share. `gather` hands
every process every group's rows and grades in the global order, so rewards, advantages and the step's metrics are
computed from the same list as in one process. `sum_grads` all-reduces each knob's gradient after each backward
part, before anything measures or projects it: every process then projects (erase / route), clips and steps the
same summed gradient, so every process holds the same knobs (`check_same` asserts it at each checkpoint).

Not DDP's module wrapper: the projection needs the summed gradient per part (teacher / student), measured before
it is combined, which DDP's bucketed all-reduce inside backward does not give. `accelerate.PartialState` owns the
process group (gloo on CPU, nccl on CUDA) and the device of each process. One process (`python -m ...`): `SINGLE`,
whose collectives do nothing, so a one-process run computes exactly what it did before this module existed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch

from projected_grpo.cli import Failure

T = TypeVar("T")

# Long: the other processes wait at a barrier while process 0 alone warm-starts, extracts the basis, evaluates or
# writes a checkpoint. A process that dies makes the launcher (torchrun) stop the others; this only bounds a hang.
TIMEOUT = timedelta(hours=3)


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device | None = None  # this process's device (None: the Config's --device rules)

    @property
    def main(self) -> bool:
        """Process 0: the one that writes files, logs and evaluates."""
        return self.rank == 0

    def shard(self, n: int) -> list[int]:
        """The global indices of this process's prompts (all of them in one process)."""
        return list(range(self.rank, n, self.world))

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def sum_ints(self, xs: list[int]) -> list[int]:
        """Element-wise sum over processes (e.g. rows per backward part: every process runs the same parts)."""
        return self._sum(xs, torch.long)

    def sum_floats(self, xs: list[float]) -> list[float]:
        """Element-wise sum over processes, in float64 (loss totals, KL sums and their token counts)."""
        return self._sum(xs, torch.float64)

    def _sum(self, xs: list, dtype: torch.dtype) -> list:
        if self.world == 1:
            return xs
        t = torch.tensor(xs, dtype=dtype, device=self._comm_device())
        torch.distributed.all_reduce(t)
        return t.tolist()

    def token_mean(self, value: float | None, n_tokens: int) -> float | None:
        """The global mean of a per-token quantity this process averaged over its n_tokens (None: it had none;
        None everywhere: None, e.g. the KL when it is not measured)."""
        if self.world == 1:
            return value
        s, n, has = self.sum_floats([value * n_tokens if value is not None else 0.0, float(n_tokens if value is not None else 0), float(value is not None)])
        return s / n if has and n else None

    def any(self, flag: bool) -> bool:
        """True on every process when it is True on one (a stop signal reaching one process stops all at the same step)."""
        return bool(self.sum_ints([int(flag)])[0]) if self.world > 1 else flag

    @torch.no_grad()
    def sum_grads(self, params: dict[str, torch.nn.Parameter]) -> None:
        """Replace each parameter's .grad by its sum over processes, in one flat all-reduce. A process whose share
        had no rows in this part contributes zeros; a parameter no process has a gradient for stays None."""
        if self.world == 1:
            return
        names = list(params)
        has = self.sum_ints([int(params[n].grad is not None) for n in names])
        live = [n for n, h in zip(names, has, strict=True) if h]
        if not live:
            return
        flat = torch.cat([(params[n].grad if params[n].grad is not None else torch.zeros_like(params[n])).reshape(-1).float() for n in live])
        torch.distributed.all_reduce(flat)
        i = 0
        for n in live:
            p = params[n]
            p.grad = flat[i : i + p.numel()].view(p.shape).to(p.dtype)
            i += p.numel()

    def gather(self, mine: list[int], items: list[T], n: int) -> list[T]:
        """Every process's items, put back in the global order: items[j] is global item mine[j]; returns n items."""
        if self.world == 1:
            return items
        parts: list = [None] * self.world
        torch.distributed.all_gather_object(parts, (mine, items))
        out: list = [None] * n
        for idx, its in parts:
            for i, x in zip(idx, its, strict=True):
                out[i] = x
        return out

    def on_main(self, fn: Callable[[], T]) -> T | None:
        """fn() on process 0 while the others wait at a barrier; None on the others."""
        result = fn() if self.main else None
        self.barrier()
        return result

    def main_first(self, fn: Callable[[], T]) -> T:
        """fn() on process 0 first, then on the others: caches (warm start, basis, teacher pool) are written once,
        by process 0, and the others read them."""
        if self.main:
            result = fn()
            self.barrier()
            return result
        self.barrier()
        return fn()

    @torch.no_grad()
    def check_same(self, tensors: dict[str, torch.Tensor], what: str) -> None:
        """Raise when a process's tensors differ from process 0's (a collective that was skipped, a rank-dependent
        draw): the processes would otherwise train different models and silently write only process 0's."""
        if self.world == 1:
            return
        flat = torch.cat([t.detach().reshape(-1).float() for t in tensors.values()]).to(self._comm_device())
        ref = flat.clone()
        torch.distributed.broadcast(ref, src=0)
        diff = (flat - ref).abs().max()
        diffs = [0.0] * self.world
        torch.distributed.all_gather_object(diffs, float(diff))
        if max(diffs) > 0:
            raise Failure(f"{what} differ between processes (max abs diff per process {diffs}): the processes diverged")

    def _comm_device(self) -> torch.device:
        # nccl moves CUDA tensors only; gloo CPU ones
        return self.device if self.device is not None and self.device.type == "cuda" else torch.device("cpu")


SINGLE = Dist()


def init(device: str | None = None) -> Dist:
    """The process group when a launcher started several processes (WORLD_SIZE > 1), else SINGLE.

    PartialState(cpu=True) is what picks gloo on a machine without CUDA (or with --device cpu): without it,
    accelerate finds no accelerator and silently runs each process alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        if os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true" and os.environ.get("MASTER_ADDR"):
            from loguru import logger

            logger.warning("`accelerate launch --cpu` started one process (without mpirun it cannot start more): "
                           "for several CPU processes use `accelerate launch --multi_gpu --num_processes N` (torchrun, gloo)")
        return SINGLE
    from accelerate import PartialState
    from accelerate.utils import InitProcessGroupKwargs

    cpu = not torch.cuda.is_available() or (device is not None and torch.device(device).type == "cpu")
    state = PartialState(cpu=cpu, **InitProcessGroupKwargs(timeout=TIMEOUT).to_kwargs())
    if state.num_processes <= 1:
        raise RuntimeError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but accelerate set up {state.num_processes} process "
                           f"(distributed type {state.distributed_type})")
    return Dist(rank=state.process_index, world=state.num_processes, device=None if cpu else state.device)
