"""Data parallel (distributed.py) on CPU with gloo: 2 processes train what 1 process trains on the same global batch.

Two processes (started here as a launcher would: RANK / WORLD_SIZE / MASTER_* in the environment) run the arms
none, erase and route; this process runs the same three in one process with --seed-per-prompt. The knobs must agree
within fp32 tolerance (atol 1e-6; measured ~1e-8 on knobs that moved ~2e-3: the gradient sums differ only in
the order of additions) and the step metrics must agree:
counts exactly, float means to a relative 1e-4. The erase run is stopped after step 2 and resumed under 2
processes, so the resume path is in the comparison too.
"""

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from projected_grpo import train
from projected_grpo.config import validate

REPO = Path(__file__).resolve().parents[1]
ARMS = ("none", "erase", "route")
# 3 prompts: process 0 gets two, process 1 one (an uneven shard); 1 eval sample, no variants, short completions
DDP = dataclasses.replace(train.PRESETS["smoke"][1], steps=3, prompts_per_step=3, eval_samples=1, eval_frac=0.1,
                          eval_variants=False, max_new=16, ckpt_every=1, audit_every=1, seed_per_prompt=True)

# Each of the 2 processes: the three arms; then erase is wound back to its step-2 checkpoint and resumed.
WORKER = """
import dataclasses, json, shutil, sys
from pathlib import Path
import torch
from projected_grpo import train
from projected_grpo.config import resume_config
base, fields = Path(sys.argv[1]), json.loads(sys.argv[2])
cfg = train.Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items() if k != "warm"})
for arm in ("none", "erase", "route"):
    train.run(dataclasses.replace(cfg, arm=arm, out_dir=str(base / arm)))
out = base / "erase"
if torch.distributed.get_rank() == 0:  # back to step 2, as if killed after its checkpoint
    shutil.rmtree(out / "ckpt"); (out / "ckpt.prev").rename(out / "ckpt"); (out / "summary.json").unlink()
torch.distributed.barrier()
train.run(resume_config(["--resume", str(out)]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(n: int, base: Path, cfg: train.Config) -> list[subprocess.Popen]:
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "warm"}
    common = {**os.environ, "WORLD_SIZE": str(n), "LOCAL_WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1",
              "MASTER_PORT": str(free_port()), "PYTHONPATH": str(REPO / "src"), "CUDA_VISIBLE_DEVICES": ""}
    return [subprocess.Popen([sys.executable, "-c", WORKER, str(base), json.dumps(fields)], cwd=REPO,
                             env={**common, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for r in range(n)]


def knobs(out: Path) -> dict:
    return load_file(out / "ckpt" / "knobs.safetensors")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


EXACT = ("step", "reward", "gt_s", "hack_s", "hack_t", "attempt_s", "x_given_a", "exploit_attempt", "skipped", "noop", "lr")
CLOSE = ("loss", "kl", "cin_s", "cin_t", "cin_th", "cin_tc", "cin", "cout", "cout_update", "fired", "grad_norm", "b_hack_norm")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("ddp")
    cfg = dataclasses.replace(DDP, cache_dir=str(REPO / ".cache"))
    procs = launch(2, base / "two", cfg)
    for arm in ARMS:  # meanwhile, the one-process reference
        train.run(dataclasses.replace(cfg, arm=arm, out_dir=str(base / "one" / arm)))
    logs = [p.communicate(timeout=900)[0] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, f"a process of the 2-process run failed:\n{log[-4000:]}"
    return base / "one", base / "two"


@pytest.mark.parametrize("arm", ARMS)
def test_two_processes_train_the_same_knobs_and_metrics_as_one(runs, arm):
    one, two = runs[0] / arm, runs[1] / arm
    k1, k2 = knobs(one), knobs(two)
    assert k1.keys() == k2.keys()
    moved = max(k1[n].abs().max().item() for n in k1)
    assert moved > 1e-4, "the knobs moved: the comparison is not between two untouched (zero) adapters"
    for n in k1:
        torch.testing.assert_close(k2[n], k1[n], atol=1e-6, rtol=1e-4, msg=lambda m, n=n: f"{arm} {n}: {m}")
    m1, m2 = rows(one / "metrics.jsonl"), rows(two / "metrics.jsonl")
    assert [m["step"] for m in m2] == [1, 2, 3]
    for a, b in zip(m1, m2, strict=True):
        for key in EXACT:
            assert a[key] == b[key], f"{arm} step {a['step']} {key}: {a[key]} (1 process) vs {b[key]} (2)"
        for key in CLOSE:
            if a[key] is None or b[key] is None:
                assert a[key] is b[key] is None, f"{arm} step {a['step']} {key}: {a[key]} vs {b[key]}"
            else:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), f"{arm} step {a['step']} {key}"
    e1, e2 = rows(one / "eval.jsonl"), rows(two / "eval.jsonl")
    assert [(e["step"], e["hack"], e["pass"], e["per_problem"]) for e in e1] == [(e["step"], e["hack"], e["pass"], e["per_problem"]) for e in e2]
    # (a resume appends the redone step's audit again: compare the distinct rows)
    audit = [{json.dumps(r, sort_keys=True) for r in rows(d / "rollouts.jsonl")} for d in (one, two)]
    assert audit[0] == audit[1], "the audit sees every process's rows"
    if arm == "route":
        assert m2[-1]["b_hack_norm"] > 0


def test_only_process_0_writes_and_the_resumed_run_is_whole(runs):
    one, two = runs
    assert sorted(p.name for p in two.iterdir()) == sorted(ARMS)
    for arm in ARMS:  # the same files as one process writes: none from another process (no second train.log)
        assert sorted(p.name for p in (two / arm).iterdir()) == sorted(p.name for p in (one / arm).iterdir())
    erase = two / "erase"
    assert (erase / "summary.json").exists() and (erase / "train.log").exists()
    assert "resumed" in (erase / "train.log").read_text()
    assert [m["step"] for m in rows(erase / "metrics.jsonl")] == [1, 2, 3], "steps 1-2 kept, step 3 redone once"


@pytest.mark.parametrize("fields, message", [
    ({"gated": True}, "--gated"),
    ({"monitor": "gt"}, "--monitor"),
    ({"refresh_every": 2}, "--refresh-every"),
    ({"rebound_alpha": 0.5}, "--rebound-alpha"),
    ({"prompts_per_step": 1}, "--prompts-per-step"),
    ({"seed_per_prompt": False}, "--seed-per-prompt"),
])
def test_unsupported_features_are_refused_with_several_processes(fields, message):
    cfg = dataclasses.replace(DDP, **fields)
    with pytest.raises(ValueError, match=message.replace("-", r"\-")):
        validate(cfg, world=2)
    if message != "--seed-per-prompt":
        validate(dataclasses.replace(cfg, seed_per_prompt=False), world=1)  # one process: fine


def test_seed_per_prompt_samples_do_not_depend_on_the_other_prompts():
    """The property the equality above rests on: a prompt's group is the same whether it is sampled in a process
    with the other prompts of the step or alone."""
    from projected_grpo.model import load_model

    model, tok = load_model("tiny-random-qwen3", "cpu")
    t = train.Trainer.__new__(train.Trainer)
    t.cfg, t.model, t.tok = dataclasses.replace(DDP, max_new=12), model, tok
    prompts = ["def f(x):", "Write a function that adds two numbers.", "hello"]
    together = train.rollouts(t, 5, prompts, [0, 1, 2])
    alone = train.rollouts(t, 5, prompts[1:2], [1])
    assert [r.completion_ids for r in alone[0]] == [r.completion_ids for r in together[1]]
    other_step = train.rollouts(t, 6, prompts[1:2], [1])
    assert [r.completion_ids for r in other_step[0]] != [r.completion_ids for r in alone[0]]

