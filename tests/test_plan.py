"""plan.py: the real Qwen3-4B architecture from the shipped config (offline, no weights), the refusal, and the
estimate against peak memory measured on CPU (scripts/measure_peak.py says how it measures)."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from projected_grpo import plan, train

REPO = Path(__file__).resolve().parents[1]


def test_qwen3_4b_plan_offline_from_the_shipped_config(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the shipped config.json, never the hub
    cfg = train.PRESETS["fast"][1]
    a = plan.architecture(cfg)
    # 36 layers x 7 targets; Qwen3-4B has 4.02B parameters with tied embeddings (151936 x 2560 counted once)
    assert a.n_modules == 36 * 7 and (a.hidden, a.layers, a.q_heads, a.kv_heads, a.vocab) == (2560, 36, 32, 8, 151936)
    assert 4.0e9 < a.n_params < 4.05e9
    # lora: B is d_out x r per module: (q 4096 + k 1024 + v 1024 + o 2560 + gate 9728 + up 9728 + down 2560) x 16 x 36
    assert a.n_knob == 30720 * 16 * 36
    summary = train.run(dataclasses.replace(cfg, plan=True, out_dir="/nonexistent/never-written"))
    assert summary == {} and not Path("/nonexistent/never-written").exists()
    out = capsys.readouterr().out
    assert "252 wrapped modules" in out and "weights" in out and "peak" in out and "H200" in out


def test_refuses_in_one_line_naming_the_knob(monkeypatch):
    monkeypatch.setattr(plan, "device_memory", lambda device: ("a 100 GB GPU", 100e9))
    cfg = dataclasses.replace(train.PRESETS["fast"][1], dtype="bf16")
    with pytest.raises(ValueError, match=r"^plan: .* GB needed > 100.0 GB on a 100 GB GPU .*--(prompts-per-step|group|max-new) \d+ fits") as e:
        plan.check_fits(cfg)
    assert "\n" not in str(e.value)
    value = int(str(e.value).split(" fits")[0].rsplit(" ", 1)[1])
    knob = str(e.value).split(" fits")[0].rsplit(" ", 2)[1].removeprefix("--").replace("-", "_")
    # the suggested value fits, and the plan grows with the knob
    prompt_len, n_eval, _ = plan.prompt_tokens(cfg)
    a = plan.architecture(cfg)
    fitted = plan.estimate(a, dataclasses.replace(cfg, **{knob: value}), prompt_len, n_eval, torch.bfloat16)
    assert fitted.peak <= 100e9 < plan.estimate(a, cfg, prompt_len, n_eval, torch.bfloat16).peak


# (model, dtype, prompts, group, max_new, prompt_len): the tiny model is dominated by the completion logits, the
# 0.6B-shaped one by its weights and activations. Short prompts: on CPU, sdpa's prefill holds rows x heads x
# prompt^2 scores, which GPU kernels do not and the plan does not count.
SHAPES = [("tiny-random-qwen3", "fp32", 2, 4, 64, 64), ("tiny-random-qwen3", "bf16", 2, 4, 64, 64),
          ("qwen3-0.6b-shape", "fp32", 1, 4, 48, 32)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}-{s[1]}")
def test_estimate_within_30_percent_of_measured_peak(shape):
    model, dtype, prompts, group, max_new, prompt_len = shape
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "LOGLEVEL": "WARNING"}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "measure_peak.py"), *map(str, shape)],
                          capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    cfg = train.Config(model=model, dtype=dtype, prompts_per_step=prompts, group=group, max_new=max_new,
                       teacher_hack=0, teacher_solve=0, arm="route", k=2)
    p = plan.estimate(plan.architecture(cfg), cfg, prompt_len, 0, {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype])
    ratio = p.peak / measured["peak"]
    print(f"{shape}: planned {p.peak / 1e6:.1f} MB, measured {measured['peak'] / 1e6:.1f} MB ({ratio:.2f}); {measured}")
    assert 0.7 <= ratio <= 1.3
