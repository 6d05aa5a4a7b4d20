"""What a rollout engine takes: raw chat text and an image, so an engine that does its own encoding (vLLM) fits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from PIL import Image

from facial_r1.models.adapter import Rollout, SamplingParams


@dataclass(frozen=True)
class RolloutPrompt:
    """One prompt: the chat-formatted text (exactly what the model family's processor tokenises, with the
    family's single image placeholder where the image goes) and the image."""

    chat_text: str
    image: Image.Image


@runtime_checkable
class RolloutEngine(Protocol):
    """What samples completions for GRPO, evaluation and synthesis (``rollout`` config group).

    ``generate`` takes raw prompts (chat text + image) and returns a :class:`~facial_r1.models.adapter.Rollout`
    whose ``logprobs`` are the sampling-time log-probs under the temperature-scaled policy; ``sync`` is called after
    each rollout batch's update (and before the first rollout of a resumed run) so the engine samples from the current
    policy; ``sleep`` is called when a training step's rollouts are done, so an engine that holds accelerator memory
    can free it for the update (the ``sync`` after it wakes the engine). ``encoded`` is the same prompts encoded by the policy, when the caller has them (an engine
    that samples with the policy's own module reuses them; others ignore it).

    ``exact_policy_logprobs`` (optional, default False): True when the engine's log-probs are computed by the
    trainer's own module and kernels, so GRPO's ``rollout_correction=auto`` needs no importance sampling correction.
    """

    def generate(self, prompts: list[RolloutPrompt], params: SamplingParams, encoded=None) -> Rollout: ...

    def sync(self, policy) -> None: ...

    def sleep(self) -> None: ...


def rollout_prompts(policy, images: list[Image.Image], texts: list[str]) -> list[RolloutPrompt]:
    """User texts + images -> the policy family's chat-formatted prompts, as every engine takes them."""
    return [RolloutPrompt(policy.chat_text(text), image) for text, image in zip(texts, images, strict=True)]
