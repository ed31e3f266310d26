"""TensorBoard event files for a run (`--track`), written next to its metrics.jsonl, like CleanRL's runs/ folder.

    python -m projected_grpo.train smoke --track
    tensorboard --logdir outputs/smoke        # one TensorBoard run per run directory

What goes in: every numeric metrics.jsonl column as a scalar under its own name, at its step (None, a step with no
value, is skipped; booleans as 0/1); the config as a text summary (`config`); at close, every PNG already in the
run directory as an image (the per-run plots, where something wrote them). metrics.jsonl stays the record: the
event files are a view of it, so they hold nothing it does not.

TensorBoard is an optional extra (`pip install -e '.[track]'`), imported only here and only when tracking is on:
`require_tensorboard()` fails at startup, in one line naming the extra, when it is missing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

TRACK_EXTRA = "pip install -e '.[track]'"


def require_tensorboard():
    """torch's SummaryWriter, or a ValueError naming the extra (train.validate calls it before anything loads)."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it; import it first for a clear error)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError(f"--track needs TensorBoard, which is not installed; install the extra: {TRACK_EXTRA}") from None
    return SummaryWriter


class Tracker:
    """`log(row, step)` after each metrics.jsonl row, `close()` at the end. `start_step`: a resumed run's
    checkpoint step; events past it (steps the resume redoes) are purged, as metrics.jsonl's rows are."""

    def __init__(self, out_dir: str | Path, config: dict, start_step: int = 0):
        SummaryWriter = require_tensorboard()
        self.out_dir = Path(out_dir)
        self.writer = SummaryWriter(log_dir=str(self.out_dir), purge_step=start_step + 1 if start_step else None)
        if not start_step:
            rows = "\n".join(f"| {k} | {json.dumps(v)} |" for k, v in config.items())
            self.writer.add_text("config", "| field | value |\n| --- | --- |\n" + rows, 0)

    def log(self, row: dict, step: int) -> None:
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):  # bool is an int
                self.writer.add_scalar(key, float(value), step)
        self.writer.flush()  # a killed run keeps every step it logged (a step takes seconds; a flush is cheap)

    def close(self) -> None:
        """Add the run directory's PNGs (the per-run plots), then flush and close the event file."""
        import numpy as np
        from matplotlib.image import imread

        for png in sorted(self.out_dir.glob("*.png")):  # RGBA, RGB or grey: TensorBoard takes 1 or 3 channels
            self.writer.add_image(png.stem, np.atleast_3d(imread(png))[..., :3], 0, dataformats="HWC")
        self.writer.close()
