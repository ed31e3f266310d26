"""Projection cost per step as a fraction of the backward time (target <= 2%), measured side by side.

Per model: wrap with lora rank 8, a Haar-random basis with k=4 on every module (the realistic worst case:
no module under the floor), one forward on a short random batch, then timed repeatedly (median):
  backward   loss.backward() of that batch
  route      Projector(...)("route"): measure + write g' + set the quarantine grads (the costliest arm)
  update     UpdateProjector before_step() + after_step(project=True), the optimizer step itself excluded

    .venv/bin/python scripts/bench_proj.py            # tiny-random-qwen3 and qwen3-0.6b-shape
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import tyro

from projected_grpo.adapter import AdapterConfig, knobs, wrap
from projected_grpo.extract import haar_rows
from projected_grpo.model import load_model
from projected_grpo.proj import Projector, UpdateProjector


def timed(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(name: str, batch: int, seq: int, k: int, reps: int) -> dict[str, float]:
    model, tok = load_model(name)
    wrap(model, AdapterConfig("lora", rank=8))
    ks = knobs(model)
    gen = torch.Generator().manual_seed(0)
    basis = {m: haar_rows(k, d.numel(), gen) for m, (d, _) in ks.items()}
    ids = torch.randint(0, len(tok), (batch, seq), generator=gen)

    def backward():
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()  # forward excluded below by timing it apart

    t_fwd_bwd = timed(backward, reps)
    t_fwd = timed(lambda: model(input_ids=ids, labels=ids).loss.detach(), reps)
    t_bwd = max(t_fwd_bwd - t_fwd, 1e-9)
    t_build = timed(lambda: Projector(ks, basis), 1)
    proj, up = Projector(ks, basis), UpdateProjector(ks, basis)
    t_route = timed(lambda: proj("route"), reps * 4)

    def update():
        up.before_step()
        up.after_step(project=True)

    t_update = timed(update, reps * 4)
    n_knob = sum(d.numel() for d, _ in ks.values())
    return dict(modules=len(ks), knob_params=n_knob, backward_s=t_bwd, route_s=t_route, update_s=t_update,
                build_s=t_build, frac=(t_route + t_update) / t_bwd)


def main(models: tuple[str, ...] = ("tiny-random-qwen3", "qwen3-0.6b-shape"), batch: int = 4, seq: int = 128,
         k: int = 4, reps: int = 5) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}x{seq}, lora r=8, k={k}")
    print(f"{'model':<20} {'modules':>7} {'knob params':>11} {'backward':>10} {'route':>9} {'update':>9} "
          f"{'build(1x)':>9} {'(route+update)/backward':>24}")
    for name in models:
        r = bench(name, batch, seq, k, reps)
        print(f"{name:<20} {r['modules']:>7} {r['knob_params']:>11} {r['backward_s'] * 1e3:>8.1f}ms "
              f"{r['route_s'] * 1e3:>7.2f}ms {r['update_s'] * 1e3:>7.2f}ms {r['build_s'] * 1e3:>7.1f}ms "
              f"{r['frac']:>23.2%}")


if __name__ == "__main__":
    tyro.cli(main)
