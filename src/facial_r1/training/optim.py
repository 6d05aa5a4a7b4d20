"""The stage's optimizer and learning-rate schedule, both built from config (``stage.optimizer``,
``stage.lr_scheduler``: Hydra ``_partial_`` objects) and stepped once per optimizer step.

Real checkpoints are held in bf16 (half the memory of fp32). A bf16 weight has 8 significant bits: an update smaller
than ~1/256 of the weight rounds away, so a plain AdamW step at lr 1e-6 leaves almost every bf16 weight unchanged.
:class:`MasterWeights` keeps an fp32 master copy of each low-precision trainable tensor (in the optimizer state, so
checkpoints carry it) and runs the update there; the module's bf16 tensor is the master rounded to bf16.
:func:`build_optimizer` gives any ``torch.optim`` class this behaviour when the trainable weights are bf16 / fp16,
so ``optimizer=sgd`` on a bf16 checkpoint learns like ``optimizer=adamw`` does.

Schedules are transformers' (:func:`transformers.get_scheduler`); :func:`warmup_schedule` maps the three names of
``stage.scheduler`` onto them, with ``stage.min_lr_ratio`` as the floor of the decay.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch

log = logging.getLogger(__name__)

SCHEDULES = ("cosine", "linear", "constant")
LOW_PRECISION = (torch.bfloat16, torch.float16)


class MasterWeights:
    """Mixin for a ``torch.optim.Optimizer`` class: the update runs on fp32 master copies of low-precision parameters
    (fp32 parameters run as usual). Use as ``class MasterWeightSGD(MasterWeights, torch.optim.SGD)``, or through
    :func:`with_master_weights`.

    The parameter groups hold the module's own parameters, so Lightning's gradient clipping, LR schedulers and
    checkpointing see the usual objects. During :meth:`step` each low-precision parameter is replaced in its group
    by its fp32 master (created from it on the first step, kept as ``state[p]["master"]``) carrying the gradient in
    fp32, so the optimizer's state (AdamW's moments, SGD's momentum) is fp32 too; afterwards the group gets the
    parameter back and the parameter the master rounded to its dtype. The tensors themselves are swapped, never
    their ``.data``: a sharded parameter (FSDP2's DTensor) keeps its dtype through a ``.data`` swap and the update
    would fail on mixed dtypes. Memory: +4 bytes per low-precision trainable parameter (the master) and fp32 state -
    what a mixed-precision run with fp32 weights spends, without holding fp32 weights.
    """

    def _low_precision(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.dtype in LOW_PRECISION]

    @contextlib.contextmanager
    def _masters_in_groups(self, masters: dict[torch.Tensor, torch.Tensor]) -> Iterator[None]:
        """Each low-precision parameter ``p`` replaced by ``masters[p]`` in the groups, its state moved along."""
        swapped = []
        for group in self.param_groups:
            for i, p in enumerate(group["params"]):
                if p in masters:
                    master = masters[p]
                    group["params"][i] = master
                    if p in self.state:
                        self.state[master] = self.state.pop(p)
                    swapped.append((group, i, p, master))
        try:
            yield
        finally:
            for group, i, p, master in swapped:
                group["params"][i] = p
                if master in self.state:
                    self.state[p] = self.state.pop(master)

    @torch.no_grad()
    def step(self, closure=None):
        masters = {}
        for p in self._low_precision():
            # stored after the step: AdamW initialises its moments only for an empty state
            master = self.state[p].pop("master", None) if p in self.state else None
            master = p.detach().float() if master is None else master
            master.grad = None if p.grad is None else p.grad.detach().float()
            masters[p] = master
        with self._masters_in_groups(masters):
            loss = super().step(closure)
        for p, master in masters.items():
            master.grad = None
            self.state[p]["master"] = master
            p.copy_(master)  # round to the module's dtype
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        # torch casts loaded floating-point state to each parameter's dtype: with fp32 stand-ins in the groups, the
        # saved masters and moments stay fp32 instead of being rounded to bf16 on resume.
        stand_ins = {p: p.detach().float() for p in self._low_precision()}
        with self._masters_in_groups(stand_ins):
            super().load_state_dict(state_dict)
        # torch rebuilds the group dicts around the same "params" lists, so the restore above reached them; make
        # sure no stand-in is left behind should a torch version copy those lists
        real = {id(v): k for k, v in stand_ins.items()}
        for group in self.param_groups:
            group["params"] = [real.get(id(t), t) for t in group["params"]]
        for p, stand_in in stand_ins.items():
            if stand_in in self.state:
                self.state[p] = self.state.pop(stand_in)


class MasterWeightAdamW(MasterWeights, torch.optim.AdamW):
    """AdamW on fp32 master copies of bf16 / fp16 parameters (what ``optimizer=adamw`` builds for them)."""


_MASTER_CLASSES: dict[type, type] = {torch.optim.AdamW: MasterWeightAdamW}


def with_master_weights(cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """``cls`` with :class:`MasterWeights` mixed in (one class per optimizer class; ``cls`` itself if it has it)."""
    if issubclass(cls, MasterWeights):
        return cls
    if cls not in _MASTER_CLASSES:
        _MASTER_CLASSES[cls] = type(
            f"MasterWeight{cls.__name__}", (MasterWeights, cls), {"__module__": __name__}
        )
    return _MASTER_CLASSES[cls]


def _optimizer_class(factory: Callable) -> type | None:
    """The optimizer class ``factory`` builds when it is one (``torch.optim.SGD``) or a partial of one."""
    func = factory.func if isinstance(factory, functools.partial) else factory
    return func if isinstance(func, type) and issubclass(func, torch.optim.Optimizer) else None


def build_optimizer(params: list[torch.nn.Parameter], factory: Callable[..., torch.optim.Optimizer]):
    """``factory(params)`` (e.g. the ``stage.optimizer`` partial); with master weights when any parameter is bf16 /
    fp16 and ``factory`` is an optimizer class (or a partial of one). Any other callable is called as it is and
    warned about if it updates low-precision weights in place."""
    low_precision = any(p.dtype in LOW_PRECISION for p in params)
    cls = _optimizer_class(factory)
    if low_precision and cls is not None:
        master_cls = with_master_weights(cls)
        if isinstance(factory, functools.partial):
            factory = functools.partial(master_cls, *factory.args, **factory.keywords)
        else:
            factory = master_cls
    optimizer = factory(params)
    if low_precision and not isinstance(optimizer, MasterWeights):
        log.warning(
            "stage.optimizer: %s updates bf16/fp16 weights in place, without fp32 master copies: updates below "
            "~1/256 of a weight round away. Point stage.optimizer._target_ at a torch.optim.Optimizer class "
            "(master copies are then added) or load the model in float32 (model.dtype=float32).",
            type(optimizer).__name__,
        )
    return optimizer


def warmup_schedule(
    optimizer: torch.optim.Optimizer,
    *,
    name: str,
    num_warmup_steps: int,
    num_training_steps: int,
    min_lr_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``num_warmup_steps`` (factor ``step / num_warmup_steps``, transformers' convention: the
    first step runs at 0), then ``name`` until ``num_training_steps``:

    - ``cosine``: cosine decay to the floor ``min_lr_ratio`` (transformers' ``cosine_with_min_lr``);
    - ``linear``: linear decay to 0 (``linear``), or to a floor ``min_lr_ratio > 0`` (``warmup_stable_decay`` with no
      stable phase; its warmup starts at the floor instead of 0);
    - ``constant``: the base rate (``constant_with_warmup``; ``min_lr_ratio`` unused).

    Any other transformers schedule: set ``stage.lr_scheduler._target_=transformers.get_scheduler`` with its own
    arguments (it is called with ``optimizer=``).
    """
    from transformers import get_scheduler

    if name not in SCHEDULES:
        raise ValueError(f"stage.scheduler={name!r}: allowed values are {', '.join(SCHEDULES)}")
    warmup, total, floor = int(num_warmup_steps), int(num_training_steps), float(min_lr_ratio)
    if name == "constant":
        return get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=warmup)
    if name == "cosine":
        return get_scheduler(
            "cosine_with_min_lr", optimizer, warmup, total, scheduler_specific_kwargs={"min_lr_rate": floor}
        )
    if floor == 0.0:
        return get_scheduler("linear", optimizer, warmup, total)
    return get_scheduler(
        "warmup_stable_decay",
        optimizer,
        warmup,
        total,
        scheduler_specific_kwargs={
            "num_decay_steps": max(0, total - warmup),
            "decay_type": "linear",
            "min_lr_ratio": floor,
        },
    )


def configure_optimizers(
    model: torch.nn.Module,
    optimizer: Callable[..., torch.optim.Optimizer],
    lr_scheduler: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Lightning ``configure_optimizers`` dict: ``optimizer`` on the trainable parameters of ``model`` and
    ``lr_scheduler(optimizer=...)`` stepped once per optimizer step (none: the base rate throughout)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(params, optimizer)
    if lr_scheduler is None:
        return {"optimizer": opt}
    scheduler = lr_scheduler(optimizer=opt)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}
