"""Affect metrics beyond the paper: AU intensity (DISFA convention), valence/arousal (AffectNet), compound emotions.

Completions are read by the same parser as the rewards (``Parsed.au_intensities``, ``.va``, ``.compound``). Each
metric uses only the samples carrying its annotation (``data/schema.py``); undefined numbers are None.

* **AU intensity** (samples with ``AU_intensity``), per AU on the 0-5 scale: gold = the coded level, 0 when the AU
  is not coded; prediction = the stated level, 0 when the AU is not named or named without a valid level (DISFA
  models predict every AU at every frame; a silent AU is predicted absent). ``au_intensity_icc_per_au`` is ICC(3,1)
  (Shrout & Fleiss: two-way mixed, consistency, single rater; prediction and gold are the two raters),
  ``au_intensity_mae_per_au`` the mean absolute error; ``au_intensity_icc`` / ``au_intensity_mae`` average the AUs
  where they are defined. The AUs are ``au_subset`` when given (e.g. "disfa12"), else every AU coded in the
  evaluated samples. ``au_intensity_missing_rate``: share of named AUs with no valid level. Where no completion
  states a single level (a plain prompt that never asked for them) ICC and MAE are None, not the scores of an
  all-zero prediction: the model was not measured on intensity.
* **Valence / arousal** (samples with both): CCC (Lin's concordance correlation, population moments), RMSE and sign
  agreement (SAGR: share of samples whose predicted sign equals the gold sign), per dimension. A missing or invalid
  ``<va>`` block is scored as (0, 0), the circumplex centre, and counted in ``va_invalid_rate``. Where no completion
  has a valid block (a plain prompt) CCC, RMSE and SAGR are None and ``va_invalid_rate`` is 1.
* **Format with V/A**: ``format_va_rate``, the share of all completions in the affect prompts' strict format
  (``Parsed.format_strict_va``; the plain ``format_rate`` counts a trailing ``<va>`` block as a failure).
* **Compound** (samples with ``compound``): accuracy, UAR (mean recall over the classes present) and per-class
  recall over RAF-DB's 11 classes; an answer that is no compound class is an extra, never-right class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from facial_r1.affect import COMPOUND_EMOTIONS
from facial_r1.facs import sort_aus
from facial_r1.parsing import Parsed
from facial_r1.rewards.affect import gold_va

# Headline numbers of the affect metrics: logged as val/<key> when defined (None for data without the annotation).
AFFECT_HEADLINE_KEYS = (
    "au_intensity_icc",
    "au_intensity_mae",
    "valence_ccc",
    "arousal_ccc",
    "valence_rmse",
    "arousal_rmse",
    "compound_acc",
    "compound_uar",
)


def _num(value: float) -> float:
    return round(float(value), 6)


def icc_3_1(x: Sequence[float], y: Sequence[float]) -> float | None:
    """ICC(3,1) of two raters over n targets: (BMS - EMS) / (BMS + EMS); None when n < 2 or both are 0."""
    n = len(x)
    if n != len(y):
        raise ValueError(f"icc_3_1: {len(x)} vs {len(y)} ratings")
    if n < 2:
        return None
    grand = (sum(x) + sum(y)) / (2 * n)
    ss_rows = 2 * sum(((a + b) / 2 - grand) ** 2 for a, b in zip(x, y, strict=True))
    ss_cols = n * ((sum(x) / n - grand) ** 2 + (sum(y) / n - grand) ** 2)
    ss_total = sum((v - grand) ** 2 for v in (*x, *y))
    bms = ss_rows / (n - 1)
    ems = (ss_total - ss_rows - ss_cols) / (n - 1)  # (n - 1)(k - 1) degrees of freedom, k = 2
    if bms + ems <= 1e-12:
        return None
    return _num((bms - ems) / (bms + ems))


def ccc(pred: Sequence[float], gold: Sequence[float]) -> float | None:
    """Lin's CCC: 2 cov / (var_p + var_g + (mean_p - mean_g)^2), population moments; None when undefined."""
    n = len(pred)
    if n != len(gold):
        raise ValueError(f"ccc: {len(pred)} predictions vs {len(gold)} targets")
    if n == 0:
        return None
    mp, mg = sum(pred) / n, sum(gold) / n
    vp = sum((p - mp) ** 2 for p in pred) / n
    vg = sum((g - mg) ** 2 for g in gold) / n
    cov = sum((p - mp) * (g - mg) for p, g in zip(pred, gold, strict=True)) / n
    denominator = vp + vg + (mp - mg) ** 2
    return None if denominator <= 1e-12 else _num(2 * cov / denominator)


