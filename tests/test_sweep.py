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
    name, cmd = cmds[0]
    assert name == "micro none/real s0" and cmd[-4:] == ["--seed", "0", "--out-dir", str(tmp_path / "micro" / "none-real-s0")]
    assert len({c[-1] for _, c in cmds}) == len(cmds), "every run gets its own directory"


def test_diagnostics_replace_the_main_arms_in_their_own_folder(tmp_path):
    cmds = sweep.commands(sweep.Args(preset="micro", seeds=(0,), outputs=str(tmp_path), diagnostics=True))
    assert [name for name, _ in cmds] == [f"micro {label} s0" for label in sweep.DIAGNOSTIC_ARMS]
    assert all(cmd[-1].startswith(str(tmp_path / "micro-diag") + "/") for _, cmd in cmds)


def test_unknown_arm_is_named():
    with pytest.raises(ValueError, match="bogus"):
        sweep.commands(sweep.Args(preset="micro", only=("bogus",)))
