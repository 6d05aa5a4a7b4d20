"""Evaluation metrics over model outputs: AU F1, emotion accuracy / UAR, format, consistency, ROUGE-L, REGE.

Completions are read by :func:`facial_r1.parsing.parse` (the same parser as the rewards). Each metric uses only the
samples that carry its label type: AU metrics the samples with ``AUs`` not None, emotion metrics the samples with
``labels``, ROUGE-L the samples with a reference ``description``; format and consistency use every sample.
Numbers come from torchmetrics with ``average`` set explicitly. Undefined numbers are None, never a crash:
no samples of a type, no AU with a gold positive, ...

F1 conventions. AU F1 is computed over ``au_subset`` (a benchmark subset such as "disfa8", an explicit list, or
None = every AU that occurs in the gold labels of the evaluated samples, as the published evaluation does). Every
AU-annotated sample makes one present/absent decision per AU of the subset. Per-AU F1 = 2TP / (2TP + FP + FN) over
the samples; an AU with no gold positive among them has F1 None and is left out of the macro average (its F1 is
undefined; counting it as 0 would punish the model for the test set's composition). Macro F1 = the mean of the
per-AU F1s over the subset's AUs; micro F1 = one F1 over all decisions of all AUs pooled. Unknown is not absent: a
decision the sample does not record - an AU in ``meta_info["unknown_aus"]`` (BP4D's code 9) or outside the sample's
``au_vocab`` - is masked out of every count (and out of the hallucination rate), see
:func:`facial_r1.rewards.base.masked_aus`; rows list them as ``masked_aus``. Emotion accuracy = correct / labelled
samples; UAR = the mean per-class recall over the classes with gold samples. 95 % bootstrap intervals of these
numbers: :mod:`facial_r1.evaluation.uncertainty`.

The affect metrics (AU intensity ICC/MAE, valence/arousal CCC/RMSE/SAGR, compound accuracy/UAR) live in
:mod:`facial_r1.evaluation.affect_metrics` and are merged into the same result.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics.functional.text.rouge import rouge_score

from facial_r1.evaluation.affect_metrics import affect_metrics, affect_row
from facial_r1.facs import AU_EVAL_SUBSET, EMOTIONS, au_codes, normalize_au, sort_aus
from facial_r1.parsing import Parsed, parse
from facial_r1.rewards.base import Sample, gold_aus, gold_label, label_set_of, masked_aus

_MASKED = -1  # target value of an AU decision the sample does not record (ignored by every count)


def resolve_au_subset(au_subset: str | Sequence[str | int] | None, golds: Sequence[list[str]]) -> list[str]:
    """The AU codes F1 is computed over (numeric order); see the module docstring."""
    if au_subset is None:
        return sort_aus(code for gold in golds for code in gold)
    if isinstance(au_subset, str):
        if au_subset not in AU_EVAL_SUBSET:
            raise ValueError(f"unknown AU subset {au_subset!r}; known: {sorted(AU_EVAL_SUBSET)}")
        return au_codes(AU_EVAL_SUBSET[au_subset])
    codes = [normalize_au(x) if isinstance(x, (str, int)) else None for x in au_subset]
    if None in codes:
        raise ValueError(f"AU subset has entries that are no FACS AU: {list(au_subset)}")
    return sort_aus(codes)


def au_metrics(
    golds: list[list[str]],
    preds: list[list[str]],
    aus: list[str],
    masks: Sequence[set[str]] | None = None,
) -> dict[str, Any]:
    """Multilabel F1 of predicted vs gold AU sets over the AU list ``aus`` (one row per AU-annotated sample).

    ``masks[i]``: AUs sample i does not record (``rewards.base.masked_aus``); those decisions are left out of every
    count (torchmetrics ``ignore_index``), never scored as absent.
    """
    from torchmetrics.functional.classification import multilabel_f1_score

    out: dict[str, Any] = {"au_f1_macro": None, "au_f1_micro": None, "au_f1_per_au": {}, "au_support": {}}
    if not golds or not aus:
        return out
    column = {code: k for k, code in enumerate(aus)}
    target = torch.zeros(len(golds), len(aus), dtype=torch.long)
    pred = torch.zeros_like(target)
    for i, (gold, predicted) in enumerate(zip(golds, preds, strict=True)):
        for code in gold:
            if code in column:
                target[i, column[code]] = 1
        for code in predicted:
            if code in column:
                pred[i, column[code]] = 1
        for code in masks[i] if masks is not None else ():
            if code in column:
                target[i, column[code]] = _MASKED
    support = (target == 1).sum(0)
    # torchmetrics wants >= 2 labels: an all-zero padding column changes no count and is dropped again.
    pad = torch.zeros(len(golds), 1, dtype=torch.long)
    pred_p, target_p = torch.cat([pred, pad], 1), torch.cat([target, pad], 1)
    f1 = functools.partial(multilabel_f1_score, num_labels=len(aus) + 1, ignore_index=_MASKED)
    per_au = f1(pred_p, target_p, average="none")[: len(aus)]
    out["au_support"] = {code: int(support[k]) for code, k in column.items()}
    out["au_f1_per_au"] = {code: _num(per_au[k]) if support[k] > 0 else None for code, k in column.items()}
    defined = [v for v in out["au_f1_per_au"].values() if v is not None]
    if defined:  # = torchmetrics' macro average over the AUs with a gold positive
        out["au_f1_macro"] = _num(sum(defined) / len(defined))
    if int((target == 1).sum() + (pred * (target != _MASKED)).sum()) > 0:
        out["au_f1_micro"] = _num(f1(pred_p, target_p, average="micro"))
    return out


def emotion_classes(samples: Sequence[Sample], predictions: Sequence[str | None] = ()) -> list[str]:
    """Class order of the emotion metrics: the samples' label sets, gold labels and valid predictions, in
    ``facs.EMOTIONS`` order (other words after them, sorted)."""
    words = {w for s in samples for w in (label_set_of(s) or ())}
    words |= {gold_label(s) for s in samples} | set(predictions)
    words.discard(None)
    return [w for w in EMOTIONS if w in words] + sorted(words - set(EMOTIONS))


def emotion_metrics(golds: list[str], preds: list[str | None], classes: list[str]) -> dict[str, Any]:
    """Accuracy, UAR and per-class recall; a missing or invalid answer is an extra class that is never right."""
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_recall

    out: dict[str, Any] = {"emotion_acc": None, "emotion_uar": None, "emotion_acc_per_class": {}}
    if not golds:
        out["emotion_invalid_rate"] = None
        return out
    index = {c: k for k, c in enumerate(classes)}
    invalid = len(classes)
    target = torch.tensor([index[g] for g in golds])
    pred = torch.tensor([index.get(p, invalid) if p is not None else invalid for p in preds])
    n = len(classes) + 1
    out["emotion_acc"] = _num(multiclass_accuracy(pred, target, num_classes=n, average="micro"))
    recall = multiclass_recall(pred, target, num_classes=n, average="none")
    support = torch.bincount(target, minlength=n)
    per_class = {c: _num(recall[k]) if support[k] > 0 else None for c, k in index.items()}
    present = [v for v in per_class.values() if v is not None]
    out["emotion_acc_per_class"] = per_class
    out["emotion_uar"] = _num(sum(present) / len(present)) if present else None
    out["emotion_invalid_rate"] = _num((pred == invalid).float().mean())
    return out


def rouge_l(outputs: list[str], references: list[str]) -> float | None:
    """Mean ROUGE-L F-measure (LCS over lowercased alphanumeric tokens, torchmetrics), None without references."""
    if not references:
        return None
    return _num(rouge_score(outputs, references, rouge_keys="rougeL")["rougeL_fmeasure"])


def _mean(values: list[float]) -> float | None:
    return _num(sum(values) / len(values)) if values else None


def _num(value: Any) -> float:
    """A plain float rounded to 6 decimals: torchmetrics computes in float32, whose noise ("0.7692307829") only
    clutters metrics.json."""
    return round(float(value), 6)


def _row(
    sample: Sample, output: str, parsed: Parsed, rewards: dict[str, float | None] | None
) -> dict[str, Any]:
    return {
        "id": sample.get("id"),
        "dataset": sample.get("dataset"),
        "gold_aus": gold_aus(sample),
        "gold_labels": list(sample.get("labels") or []),
        "pred_aus": parsed.aus,
        "unknown_aus": parsed.unknown_aus,
        "pred_label": parsed.emotion,
        "concluded_emotion": parsed.concluded_emotion,
        "format_ok": parsed.format_strict,
        "format_lenient": parsed.format_lenient,
        "rewards": rewards,
        "output": output,
    }


# The headline numbers of a ``compute_metrics`` result: what runs log under val/ and evaluate.py prints.
HEADLINE_KEYS = (
    "emotion_acc",
    "emotion_uar",
    "au_f1_macro",
    "au_f1_micro",
    "format_rate",
    "consistency_rate",
    "au_hallucination_rate",
    "rouge_l",
)


def compute_metrics(
    samples: Sequence[Sample],
    outputs: Sequence[str],
    *,
    au_subset: str | Sequence[str | int] | None = None,
    drop_negated: bool = True,
    map_au_names: bool = True,
    au_scope: str = "think",
    reward: Any | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score model ``outputs`` against ``samples`` (aligned lists).

    Args:
        au_subset: AUs of the F1 (see module docstring).
        drop_negated, map_au_names, au_scope: parser options (:func:`facial_r1.parsing.parse`).
        reward: optional :class:`~facial_r1.rewards.CompositeReward`; its per-component values go into each
            row's ``rewards`` and their means into ``metrics["rewards"]``.

    Returns:
        ``(metrics, rows)``: a JSON-ready dict (keys listed in the module docstring and README) and one row per
        sample with ``id, gold_aus, gold_labels, pred_aus, pred_label, concluded_emotion, format_ok, rewards,
        output`` (plus ``dataset, unknown_aus, format_lenient``).
    """
    if len(samples) != len(outputs):
        raise ValueError(f"{len(samples)} samples but {len(outputs)} outputs")
    outputs = [o if isinstance(o, str) else "" for o in outputs]
    parsed = [
        parse(
            o,
            label_set=label_set_of(s),
            drop_negated=drop_negated,
            map_au_names=map_au_names,
            au_scope=au_scope,
        )
        for s, o in zip(samples, outputs, strict=True)
    ]
    scored = reward(outputs, samples) if reward is not None and samples else None
    per_sample_rewards = scored.rows() if scored is not None else [None] * len(samples)
    rows = [_row(s, o, p, r) for s, o, p, r in zip(samples, outputs, parsed, per_sample_rewards, strict=True)]

    au_idx = [i for i, s in enumerate(samples) if gold_aus(s) is not None]
    au_golds = [gold_aus(samples[i]) for i in au_idx]
    au_preds = [parsed[i].aus for i in au_idx]
    au_list = resolve_au_subset(au_subset, au_golds)
    # Unknown is not absent: AUs a sample does not record are left out of its AU counts (module docstring).
    au_masks = [masked_aus(samples[i], set(au_list) | set(parsed[i].aus)) for i in au_idx]
    for i, mask in zip(au_idx, au_masks, strict=True):
        rows[i]["masked_aus"] = sort_aus(mask)
    scored_preds = [[a for a in p if a not in m] for p, m in zip(au_preds, au_masks, strict=True)]
    predicted = sum(len(p) for p in scored_preds)
    hallucinated = sum(len(set(p) - set(g)) for p, g in zip(scored_preds, au_golds, strict=True))

    emo_idx = [i for i, s in enumerate(samples) if gold_label(s) is not None]
    emo_golds = [gold_label(samples[i]) for i in emo_idx]
    emo_preds = [parsed[i].emotion for i in emo_idx]

    ref_idx = [
        i for i, s in enumerate(samples) if isinstance(s.get("description"), str) and s["description"].strip()
    ]
    for i in ref_idx:  # per sample, so that intervals can resample it; their mean is the corpus ROUGE-L
        rows[i]["rouge_l"] = rouge_l([outputs[i]], [samples[i]["description"]])

    metrics: dict[str, Any] = {
        "num_samples": len(samples),
        "num_au_samples": len(au_idx),
        "num_emotion_samples": len(emo_idx),
        "num_rouge_samples": len(ref_idx),
        "au_subset": au_subset if isinstance(au_subset, str) or au_subset is None else list(au_subset),
        "au_labels": au_list,
        **au_metrics(au_golds, au_preds, au_list, au_masks),
        "au_hallucination_rate": _num(hallucinated / predicted) if predicted else None,
        "emotion_classes": emotion_classes([samples[i] for i in emo_idx], emo_preds),
        "format_rate": _mean([float(p.format_strict) for p in parsed]),
        "format_lenient_rate": _mean([float(p.format_lenient) for p in parsed]),
        "consistency_rate": _mean(
            [float(p.emotion is not None and p.emotion == p.concluded_emotion) for p in parsed]
        ),
        "rouge_l": _mean([rows[i]["rouge_l"] for i in ref_idx]),
    }
    metrics.update(emotion_metrics(emo_golds, emo_preds, metrics["emotion_classes"]))
    metrics["rege"] = rege(metrics)
    # Beyond the paper: AU intensity, valence/arousal, compound (keys and conventions in affect_metrics).
    intensity_aus = None if au_subset is None else resolve_au_subset(au_subset, [])
    metrics.update(affect_metrics(samples, parsed, intensity_aus))
    rows = [{**row, **affect_row(s, p)} for row, s, p in zip(rows, samples, parsed, strict=True)]
    if scored is not None:
        metrics["rewards"] = {
            k[: -len("/mean")]: v for k, v in scored.summary().items() if k.endswith("/mean")
        }
    return metrics, rows


def rege(metrics: dict[str, Any]) -> float | None:
    """REGE of FABA-Instruct / EmoLA: recognition score in % + ROUGE-L in %.

    Recognition is emotion accuracy when the evaluated samples carry emotion labels, else AU macro F1 (FABA scores
    its emotion and AU tasks separately, so evaluate them separately for comparable numbers). None when either
    part is undefined.
    """
    recognition = metrics["emotion_acc"] if metrics["num_emotion_samples"] else metrics["au_f1_macro"]
    if recognition is None or metrics["rouge_l"] is None:
        return None
    return _num(100.0 * recognition + 100.0 * metrics["rouge_l"])