def intensity_metrics(
    golds: list[dict[str, int]], preds: list[dict[str, int]], aus: list[str], named: list[list[str]]
) -> dict[str, Any]:
    """ICC(3,1) and MAE per AU of ``aus`` between gold and stated levels (0 = absent), plus their means."""
    out: dict[str, Any] = {
        "num_intensity_samples": len(golds),
        "au_intensity_labels": aus,
        "au_intensity_icc": None,
        "au_intensity_mae": None,
        "au_intensity_icc_per_au": {},
        "au_intensity_mae_per_au": {},
        "au_intensity_missing_rate": None,
    }
    if not golds or not aus:
        return out
    total_named = sum(len(n) for n in named)
    if total_named:
        missing = sum(len(set(n) - set(p)) for n, p in zip(named, preds, strict=True))
        out["au_intensity_missing_rate"] = _num(missing / total_named)
    if not any(preds):  # no level stated anywhere (module docstring)
        return out
    for au in aus:
        g = [gold.get(au, 0) for gold in golds]
        p = [pred.get(au, 0) for pred in preds]
        out["au_intensity_icc_per_au"][au] = icc_3_1(p, g)
        out["au_intensity_mae_per_au"][au] = _num(sum(abs(a - b) for a, b in zip(p, g, strict=True)) / len(g))
    iccs = [v for v in out["au_intensity_icc_per_au"].values() if v is not None]
    maes = list(out["au_intensity_mae_per_au"].values())
    out["au_intensity_icc"] = _num(sum(iccs) / len(iccs)) if iccs else None
    out["au_intensity_mae"] = _num(sum(maes) / len(maes))
    return out


def va_metrics(golds: list[tuple[float, float]], preds: list[tuple[float, float] | None]) -> dict[str, Any]:
    """CCC, RMSE and sign agreement of valence and arousal; invalid predictions count as (0, 0); None where no
    prediction is valid (module docstring)."""
    out: dict[str, Any] = {"num_va_samples": len(golds), "va_invalid_rate": None}
    for dim in ("valence", "arousal"):
        out.update({f"{dim}_ccc": None, f"{dim}_rmse": None, f"{dim}_sagr": None})
    if not golds:
        return out
    filled = [p if p is not None else (0.0, 0.0) for p in preds]
    out["va_invalid_rate"] = _num(sum(p is None for p in preds) / len(preds))
    if all(p is None for p in preds):
        return out
    for k, dim in enumerate(("valence", "arousal")):
        g = [gold[k] for gold in golds]
        p = [pred[k] for pred in filled]
        out[f"{dim}_ccc"] = ccc(p, g)
        out[f"{dim}_rmse"] = _num(math.sqrt(sum((a - b) ** 2 for a, b in zip(p, g, strict=True)) / len(g)))
        out[f"{dim}_sagr"] = _num(sum(_sign(a) == _sign(b) for a, b in zip(p, g, strict=True)) / len(g))
    return out


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def compound_metrics(golds: list[str], preds: list[str | None]) -> dict[str, Any]:
    """Accuracy, UAR, per-class recall and invalid rate over the compound classes present (RAF-DB order)."""
    from facial_r1.evaluation.metrics import emotion_metrics  # the same computation as the basic emotions

    present = set(golds) | {p for p in preds if p is not None}
    classes = [c for c in COMPOUND_EMOTIONS if c in present]
    scored = emotion_metrics(golds, preds, classes)
    return {
        "num_compound_samples": len(golds),
        "compound_classes": classes,
        "compound_acc": scored["emotion_acc"],
        "compound_uar": scored["emotion_uar"],
        "compound_acc_per_class": scored["emotion_acc_per_class"],
        "compound_invalid_rate": scored["emotion_invalid_rate"],
    }


def affect_metrics(
    samples: Sequence[dict[str, Any]], parsed: Sequence[Parsed], au_subset_codes: list[str] | None = None
) -> dict[str, Any]:
    """Every affect metric of the module docstring for aligned ``samples`` and ``parsed`` completions."""
    idx = [i for i, s in enumerate(samples) if s.get("AU_intensity") is not None]
    golds = [dict(samples[i]["AU_intensity"]) for i in idx]
    aus = au_subset_codes if au_subset_codes is not None else sort_aus(au for g in golds for au in g)
    out: dict[str, Any] = {
        "format_va_rate": _num(sum(p.format_strict_va for p in parsed) / len(parsed)) if parsed else None
    }
    out |= intensity_metrics(
        golds, [parsed[i].au_intensities for i in idx], aus, [parsed[i].aus for i in idx]
    )
    va_idx = [i for i, s in enumerate(samples) if gold_va(s) is not None]
    out.update(va_metrics([gold_va(samples[i]) for i in va_idx], [parsed[i].va for i in va_idx]))
    c_idx = [i for i, s in enumerate(samples) if s.get("compound") is not None]
    out.update(compound_metrics([samples[i]["compound"] for i in c_idx], [parsed[i].compound for i in c_idx]))
    return out


def affect_row(sample: dict[str, Any], parsed: Parsed) -> dict[str, Any]:
    """The affect columns of a prediction row (gold None = not annotated)."""
    return {
        "gold_intensity": sample.get("AU_intensity"),
        "pred_intensity": parsed.au_intensities,
        "gold_va": gold_va(sample),
        "pred_va": parsed.va,
        "gold_compound": sample.get("compound"),
        "pred_compound": parsed.compound,
    }
