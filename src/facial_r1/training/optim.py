"""AdamW with linear warmup then cosine / linear / constant decay, stepped per optimizer step.

Real checkpoints are held in bf16 (half the memory of fp32). A bf16 weight has 8 significant bits: an update smaller
than ~1/256 of the weight rounds away, so a plain AdamW step at lr 1e-6 leaves almost every bf16 weight unchanged.
:class:`MasterWeightAdamW` keeps an fp32 master copy of each low-precision trainable tensor (in the optimizer state,
so checkpoints carry it) and runs the update there; the module's bf16 tensor is the master rounded to bf16.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

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


class MasterWeightAdamW(torch.optim.AdamW):
    """AdamW whose update runs on fp32 master copies of low-precision parameters (fp32 parameters run as usual).

    The parameter groups hold the module's own parameters, so Lightning's gradient clipping, LR schedulers and
    checkpointing see the usual objects. During :meth:`step` (and :meth:`load_state_dict`) each low-precision
    parameter's data is swapped for its fp32 master, so AdamW's moments are fp32 too; afterwards the parameter gets
    the master rounded back. Memory: +4 bytes per low-precision trainable parameter (the master), and the moments
    are fp32 (8 bytes) - what a mixed-precision run with fp32 weights spends, without holding fp32 weights.
    """

    def _low_precision(self) -> list[torch.Tensor]:
        return [
            p
            for group in self.param_groups
            for p in group["params"]
            if p.dtype in (torch.bfloat16, torch.float16)
        ]

    @contextlib.contextmanager
    def _masters_swapped_in(self) -> Iterator[None]:
        swapped = []
        for p in self._low_precision():
            # (created here, stored after the step: AdamW initialises its moments only for an empty state)
            master = self.state[p].get("master")
            swapped.append((p, p.data, p.grad))
            p.data = p.detach().float() if master is None else master
            p.grad = None if p.grad is None else p.grad.float()
        try:
            yield
        finally:
            for p, data, grad in swapped:
                self.state[p]["master"] = p.data
                data.copy_(p.data)  # round to the module's dtype
                p.data, p.grad = data, grad

    @torch.no_grad()
    def step(self, closure=None):
        with self._masters_swapped_in():
            return super().step(closure)

    def load_state_dict(self, state_dict: dict) -> None:
        # torch casts loaded floating-point state to each parameter's dtype: with fp32 data in place, the saved
        # masters and moments stay fp32 instead of being rounded to bf16 on resume.
        saved = [(p, p.data) for p in self._low_precision()]
        for p, data in saved:
            p.data = data.float()
        try:
            super().load_state_dict(state_dict)
        finally:
            for p, data in saved:
                p.data = data


def make_optimizer(params: list[torch.nn.Parameter], stage) -> torch.optim.Optimizer:
    """AdamW; :class:`MasterWeightAdamW` when any trainable parameter is held in bf16 / fp16 (real checkpoints)."""
    kwargs = {"lr": float(stage.lr), "weight_decay": float(stage.weight_decay), "betas": tuple(stage.betas)}
    low_precision = any(p.dtype in (torch.bfloat16, torch.float16) for p in params)
    return MasterWeightAdamW(params, **kwargs) if low_precision else torch.optim.AdamW(params, **kwargs)


def build_optimizer(model: torch.nn.Module, stage, total_steps: int):
    """Lightning ``configure_optimizers`` dict: AdamW on trainable parameters + a per-step LambdaLR."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, stage)
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
