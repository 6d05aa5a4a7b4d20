"""Generate on records and score the outputs: the one evaluation path of evaluate.py, validation and final eval."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from facial_r1.evaluation.affect_metrics import AFFECT_HEADLINE_KEYS
from facial_r1.evaluation.generate import generate_outputs
from facial_r1.evaluation.metrics import HEADLINE_KEYS, compute_metrics
from facial_r1.models.adapter import SamplingParams


def evaluate_records(
    adapter,
    records: Sequence[dict[str, Any]],
    prompt,
    *,
    reward=None,
    au_subset=None,
    batch_size: int = 64,
    max_new_tokens: int = 128,
    progress: bool = True,
    desc: str = "eval",
    engine=None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Greedy outputs for ``records`` (from ``engine``, default ``hf``) -> (metrics dict, per-sample prediction rows)."""
    outputs = generate_outputs(
        adapter,
        records,
        prompt.user_text,
        batch_size=batch_size,
        params=SamplingParams.greedy(max_new_tokens),
        progress=progress,
        desc=desc,
        engine=engine,
    )
    return compute_metrics(list(records), outputs, au_subset=au_subset, reward=reward)


def headline_metrics(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    """The headline numbers, namespaced (``val/emotion_acc``), skipping those undefined for this data (None); the
    affect ones (``val/valence_ccc``, ...) only show for data with that annotation.

    (``report.scalar_metrics`` flattens *every* number, nested ones included, for the W&B summary.)
    """
    keys = (*HEADLINE_KEYS, *AFFECT_HEADLINE_KEYS)
    return {f"{prefix}/{k}": float(metrics[k]) for k in keys if metrics.get(k) is not None}
