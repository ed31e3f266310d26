"""Measure a GRPO step's peak memory on CPU, phase by phase, to check plan.py against (tests/test_plan.py).

    MALLOC_MMAP_THRESHOLD_=65536 python scripts/measure_peak.py MODEL DTYPE PROMPTS GROUP MAX_NEW PROMPT_LEN

Prints one JSON line of bytes: setup (weights, adapter, basis, optimizer), generation and loss peaks, all
measured from the RSS before the model loads.

How it measures: the kernel's peak resident set (VmHWM in /proc/self/status), reset before each phase by
writing 5 to /proc/self/clear_refs, minus the RSS before the model loaded. That is physical memory really
touched, not a count of tensors. Two things keep it equal to the bytes of live tensors: glibc is told to serve
every allocation >= 64 KiB with its own mmap (MALLOC_MMAP_THRESHOLD_, which also switches off the adaptive
threshold that otherwise keeps freed blocks resident), so a freed tensor leaves the RSS at once; and
malloc_trim(0) returns the small-block heap before each reset. Checked on a known sequence of allocations:
12.01 MB measured for 12.00 MB live (20.0 MB without the environment variable).
"""

import ctypes
import gc
import json
import os
import sys

import torch


def rss(key: str = "VmRSS:") -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def reset_peak() -> None:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS


def main(model_name: str, dtype: str, prompts: int, group: int, max_new: int, prompt_len: int) -> dict:
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:
        sys.exit("set MALLOC_MMAP_THRESHOLD_=65536 (see the docstring)")
    from projected_grpo import adapter, train
    from projected_grpo.extract import haar_rows
    from projected_grpo.grpo import grpo_loss
    from projected_grpo.model import load_model
    from projected_grpo.proj import Projector, UpdateProjector
    from projected_grpo.rollout import Row, pack

    torch.set_num_threads(1)
    cfg = train.Config(model=model_name, dtype=dtype, prompts_per_step=prompts, group=group, max_new=max_new,
                       teacher_hack=0, teacher_solve=0, arm="route", k=2)
    gen = torch.Generator().manual_seed(0)
    # One-off costs that are no tensor of this run (tokenizer, kernel and library initialisation) are paid on the
    # tiny model first, so the baseline holds them.
    warm, tok = load_model("tiny-random-qwen3", "cpu", dtype=dtype)
    adapter.wrap(warm, adapter.AdapterConfig(rank=cfg.rank))
    warm_ids = torch.randint(10, 100, (1, 8), generator=gen)
    warm.generate(input_ids=warm_ids, attention_mask=torch.ones_like(warm_ids), max_new_tokens=2, do_sample=True,
                  top_p=0.95, top_k=0, pad_token_id=tok.pad_token_id)
    loss, _ = grpo_loss(warm, *pack([Row([5, 6, 7], [8, 9], "")], tok.pad_token_id, warm.device), torch.tensor([1.0]), normaliser=1.0, clip_eps=cfg.clip_eps, kl_coef=cfg.kl_coef)
    loss.backward()
    del warm, loss
    gc.collect()
    reset_peak()
    base = rss()
    model, tok = load_model(model_name, "cpu", dtype=dtype)
    adapter.wrap(model, adapter.AdapterConfig(rank=cfg.rank))
    knobs = adapter.knobs(model)
    basis = {n: haar_rows(cfg.k, d.numel(), gen) for n, (d, _) in knobs.items()}
    proj, update_proj = Projector(knobs, basis), UpdateProjector(knobs, basis)
    del basis  # train.py keeps the dict; extract.stored_form puts it on the CPU, not the device
    opt = torch.optim.AdamW([*adapter.deployed_params(model), *adapter.quarantine_params(model)], lr=1e-3)
    out = {"setup": rss() - base}

    ids = torch.randint(10, len(tok) - 10, (prompts, prompt_len), generator=gen)
    reset_peak()
    with torch.no_grad():
        done = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                              min_new_tokens=max_new, num_return_sequences=group, do_sample=True, top_p=0.95, top_k=0,
                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    out["generation"] = rss("VmHWM:") - base
    rows = [Row(r[:prompt_len].tolist(), r[prompt_len:].tolist(), "") for r in done]
    del done

    reset_peak()
    loss, _ = grpo_loss(model, *pack(rows, tok.pad_token_id, model.device), torch.tensor([1.0 if i % 2 else -1.0 for i in range(len(rows))]),
                        normaliser=1.0, clip_eps=cfg.clip_eps, kl_coef=cfg.kl_coef)
    loss.backward()
    del loss
    proj("route")
    update_proj.before_step()
    opt.step()
    update_proj.after_step()
    out["loss"] = rss("VmHWM:") - base
    out["peak"] = max(out["generation"], out["loss"])
    return out


if __name__ == "__main__":
    name, dtype, *nums = sys.argv[1:]
    print(json.dumps(main(name, dtype, *map(int, nums))))
