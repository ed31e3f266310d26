# projected_grpo recipes. `./scripts/setup.sh` first (the README's commands do it for you).
set shell := ["bash", "-euo", "pipefail", "-c"]
export PATH := justfile_directory() + "/.venv/bin:" + env_var("PATH")

default:
    @just --list

# the whole test suite: unit tests + scripts/verify_*.py gates, shape checks on
test *ARGS:
    BEARTYPE=1 python -m pytest {{ARGS}}

# the verify_* gates alone
check:
    BEARTYPE=1 python -m pytest scripts
