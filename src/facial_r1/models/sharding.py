"""Sharded parameters for the adapters: FSDP2 (``torch.distributed.fsdp.fully_shard``) and DeepSpeed ZeRO-3.

What sharded parameters change for a rollout engine:
- every sharded module all-gathers its parameters in its forward, a collective: all ranks must run the *same number*
  of forwards. Autoregressive decoding stops when a rank's completions are finished, which differs across ranks, so
  under sharding every rank keeps decoding (its finished rows emit padding) until all ranks are done -
  :func:`all_ranks_done`, the equivalent of Hugging Face's ``synced_gpus``;
- the frozen reference copy must be taken before sharding and sharded the same way;
- the export needs the full state dict: :func:`full_state_dict` gathers it (a collective), rank 0 loads it into a
  plain model.

DeepSpeed ZeRO-3 partitions parameters the same way (each module gathers its own in forward), so the same synced
decoding applies; its export gathers with ``deepspeed.zero.GatheredParameters``. FSDP1 (``FullyShardedDataParallel``)
needs an accelerator; FSDP2 also runs on CPU over gloo, which is how the tests exercise the FSDP path. The ZeRO-3
branch follows DeepSpeed's documented API but has not been run here (no GPU, DeepSpeed not installed).
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
    if is_zero3(model):
        import deepspeed

        rank0 = torch.distributed.get_rank() == 0
        with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
            return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()} if rank0 else {}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def is_zero3(model: torch.nn.Module) -> bool:
    """Parameters partitioned by DeepSpeed ZeRO-3 carry a ``ds_id``."""
    return any(hasattr(p, "ds_id") for p in model.parameters())


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return is_zero3(model) or any(isinstance(m, FSDPModule) for m in model.modules())
