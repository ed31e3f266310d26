"""Checkpoints, keep-last-2: the knobs (safetensors, with their step) and the trainer state (optimizer, schedule,
RNGs, gate) written whole into ckpt.tmp/ and renamed, so a kill or a full disk never leaves a half checkpoint."""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from loguru import logger
from safetensors import safe_open

from projected_grpo import adapter as adapters
from projected_grpo.cli import Failure
from projected_grpo.gating import QuantileGate


@dataclass
class State:
    """Everything a checkpoint restores."""

    step: int = 0
    rng: random.Random = field(default_factory=random.Random)


CKPT_FILES = ("knobs.safetensors", "trainer.pt")


def save_checkpoint(out: Path, model, opt, sched, state: State, gate: QuantileGate | None) -> None:
    """Keep-last-2: written whole into ckpt.tmp/ and flushed, then ckpt/ becomes ckpt.prev/ and ckpt.tmp/ becomes
    ckpt/. A kill or a full disk mid-write leaves ckpt/ as it was; a file torn afterwards (a crash before the disk
    flushed it) still leaves ckpt.prev/, one checkpoint older."""
    tmp, final, prev = out / "ckpt.tmp", out / "ckpt", out / "ckpt.prev"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        adapters.save_knobs(model, tmp / "knobs.safetensors", metadata={"step": str(state.step)})
        torch.save(
            dict(
                step=state.step,
                optimizer=opt.state_dict(),
                scheduler=sched.state_dict(),
                python_rng=state.rng.getstate(),
                torch_rng=torch.get_rng_state(),
                cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                gate=gate.state_dict() if gate else None,
            ),
            tmp / "trainer.pt",
        )
        for name in CKPT_FILES:
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
    except Exception as e:  # ENOSPC, EIO, ... (torch reports a failed write as a RuntimeError)
        logger.opt(exception=e).debug("checkpoint write failed")
        shutil.rmtree(tmp, ignore_errors=True)
        kept = checkpoint_step(final)
        raise Failure(f"could not write the checkpoint of step {state.step} ({getattr(e, 'strerror', None) or e}); "
                      + (f"the previous one (step {kept}) is intact in {final}" if kept is not None else "no earlier checkpoint exists")) from None
    if final.exists():
        shutil.rmtree(prev, ignore_errors=True)
        final.rename(prev)
    tmp.rename(final)


def checkpoint_dir(out: Path) -> Path | None:
    """ckpt/, or ckpt.prev/ when a kill fell between save_checkpoint's two renames; None before the first checkpoint."""
    return next((d for d in (out / "ckpt", out / "ckpt.prev") if d.is_dir()), None)


def checkpoint_step(ckpt: Path | None) -> int | None:
    """The step a checkpoint holds, from its knob file's metadata (None: no readable checkpoint)."""
    try:
        with safe_open(str(ckpt / "knobs.safetensors"), framework="pt") as f:
            return int((f.metadata() or {})["step"])
    except Exception:
        return None


def read_checkpoint(ckpt: Path) -> dict:
    """The trainer state of a checkpoint whose two files are whole and agree; a ValueError naming the bad file
    otherwise, with nothing changed on disk."""
    prev = ckpt.parent / "ckpt.prev"
    hint = (f"; nothing was changed. The previous checkpoint (step {checkpoint_step(prev)}) is in {prev}: move {ckpt} "
            f"aside and rename {prev.name} to {ckpt.name} to resume from it") if ckpt != prev and prev.is_dir() else "; nothing was changed"
    for name in CKPT_FILES:
        if not (ckpt / name).is_file():
            raise FileNotFoundError(f"{ckpt / name}: checkpoint file missing{hint}")

    def torn(name: str, e: Exception) -> ValueError:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return ValueError(f"{ckpt / name}: torn or unreadable checkpoint file ({reason[:160]}){hint}")

    try:
        with safe_open(str(ckpt / "knobs.safetensors"), framework="pt") as f:
            knob_step = (f.metadata() or {}).get("step")
            for key in f.keys():
                f.get_tensor(key)  # reads every byte: a file cut short fails here
    except Exception as e:
        raise torn("knobs.safetensors", e) from None
    try:
        blob = torch.load(ckpt / "trainer.pt", map_location="cpu", weights_only=False)
    except Exception as e:
        raise torn("trainer.pt", e) from None
    wanted = {"step", "optimizer", "scheduler", "python_rng", "torch_rng", "cuda_rng", "gate"}
    if not isinstance(blob, dict) or not wanted <= set(blob):
        raise torn("trainer.pt", ValueError(f"missing {sorted(wanted - set(blob)) if isinstance(blob, dict) else 'everything'}"))
    if knob_step != str(blob["step"]):
        raise ValueError(f"{ckpt}: knobs.safetensors holds step {knob_step} but trainer.pt step {blob['step']} (files of two checkpoints){hint}")
    return blob


def load_checkpoint(ckpt: Path, model, opt, sched, state: State, gate: QuantileGate | None) -> None:
    blob = read_checkpoint(ckpt)
    adapters.load_knobs(model, ckpt / "knobs.safetensors")
    opt.load_state_dict(blob["optimizer"])  # moves the moments onto each parameter's device
    sched.load_state_dict(blob["scheduler"])
    state.step = blob["step"]
    state.rng.setstate(blob["python_rng"])
    torch.set_rng_state(blob["torch_rng"])
    if gate:
        gate.load_state_dict(blob["gate"])
    if blob["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
