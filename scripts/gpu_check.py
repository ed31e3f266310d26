"""The CUDA half of scripts/gpu_check.sh: 3 steps of the `fast` preset, measured against the plan.

    python scripts/gpu_check.py [any train.py override, e.g. --model /path/to/Qwen3-4B --prompts-per-step 1]

Prints generation tokens/s (training rollouts only), step time, peak CUDA memory against plan.py's estimate,
the attention implementation and the dtypes; exits 1 with one line per mismatch:
- peak memory above the plan by more than 10% (the plan is meant to bound it; below is expected when
  completions end before max_new, since the plan counts max_new tokens for every row);
- flash-attn installed but the model not using it;
- base weights not bf16, or knobs not fp32.
Written by reading, not by running: no GPU was available where it was written (journal, 2026-12-02).
"""

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch
import tyro

from projected_grpo import adapter, model as model_lib, plan, train
from projected_grpo.files import read_jsonl

STEPS, OVER_PLAN = 3, 1.10


def main(argv: list[str]) -> int:
    if not torch.cuda.is_available():
        print("gpu_check.py: no CUDA device (scripts/gpu_check.sh runs the --plan check alone there)")
        return 0
    cfg = tyro.extras.overridable_config_cli(train.PRESETS, args=["fast", *argv])
    out = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    cfg = dataclasses.replace(cfg, steps=STEPS, eval_every=0, eval_variants=False, ckpt_every=STEPS,
                              out_dir=str(out / "run"), overwrite=True)
    prompt_len, n_eval, _ = plan.prompt_tokens(cfg)
    planned = plan.estimate(plan.architecture(cfg), cfg, prompt_len, n_eval, plan.run_dtype(cfg))

    seen: dict = {}
    load_model = model_lib.load_model

    def recording_load_model(*args, **kwargs):  # train.py imports load_model at call time: this one is used
        seen["model"], tok = load_model(*args, **kwargs)
        return seen["model"], tok

    sample = train.sample
    gen_tokens, gen_seconds = [], []

    def timed_sample(model, tok, prompts, *args, **kwargs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        groups = sample(model, tok, prompts, *args, **kwargs)
        torch.cuda.synchronize()
        gen_seconds.append(time.perf_counter() - t0)
        gen_tokens.append(sum(len(r.completion_ids) for rows in groups for r in rows))
        return groups

    model_lib.load_model, train.sample = recording_load_model, timed_sample
    torch.cuda.reset_peak_memory_stats()
    try:
        train.run(cfg)
    finally:
        model_lib.load_model, train.sample = load_model, sample
    peak = torch.cuda.max_memory_allocated()
    steps = read_jsonl(out / "run" / "metrics.jsonl")

    model = seen["model"]
    attn = model.config._attn_implementation
    base_dtype = model.get_input_embeddings().weight.dtype
    knob_dtypes = {p.dtype for pair in adapter.knobs(model).values() for p in pair}
    print(f"device          {torch.cuda.get_device_name()} ({torch.cuda.get_device_properties(0).total_memory / 1e9:.1f} GB)")
    print(f"generation      {sum(gen_tokens) / sum(gen_seconds):.0f} tokens/s over {STEPS} steps' rollouts "
          f"({sum(gen_tokens)} tokens in {sum(gen_seconds):.1f} s)")
    step_seconds = ", ".join(f"{m['seconds']:.1f}" for m in steps)
    print(f"step time       {step_seconds} s (the first step includes CUDA warm-up)")
    print(f"peak memory     {peak / 1e9:.2f} GB measured vs {planned.peak / 1e9:.2f} GB planned ({peak / planned.peak:.0%})")
    print(f"attention       {attn}; base {base_dtype}; knobs {sorted(map(str, knob_dtypes))}")

    problems = []
    if peak > OVER_PLAN * planned.peak:
        problems.append(f"MISMATCH: peak memory {peak / 1e9:.2f} GB is over the plan's {planned.peak / 1e9:.2f} GB by more than "
                        f"{OVER_PLAN - 1:.0%}: plan.py undercounts on this setup, so its refusal cannot be trusted")
    if model_lib.attn_implementation(torch.device("cuda"), base_dtype) == "flash_attention_2" and attn != "flash_attention_2":
        problems.append(f"MISMATCH: flash-attn is installed but the model runs {attn}")
    if base_dtype != plan.run_dtype(cfg) or knob_dtypes != {torch.float32}:
        problems.append(f"MISMATCH: base {base_dtype} (wanted {plan.run_dtype(cfg)}), knobs {knob_dtypes} (wanted fp32)")
    for line in problems:
        print(line)
    print("gpu check: OK" if not problems else f"gpu check: {len(problems)} mismatch(es)")
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (ValueError, FileNotFoundError) as e:  # the plan's refusal, bad input: one line
        print(f"gpu check: {e}")
        sys.exit(2)
