"""The model adapter protocol: the only way stages, rewards and evaluation touch a model.

A stage works with records, texts, PIL images and the small dataclasses below. Everything family-specific
(flattened ``pixel_values``, ``image_grid_thw``, M-RoPE position ids, chat templates, vision tokens) stays behind the
adapter; ``PromptBatch.inputs`` is opaque to callers.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from PIL import Image


@dataclass
class SamplingParams:
    """How completions are drawn. ``num_samples`` is G: completions per prompt sharing one prefill."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    do_sample: bool = True
    num_samples: int = 1
    seed: int | None = None
    prompt_seeds: tuple[int, ...] | None = None  # one per prompt; wins over ``seed``

    def seeds_for(self, num_prompts: int) -> list[int] | None:
        """One seed per prompt (prompt b's G samples draw only from it), or None for the global RNG.

        ``prompt_seeds`` names them (GRPO seeds each prompt by its global position, so a prompt samples the same
        completions whichever rank or batch it lands in); otherwise ``seed`` + b.
        """
        if self.prompt_seeds is not None:
            if len(self.prompt_seeds) != num_prompts:
                raise ValueError(f"{len(self.prompt_seeds)} prompt seeds for {num_prompts} prompts")
            return list(self.prompt_seeds)
        return None if self.seed is None else [self.seed + b for b in range(num_prompts)]

    @classmethod
    def greedy(cls, max_new_tokens: int = 256) -> SamplingParams:
        return cls(max_new_tokens=max_new_tokens, do_sample=False, temperature=1.0, num_samples=1)


@dataclass
class PromptBatch:
    """B encoded prompts (image + text), left-padded. ``inputs`` is family-specific and opaque to stages."""

    inputs: dict[str, torch.Tensor]
    num_prompts: int

    def to(self, device: torch.device | str) -> PromptBatch:
        return PromptBatch({k: v.to(device) for k, v in self.inputs.items()}, self.num_prompts)


@dataclass
class Rollout:
    """N = B x G sampled completions, grouped by ``prompt_index`` (the per-prompt group id)."""

    prompt_index: torch.Tensor  # [N] long, which prompt of the batch each completion continues
    completion_ids: torch.Tensor  # [N, T] long, pad after the stop token
    completion_mask: torch.Tensor  # [N, T] float, 1 for tokens up to and including the first stop token
    logprobs: torch.Tensor  # [N, T] float, sampling-time log-probs under the temperature-scaled policy
    truncated: torch.Tensor  # [N] bool, no stop token within max_new_tokens
    texts: list[str]  # decoded completions (special tokens removed)

    @property
    def num_tokens(self) -> int:
        return int(self.completion_mask.sum().item())


@dataclass
class TokenizedSFTBatch:
    """Prompt + target sequences for teacher-forced training; ``labels`` is -100 outside the assistant target."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor  # [B, L]

    def to(self, device: torch.device | str) -> TokenizedSFTBatch:
        return TokenizedSFTBatch({k: v.to(device) for k, v in self.inputs.items()}, self.labels.to(device))


@runtime_checkable
class VLMAdapter(Protocol):
    """What a model family must provide. :class:`facial_r1.models.policy.Policy` implements it over a model family (:mod:`facial_r1.models.qwen2_5_vl`)."""

    model: torch.nn.Module
    # Called at each decoding step with "this rank is finished", returns "every rank is finished" (set under
    # parameter sharding, where every forward is a collective); None = stop when this rank is finished.
    decode_sync: Callable[[bool], bool] | None

    def encode_prompts(self, images: list[Image.Image], texts: list[str]) -> PromptBatch: ...

    def encode_sft(
        self, images: list[Image.Image], texts: list[str], targets: list[str]
    ) -> TokenizedSFTBatch: ...

    def sft_loss(self, batch: TokenizedSFTBatch) -> tuple[torch.Tensor, int]: ...

    def generate(
        self, batch: PromptBatch, params: SamplingParams, model: torch.nn.Module | None = None
    ) -> Rollout: ...

    def completion_logprobs(
        self,
        batch: PromptBatch,
        completion_ids: torch.Tensor,
        prompt_index: torch.Tensor,
        *,
        temperature: float = 1.0,
        model: torch.nn.Module | None = None,
        with_entropy: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def reference(self) -> AbstractContextManager[torch.nn.Module]: ...

    def init_reference(self) -> None: ...

    def shard(self, mesh) -> None: ...  # FSDP2 over ``mesh``; see facial_r1.models.sharding

    def consolidate(self) -> None: ...  # after sharded training: full weights in a plain model on rank 0

    def export(self, path: str | Path, extra_files: dict[str, Any] | None = None) -> Path: ...
