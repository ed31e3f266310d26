"""`--track`: TensorBoard event files read back with TensorBoard's own EventAccumulator; a missing extra fails in
one line. (The Tracker tests skip when tensorboard, the `[track]` extra, is not installed.)"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from projected_grpo import train
from projected_grpo.tracking import TRACK_EXTRA, Tracker

REPO = Path(__file__).resolve().parents[1]


def read_events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tracker_writes_every_numeric_column_the_config_and_the_plots(tmp_path):
    pytest.importorskip("tensorboard")
    import matplotlib.pyplot as plt

    rows = [
        dict(step=1, reward=0.5, cout=None, noop=False, skipped=2, lr=1e-3),
        dict(step=2, reward=1.5, cout=0.25, noop=True, skipped=0, lr=5e-4),
    ]
    tracker = Tracker(tmp_path, {"arm": "erase", "lr": 1e-3, "targets": ["q_proj"]})
    for r in rows:
        tracker.log(r, r["step"])
    plt.imsave(tmp_path / "curves.png", np.random.default_rng(0).random((8, 12, 3)))
    tracker.close()

    acc = read_events(tmp_path)
    assert set(acc.Tags()["scalars"]) == {"reward", "cout", "noop", "skipped", "lr"}
    for key in ("reward", "noop", "skipped", "lr"):
        got = [(e.step, e.value) for e in acc.Scalars(key)]
        assert got == [(r["step"], pytest.approx(float(r[key]))) for r in rows], key
    assert [(e.step, e.value) for e in acc.Scalars("cout")] == [(2, 0.25)], "a None cell is no point"
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| arm | \"erase\" |" in text and "| targets | [\"q_proj\"] |" in text
    (image,) = acc.Images("curves")
    assert (image.width, image.height) == (12, 8)


def test_tracker_resumed_purges_the_steps_it_redoes(tmp_path):
    pytest.importorskip("tensorboard")
    t = Tracker(tmp_path, {})
    for step in (1, 2, 3):
        t.log({"reward": float(step)}, step)
    t.close()
    t = Tracker(tmp_path, {}, start_step=2)  # the checkpoint held step 2: step 3 is redone
    t.log({"reward": 30.0}, 3)
    t.close()
    assert [(e.step, e.value) for e in read_events(tmp_path).Scalars("reward")] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_track_run_logs_every_metrics_column(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    cfg = dataclasses.replace(
        train.PRESETS["smoke"][1], steps=2, eval_samples=1, eval_frac=0.1, eval_variants=False, max_new=16,
        out_dir=str(out), cache_dir=str(REPO / ".cache"), track=True,
    )
    train.run(cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    numeric = {k for r in rows for k, v in r.items() if k != "step" and isinstance(v, (int, float))}
    acc = read_events(out)
    assert set(acc.Tags()["scalars"]) == numeric
    for key in numeric:
        want = [(r["step"], float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]
        assert [(e.step, e.value) for e in acc.Scalars(key)] == [(s, pytest.approx(v)) for s, v in want], key
    assert "config/text_summary" in acc.Tags()["tensors"]


def test_track_without_tensorboard_fails_at_startup_in_one_line(tmp_path):
    """In a child process: importing train loads neither tensorboard nor trl (the smoke pays for neither); then with
    `import tensorboard` failing (its sys.modules entry None), `--track` stops before anything is written."""
    code = ("import sys; from projected_grpo import train; "
            "print(sorted(m for m in ('tensorboard', 'trl', 'torch.utils.tensorboard') if m in sys.modules)); "
            "sys.modules['tensorboard'] = None; "
            f"train.main(['smoke', '--track', '--out-dir', {str(tmp_path / 'run')!r}])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.stdout.strip() == "[]", "importing train imported an optional extra"
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [f"error: --track needs TensorBoard, which is not installed; install the extra: {TRACK_EXTRA}"]
    assert not (tmp_path / "run").exists(), "nothing was written"
