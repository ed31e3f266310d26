"""One training run, queued through pueue when it is installed, else run here (the way `just sweep` decides).

    python -m projected_grpo.launch full --arm erase --seed 1     # `just full ...`
    python -m projected_grpo.launch full --local ...              # run here even if pueue is installed
    (resume a run with `python -m projected_grpo.train --resume DIR`)

With pueue: one labelled task, and the run's log path and a `pueue follow` hint are printed; the command returns
at once. Without it (pueue is a Rust CLI, not on PyPI): a one-line note, then the run in this terminal. The
arguments are parsed before anything is queued, so a typo or an existing finished run fails here, in one line,
not minutes later inside the queue.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import tyro
from loguru import logger

from projected_grpo.config import PRESETS, default_out_dir, validate
from projected_grpo.files import REPO_ROOT


def main(argv: list[str]) -> int:
    local = "--local" in argv
    argv = [a for a in argv if a != "--local"]
    cfg = tyro.extras.overridable_config_cli(PRESETS, args=argv)  # bad flags exit here with tyro's message
    validate(cfg)
    out = Path(cfg.out_dir) if cfg.out_dir else default_out_dir(cfg)
    if (out / "config.json").exists() and not (cfg.resume or cfg.overwrite):
        raise ValueError(f"{out} already holds a run: pass --overwrite to replace it, or --out-dir")
    cmd = [sys.executable, "-m", "projected_grpo.train", *argv]
    pueue = shutil.which("pueue")
    if pueue and not local:
        label = f"{cfg.preset} {cfg.label or f'{cfg.arm}/{cfg.basis}'} s{cfg.seed}"
        added = subprocess.run([pueue, "add", "--print-task-id", "--label", label, "--working-directory", str(REPO_ROOT), "--",
                                shlex.join(cmd)], capture_output=True, text=True, check=True)
        task = added.stdout.strip()
        print(f"queued pueue task {task} ({label})\n  log:    {out / 'train.log'}\n  follow: pueue follow {task}")
        return 0
    if not pueue:
        logger.warning("pueue is not installed (it is not on PyPI): running here instead of queueing")
    return subprocess.call(cmd, cwd=REPO_ROOT)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (ValueError, FileNotFoundError) as e:
        logger.error(str(e))
        sys.exit(2)
    except subprocess.CalledProcessError as e:
        logger.error(f"pueue add failed ({e.returncode}): {(e.stderr or '').strip()}")
        sys.exit(2)
