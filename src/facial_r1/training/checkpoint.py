"""Checkpoints that fit: what a within-stage checkpoint holds, when it is written, and how.

Stages hand over through the Hugging Face export; Lightning checkpoints only resume a killed run. Three choices keep
them proportionate to a real checkpoint:

- **Trainable weights only** (:func:`drop_frozen_weights`): frozen tensors (the base model under LoRA, a frozen
  vision tower) are reloaded from the folder the run started from, so a LoRA checkpoint of a 7B model holds the
  adapter and its optimizer state (megabytes), not 15 GB of unchanged weights. Full fine-tuning still saves
  everything, optimizer state included: an exact resume needs the AdamW moments and the fp32 master weights.
- **No end-of-fit save for real checkpoints** (``StageCheckpoint(save_on_train_end=False)``, the ``published``
  recipe): Lightning writes ``last.ckpt`` when fit ends, but the export written right after it is the stage's
  product; a crash during export resumes from the last periodic checkpoint. The tiny recipe keeps it (seconds).
- **Streamed to disk** (:class:`StreamingCheckpointIO`): Lightning's default serialises the whole checkpoint into an
  in-memory buffer before writing it (a 7B full fine-tune's state is ~100 GB of host RAM); here ``torch.save``
  writes to a temporary file beside the target, renamed into place when complete (still atomic).

A resumed run's ``wall_time_s`` counts the killed sessions too (:class:`WallClock`): the results tables report what
a stage cost, not only its last session.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO


class StageCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose end-of-fit ``last.ckpt`` can be switched off (periodic saves are unchanged)."""

    def __init__(self, *args: Any, save_on_train_end: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.save_on_train_end = save_on_train_end

    def on_train_end(self, trainer, pl_module) -> None:
        if self.save_on_train_end:
            super().on_train_end(trainer, pl_module)


class StreamingCheckpointIO(TorchCheckpointIO):
    """``torch.save`` straight to ``<path>.tmp``, then an atomic rename: no in-memory copy of the whole state."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)


def drop_frozen_weights(
    state_dict: dict[str, torch.Tensor], module: torch.nn.Module, prefix: str
) -> list[str]:
    """Remove from ``state_dict`` (in place) the parameters of ``module`` (registered under ``prefix``) that do not
    require grad; returns the removed keys. Buffers and trainable parameters stay."""
    frozen = [f"{prefix}{name}" for name, p in module.named_parameters() if not p.requires_grad]
    for key in frozen:
        state_dict.pop(key, None)
    return frozen


def check_restorable(missing: list[str], module: torch.nn.Module, prefix: str) -> None:
    """A checkpoint may omit only frozen parameters (they come from the model folder); a missing trainable one
    means the checkpoint does not belong to this model configuration."""
    trainable = {f"{prefix}{name}" for name, p in module.named_parameters() if p.requires_grad}
    lost = sorted(set(missing) & trainable)
    if lost:
        raise RuntimeError(
            f"checkpoint lacks {len(lost)} trainable weights (first: {lost[0]}): it was written by a run with a "
            "different model.lora / model.freeze_vision setting"
        )


class WallClock(Callback):
    """The stage's wall time across a kill and resume: this session's seconds since ``started`` plus what the
    checkpoint it resumed from had counted (the earlier sessions up to their last checkpoint; the steps after it
    were lost and are run again, so they count once)."""

    def __init__(self, started: float | None = None):
        self.started = time.time() if started is None else float(started)
        self.before = 0.0  # the earlier sessions' seconds, from the checkpoint

    def elapsed(self) -> float:
        return self.before + time.time() - self.started

    def state_dict(self) -> dict[str, float]:
        return {"elapsed_s": self.elapsed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.before = float(state_dict.get("elapsed_s") or 0.0)
