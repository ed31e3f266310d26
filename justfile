# projected_grpo recipes. The README's commands run ./scripts/setup.sh first, which puts `just` in .venv/bin.
set shell := ["bash", "-euo", "pipefail", "-c"]
export PATH := justfile_directory() + "/.venv/bin:" + env_var("PATH")

default:
    @just --list

# CPU mechanics check: tiny random Qwen3, 30 GRPO steps, shape checks on (BEARTYPE=1)
smoke *ARGS:
    CUDA_VISIBLE_DEVICES= BEARTYPE=1 python -m projected_grpo.train smoke --overwrite {{ARGS}}

# the three arms on the smoke preset, then the results table (the 2nd and 3rd runs hit the basis cache)
smoke-all:
    for arm in none erase route; do just smoke --arm $arm; done
    python -m projected_grpo.results --runs-dir outputs/smoke --out-dir outputs/smoke/results

# the smoke on N processes (data parallel: each process samples, grades and backpropagates its share of the prompts;
# summed gradients, then the projection). `accelerate launch --multi_gpu` is torchrun underneath: gloo on CPU
smoke-ddp N="2" *ARGS:
    CUDA_VISIBLE_DEVICES= BEARTYPE=1 accelerate launch --multi_gpu --num_processes {{N}} --num_machines 1 --mixed_precision no --dynamo_backend no \
        -m projected_grpo.train smoke --overwrite --out-dir outputs/smoke/ddp{{N}} {{ARGS}}

# the whole test suite: unit tests + scripts/verify_*.py gates, shape checks on
test *ARGS:
    BEARTYPE=1 python -m pytest {{ARGS}}

# the verify_* gates alone
check:
    BEARTYPE=1 python -m pytest scripts

# mutation check: realistic bugs put into a copy one at a time; each must fail its tests (NAMES: --only a b)
mutants *ARGS:
    python scripts/mutants.py {{ARGS}}
# hack basis to a file, with the per-module report, held-out validation and its histogram (FILE.png); train --basis-file FILE
extract *ARGS:
    python -m projected_grpo.extract {{ARGS}}

# TRL's GRPOTrainer with the projection callback on the tiny model, offline (the [trl] extra; setup installs it)
trl-example *ARGS:
    CUDA_VISIBLE_DEVICES= python scripts/trl_example.py {{ARGS}}

# the TRL integration's tests alone (2 GRPOTrainer steps per arm; they skip without the [trl] extra)
test-trl *ARGS:
    BEARTYPE=1 python -m pytest tests/test_trl.py {{ARGS}}

# CPU model organism of reward hacking (warm-started small Qwen3, minutes per run)
micro *ARGS:
    CUDA_VISIBLE_DEVICES= python -m projected_grpo.train micro {{ARGS}}

# validate a GPU box: the --plan check, then (with CUDA) 3 fast steps against the plan; exits 0 without CUDA
gpu-check *ARGS:
    ./scripts/gpu_check.sh {{ARGS}}

# Qwen3-4B, one GPU, short run
fast *ARGS:
    python -m projected_grpo.train fast {{ARGS}}

# Qwen3-4B, one GPU, 200 steps: a labelled pueue task when pueue is installed (log path + `pueue follow` hint), else runs here
full *ARGS:
    python -m projected_grpo.launch full {{ARGS}}

# the seeds' full-run numbers (seed 004 step 2b): full-rank SVD adapter, GRPO std normalisation, 8 generations x 2 prompts, KL 1e-3
full-seeds *ARGS:
    python -m projected_grpo.launch full --adapter svd_full --scale-rewards --group 8 --prompts-per-step 2 --kl-coef 1e-3 {{ARGS}}

# CPU model organism v2: hacking as a skill, no eval problem ever shown hacked (minutes per run)
organism *ARGS:
    CUDA_VISIBLE_DEVICES= python -m projected_grpo.train organism {{ARGS}}

# arms x seeds of PRESET (`just sweep organism`, `just sweep organism vanilla erase`, `... all --parallel 2`) as
# pueue tasks (labelled); without pueue, a clear note and a local run
sweep PRESET *ARGS:
    python -m projected_grpo.sweep {{PRESET}} {{ARGS}}

# recompute the organism's tables, paired statistics and verdicts from the committed run summaries
results DIR="docs/results/organism":
    python -m projected_grpo.report tables {{DIR}}

# after a sweep: commit-sized run summaries from outputs/PRESET into docs/results/PRESET, then the tables
export PRESET="organism":
    python -m projected_grpo.report export outputs/{{PRESET}} docs/results/{{PRESET}}
    python -m projected_grpo.report tables docs/results/{{PRESET}}

# tables (markdown + CSV) and plots over the runs in outputs/
results-outputs *ARGS:
    python -m projected_grpo.results {{ARGS}}

# grader throughput vs a naive subprocess-per-program baseline
bench-grader:
    python scripts/bench_grader.py

# all benchmarks: grader throughput, projection overhead
bench: bench-grader
    python scripts/bench_proj.py

# step time 1 vs 2 processes (data parallel) on the smoke, side by side
bench-ddp *ARGS:
    python scripts/bench_ddp.py {{ARGS}}
