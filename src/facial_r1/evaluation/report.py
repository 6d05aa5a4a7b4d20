"""Write an evaluation to a run folder (logging it to W&B / Trackio: :func:`facial_r1.tracking.media.log_evaluation`).

Folder layout (``write_evaluation``): ``metrics.json``, ``predictions.jsonl`` (one row per sample),
``confusion_matrix.png``, ``per_au_f1.png``; and, only when the evaluated samples carry that annotation,
``va_scatter.png`` (valence/arousal) and ``au_intensity_confusion.png`` (AU intensity).
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from facial_r1.evaluation.affect_plots import plot_intensity_confusion, plot_va_scatter
from facial_r1.evaluation.plots import plot_confusion_matrix, plot_per_au_f1
from facial_r1.files import write_json_atomic, write_text_atomic


def write_evaluation(
    run_dir: str | Path,
    metrics: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    label_set: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write metrics, predictions and the two figures under ``run_dir``; returns ``{name: path}``.

    ``label_set`` orders the confusion matrix; None uses ``metrics["emotion_classes"]``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": run_dir / "metrics.json",
        "predictions": run_dir / "predictions.jsonl",
        "confusion_matrix": run_dir / "confusion_matrix.png",
        "per_au_f1": run_dir / "per_au_f1.png",
    }
    write_json_atomic(paths["metrics"], metrics)
    write_text_atomic(
        paths["predictions"], "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    )
    labels = list(label_set) if label_set is not None else list(metrics.get("emotion_classes") or [])
    plot_confusion_matrix(rows, labels, paths["confusion_matrix"])
    plot_per_au_f1(metrics, paths["per_au_f1"])
    # Only where the model was measured on them: a plain prompt's all-missing V/A and levels draw nothing.
    if metrics.get("num_va_samples") and metrics.get("valence_rmse") is not None:
        paths["va_scatter"] = plot_va_scatter(rows, metrics, run_dir / "va_scatter.png")
    if metrics.get("num_intensity_samples") and metrics.get("au_intensity_mae") is not None:
        paths["au_intensity_confusion"] = plot_intensity_confusion(
            rows, metrics, run_dir / "au_intensity_confusion.png"
        )
    return paths


def scalar_metrics(metrics: Mapping[str, Any], prefix: str = "val") -> dict[str, float]:
    """Flat ``{prefix}/{key}`` scalars of a metrics dict; nested dicts become ``{prefix}/{key}/{sub}``; None and
    non-numbers are left out."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            for sub, inner in value.items():
                if _is_number(inner):
                    flat[f"{prefix}/{key}/{sub}"] = float(inner)
        elif _is_number(value):
            flat[f"{prefix}/{key}"] = float(value)
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real)
