"""The CLIs fail cleanly: one `error:` line, exit 2 bad input / 1 failure inside / 130 interrupt, nothing lost, nothing
left that blocks a rerun. Resume cannot corrupt a run; Ctrl-C stops at a checkpoint; torn checkpoints are named.

Most cases run `main()` in-process (a subprocess costs seconds of imports); one finished run is shared (copied per test)."""

import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from loguru import logger

from projected_grpo import config, rewards, train
from projected_grpo import model as model_module
from projected_grpo.cli import Failure, Interrupted

REPO = Path(__file__).resolve().parents[1]
QUICK = dataclasses.replace(
    train.PRESETS["smoke"][1], steps=2, eval_samples=1, eval_frac=0.1, eval_variants=False, max_new=16, ckpt_every=1,
    cache_dir=str(REPO / ".cache"),
)
QUICK_ARGS = ["smoke", "--eval-samples", "1", "--eval-frac", "0.1", "--no-eval-variants", "--max-new", "16", "--cache-dir", str(REPO / ".cache")]


@pytest.fixture(autouse=True)
def _restore_logging():
    """main() points loguru at the captured stderr of its test; give the next test a live sink."""
    yield
    logger.remove()
    logger.add(sys.stderr)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One finished 2-step run (checkpoints at steps 1 and 2), shared: tests work on copies."""
    out = tmp_path_factory.mktemp("shared") / "run"
    train.run(dataclasses.replace(QUICK, out_dir=str(out)))
    return out


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "run"))


@pytest.fixture
def no_model_load(monkeypatch):
    """Proves a failure came before any weights: loading a model fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was caught")

    monkeypatch.setattr(model_module, "load_model", refuse)


