"""Evaluation: metrics over model outputs, figures, and writing / logging a report."""

from facial_r1.evaluation.metrics import compute_metrics, resolve_au_subset
from facial_r1.evaluation.plots import plot_confusion_matrix, plot_per_au_f1
from facial_r1.evaluation.report import scalar_metrics, write_evaluation

__all__ = [
    "compute_metrics",
    "plot_confusion_matrix",
    "plot_per_au_f1",
    "resolve_au_subset",
    "scalar_metrics",
    "write_evaluation",
]
