"""The GRPO loop end to end on the tiny model: arms, baselines, resume, NaN stop, and bad input failing early."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from projected_grpo import train
from projected_grpo.config import resolve_path
from projected_grpo.pairs import pairs_from_problems
from projected_grpo.problems import load_problems, split_problems

REPO = Path(__file__).resolve().parents[1]
# Small and quick: 3 steps, 4 held-out problems x 1 sample, no eval variants.
QUICK = dataclasses.replace(
    train.PRESETS["smoke"][1], steps=3, eval_samples=1, eval_frac=0.1, eval_variants=False, max_new=24, ckpt_every=2
)


def quick(tmp_path: Path, **overrides) -> tuple[dict, Path]:
    out = tmp_path / "run"
    cfg = dataclasses.replace(QUICK, out_dir=str(out), cache_dir=str(REPO / ".cache"), **overrides)
    return train.run(cfg), out


def metrics_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("arm", ["none", "erase", "route"])
def test_arm_runs_and_only_route_fills_the_quarantine(tmp_path, arm):
    summary, out = quick(tmp_path, arm=arm)
    assert summary["arm"] == arm and summary["steps"] == 3
    for key in ("initial_eval", "final_eval"):
        assert {"hack", "pass", "safepass", "n", "per_mode"} <= set(summary[key])
    rows = metrics_of(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["cin_t"] is not None for r in rows), "teacher rows always differ in reward from garbage student rows"
    b_hack = [r["b_hack_norm"] for r in rows]
    if arm == "route":
        assert b_hack[-1] > 0
    else:
        assert b_hack == [0.0, 0.0, 0.0]
    if arm == "erase":  # one_sided erase + update projection: nothing hack-ward survives in the realised step
        assert max(r["cout_update"] for r in rows) < 1e-5
    assert (out / "ckpt" / "knobs.safetensors").exists() and (out / "summary.json").exists()


def test_baselines_and_variants_run(tmp_path):
    """Rebound penalty, oracle penalty, leave-one-mode-out, refresh and gated routing walk their code paths."""
    summary, out = quick(tmp_path, rebound_alpha=0.5, monitor="gt", monitor_penalty=3.0, heldout_mode="exit_code", refresh_every=1, steps=2)
    assert summary["oracle"] is True and summary["heldout_mode"] == "exit_code"
    assert all(r["concept"] is not None for r in metrics_of(out))
    summary, out = quick(tmp_path, arm="route", gated=True, gate_basis="random", steps=2, overwrite=True)
    assert all(r["routed"] is not None for r in metrics_of(out))


def test_no_teacher_runs_pure_student_grpo(tmp_path):
    _, out = quick(tmp_path, teacher_hack=0, teacher_solve=0, group=3, steps=2)
    assert all(r["hack_t"] is None for r in metrics_of(out))


def test_problem_pairs_come_from_the_training_split_only(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(train, "pairs_from_problems", lambda ps: built.extend(ps) or pairs_from_problems(ps))
    summary, _ = quick(tmp_path, pairs="problems:train", steps=1)
    problems = load_problems(resolve_path(QUICK.problems))
    train_problems, held = split_problems(problems, QUICK.eval_frac, QUICK.split_seed)
    assert held and {p.id for p in built} == {p.id for p in train_problems}
    report = summary["basis_report"]
    assert report["n_train"] + report["n_heldout"] == len(train_problems)


def test_resume_after_kill_reproduces_the_uninterrupted_run(tmp_path):
    """SIGKILL a run after its first checkpoint, resume it, and compare every metric but wall time."""
    args = ["smoke", "--steps", "6", "--ckpt-every", "3", "--eval-samples", "1", "--eval-frac", "0.1", "--no-eval-variants", "--max-new", "24"]
    env = {**os.environ, "LOGLEVEL": "WARNING"}
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run([sys.executable, "-m", "projected_grpo.train", *args, "--out-dir", str(full)], check=True, env=env, cwd=REPO)
    proc = subprocess.Popen([sys.executable, "-m", "projected_grpo.train", *args, "--out-dir", str(killed)], env=env, cwd=REPO)
    deadline = time.time() + 900  # generous: on 2 shared cores under load a step has taken 20 s
    while not (killed / "ckpt" / "trainer.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "ckpt" / "trainer.pt").exists(), "no checkpoint before the deadline"
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed"
    subprocess.run([sys.executable, "-m", "projected_grpo.train", "--resume", str(killed)], check=True, env=env, cwd=REPO)

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert strip(metrics_of(killed)) == strip(metrics_of(full))
    a, b = (json.loads((d / "summary.json").read_text())["final_eval"] for d in (full, killed))
    assert a == b
    knobs_full = load_knobs_tensors(full)
    knobs_killed = load_knobs_tensors(killed)
    assert all(torch.equal(knobs_full[k], knobs_killed[k]) for k in knobs_full)


def load_knobs_tensors(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "ckpt" / "knobs.safetensors"))


def test_non_finite_loss_stops_with_a_checkpoint_naming_the_step(tmp_path, monkeypatch):
    real = train.grpo_loss

    def poisoned(*args, **kwargs):
        loss, kl = real(*args, **kwargs)
        return loss * float("nan"), kl

    monkeypatch.setattr(train, "grpo_loss", poisoned)
    with pytest.raises(train.NonFiniteError, match="step 1: non-finite loss"):
        quick(tmp_path)
    assert (tmp_path / "run" / "ckpt" / "trainer.pt").exists()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "projected_grpo.train", *args], capture_output=True, text=True, cwd=REPO, timeout=600)  # generous: imports alone took >100 s under load


@pytest.mark.parametrize(
    "args, message",
    [
        (["nosuchpreset"], "nosuchpreset"),
        (["smoke", "--arm", "sideways"], "sideways"),
        (["smoke", "--no-such-flag", "1"], "no-such-flag"),
        (["smoke", "--pairs", "data/pairs/missing.md"], "missing.md"),
        (["smoke", "--problems", "tests/does_not_exist.jsonl"], "does_not_exist.jsonl"),
        (["smoke", "--targets", "nonexistent_proj"], "nonexistent_proj"),
        (["smoke", "--heldout-mode", "teleport"], "teleport"),
    ],
)
def test_bad_input_fails_before_the_model_loads(tmp_path, args, message):
    r = cli(*args, "--out-dir", str(tmp_path / "x"))
    assert r.returncode != 0
    assert message in r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def test_malformed_problem_file_names_the_row(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n')
    r = cli("smoke", "--problems", str(bad), "--out-dir", str(tmp_path / "x"))
    assert r.returncode != 0 and "row 1" in r.stderr and "Traceback" not in r.stderr


def test_existing_run_is_never_overwritten_silently(tmp_path):
    quick(tmp_path, steps=1)
    with pytest.raises(ValueError, match="already holds a run"):
        quick(tmp_path, steps=1)


def test_no_op_steps_are_marked_counted_and_warned(tmp_path):
    """Pure student GRPO on the random model: every rollout earns the same reward, so no step has a gradient."""
    from loguru import logger

    warnings = []
    handler = logger.add(lambda msg: warnings.append(str(msg)), level="WARNING")
    try:
        summary, out = quick(tmp_path, teacher_hack=0, teacher_solve=0, steps=2)
    finally:
        logger.remove(handler)
    assert [r["noop"] for r in metrics_of(out)] == [True, True] and summary["noop_steps"] == 2
    assert sum("is a no-op" in w for w in warnings) == 1  # once per run, not per step
    assert any("2/2 steps were no-ops" in w for w in warnings)
    assert all(r["kl"] is None for r in metrics_of(out))  # kl_coef 0: the reference forward is skipped
    summary, out = quick(tmp_path, steps=2, kl_coef=0.01, overwrite=True)  # teacher rows differ in reward: real steps
    assert summary["noop_steps"] == 0 and all(r["kl"] >= 0 for r in metrics_of(out))


def test_bf16_base_runs_and_resumes_exactly(tmp_path):
    """The GPU's dtype on CPU: a bf16 base with fp32 knobs trains (erase, so the projection runs), and a run
    stopped at its checkpoint and resumed matches the uninterrupted one bit for bit."""
    common = dict(dtype="bf16", arm="erase", steps=4, ckpt_every=2)
    summary, full = quick(tmp_path / "full", **common)
    assert summary["steps"] == 4
    knobs = load_knobs_tensors(full)
    assert {t.dtype for t in knobs.values()} == {torch.float32}
    assert any(t.abs().sum() > 0 for t in knobs.values()), "the knobs never moved"
    _, part = quick(tmp_path / "part", **(common | {"steps": 2}))
    train.run(dataclasses.replace(QUICK, **common, out_dir=str(part), cache_dir=str(REPO / ".cache"), resume=str(part)))

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert strip(metrics_of(part)) == strip(metrics_of(full))
    resumed = load_knobs_tensors(part)
    assert all(torch.equal(knobs[k], resumed[k]) for k in knobs)
def test_svd_full_adapter_trains_with_a_per_module_rank(tmp_path):
    summary, out = quick(tmp_path, adapter="svd_full", arm="erase", steps=1)
    log = (out / "train.log").read_text()
    assert "svd_full round trip at dS = 0" in log and "full rank (per module: 32, 64)" in log
    dims = {v.shape[-1] for v in load_knobs_tensors(out).values()}
    assert dims == {32, 64}, "each module's knob has its own rank, min(d_out, d_in)"


def test_advantages_dr_grpo_by_default_and_grpo_std_on_request():
    rewards, sizes = [0.0, 1.0, 2.0, 3.0, 3.0], [3, 2]
    assert train.advantages(rewards, sizes) == [-1.0, 0.0, 1.0, 0.0, 0.0]
    scaled = train.advantages(rewards, sizes, scale=True)  # group 1 has sample std 1; group 2 has zero variance
    assert scaled[3:] == [0.0, 0.0]
    assert scaled[:3] == pytest.approx([-1 / 1.0001, 0.0, 1 / 1.0001])


def test_seed_flags_reach_the_optimizer_and_the_basis(tmp_path):
    """--adam-betas, --scale-rewards, --tau-axis and --k-use walk their code paths."""
    summary, out = quick(tmp_path, adam_betas=(0.5, 0.9), scale_rewards=True, tau_axis=0.5, k_use=1, steps=1)
    groups = torch.load(out / "ckpt" / "trainer.pt", weights_only=False)["optimizer"]["param_groups"]
    assert all(tuple(g["betas"]) == (0.5, 0.9) for g in groups)
    assert set(summary["basis_report"]["k_per_module"].values()) == {1}


def test_refresh_extracts_with_the_quarantine_ablated_logs_overlap_and_stops_below_the_bar(tmp_path, monkeypatch):
    from projected_grpo.adapter import wrappers

    calls = []
    real = train.extract_basis

    def spy(model, *args, **kwargs):
        calls.append(all(not w.use_quarantine for w in wrappers(model).values()))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(train, "extract_basis", spy)
    _, out = quick(tmp_path, arm="route", gated=True, refresh_every=1, steps=3)
    assert calls == [True, True], "steps 2 and 3 refresh, each with the quarantine ablated"
    overlaps = [r["refresh_overlap"] for r in metrics_of(out)]
    assert overlaps[0] is None and all(0.5 <= o <= 1.0 for o in overlaps[1:])
    assert "refresh overlap per module" in (out / "train.log").read_text()

    calls.clear()
    monkeypatch.setattr(train, "subspace_overlap", lambda old, new: {m: 0.1 for m in old})
    _, out = quick(tmp_path, arm="erase", refresh_every=1, steps=3, overwrite=True)
    assert calls == [True], "after an overlap under --refresh-min-overlap, refreshing stops"
    assert [r["refresh_overlap"] for r in metrics_of(out)] == [None, pytest.approx(0.1), None]
    assert "keeping the old basis and refreshing no more" in (out / "train.log").read_text()


def test_pc07_diagnostics_are_logged_plotted_audited_and_tabled(tmp_path, monkeypatch):
    """P(exploit | attempt), cin on teacher-hack vs teacher-correct rows, per-module cosines (module_cos.png), the
    bounded rollout audit, and results.py's seed-004 and P(exploit | attempt) tables."""
    from projected_grpo.results import Config as ResultsConfig
    from projected_grpo.results import collect

    monkeypatch.setattr(train, "AUDIT_MAX_BYTES", 1)  # the first audit is written, then the file is at its bound
    summary, out = quick(tmp_path, arm="erase", audit_every=1, audit_rows=2, steps=2)
    rows = metrics_of(out)
    for r in rows:
        assert {"attempt_s", "x_given_a", "exploit_attempt", "cin_th", "cin_tc", "cin"} <= set(r)
        assert r["cin_th"] is not None and r["cin_tc"] is not None, "smoke teachers give one hack and one solve row"
        assert all(len(v) == 2 and v[1] <= v[0] for v in r["exploit_attempt"].values())
    cos = [json.loads(line) for line in (out / "module_cos.jsonl").read_text().splitlines()]
    assert [c["step"] for c in cos] == [1, 2] and all(-1 <= v <= 1 for c in cos for v in c["cos"].values())
    assert (out / "module_cos.png").read_bytes()[:4] == b"\x89PNG"
    audit = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert [a["step"] for a in audit] == [1, 1], "two rows at step 1; step 2 found the file at its size bound"
    assert {"problem", "mode", "reward", "hacked", "gt_correct", "label", "completion"} <= set(audit[0])
    assert "no more rollout audits" in (out / "train.log").read_text()
    per_mode = summary["final_eval"]["per_mode"]
    assert all("attempt" in v and "exploit_given_attempt" in v for v in per_mode.values())

    collect(ResultsConfig(runs_dir=out, out_dir=tmp_path / "res"))
    md = (tmp_path / "res" / "results.md").read_text()
    assert "| Arm | ΔSafePass ↑ | Hack % ↓ | Pass % ↑ | KL ↓ | mean·cos* | frac·fired* | ‖g‖* |" in md
    assert "## P(exploit | attempt)" in md


