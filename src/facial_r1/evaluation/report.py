"""Write an evaluation to a run folder and log it to Weights & Biases.

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

TABLE_COLUMNS = (
    "id",
    "dataset",
    "gold_aus",
    "pred_aus",
    "gold_labels",
    "pred_label",
    "concluded_emotion",
    "format_ok",
    "rewards",
    "output",
)


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
    paths["metrics"].write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with paths["predictions"].open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    labels = list(label_set) if label_set is not None else list(metrics.get("emotion_classes") or [])
    plot_confusion_matrix(rows, labels, paths["confusion_matrix"])
    plot_per_au_f1(metrics, paths["per_au_f1"])
    if metrics.get("num_va_samples"):
        paths["va_scatter"] = plot_va_scatter(rows, metrics, run_dir / "va_scatter.png")
    if metrics.get("num_intensity_samples"):
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


def _wandb_run(logger: Any) -> Any | None:
    """The wandb run behind a Lightning ``WandbLogger``, a wandb run itself, or None for anything else."""
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb is a declared dependency
        return None
    run = getattr(logger, "experiment", logger) if type(logger).__name__ == "WandbLogger" else logger
    return run if isinstance(run, wandb.Run) else None


def log_to_wandb(
    logger: Any,
    metrics: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    *,
    prefix: str = "val",
    images: Mapping[str, str | Path] | None = None,
    step: int | None = None,
    max_rows: int = 200,
) -> bool:
    """Log scalars, a predictions table and figures to W&B; a no-op (returns False) for any other logger.

    Args:
        logger: a Lightning ``WandbLogger`` or a ``wandb`` run; anything else (CSV logger, None, a non-zero rank's
            dummy experiment) is ignored.
        images: ``{name: png path}``, e.g. the figures of :func:`write_evaluation`.
        step: the global step to log at (None: W&B's own counter).
        max_rows: rows of the predictions table (the first ones), to keep runs small.
    """
    run = _wandb_run(logger)
    if run is None:
        return False
    import wandb

    payload: dict[str, Any] = dict(scalar_metrics(metrics, prefix))
    table = wandb.Table(columns=list(TABLE_COLUMNS))
    for row in rows[:max_rows]:
        table.add_data(*[_cell(row.get(c)) for c in TABLE_COLUMNS])
    payload[f"{prefix}/predictions"] = table
    for name, path in (images or {}).items():
        if Path(path).suffix == ".png" and Path(path).exists():
            payload[f"{prefix}/{name}"] = wandb.Image(str(path))
    run.log(payload, step=step)
    return True


def _cell(value: Any) -> Any:
    """Tables want scalars or strings: lists and dicts become JSON text."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value
