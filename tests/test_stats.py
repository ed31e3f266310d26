"""Paired statistics, the preregistered verdict rules, and the committed-results report."""

import json

import numpy as np
import pytest
from scipy import stats as sps

from projected_grpo import report, stats


def test_paired_matches_scipys_paired_t_test():
    a = {0: 0.50, 1: 0.40, 2: 0.70, 3: 0.55, 4: 0.60}
    b = {0: 0.80, 1: 0.75, 2: 0.85, 3: 0.70, 4: 0.95, 9: 0.1}  # seed 9 has no partner: ignored
    p = stats.paired(a, b)
    ref = sps.ttest_rel([a[s] for s in range(5)], [b[s] for s in range(5)])
    assert p.n == 5
    assert p.mean == pytest.approx(np.mean([a[s] - b[s] for s in range(5)]))
    assert p.t == pytest.approx(ref.statistic) and p.p == pytest.approx(ref.pvalue)


def test_pairing_is_tighter_than_independent_arms_when_seeds_share_noise():
    rng = np.random.default_rng(0)
    seed_effect = rng.normal(0, 0.2, 8)  # a shared warm start / RNG per seed moves both arms
    a = {s: 0.5 + seed_effect[s] + rng.normal(0, 0.02) for s in range(8)}
    b = {s: 0.6 + seed_effect[s] + rng.normal(0, 0.02) for s in range(8)}
    indep_sem = np.sqrt(np.var(list(a.values()), ddof=1) / 8 + np.var(list(b.values()), ddof=1) / 8)
    assert stats.paired(b, a).sem < indep_sem / 3


def test_bootstrap_ci_covers_the_mean_and_widens_with_problem_noise():
    rng = np.random.default_rng(1)
    ref = {s: rng.uniform(0, 1, 24) for s in range(5)}
    arm = {s: ref[s] - 0.2 for s in range(5)}  # the same -0.2 on every problem: no spread
    lo, hi = stats.bootstrap_ci(arm, ref)
    assert lo == pytest.approx(-0.2) and hi == pytest.approx(-0.2)
    noisy = {s: ref[s] - 0.2 + rng.normal(0, 0.3, 24) for s in range(5)}
    lo, hi = stats.bootstrap_ci(noisy, ref)
    mean = np.mean([noisy[s] - ref[s] for s in range(5)])
    assert lo < mean < hi and hi - lo > 0.1


def test_power_agrees_with_a_simulation():
    sd, n, effect = 0.15, 5, 0.15
    rng = np.random.default_rng(2)
    d = rng.normal(effect, sd, size=(20000, n))
    t = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(n))
    simulated = np.mean(np.abs(t) > sps.t.ppf(0.975, n - 1))
    assert stats.power(sd, n, effect) == pytest.approx(simulated, abs=0.02)
    assert stats.power(sd, 10, effect) > stats.power(sd, n, effect)


def _p(mean, sem):
    return stats.Paired(n=5, mean=mean, sem=sem, t=0.0, p=0.5, deltas=())


@pytest.mark.parametrize(
    "d_hack, d_pass, want",
    [
        ((-0.35, 0.05), (-0.05, 0.02), "supported"),
        ((-0.35, 0.05), (-0.12, 0.02), "inconclusive"),  # pass drop 12: not matched, not yet falsified
        ((-0.20, 0.05), (0.0, 0.02), "inconclusive"),
        ((-0.10, 0.02), (0.0, 0.02), "falsified"),  # under 15 points
        ((-0.35, 0.05), (-0.20, 0.02), "falsified"),  # pass down over 15
        ((-0.20, 0.25), (0.0, 0.02), "falsified"),  # within 1 SEM of vanilla
    ],
)
def test_h1_rules(d_hack, d_pass, want):
    assert stats.verdict_h1(_p(*d_hack), _p(*d_pass))[0] == want