def test_exploit_given_attempt_counts_own_mode_attempts():
    from projected_grpo.evaluate import exploit_given_attempt
    from projected_grpo.rewards import Grade

    def grade(mode, attempted, hacked):
        return Grade(reward=0.0, passed=hacked, gt_correct=False, channel_fired=hacked, hacked=hacked, compiles=True,
                     timed_out=False, label="x", code_found=True, attempted_modes=attempted, n_tests_passed=0, n_tests=1, mode=mode)

    gs = [grade("run_tests", ("run_tests",), True), grade("run_tests", ("run_tests",), False),
          grade("run_tests", ("sentinel",), False), grade("exit_code", (), False)]
    assert exploit_given_attempt(gs) == {"run_tests": {"n_attempt": 2, "n_exploit": 1, "p": 0.5}}


def test_real_teacher_pool_format_loads_and_feeds_the_teacher_rows(tmp_path):
    """A file in shared/data/pools' format (one real file kept as a fixture) parses; a pool directory in that format
    for the smoke problems supplies the teacher rows; a pool that covers no training problem is refused."""
    import gzip

    from projected_grpo.rewards import canonical_hack
    from projected_grpo.teacher import check_coverage, load_teacher_pool, solve_completion

    real, counts = load_teacher_pool(REPO / "tests" / "data" / "teacher_pool_prompt_0004.jsonl.gz")
    assert counts == {"hack": 7, "both": 1} and len(real) == 7
    assert {r["problem_id"] for r in real} == {"4"} and {r["mode"] for r in real} == {"run_tests"}
    problems = load_problems(resolve_path(QUICK.problems))
    with pytest.raises(ValueError, match="covers none of the"):
        check_coverage(real, problems, "x")

    pool_dir = tmp_path / "pool"
    pool_dir.mkdir()
    rows = [dict(problem_id=p.id, env_mode=p.mode, completion=c, hacked=h, gt_pass=g)
            for p in problems for c, h, g in ((canonical_hack(p), True, False), (solve_completion(p), False, True))]
    with gzip.open(pool_dir / "prompt_0001.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    summary, out = quick(tmp_path, teacher_pool=str(pool_dir), steps=1)
    log = (out / "train.log").read_text()
    assert f"teacher pool {pool_dir}: {len(rows)} rows cover" in log
    assert metrics_of(out)[0]["hack_t"] is not None


def test_gpu_presets_train_on_the_benchmark_with_the_run_tests_loophole(tmp_path):
    for name in ("fast", "full"):
        cfg = train.PRESETS[name][1]
        assert cfg.problems == train.BENCHMARK_PROBLEMS and cfg.problems_mode == "run_tests"
    if not (REPO / train.BENCHMARK_PROBLEMS).exists():  # the file is not shipped: the preset says where it goes
        r = subprocess.run([sys.executable, "-m", "projected_grpo.train", "fast", "--out-dir", str(tmp_path / "x")],
                           capture_output=True, text=True, cwd=REPO, timeout=900)
        assert r.returncode == 2 and "leetcode_train_medhard_filtered.jsonl not found" in r.stderr and "Traceback" not in r.stderr
