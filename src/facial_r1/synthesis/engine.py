"""The synthesis loop for one batch: generate -> check (:mod:`.checks`) -> reflect on the failures -> generate again.

Attempt 1 sends every sample's ground-truth-conditioned prompt (``PromptTemplate.synthesis_text``). Each later attempt
sends only the samples still failing, with their last response and its problems (``reflection_text``), until all
pass or ``1 + max_retries`` attempts are spent. Every attempt is one batched ``adapter.generate`` call, so a batch of
B samples costs at most ``1 + max_retries`` generation calls whatever its failure pattern.

With ``num_samples = K > 1`` each attempt draws K completions per sample (sampling must be on); the first that passes
is kept, otherwise the one with the fewest problems becomes the "previous response" of the reflection prompt.
``retry_params`` (optional) draws the reflection attempts differently from the first, e.g. a greedy first answer and
K sampled reflections: greedy decoding repeats the same mistake on a face whose reflection prompt barely changes,
while K samples give the hard faces - the ones a round's data lacks most - several independent chances.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from PIL import Image

from facial_r1.data.prompts import PromptTemplate
from facial_r1.models.adapter import SamplingParams
from facial_r1.synthesis.checks import CheckConfig, CheckResult, triple_check

Checker = Callable[[str, dict[str, Any]], CheckResult]


@dataclass
class Outcome:
    """The fate of one sample: its last (or accepted) response, that response's check, how many attempts it took."""

    record: dict[str, Any]
    output: str
    check: CheckResult
    attempts: int

    @property
    def accepted(self) -> bool:
        return self.check.passed


@dataclass
class GenerationStats:
    """Work done by the generator, for the manifest's throughput numbers."""

    calls: int = 0
    prompts: int = 0
    completions: int = 0
    tokens: int = 0
    seconds: float = 0.0
    prompts_per_attempt: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "prompts": self.prompts,
            "completions": self.completions,
            "tokens": self.tokens,
            "seconds": self.seconds,
            "tokens_per_s": self.tokens / self.seconds if self.seconds else None,
            "prompts_per_attempt": {str(k): v for k, v in sorted(self.prompts_per_attempt.items())},
        }


def make_checker(config: CheckConfig) -> Checker:
    return lambda text, record: triple_check(text, record, config)


@torch.no_grad()
def synthesize_batch(
    adapter: Any,
    records: Sequence[dict[str, Any]],
    images: Sequence[Image.Image],
    prompt: PromptTemplate,
    checker: Checker,
    params: SamplingParams,
    max_retries: int = 5,
    stats: GenerationStats | None = None,
    engine: Any | None = None,
    retry_params: SamplingParams | None = None,
) -> list[Outcome]:
    """Synthesise one batch (module docstring); returns one :class:`Outcome` per record, in order. ``engine``: the
    rollout engine that samples (``rollout`` config group); None = the adapter's own ``generate``. ``retry_params``:
    how the reflection attempts sample; None = as ``params``."""
    if len(records) != len(images):
        raise ValueError(f"{len(records)} records but {len(images)} images")
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries}")
    stats = stats if stats is not None else GenerationStats()
    outputs: list[str] = [""] * len(records)
    checks: list[CheckResult | None] = [None] * len(records)
    attempts = [0] * len(records)
    pending = list(range(len(records)))
    for attempt in range(1, max_retries + 2):
        if not pending:
            break
        texts = [
            prompt.synthesis_text(records[i])
            if attempt == 1
            else prompt.reflection_text(records[i], outputs[i], checks[i].problems)  # type: ignore[union-attr]
            for i in pending
        ]
        sampling = _attempt_params(retry_params if attempt > 1 and retry_params else params, attempt)
        groups = _generate(adapter, [images[i] for i in pending], texts, sampling, stats, engine)
        stats.prompts_per_attempt[attempt] = stats.prompts_per_attempt.get(attempt, 0) + len(pending)
        still_failing = []
        for i, candidates in zip(pending, groups, strict=True):
            text, check = _pick(candidates, records[i], checker)
            outputs[i], checks[i], attempts[i] = text, check, attempt
            if not check.passed:
                still_failing.append(i)
        pending = still_failing
    return [
        Outcome(record, outputs[i], checks[i], attempts[i])  # type: ignore[arg-type]
        for i, record in enumerate(records)
    ]


def _attempt_params(params: SamplingParams, attempt: int) -> SamplingParams:
    """A fresh seed per attempt: the same seed would redraw the same tokens for an unchanged prefix."""
    return params if params.seed is None else replace(params, seed=params.seed + 7919 * (attempt - 1))


def _generate(
    adapter: Any,
    images: list[Image.Image],
    texts: list[str],
    params: SamplingParams,
    stats: GenerationStats,
    engine: Any | None = None,
) -> list[list[str]]:
    """One batched generation; completions grouped per prompt (K each)."""
    started = time.perf_counter()
    if (
        engine is None or getattr(engine, "policy", None) is adapter
    ):  # the hf engine = the adapter's own decode loop
        rollout = adapter.generate(adapter.encode_prompts(images, texts), params)
    else:
        from facial_r1.rollout.types import rollout_prompts

        rollout = engine.generate(rollout_prompts(adapter, images, texts), params)
    stats.seconds += time.perf_counter() - started
    stats.calls += 1
    stats.prompts += len(texts)
    stats.completions += len(rollout.texts)
    stats.tokens += int(getattr(rollout, "num_tokens", 0) or 0)
    groups: list[list[str]] = [[] for _ in texts]
    index = rollout.prompt_index.tolist() if hasattr(rollout.prompt_index, "tolist") else rollout.prompt_index
    for j, text in zip(index, rollout.texts, strict=True):
        groups[int(j)].append(text)
    if any(not g for g in groups):
        raise RuntimeError("the adapter returned no completion for some prompts")
    return groups


def _pick(candidates: list[str], record: dict[str, Any], checker: Checker) -> tuple[str, CheckResult]:
    """The first passing candidate, else the one with the fewest problems (the first on ties)."""
    best: tuple[str, CheckResult] | None = None
    for text in candidates:
        check = checker(text, record)
        if check.passed:
            return text, check
        if best is None or len(check.problems) < len(best[1].problems):
            best = (text, check)
    assert best is not None
    return best
