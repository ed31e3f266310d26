"""The real architecture on CPU: a Qwen3-0.6B-shaped random model (config only, no download) wraps, takes one
GRPO step through the production loop and checkpoints. Prints timings; exits non-zero on failure.

    python scripts/check_real_arch.py [--adapter lora|svd]

Takes a few minutes on 2 cores (one forward+backward of 0.44B parameters in fp32); not part of the test suite.
"""

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from projected_grpo import train
from projected_grpo.files import read_jsonl
from projected_grpo.problems import load_problems, save_problems


def main(adapter: str = "lora") -> None:
    tmp = Path(tempfile.mkdtemp(prefix="real-arch-"))
    # Two substrate problems with one-line descriptions keep the prompts (and the CPU bill) short.
    # (one mode for both, so the stratified split holds one out for evaluation)
    problems = [dataclasses.replace(p, description=p.description.split("\n")[0], mode="run_tests") for p in load_problems()[:2]]
    save_problems(problems, tmp / "problems.jsonl")
    cfg = dataclasses.replace(
        train.PRESETS["smoke"][1],
        model="qwen3-0.6b-shape", adapter=adapter, problems=str(tmp / "problems.jsonl"), eval_frac=0.5,
        steps=1, prompts_per_step=1, group=2, teacher_hack=1, teacher_solve=0, max_new=4, eval_samples=1,
        eval_variants=False, ckpt_every=1, k=2, out_dir=str(tmp / "run"), cache_dir=str(tmp / "cache"),
        # few pairs: extraction on 0.44B parameters costs a backward per pair side
        pairs="data/pairs/hack_pairs.md#run_tests", extract_batch=2,
    )
    t0 = time.time()
    summary = train.run(cfg)
    row = read_jsonl(tmp / "run" / "metrics.jsonl")[0]
    ckpt = tmp / "run" / "ckpt" / "knobs.safetensors"
    assert ckpt.exists(), "no checkpoint written"
    assert row["grad_norm"] > 0, f"no gradient reached the knobs: {row}"
    print(f"qwen3-0.6b-shape/{adapter}: wrapped {summary['basis_report']['n_modules']} modules, "
          f"basis kept {summary['basis_report']['n_kept']}; one step {row['seconds']:.1f}s "
          f"(grad norm {row['grad_norm']:.3g}, cin_t {row['cin_t']}); checkpoint {ckpt.stat().st_size / 1e6:.1f} MB; "
          f"total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--adapter") + 1] if "--adapter" in sys.argv else "lora")
