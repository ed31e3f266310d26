"""launch.py (`just full`): a labelled pueue task when pueue is on PATH, else a note and a local run."""


def _fake_pueue(bin_dir, record):
    bin_dir.mkdir()
    fake = bin_dir / "pueue"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {record}\necho 7\n")
    fake.chmod(0o755)


def test_launch_queues_one_labelled_pueue_task_and_prints_log_and_follow(tmp_path):
    """`just full` = `python -m projected_grpo.launch full`: with pueue on PATH, one labelled task, the log path and a
    follow hint; a finished run directory is refused before anything is queued."""
    import os
    import subprocess
    import sys

    record, out = tmp_path / "args.txt", tmp_path / "run"
    _fake_pueue(tmp_path / "bin", record)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "projected_grpo.launch", "full", "--arm", "erase", "--seed", "1", "--problems", "data/problems/substrate.jsonl",
           "--out-dir", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr
    assert f"log:    {out / 'train.log'}" in r.stdout and "pueue follow 7" in r.stdout
    args = record.read_text().splitlines()
    assert args[:4] == ["add", "--print-task-id", "--label", "full erase/real s1"]
    assert args[-1].endswith(f"-m projected_grpo.train full --arm erase --seed 1 --problems data/problems/substrate.jsonl --out-dir {out}")

    out.mkdir()
    (out / "config.json").write_text("{}")
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 2 and "already holds a run" in r.stderr and "Traceback" not in r.stderr


def test_launch_without_pueue_notes_it_and_runs_here(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PATH": os.path.dirname(sys.executable), "LOGLEVEL": "WARNING"}  # no pueue on this PATH
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "projected_grpo.launch", "smoke", "--steps", "1", "--eval-samples", "1", "--eval-frac", "0.1",
           "--no-eval-variants", "--max-new", "16", "--audit-every", "0", "--out-dir", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "pueue is not installed" in r.stderr and (out / "summary.json").exists()
