#!/usr/bin/env bash
# Idempotent setup: .venv with torch (pinned CPU-friendly release), this package (editable), dev tools and the
# optional extras trl and track (so the tests of the TRL integration and of --track run).
# Fast when nothing changed: a stamp holds the hash of pyproject.toml and this script.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "setup: $*" >&2; }
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with ${PYTHON:-python3}"
  "${PYTHON:-python3}" -m venv .venv
fi
stamp=.venv/.setup-stamp
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
# This machine's pip config lists extra local indexes that may not exist; pip warns once per package about them.
# (pipefail keeps pip's exit status; the braces keep grep's "nothing left" status out of it)
quiet() { "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch first and pinned: an unpinned torch resolves to a multi-GB CUDA build. Set TORCH_SPEC to override.
  if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    say "[1/3] installing ${TORCH_SPEC:-torch==2.13.0} (the largest download: a few minutes on a slow link)"
    quiet .venv/bin/pip install -q --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
  fi
  say "[2/3] installing projected_grpo (editable) with transformers, tyro, pytest, just, trl, tensorboard, ..."
  # trl and track are optional extras for users; setup installs them so that `just test` covers both
  quiet .venv/bin/pip install -q --disable-pip-version-check -e '.[dev,trl,track]'
  say "[3/3] checking the install"
  .venv/bin/python -c "import projected_grpo, torch, transformers" && [ -x .venv/bin/just ] || { echo "setup failed: see pip's messages above" >&2; exit 1; }
  echo "$want" > "$stamp"
  say "done: .venv is ready (.venv/bin/just smoke, .venv/bin/just test; or 'source .venv/bin/activate' once, then just ...)"
else
  say "up to date (.venv unchanged since the last setup)"
fi
