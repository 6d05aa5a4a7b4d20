"""Batched greedy generation over records: what evaluation, periodic validation and synthesis share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from facial_r1.data.images import load_image
from facial_r1.models.adapter import SamplingParams


@torch.no_grad()
def generate_outputs(
    adapter,
    records: Sequence[dict[str, Any]],
    prompt_text: Callable[[dict[str, Any]], str],
    *,
    batch_size: int = 64,
    params: SamplingParams | None = None,
    progress: bool = True,
    desc: str = "generate",
    engine=None,
) -> list[str]:
    """One completion per record (greedy unless ``params`` say otherwise), in record order.

    ``prompt_text(record)`` builds the user text (e.g. ``PromptTemplate.user_text``); the adapter adds the image.
    ``engine`` samples (``rollout`` config group; default: the ``hf`` engine on the adapter's module). The model is
    put in eval mode for the call and restored afterwards.
    """
    from facial_r1.rollout.hf import HFEngine
    from facial_r1.rollout.types import rollout_prompts

    params = params or SamplingParams.greedy()
    engine = engine or HFEngine(adapter)
    model = adapter.model
    was_training = model.training
    model.eval()
    outputs: list[str] = []
    try:
        bar = tqdm(total=len(records), desc=desc, disable=not progress, leave=False)
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            prompts = rollout_prompts(
                adapter, [load_image(r) for r in chunk], [prompt_text(r) for r in chunk]
            )
            outputs.extend(engine.generate(prompts, params).texts)
            bar.update(len(chunk))
        bar.close()
    finally:
        model.train(was_training)
    return outputs
