"""Resumable checkpoints and the final Hugging Face folder.

A resumable checkpoint is DeepSpeed's own (model, optimizer and scheduler state, sharded per rank
under ZeRO) plus `TrainingProgress` and each rank's RNG states. It counts only once a `COMPLETE`
marker is written after every rank has finished, so a run killed mid-save resumes from the
previous one. The data order needs no saving: it is a function of the seed and the step.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tuner.engine import barrier, load_engine_state, save_engine_state

COMPLETE_MARKER = "COMPLETE"
PROGRESS_KEY = "tuner_progress"


@dataclass
class TrainingProgress:
    step: int
    """Optimizer steps finished."""
    epoch: float
    plan_fingerprint: str
    """Identifies the data and batch geometry; resuming with different ones is refused."""


def checkpoints_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def _tag(step: int) -> str:
    return f"step_{step:08d}"


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(engine, output_dir: str | Path, progress: TrainingProgress, rank: int,
                    exclude_frozen: bool, keep_last: int | None) -> Path:
    """Save a resumable checkpoint on every rank; returns its folder."""
    root = checkpoints_root(output_dir)
    tag = _tag(progress.step)
    save_engine_state(engine, root, tag, {PROGRESS_KEY: dataclasses.asdict(progress)}, exclude_frozen)
    torch.save(rng_state(), root / tag / f"rng_state_rank{rank}.pt")
    barrier()
    if rank == 0:
        (root / tag / COMPLETE_MARKER).write_text(json.dumps(dataclasses.asdict(progress)))
        if keep_last is not None:
            for old in complete_checkpoints(output_dir)[:-keep_last]:
                shutil.rmtree(old, ignore_errors=True)
    barrier()
    return root / tag


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Checkpoint folders whose save finished on every rank, oldest first."""
    root = checkpoints_root(output_dir)
    if not root.exists():
        return []
    return sorted(p for p in root.glob("step_*") if (p / COMPLETE_MARKER).exists())


def load_checkpoint(engine, folder: str | Path, rank: int, exclude_frozen: bool) -> TrainingProgress:
    """Restore model, optimizer, scheduler and this rank's RNG from `folder`."""
    folder = Path(folder)
    if not (folder / COMPLETE_MARKER).exists():
        raise FileNotFoundError(f"{folder}: not a complete tuner checkpoint (no {COMPLETE_MARKER} marker)")
    client_state = load_engine_state(engine, folder, exclude_frozen)
    rng_file = folder / f"rng_state_rank{rank}.pt"
    if rng_file.exists():
        set_rng_state(torch.load(rng_file, weights_only=False))
    return TrainingProgress(**client_state[PROGRESS_KEY])
