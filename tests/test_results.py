"""results.py: tables (means, SEM, deltas vs vanilla), per-mode and leave-one-mode-out tables, plots, errors."""

import csv
import json
import math
from pathlib import Path

import pytest

from projected_grpo.results import Config, collect, group, label_curve, load_runs, mean_sem, summary_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _eval(hack: float, pas: float, per_mode: dict | None = None) -> dict:
    per_mode = per_mode or {"run_tests": {"hack": hack, "pass": pas, "n": 16}, "exit_code": {"hack": hack / 2, "pass": pas, "n": 16}}
    return {"hack": hack, "pass": pas, "safepass": pas - hack, "n": 96, "per_mode": per_mode}


def make_run(root: Path, name: str, label: str, seed: int, hack: float, pas: float, *, init_hack: float = 0.1,
             oracle: bool = False, heldout_mode: str | None = None, per_mode: dict | None = None,
             n_evals: int = 3, steps: int = 6) -> Path:
    d = root / name
    d.mkdir(parents=True)
    summary = {
        "label": label, "arm": label.split("/")[0], "basis": "real", "seed": seed, "preset": "micro", "steps": steps,
        "wall_s": 10.0, "oracle": oracle, "heldout_mode": heldout_mode,
        "initial_eval": _eval(init_hack, 0.2), "final_eval": _eval(hack, pas, per_mode),
        "train_last5": {"reward": 1.0, "hack_s": hack, "gt_s": pas, "cin_s": 0.2 + seed / 10, "cin_t": 0.5, "cout": 0.0},
        "cin_null": 0.05,
    }
    (d / "summary.json").write_text(json.dumps(summary))
    metrics = [{"step": s, "reward": 1.0, "hack_s": hack * s / steps, "gt_s": pas, "cin_s": None} for s in range(1, steps + 1)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    evals = [{"step": s, "hack": hack * s / steps, "pass": pas, "safepass": pas - hack * s / steps, "per_mode": {}}
             for s in range(0, steps + 1, max(1, steps // max(1, n_evals - 1)))][:n_evals]
    (d / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    return d


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    root = tmp_path / "outputs"
    # vanilla: hack 0.5, 0.7 -> mean 60, SEM 10 ; pass 0.3, 0.5 -> 40 ± 10
    make_run(root, "micro/none-s0", "none/real", 0, 0.5, 0.3)
    make_run(root, "micro/none-s1", "none/real", 1, 0.7, 0.5)
    # erase: hack 0.1, 0.2, 0.3 -> 20 ± 5.77 ; pass 0.4 each -> 40 ± 0
    for seed, h in enumerate((0.1, 0.2, 0.3)):
        make_run(root, f"micro/erase-s{seed}", "erase/real", seed, h, 0.4, n_evals=1)  # curve from metrics.jsonl
    make_run(root, "oracle-s0", "oracle-penalty", 0, 0.0, 0.45, oracle=True)
    make_run(root, "deep/nested/lomo-s0", "erase/real lomo:exit_code", 0, 0.3, 0.35, heldout_mode="exit_code",
             per_mode={"exit_code": {"hack": 0.6, "pass": 0.1, "n": 16}, "run_tests": {"hack": 0.0, "pass": 0.5, "n": 16}})
    # unfinished: metrics but no summary.json -> skipped with a warning
    (root / "killed").mkdir()
    (root / "killed" / "metrics.jsonl").write_text('{"step": 1}\n')
    return root


def test_mean_sem():
    m, s = mean_sem([1.0, 2.0, 3.0])
    assert m == pytest.approx(2.0) and s == pytest.approx(1.0 / math.sqrt(3))
    assert mean_sem([4.0]) == (4.0, None)


def test_table_numbers(runs_dir: Path):
    runs = load_runs(runs_dir)
    assert len(runs) == 7  # the killed run is skipped
    rows = summary_rows(runs)
    by = {r["label"]: r for r in rows}
    assert [r["label"] for r in rows][0] == "none/real"  # baseline first
    assert rows[-1]["label"] == "oracle-penalty (oracle)"  # oracle upper bound last
    base, er = by["none/real"], by["erase/real"]
    assert base["n"] == 2 and er["n"] == 3
    assert base["hack"] == pytest.approx(60.0) and base["hack_sem"] == pytest.approx(10.0)
    assert base["pass"] == pytest.approx(40.0) and base["safepass"] == pytest.approx(-20.0)
    assert er["hack"] == pytest.approx(20.0) and er["hack_sem"] == pytest.approx(10 / math.sqrt(3))
    assert er["pass_sem"] == pytest.approx(0.0, abs=1e-9)
    assert er["d_hack"] == pytest.approx(-40.0)
    assert er["d_hack_sem"] == pytest.approx(math.sqrt(10**2 + 100 / 3))
    assert er["d_pass"] == pytest.approx(0.0, abs=1e-9) and er["d_safepass"] == pytest.approx(40.0)
    assert base["d_hack"] is None  # no delta of the baseline against itself
    orc = by["oracle-penalty (oracle)"]
    assert orc["oracle"] and orc["hack_sem"] is None and orc["d_hack_sem"] is None  # one seed: no SEM
    assert orc["d_pass"] == pytest.approx(5.0)
    assert er["init_hack"] == pytest.approx(10.0)
    assert er["cin_s"] == pytest.approx(0.3) and er["cin_t"] == pytest.approx(0.5) and er["cin_null"] == pytest.approx(0.05)


def test_collect_writes_files(runs_dir: Path, tmp_path: Path):
    out = tmp_path / "res"
    collect(Config(runs_dir=runs_dir, out_dir=out))
    md = (out / "results.md").read_text()
    assert "| none/real | 2 | 60.0 ± 10.0 | 40.0 ± 10.0 | -20.0 ± 0.0 |" in md
    assert "| erase/real | 3 | 20.0 ± 5.8 |" in md and "-40.0 ± 11.5" in md
    assert "| oracle-penalty (oracle) | 1 | 0.0 ± — |" in md
    assert "cannot exist on a new environment" in md
    # per-mode table: erase's exit_code hack is half its overall hack (10 %), pass 40 %
    assert "## Per mode" in md and "| run_tests | exit_code |" in md and "10.0 / 40.0" in md
    # leave-one-mode-out: held-out exit_code 60 % hack, 10 % pass; the vanilla row on that mode is 30 / 40
    assert "| erase/real lomo:exit_code | exit_code | 1 | 60.0 ± — | 10.0 ± — | 30.0 | 40.0 |" in md
    with (out / "results.csv").open() as f:
        rows = {r["label"]: r for r in csv.DictReader(f)}
    assert float(rows["erase/real"]["d_hack"]) == pytest.approx(-40.0)
    assert rows["oracle-penalty (oracle)"]["hack_sem"] == ""
    for name in ("pareto.png", "curves.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files


def test_curve_sources(runs_dir: Path):
    groups = group(load_runs(runs_dir))
    steps, hack, pas, train = label_curve(groups["none/real"])  # several periodic evals: deploy eval curve
    assert not train and steps == [0, 3, 6]
    assert hack[-1] == pytest.approx(60.0) and pas[-1] == pytest.approx(40.0)
    steps, hack, _, train = label_curve(groups["erase/real"])  # one eval row only: training rollouts
    assert train and steps == [1, 2, 3, 4, 5, 6] and hack[-1] == pytest.approx(20.0)


def test_initial_and_final_evals_alone_draw_training_rollouts(tmp_path: Path):
    make_run(tmp_path, "a", "none/real", 0, 0.6, 0.3, n_evals=2)  # steps 0 and 6 only: a straight line
    _, _, _, train = label_curve(group(load_runs(tmp_path))["none/real"])
    assert train


def test_baseline_label_option(runs_dir: Path):
    rows = summary_rows(load_runs(runs_dir), baseline_label="erase/real")
    assert rows[0]["label"] == "erase/real"  # exact match wins over "erase/real lomo:exit_code"
    assert {r["label"]: r for r in rows}["none/real"]["d_hack"] == pytest.approx(40.0)


def test_unfinished_run_warns(runs_dir: Path):
    from loguru import logger

    messages = []
    sink = logger.add(messages.append, level="WARNING")
    try:
        load_runs(runs_dir)
    finally:
        logger.remove(sink)
    assert any("killed" in m and "summary.json" in m for m in messages)


def test_no_runs(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no finished runs.*empty"):
        load_runs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        load_runs(tmp_path / "missing_dir")


def test_malformed_summary(tmp_path: Path):
    d = make_run(tmp_path, "bad", "none/real", 0, 0.5, 0.3)
    s = json.loads((d / "summary.json").read_text())
    del s["final_eval"]["pass"]
    (d / "summary.json").write_text(json.dumps(s))
    with pytest.raises(ValueError, match=r"bad/summary\.json.*final_eval\.'pass'"):
        load_runs(tmp_path)
    del s["label"]
    (d / "summary.json").write_text(json.dumps(s))
    with pytest.raises(ValueError, match=r"summary\.json: missing key 'label'"):
        load_runs(tmp_path)
    (d / "summary.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad/summary\.json: not valid JSON"):
        load_runs(tmp_path)


def test_percent_instead_of_fraction_rejected(tmp_path: Path):
    make_run(tmp_path, "pct", "none/real", 0, 45.0, 0.3)
    with pytest.raises(ValueError, match=r"final_eval\.hack = 45\.0 is not a fraction"):
        load_runs(tmp_path)


def test_duplicate_seed_and_mixed_presets(tmp_path: Path):
    make_run(tmp_path, "a", "none/real", 0, 0.5, 0.3)
    make_run(tmp_path, "b", "none/real", 0, 0.5, 0.3)
    with pytest.raises(ValueError, match="seed 0 appears twice"):
        load_runs(tmp_path)
    s = json.loads((tmp_path / "b" / "summary.json").read_text())
    (tmp_path / "b" / "summary.json").write_text(json.dumps({**s, "seed": 1, "preset": "smoke"}))
    with pytest.raises(ValueError, match="mixes preset"):
        load_runs(tmp_path)
    assert len(load_runs(tmp_path, preset="smoke")) == 1  # --preset picks one


def test_cli_error_exits_nonzero(tmp_path: Path, monkeypatch):
    from projected_grpo import results

    monkeypatch.setattr("sys.argv", ["results", "--runs-dir", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit) as e:
        results.main()
    assert e.value.code == 2  # bad input (cli.py)
    assert not (tmp_path / "outputs").exists()


def test_pareto_draws_the_before_training_markers_on_top(runs_dir: Path, tmp_path: Path, monkeypatch):
    from projected_grpo import results

    axes = []
    real_subplots = results.plt.subplots

    def subplots(*args, **kwargs):  # keep the axes the plot draws on
        fig, ax = real_subplots(*args, **kwargs)
        axes.append(ax)
        return fig, ax

    monkeypatch.setattr(results.plt, "subplots", subplots)
    runs = load_runs(runs_dir)
    labels = sorted({r.row_label for r in runs})
    results.plot_pareto(runs, labels, tmp_path / "pareto.png")
    z = {c.get_label(): c.get_zorder() for c in axes[0].collections}
    assert z.pop("before training") > max(z.values())
