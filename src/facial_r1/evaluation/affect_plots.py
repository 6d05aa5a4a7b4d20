"""Affect figures: valence/arousal scatter of prediction vs truth, per-AU intensity confusion matrices.

Drawn from prediction rows (``affect_metrics.affect_row`` columns) on bare Agg figures, like :mod:`.plots`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from facial_r1.affect import MAX_INTENSITY
from facial_r1.evaluation.plots import _fmt, _new_figure, _save

LEVELS = ("0", "A", "B", "C", "D", "E")  # tick labels of the 0..5 intensity axes


def plot_va_scatter(rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any], path: str | Path) -> Path:
    """Two panels (valence, arousal): predicted vs gold per sample with the identity line; invalid blocks are drawn
    at 0 in grey (as the metrics count them); CCC and RMSE in the titles."""
    scored = [r for r in rows if r.get("gold_va") is not None]
    fig = _new_figure(7.6, 3.8)
    axes = fig.subplots(1, 2)
    for k, (ax, dim) in enumerate(zip(axes, ("valence", "arousal"), strict=True)):
        valid = [(r["gold_va"][k], r["pred_va"][k]) for r in scored if r.get("pred_va") is not None]
        invalid = [r["gold_va"][k] for r in scored if r.get("pred_va") is None]
        ax.plot([-1, 1], [-1, 1], color="lightgrey", lw=1, zorder=0)
        if valid:
            ax.scatter(*zip(*valid, strict=True), s=9, alpha=0.6, color="tab:blue", label="prediction")
        if invalid:
            ax.scatter(
                invalid, [0.0] * len(invalid), s=9, alpha=0.6, color="grey", marker="x", label="invalid"
            )
        if invalid and valid:
            ax.legend(fontsize=7, loc="upper left")
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_aspect("equal")
        ax.set_xlabel(f"gold {dim}")
        ax.set_ylabel(f"predicted {dim}")
        ax.set_title(
            f"{dim}: CCC {_fmt(metrics.get(f'{dim}_ccc'))}, RMSE {_fmt(metrics.get(f'{dim}_rmse'))}",
            fontsize=9,
        )
        if not scored:
            ax.text(0, 0, "no V/A-annotated samples", ha="center", va="center")
    return _save(fig, path)


def intensity_confusion(rows: Sequence[Mapping[str, Any]], au: str) -> list[list[int]]:
    """Counts[gold level][predicted level] (0..5, 0 = absent / not stated) of one AU over intensity-coded rows."""
    counts = [[0] * (MAX_INTENSITY + 1) for _ in range(MAX_INTENSITY + 1)]
    for row in rows:
        gold = row.get("gold_intensity")
        if gold is None:
            continue
        counts[int(gold.get(au, 0))][int((row.get("pred_intensity") or {}).get(au, 0))] += 1
    return counts


def plot_intensity_confusion(
    rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any], path: str | Path
) -> Path:
    """One row-normalised 6x6 confusion matrix (gold level x predicted level) per AU of
    ``metrics["au_intensity_labels"]``, titled with the AU's ICC(3,1)."""
    aus = list(metrics.get("au_intensity_labels") or [])
    cols = min(4, max(len(aus), 1))
    nrows = max(1, math.ceil(len(aus) / cols))
    fig = _new_figure(2.4 * cols, 2.4 * nrows + 0.4)
    if not aus:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no intensity-coded samples", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)
    icc = metrics.get("au_intensity_icc_per_au") or {}
    for k, au in enumerate(aus):
        ax = fig.add_subplot(nrows, cols, k + 1)
        counts = intensity_confusion(rows, au)
        rates = [[c / max(sum(r), 1) for c in r] for r in counts]
        ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
        for i, row in enumerate(counts):
            for j, count in enumerate(row):
                if count:
                    color = "white" if rates[i][j] > 0.6 else "black"
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=6, color=color)
        ax.set_xticks(range(len(LEVELS)), LEVELS, fontsize=6)
        ax.set_yticks(range(len(LEVELS)), LEVELS, fontsize=6)
        ax.set_title(f"{au} (ICC {_fmt(icc.get(au))})", fontsize=8)
        if k % cols == 0:
            ax.set_ylabel("gold", fontsize=7)
        ax.set_xlabel("predicted", fontsize=7)
    fig.suptitle(
        f"AU intensity (mean ICC(3,1) {_fmt(metrics.get('au_intensity_icc'))}, "
        f"MAE {_fmt(metrics.get('au_intensity_mae'))})",
        fontsize=9,
    )
    return _save(fig, path)