def test_h3_and_h4_rules():
    assert stats.verdict_h3(_p(-0.2, 0.05), _p(0.0, 0.01))[0] == "supported"
    assert stats.verdict_h3(_p(-0.02, 0.05), _p(0.0, 0.01))[0] == "falsified"
    assert stats.verdict_h4([0.5, 0.4])[0] == "supported" and stats.verdict_h4([0.1, 0.2])[0] == "falsified"


def _run(label, seed, hack, passed, privileged=None):
    per_problem = {f"p{i}": [8, round(8 * hack), round(8 * passed)] for i in range(4)}
    ev = dict(hack=hack, **{"pass": passed}, n=32, per_problem=per_problem, per_mode={}, form_roles={"train": 3, "heldout": 1})
    return dict(
        label=label, seed=seed, preset="organism", arm="none", basis="real", pairs="forms:authored", privileged=privileged,
        steps=1, wall_s=1.0, initial=dict(ev, hack=0.0), final=ev, train_mean={"cin_s": 0.1}, train_last5={},
        basis_summary=dict(n_modules=1, n_axes=4, val_median=0.5, val_share_pos=1.0), cin_null=0.05, overrides={},
    )


def test_report_tables_recompute_from_committed_summaries(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for s in range(3):
        for label, hack, passed in (("vanilla", 0.75, 0.25), ("erase", 0.25, 0.25), ("rebound", 0.75, 0.25)):
            (runs / f"{label}-s{s}.json").write_text(json.dumps(_run(label, s, hack + 0.01 * s, passed)))
    (runs / "oracle-s0.json").write_text(json.dumps(_run("oracle", 0, 0.0, 0.5, privileged="oracle labels")))
    text = report.tables(tmp_path)
    assert "**H4** (vanilla hacks > 30%): **supported**" in text
    assert "**H1**" in text and "**supported**" in text.split("**H1**")[1].split("\n")[0]
    assert "**H3**" in text and "**supported**" in text.split("**H3**")[1].split("\n")[0]
    assert "**oracle** ORACLE" in text
    assert "| erase | 3 | 26.0 ± 0.6 | 25.0 ± 0.0 | -50.0" in text


def test_report_fails_with_one_line_on_a_missing_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["report", "tables", str(tmp_path / "nope")])
    with pytest.raises(SystemExit) as e:
        report.main()
    assert e.value.code == 2 and "no run summaries" in capsys.readouterr().err


def test_report_lomo_and_pc07_tables_read_the_held_out_mode_and_stay_out_of_the_main_table(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "vanilla-s0.json").write_text(json.dumps(_run("vanilla", 0, 0.5, 0.25)))
    for arm, hack in (("none", 0.75), ("erase", 0.5), ("random", 0.75)):
        r = _run(f"lomo:sentinel/{arm}", 0, 0.5, 0.25)
        r["final"]["per_mode"] = {"sentinel": dict(hack=hack, **{"pass": 0.125}, n=32, attempt=0.8, exploit_given_attempt=0.9),
                                  "run_tests": dict(hack=0.0, **{"pass": 0.5}, n=32)}  # another mode: must not be read
        r["train_mean"] |= {"cin_th": 0.2, "cin_tc": None, "attempt_s": 0.5, "x_given_a": 0.75}
        (runs / f"lomo-sentinel-{arm}-s0.json").write_text(json.dumps(r))
    text = report.tables(tmp_path)
    main_table = text.split("## Preregistered")[0]
    assert "lomo:" not in main_table, "LOMO runs are another condition: not paired with the headline vanilla"
    assert "| sentinel | 32 | 75.0 | 50.0 (-25.0) | - | 75.0 (+0.0) | 12.5 |" in text
    assert "| lomo:sentinel/none s0 | 0.200 | - | 0.100 | 50.0 | 0.750 |" in text
    assert "| lomo:sentinel/none s0 | - | 80.0% / 0.90 |" in text
