"""Evaluation figures as PNG files: emotion confusion matrix and per-AU F1 bars.

Figures are drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas, so nothing touches pyplot's global
state or the process-wide backend (safe inside training loops and without a display).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

INVALID = "(invalid)"  # column of answers that are no label of the set


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def confusion_counts(rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[list[int]]:
    """Counts[gold][pred] over rows with a gold label in ``labels``; the last column counts invalid answers."""
    index = {label: k for k, label in enumerate(labels)}
    counts = [[0] * (len(labels) + 1) for _ in labels]
    for row in rows:
        gold = (row.get("gold_labels") or [None])[0]
        if gold in index:
            counts[index[gold]][index.get(row.get("pred_label"), len(labels))] += 1
    return counts


def plot_confusion_matrix(rows: Sequence[Mapping[str, Any]], labels: Sequence[str], path: str | Path) -> Path:
    """Row-normalised confusion matrix (gold rows x predicted columns, plus an invalid-answer column) with counts."""
    labels = list(labels)
    counts = confusion_counts(rows, labels)
    fig = _new_figure(1.2 + 0.75 * (len(labels) + 1), 1.0 + 0.65 * max(len(labels), 1))
    ax = fig.add_subplot()
    if not labels or not any(map(sum, counts)):
        ax.text(0.5, 0.5, "no emotion-labelled samples", ha="center", va="center")
        ax.set_axis_off()
    else:
        rates = [[c / max(sum(r), 1) for c in r] for r in counts]
        image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
        for i, row in enumerate(counts):
            for j, count in enumerate(row):
                color = "white" if rates[i][j] > 0.6 else "black"
                ax.text(
                    j, i, f"{rates[i][j]:.2f}\n({count})", ha="center", va="center", fontsize=7, color=color
                )
        ax.set_xticks(range(len(labels) + 1), [*labels, INVALID], rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        fig.colorbar(image, ax=ax, fraction=0.046, label="share of gold row")
    ax.set_title("Emotion confusion matrix")
    return _save(fig, path)


def plot_per_au_f1(metrics: Mapping[str, Any], path: str | Path) -> Path:
    """Bar per AU of ``metrics["au_f1_per_au"]`` (undefined AUs shown as "n/a"), macro / micro F1 in the title."""
    per_au = dict(metrics.get("au_f1_per_au") or {})
    support = dict(metrics.get("au_support") or {})
    fig = _new_figure(max(4.0, 0.55 * len(per_au) + 1.5), 3.6)
    ax = fig.add_subplot()
    if not per_au:
        ax.text(0.5, 0.5, "no AU-annotated samples", ha="center", va="center")
        ax.set_axis_off()
    else:
        names = list(per_au)
        values = [v or 0.0 for v in per_au.values()]
        bars = ax.bar(range(len(names)), values, color="tab:blue")
        for k, value in enumerate(per_au.values()):
            label = "n/a" if value is None else f"{value:.2f}"
            if value is None:
                bars[k].set_color("lightgrey")
            ax.text(k, (value or 0.0) + 0.02, label, ha="center", va="bottom", fontsize=7)
        ticks = [f"{n}\n(n={support[n]})" if n in support else n for n in names]
        ax.set_xticks(range(len(names)), ticks, fontsize=7)
        ax.set_ylim(0.0, 1.1)
        ax.set_ylabel("F1")
    ax.set_title(
        f"Per-AU F1 (macro {_fmt(metrics.get('au_f1_macro'))}, micro {_fmt(metrics.get('au_f1_micro'))})"
    )
    return _save(fig, path)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
