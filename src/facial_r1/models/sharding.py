"""Fully sharded data parallel (FSDP2, ``torch.distributed.fsdp.fully_shard``) for the adapters.

What sharded parameters change for a rollout engine:
- every sharded module all-gathers its parameters in its forward, a collective: all ranks must run the *same number*
  of forwards. Autoregressive decoding stops when a rank's completions are finished, which differs across ranks, so
  under sharding every rank keeps decoding (its finished rows emit padding) until all ranks are done -
  :func:`all_ranks_done`, the equivalent of Hugging Face's ``synced_gpus``;
- the frozen reference copy must be taken before sharding and sharded the same way;
- the export needs the full state dict: :func:`full_state_dict` gathers it (a collective), rank 0 loads it into a
  plain model.

FSDP1 (``FullyShardedDataParallel``) needs an accelerator; FSDP2 also runs on CPU over gloo, which is how the tests
exercise this path.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def fully_shard_model(model: torch.nn.Module, units: Iterable[torch.nn.Module], mesh) -> None:
    """Shard each unit (a decoder layer, a vision block) as its own FSDP group, then the rest with the root.

    One group per layer is what bounds memory: only one layer's full parameters exist at a time in forward.
    """
    from torch.distributed.fsdp import fully_shard

    for unit in units:
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)


def all_ranks_done(done: bool) -> bool:
    """True when every rank says ``done``: one all-reduce (min) of a flag per decoding step."""
    if not is_distributed():
        return done
    backend = torch.distributed.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    flag = torch.tensor([1 if done else 0], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item())


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded state dict on CPU, on rank 0 (other ranks get an empty dict). Every rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())
