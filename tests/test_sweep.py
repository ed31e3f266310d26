"""The sweep's arm table: every arm's overrides are valid train.py flags, and commands are what they say."""

import pytest
import tyro

from projected_grpo import sweep, train


ALL_ARMS = {**sweep.ARMS_BY_PRESET["micro"], **sweep.DIAGNOSTIC_ARMS}


@pytest.mark.parametrize("label", list(ALL_ARMS))
def test_every_arm_parses_as_train_overrides(label):
    overrides = ALL_ARMS[label]
    cfg = tyro.cli(train.Config, default=train.PRESETS["smoke"][1], args=overrides)
    assert (cfg.label or f"{cfg.arm}/{cfg.basis}") == label


def test_commands_cover_arms_times_seeds(tmp_path):
    cmds = sweep.commands(sweep.Args(preset="micro", seeds=(0, 1), outputs=str(tmp_path)))
    assert len(cmds) == 2 * len(sweep.ARMS_BY_PRESET["micro"])
    name, cmd = cmds[0]  # seed-major: every arm of seed 0 first
    assert name == "micro none/real s0" and cmd[-4:] == ["--seed", "0", "--out-dir", str(tmp_path / "micro" / "none-real-s0")]
    assert len({c[-1] for _, c in cmds}) == len(cmds), "every run gets its own directory"


def test_diagnostics_replace_the_main_arms_in_their_own_folder(tmp_path):
    cmds = sweep.commands(sweep.Args(preset="micro", seeds=(0,), outputs=str(tmp_path), diagnostics=True))
    assert [name for name, _ in cmds] == [f"micro {label} s0" for label in sweep.DIAGNOSTIC_ARMS]
    assert all(cmd[-1].startswith(str(tmp_path / "micro-diag") + "/") for _, cmd in cmds)


def test_unknown_arm_is_named():
    with pytest.raises(ValueError, match="bogus"):
        sweep.commands(sweep.Args(preset="micro", only=("bogus",)))


@pytest.mark.parametrize("label", list(sweep.ORGANISM_ARMS))
def test_every_organism_arm_parses_and_says_why(label):
    arm = sweep.ORGANISM_ARMS[label]
    cfg = tyro.cli(train.Config, default=train.PRESETS["organism"][1], args=arm.overrides)
    assert cfg.label == label and arm.why


def test_organism_arms_run_their_own_seed_counts_and_headline_arms_first(tmp_path):
    cmds = sweep.commands(sweep.Args(preset="organism", outputs=str(tmp_path)))
    assert len(cmds) == sum(a.seeds for a in sweep.ORGANISM_ARMS.values())
    assert [n for n, _ in cmds[:2]] == ["organism vanilla s0", "organism erase s0"]  # seed-major
    chosen = sweep.commands(sweep.Args(preset="organism", only=("vanilla", "erase"), seeds=(7,), outputs=str(tmp_path)))
    assert [n for n, _ in chosen] == ["organism vanilla s7", "organism erase s7"]


def test_dry_run_prints_a_why_line_per_command(tmp_path, capsys):
    sweep.main(sweep.Args(preset="organism", only=("erase",), seeds=(0,), dry_run=True, outputs=str(tmp_path)))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# why: H1") and "--label erase" in out[1]