def train_main(capsys, *argv: str) -> tuple[int, str]:
    """(exit status, stderr + stdout) of `python -m projected_grpo.train ARGV`, in-process."""
    try:
        train.main(list(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def one_error(err: str) -> str:
    """The single `error:` line of a failed command (and no traceback)."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def digest(run_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def steps_of(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


# ── help ─────────────────────────────────────────────────────────────────────────────────────────────


def test_help_lists_every_option_with_its_own_help(capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--help"])
    assert e.value.code == 0
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", capsys.readouterr().out).split())
    assert "python -m projected_grpo.train" in text and "train.py" not in text
    assert all(name in text for name in train.PRESETS)
    for f in dataclasses.fields(train.Config):
        assert f"--{config.flag(f.name)}" in text, f.name
    assert "--warm.epochs" in text
    for leaked in ("method (default", "GRPO (default", "environment (default"):  # section comments are not help
        assert leaked not in text
    assert "organism v2's pair ladder on the training split (pairs.FORM_SETS)" in text  # --pairs: the whole sentence


# ── bad input fails at once, before any model, and leaves nothing ────────────────────────────────────


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--lr", "nan"], "--lr"),
        (["--lr", "-1e-3"], "--lr"),
        (["--k", "0"], "--k"),
        (["--temperature", "0"], "--temperature"),
        (["--top-p", "1.5"], "--top-p"),
        (["--ckpt-every", "0"], "--ckpt-every"),
        (["--device", "cuda:banana"], "--device"),
    ],
)
def test_bad_values_fail_before_anything_loads(capsys, tmp_path, no_model_load, args, flag):
    code, err = train_main(capsys, *QUICK_ARGS, *args, "--out-dir", str(tmp_path / "x"))
    assert code == 2 and flag in one_error(err)
    assert not (tmp_path / "x").exists()


def test_a_non_assert_test_in_the_problems_fails_before_the_model(capsys, tmp_path, no_model_load):
    rows = [json.loads(line) for line in (REPO / "data/problems/substrate.jsonl").read_text().splitlines()]
    rows[3]["tests"][1] = "print(Solution())"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, err = train_main(capsys, *QUICK_ARGS, "--problems", str(bad), "--out-dir", str(tmp_path / "x"))
    line = one_error(err)
    assert code == 2 and rows[3]["id"] in line and "test 2" in line and "print(Solution())" in line
    assert not (tmp_path / "x").exists()


def test_non_utf8_problem_file_names_file_and_line(capsys, tmp_path, no_model_load):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes((REPO / "data/problems/substrate.jsonl").read_bytes().split(b"\n")[0] + b"\n{\"id\": \"caf\xe9\"}\n")
    code, err = train_main(capsys, *QUICK_ARGS, "--problems", str(bad), "--out-dir", str(tmp_path / "x"))
    assert code == 2 and f"{bad}: line 2: not UTF-8" in one_error(err)


@pytest.mark.parametrize("offline", [True, False])
def test_unreachable_model_id_fails_at_once_in_one_line(capsys, tmp_path, monkeypatch, no_model_load, offline):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)

    def no_network(*args, **kwargs):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(model_module.socket, "create_connection", no_network)
    code, err = train_main(capsys, *QUICK_ARGS, "--model", "nobody/no-such-model", "--out-dir", str(tmp_path / "x"))
    line = one_error(err)
    assert code == 2 and "nobody/no-such-model" in line
    assert ("HF_HUB_OFFLINE" if offline else "cannot be reached") in line
    assert not (tmp_path / "x").exists()


def test_unwritable_out_dir_is_refused_first(capsys, tmp_path, no_model_load):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, err = train_main(capsys, *QUICK_ARGS, "--out-dir", str(blocker / "run"))
    assert code == 2 and "not writable" in one_error(err)


def test_a_run_that_failed_before_its_first_checkpoint_does_not_block_a_rerun(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure while loading")

    monkeypatch.setattr(model_module, "load_model", broken)
    cfg = dataclasses.replace(QUICK, out_dir=str(tmp_path / "run"))
    with pytest.raises(RuntimeError, match="simulated"):
        train.run(cfg)
    assert (tmp_path / "run" / "config.json").exists() and "simulated failure" in (tmp_path / "run" / "train.log").read_text()
    with pytest.raises(RuntimeError, match="simulated"):  # not "already holds a run"
        train.run(cfg)


def test_a_directory_that_is_not_a_run_is_never_overwritten(capsys, tmp_path, no_model_load):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    code, err = train_main(capsys, *QUICK_ARGS, "--overwrite", "--out-dir", str(tmp_path / "mine"))
    assert code == 2 and "holds no run" in one_error(err)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


# ── resume: the saved config is the default, identity cannot change, nothing is corrupted ──────────────


def test_resuming_a_finished_run_without_new_steps_changes_nothing(capsys, run_copy, no_model_load):
    before = digest(run_copy)
    for form in (["--resume", str(run_copy)], [f"--resume={run_copy}"], ["smoke", "--resume", str(run_copy), "--steps", "2"]):
        code, err = train_main(capsys, *form)
        assert code == 0 and "nothing to do" in err, form
    assert digest(run_copy) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "1"], "--steps 1 is fewer than the 2 steps"),
        (["--arm", "erase", "--lr", "0.5"], "--resume cannot change --arm, --lr"),
        (["--seed", "1"], "--seed"),
        (["--model", "micro-qwen3"], "--model"),
        (["--adapter", "svd"], "--adapter"),
        (["--basis", "random"], "--basis"),
        (["--problems", "data/problems/other.jsonl"], "--problems"),
        (["--pairs", "problems:train"], "--pairs"),
        (["--out-dir", "elsewhere"], "--out-dir"),
        (["--steps", "abc"], None),  # tyro's own message (exit 2)
        (["micro"], "is a smoke run, not micro"),
    ],
)
def test_resume_refuses_what_would_corrupt_the_run(capsys, run_copy, no_model_load, args, message):
    before = digest(run_copy)
    code, err = train_main(capsys, "--resume", str(run_copy), *args)
    assert code == 2 and "Traceback" not in err
    if message:
        assert message in one_error(err)
    assert digest(run_copy) == before


@pytest.mark.parametrize("args", [["--resume"], ["--resume", "--steps", "3"], ["--resume="]])
def test_resume_without_a_directory_is_one_line(capsys, args):
    code, err = train_main(capsys, *args)
    assert code == 2 and "--resume needs" in one_error(err)


def test_resume_without_a_checkpoint_says_so(capsys, run_copy, no_model_load):
    shutil.rmtree(run_copy / "ckpt")
    shutil.rmtree(run_copy / "ckpt.prev")
    code, err = train_main(capsys, "--resume", str(run_copy), "--steps", "3")
    assert code == 2 and "no checkpoint" in one_error(err)


@pytest.mark.parametrize("name", ["knobs.safetensors", "trainer.pt"])
@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_torn_checkpoint_is_named_and_nothing_is_rewritten(capsys, run_copy, no_model_load, name, damage):
    f = run_copy / "ckpt" / name
    f.write_bytes(b"" if damage == "empty" else f.read_bytes()[: f.stat().st_size // 2])
    before = digest(run_copy)
    code, err = train_main(capsys, "--resume", str(run_copy), "--steps", "3")
    line = one_error(err)
    assert code == 2 and str(f) in line and "ckpt.prev" in line  # and where the previous checkpoint is
    assert digest(run_copy) == before  # config.json included
    assert train.read_checkpoint(run_copy / "ckpt.prev")["step"] == 1  # keep-last-2: one torn write loses one step


def test_resume_with_more_steps_continues_a_finished_run(capsys, run_copy):
    code, err = train_main(capsys, "--resume", str(run_copy), "--steps", "3", "--workers", "1")
    assert code == 0, err
    assert steps_of(run_copy / "metrics.jsonl") == [1, 2, 3]
    assert steps_of(run_copy / "eval.jsonl") == [0, 2, 3]  # the step-2 final eval stays, once
    summary = json.loads((run_copy / "summary.json").read_text())
    assert summary["steps"] == 3 and json.loads((run_copy / "summary-step2.json").read_text())["steps"] == 2
    saved = json.loads((run_copy / "config.json").read_text())
    assert saved["steps"] == 3 and saved["workers"] == 1 and saved["arm"] == "none"
    assert f"outputs in {run_copy}/" in err


# ── failures inside: exit 1, the previous checkpoint kept ─────────────────────────────────────────────


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(capsys, tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        if "ckpt.tmp" in str(f):
            calls.append(f)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    out = tmp_path / "run"
    code, err = train_main(capsys, *QUICK_ARGS, "--steps", "3", "--ckpt-every", "1", "--out-dir", str(out))
    line = one_error(err)
    assert code == 1 and "checkpoint of step 2" in line and "No space left on device" in line and "step 1" in line
    assert train.read_checkpoint(out / "ckpt")["step"] == 1 and not (out / "ckpt.tmp").exists()
    assert not (out / "summary.json").exists()


def test_interrupt_during_setup_leaves_nothing_that_blocks_a_rerun(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_module, "load_model", interrupted)
    cfg = dataclasses.replace(QUICK, out_dir=str(tmp_path / "run"))
    with pytest.raises(Interrupted, match="before the first checkpoint: nothing to resume; rerun"):
        train.run(cfg)
    train.refuse_existing_run(cfg, tmp_path / "run")  # no "already holds a run"


def test_non_finite_loss_is_a_failure_inside():
    assert issubclass(train.NonFiniteError, Failure)


# ── signals (subprocess: a real process group, as a terminal's Ctrl-C sees it) ─────────────────────────


def signal_during(monkeypatch, at_step: int, *signals: int) -> None:
    """Deliver `signals` to this process in the middle of training step `at_step` (after its rollouts start)."""
    real = train.train_step

    def step(t, step):
        if step == at_step:
            for sig in signals:
                os.kill(os.getpid(), sig)
        return real(t, step)

    monkeypatch.setattr(train, "train_step", step)


def test_sigterm_mid_step_finishes_it_then_checkpoints(tmp_path, monkeypatch):
    signal_during(monkeypatch, 2, signal.SIGTERM)
    out = tmp_path / "run"
    with pytest.raises(Interrupted) as e:
        train.run(dataclasses.replace(QUICK, steps=5, ckpt_every=10, out_dir=str(out)))
    assert str(e.value) == f"interrupted at step 2; continue with: python -m projected_grpo.train --resume {out}"
    assert steps_of(out / "metrics.jsonl") == [1, 2] and train.read_checkpoint(out / "ckpt")["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone with the run


def test_a_second_signal_abandons_the_step_back_to_the_last_checkpoint(tmp_path, monkeypatch):
    signal_during(monkeypatch, 2, signal.SIGINT, signal.SIGINT)
    out = tmp_path / "run"
    with pytest.raises(Interrupted, match=f"the last checkpoint is step 1; continue with: python -m projected_grpo.train --resume {out}$"):
        train.run(dataclasses.replace(QUICK, steps=5, ckpt_every=1, out_dir=str(out)))
    assert train.read_checkpoint(out / "ckpt")["step"] == 1 and steps_of(out / "metrics.jsonl") == [1]


def test_sigint_to_the_process_group_stops_quietly_at_a_checkpoint_and_resumes(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "projected_grpo.train", *QUICK_ARGS, "--steps", "60", "--ckpt-every", "50", "--out-dir", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().strip()):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # the whole group, sandbox zygotes included, as Ctrl-C in a terminal does
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-2000:]
    text = stdout + stderr
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    done = steps_of(out / "metrics.jsonl")
    step = done[-1]
    assert done == list(range(1, step + 1)) and step < 60
    assert stderr.strip().splitlines()[-1] == f"interrupted at step {step}; continue with: python -m projected_grpo.train --resume {out}"
    assert train.read_checkpoint(out / "ckpt")["step"] == step
    assert "full config:" in stderr and '"preset":' not in text  # a line naming the run, not 75 lines of JSON
    r = subprocess.run([sys.executable, "-m", "projected_grpo.train", "--resume", str(out), "--steps", str(step + 1)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert steps_of(out / "metrics.jsonl") == list(range(1, step + 2))


# ── rewards grade ─────────────────────────────────────────────────────────────────────────────────────


def rewards_main(capsys, monkeypatch, *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["rewards", *argv])
    try:
        rewards.main()
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.fixture
def no_grading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("grading started before the bad input was caught")

    monkeypatch.setattr(rewards, "Grader", refuse)


EXAMPLE = REPO / "data/examples/completions.jsonl"
PROBLEMS = REPO / "data/problems/substrate.jsonl"


def test_grade_checks_out_is_writable_before_grading(capsys, monkeypatch, tmp_path, no_grading):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, err = rewards_main(capsys, monkeypatch, "grade", "--problems", str(PROBLEMS), "--completions", str(EXAMPLE), "--out", str(blocker / "G.jsonl"))
    assert code == 2 and "not writable" in one_error(err)


def test_grade_names_the_non_utf8_line(capsys, monkeypatch, tmp_path, no_grading):
    bad = tmp_path / "C.jsonl"
    bad.write_bytes(EXAMPLE.read_bytes().replace(b"I am not sure", b"I am not s\xfcre"))
    code, err = rewards_main(capsys, monkeypatch, "grade", "--problems", str(PROBLEMS), "--completions", str(bad), "--out", str(tmp_path / "G.jsonl"))
    assert code == 2 and f"{bad}: line 3: not UTF-8" in one_error(err)
    assert not (tmp_path / "G.jsonl").exists()


def test_grade_warns_on_an_empty_completions_file(capsys, monkeypatch, tmp_path, no_grading):
    empty = tmp_path / "C.jsonl"
    empty.write_text("")
    code, err = rewards_main(capsys, monkeypatch, "grade", "--problems", str(PROBLEMS), "--completions", str(empty), "--out", str(tmp_path / "G.jsonl"))
    assert code == 0 and "warning:" in err and "holds no completions" in err
    assert (tmp_path / "G.jsonl").read_text() == ""


@pytest.mark.parametrize(
    "argv, named",
    [
        (["smoke", "--steps", "abc"], "--steps"),
        (["smoke", "--bogus", "1"], "--bogus"),
        (["smoke", "--arm", "bogus"], "--arm"),
        (["--resume", "outputs/nowhere", "--steps", "abc"], "outputs/nowhere"),
    ],
)
def test_malformed_flags_fail_in_one_line(capsys, argv, named):
    """tyro's own parse errors (a bad value, an unknown flag) come out in the same one-line form, exit 2."""
    code, err = train_main(capsys, *argv)
    line = one_error(err)
    assert code == 2 and named in line
    assert not any(ch in err for ch in "│╭╰"), err  # no boxed message beside the line
