"""AdamW with linear warmup then cosine / linear / constant decay, stepped per optimizer step."""

from __future__ import annotations

import math

import torch

SCHEDULES = ("cosine", "linear", "constant")


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"stage.scheduler={schedule!r}: allowed values are {', '.join(SCHEDULES)}")
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "linear":
        return min_ratio + (1.0 - min_ratio) * (1.0 - progress)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, stage, total_steps: int):
    """Lightning ``configure_optimizers`` dict: AdamW on trainable parameters + a per-step LambdaLR."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=float(stage.lr), weight_decay=float(stage.weight_decay), betas=tuple(stage.betas)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(
            step,
            warmup_steps=int(stage.warmup_steps),
            total_steps=total_steps,
            schedule=str(stage.scheduler),
            min_ratio=float(stage.min_lr_ratio),
        ),
    )
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
    }
