"""95 % bootstrap intervals of the headline metrics, resampled over samples or over subjects.

Every headline number is a ratio of sums of per-sample counts: accuracy = correct / labelled, UAR = the mean over
classes of correct_c / n_c, per-AU F1 = 2TP / (2TP + FP + FN), micro F1 the same over pooled counts, the format,
consistency and hallucination rates and mean ROUGE-L likewise. So each sample becomes one row of additive counts
(:class:`Counts`), a resample is a vector of how often each sample (or each subject: all its samples together) was
drawn, and the metrics of a resample are computed from ``weights @ counts`` - no re-parsing, a thousand resamples
of tens of thousands of frames take seconds. The point estimate from the full counts equals
:func:`facial_r1.evaluation.metrics.compute_metrics`' numbers (a test checks this), F1 conventions included (see
that module's docstring: masked AU decisions count nowhere, an AU without a gold positive in a resample is left out
of that resample's macro F1).

Subject resampling (the unit of DISFA / BP4D: frames of one person are not independent) draws subjects with
replacement and keeps every frame of a drawn subject. For a cross-validated protocol the folds are resampled
independently with the same resample index and the statistic is the mean over folds, so the interval is that of the
reported mean. Intervals are percentile intervals (2.5th and 97.5th percentile of the resampled statistic);
resamples where a metric is undefined (no labelled sample drawn) are left out of that metric's interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from facial_r1.evaluation.metrics import HEADLINE_KEYS
from facial_r1.rewards.base import gold_label

LEVEL = 0.95
CI_KEY = "ci95"
# Every headline metric gets an interval (each is a function of the count sums).
INTERVAL_KEYS = HEADLINE_KEYS


@dataclass(frozen=True)
class Counts:
    """Per-sample additive counts behind the headline metrics.

    ``matrix`` has shape [num_samples, num_columns]; ``columns`` names its columns: ``emo_n``, ``emo_ok``,
    ``cls_n/<c>``, ``cls_ok/<c>`` per emotion class, ``tp/<AU>``, ``fp/<AU>``, ``fn/<AU>`` per AU, ``au_pred``,
    ``au_halluc``, ``n``, ``fmt_ok``, ``cons_ok``, ``rouge_n``, ``rouge_sum``.
    """

    matrix: np.ndarray
    columns: tuple[str, ...]
    aus: tuple[str, ...]
    classes: tuple[str, ...]

    def index(self, name: str) -> int:
        return self.columns.index(name)


def counts_from_rows(rows: Sequence[Mapping[str, Any]], aus: Sequence[str], classes: Sequence[str]) -> Counts:
    """Counts of prediction rows (``compute_metrics``' rows or the official scoring's) over ``aus`` and ``classes``.

    A row is AU-annotated when ``gold_aus`` is not None, emotion-labelled when ``gold_labels`` is non-empty; its
    ``masked_aus`` (if any) count nowhere. ``rouge_l`` (if present and not None) is its ROUGE-L.
    """
    aus, classes = tuple(aus), tuple(classes)
    columns = (
        "emo_n",
        "emo_ok",
        *(f"cls_n/{c}" for c in classes),
        *(f"cls_ok/{c}" for c in classes),
        *(f"{kind}/{au}" for kind in ("tp", "fp", "fn") for au in aus),
        "au_pred",
        "au_halluc",
        "n",
        "fmt_ok",
        "cons_ok",
        "rouge_n",
        "rouge_sum",
    )
    col = {name: k for k, name in enumerate(columns)}
    matrix = np.zeros((len(rows), len(columns)), dtype=np.float64)
    for i, row in enumerate(rows):
        line = matrix[i]
        line[col["n"]] = 1
        line[col["fmt_ok"]] = float(bool(row.get("format_ok")))
        pred = row.get("pred_label")
        line[col["cons_ok"]] = float(pred is not None and pred == row.get("concluded_emotion"))
        gold = gold_label({"labels": row.get("gold_labels") or []})
        if gold is not None:
            ok = float(pred == gold)
            line[col["emo_n"]], line[col["emo_ok"]] = 1, ok
            if gold in classes:
                line[col[f"cls_n/{gold}"]], line[col[f"cls_ok/{gold}"]] = 1, ok
        gold_aus = row.get("gold_aus")
        if gold_aus is not None:
            masked = set(row.get("masked_aus") or ())
            gold_set = set(gold_aus) - masked
            pred_set = set(row.get("pred_aus") or ()) - masked
            line[col["au_pred"]] = len(pred_set)
            line[col["au_halluc"]] = len(pred_set - gold_set)
            for au in aus:
                if au in masked:
                    continue
                g, p = au in gold_set, au in pred_set
                line[col[f"tp/{au}"]] += g and p
                line[col[f"fp/{au}"]] += p and not g
                line[col[f"fn/{au}"]] += g and not p
        rouge = row.get("rouge_l")
        if rouge is not None:
            line[col["rouge_n"]], line[col["rouge_sum"]] = 1, float(rouge)
    return Counts(matrix, columns, aus, classes)


def metrics_from_sums(sums: np.ndarray, counts: Counts) -> np.ndarray:
    """The :data:`INTERVAL_KEYS` metrics for count sums of shape [..., num_columns] -> [..., len(INTERVAL_KEYS)].

    NaN where a metric is undefined (no labelled sample, no AU with a gold positive, nothing predicted, ...).
    """

    def take(name: str) -> np.ndarray:
        return sums[..., counts.index(name)]

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)

    def nanmean(stack: list[np.ndarray]) -> np.ndarray:
        if not stack:
            return np.full(sums.shape[:-1], np.nan)
        values = np.stack(stack, axis=-1)
        present = ~np.isnan(values)
        total = np.where(present, values, 0).sum(-1)
        return ratio(total, present.sum(-1).astype(np.float64))

    recalls = [ratio(take(f"cls_ok/{c}"), take(f"cls_n/{c}")) for c in counts.classes]
    tp = [take(f"tp/{a}") for a in counts.aus]
    fp = [take(f"fp/{a}") for a in counts.aus]
    fn = [take(f"fn/{a}") for a in counts.aus]
    # An AU without a gold positive (tp + fn == 0) has no F1: NaN, left out of the macro mean.
    per_au = [
        np.where(t + n > 0, ratio(2 * t, 2 * t + p + n), np.nan) for t, p, n in zip(tp, fp, fn, strict=True)
    ]
    tp_all, fp_all, fn_all = (sum(x) if x else np.zeros(sums.shape[:-1]) for x in (tp, fp, fn))
    values = {
        "emotion_acc": ratio(take("emo_ok"), take("emo_n")),
        "emotion_uar": nanmean(recalls),
        "au_f1_macro": nanmean(per_au),
        "au_f1_micro": ratio(2 * tp_all, 2 * tp_all + fp_all + fn_all),
        "format_rate": ratio(take("fmt_ok"), take("n")),
        "consistency_rate": ratio(take("cons_ok"), take("n")),
        "au_hallucination_rate": ratio(take("au_halluc"), take("au_pred")),
        "rouge_l": ratio(take("rouge_sum"), take("rouge_n")),
    }
    return np.stack([values[k] for k in INTERVAL_KEYS], axis=-1)


def point_estimates(counts: Counts) -> dict[str, float | None]:
    """The metrics of the full sample (what the intervals surround)."""
    values = metrics_from_sums(counts.matrix.sum(0), counts)
    return {k: None if np.isnan(v) else float(v) for k, v in zip(INTERVAL_KEYS, values, strict=True)}


def _group_matrix(counts: Counts, groups: Sequence[Any] | None) -> np.ndarray:
    """Counts summed per resampling unit: one row per sample, or per group (subject) in first-seen order."""
    if groups is None:
        return counts.matrix
    if len(groups) != counts.matrix.shape[0]:
        raise ValueError(f"{len(groups)} group ids for {counts.matrix.shape[0]} samples")
    order: dict[Any, int] = {}
    index = np.array([order.setdefault(g, len(order)) for g in groups], dtype=np.int64)
    out = np.zeros((len(order), counts.matrix.shape[1]))
    np.add.at(out, index, counts.matrix)
    return out


def bootstrap_intervals(
    folds: Sequence[Counts],
    groups: Sequence[Sequence[Any] | None] | None = None,
    resamples: int = 1000,
    seed: int = 0,
    chunk: int = 100,
) -> dict[str, list[float] | None]:
    """95 % percentile intervals of the mean over ``folds`` of each :data:`INTERVAL_KEYS` metric.

    Args:
        folds: one :class:`Counts` per fold (a single-split evaluation passes one).
        groups: per fold, a resampling unit id per sample (subject ids), or None to resample samples.
        resamples: number of bootstrap resamples (0 -> no intervals: every value None).
        seed: seed of the resampling (the same seed gives the same intervals).

    Returns ``{metric: [low, high]}``; None for a metric that is undefined in (almost) every resample.
    """
    if resamples <= 0 or not folds:
        return dict.fromkeys(INTERVAL_KEYS)
    groups = list(groups) if groups is not None else [None] * len(folds)
    rng = np.random.default_rng(seed)
    per_fold = []
    for counts, fold_groups in zip(folds, groups, strict=True):
        units = _group_matrix(counts, fold_groups)
        stats = np.empty((resamples, len(INTERVAL_KEYS)))
        for start in range(0, resamples, chunk):
            size = min(chunk, resamples - start)
            draws = rng.integers(0, units.shape[0], size=(size, units.shape[0]))
            weights = np.zeros((size, units.shape[0]))
            np.add.at(weights, (np.arange(size)[:, None], draws), 1.0)
            stats[start : start + size] = metrics_from_sums(weights @ units, counts)
        per_fold.append(stats)
    with np.errstate(invalid="ignore"):
        mean = np.mean(np.stack(per_fold), axis=0)  # NaN in any fold -> NaN (the mean is undefined there)
    out: dict[str, list[float] | None] = {}
    tail = (1 - LEVEL) / 2
    for k, key in enumerate(INTERVAL_KEYS):
        values = mean[:, k][~np.isnan(mean[:, k])]
        if values.size < max(2, resamples // 2):  # mostly undefined: no honest interval
            out[key] = None
            continue
        low, high = np.quantile(values, [tail, 1 - tail])
        out[key] = [round(float(low), 6), round(float(high), 6)]
    return out


def with_intervals(
    metrics: dict[str, Any],
    rows: Sequence[Mapping[str, Any]],
    *,
    resamples: int,
    seed: int = 0,
    groups: Sequence[Any] | None = None,
    unit: str = "sample",
) -> dict[str, Any]:
    """``metrics`` (a ``compute_metrics`` result) plus ``ci95`` and the ``bootstrap`` settings used."""
    counts = counts_from_rows(rows, metrics.get("au_labels") or [], metrics.get("emotion_classes") or [])
    intervals = bootstrap_intervals([counts], [groups], resamples, seed)
    return {**metrics, CI_KEY: intervals, "bootstrap": bootstrap_info(resamples, seed, unit, groups)}


def bootstrap_info(resamples: int, seed: int, unit: str, groups: Sequence[Any] | None) -> dict[str, Any]:
    info: dict[str, Any] = {"resamples": int(resamples), "level": LEVEL, "unit": unit, "seed": int(seed)}
    if groups is not None:
        info["units"] = len(set(groups))
    return info
