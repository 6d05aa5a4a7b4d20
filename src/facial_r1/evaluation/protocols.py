"""Evaluation protocols: which data, which AUs, which folds and which scoring make a number comparable with a paper.

A protocol is chosen with ``python evaluate.py protocol=<name>`` (``conf/protocol/<name>.yaml``). The config file
selects the dataset and its options (fold lists, AU threshold, class count), the split and the AU subset; the
``protocol`` node built here says how to run and score it:

* ``folds``: a cross-validated protocol (DISFA, BP4D: 3 subject-exclusive folds) evaluates ``dataset.fold`` =
  0..folds-1, one model export per fold (``model.path`` as a list) or one model on every fold (with a warning:
  that model has seen the other folds' test subjects if it was trained on this dataset), and reports each fold and
  the mean over folds;
* ``scoring``: ``project`` (this project's parser and F1 conventions, :mod:`facial_r1.evaluation.metrics`) or
  ``official`` (the published Facial-R1 evaluation script, :func:`official_metrics`);
* ``unit``: what the bootstrap resamples - ``sample`` or ``subject`` (``meta_info["subject"]``);
* ``expected_samples``: the published size of the evaluated split; a different count (outside ``limit=N``) is
  warned about and recorded in metrics.json, since the number is then not comparable.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from facial_r1.evaluation.metrics import HEADLINE_KEYS, au_metrics, compute_metrics, emotion_metrics, rege
from facial_r1.evaluation.uncertainty import counts_from_rows, point_estimates
from facial_r1.facs import sort_aus
from facial_r1.rewards.base import Sample, gold_aus, gold_label

log = logging.getLogger(__name__)

SCORINGS = ("project", "official")
UNITS = ("sample", "subject")


@dataclass
class Protocol:
    """How an evaluation is run and scored (module docstring); built from the ``protocol`` config node."""

    name: str = "default"
    description: str = ""
    scoring: str = "project"
    folds: int | None = None
    unit: str = "sample"
    expected_samples: int | None = None
    source: str = ""  # where the protocol is published (for metrics.json)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.scoring not in SCORINGS:
            raise ValueError(f"protocol.scoring must be one of {SCORINGS}, got {self.scoring!r}")
        if self.unit not in UNITS:
            raise ValueError(f"protocol.unit must be one of {UNITS}, got {self.unit!r}")
        if self.folds is not None and self.folds < 1:
            raise ValueError(f"protocol.folds must be >= 1 or null, got {self.folds}")

    def fold_ids(self) -> list[int | None]:
        """``dataset.fold`` values to evaluate; ``[None]`` = the dataset as configured, once."""
        return [None] if self.folds is None else list(range(self.folds))

    def model_paths(self, path: Any) -> list[Any]:
        """One ``model.path`` per fold: a list gives each fold its own export; a single path serves every fold."""
        folds = self.fold_ids()
        if isinstance(path, Sequence) and not isinstance(path, str):
            paths = list(path)
            if len(paths) != len(folds):
                raise ValueError(
                    f"protocol {self.name}: model.path lists {len(paths)} exports for {len(folds)} folds; give one "
                    "per fold (fold k = the model trained without fold k's subjects), or a single path"
                )
            return paths
        if len(folds) > 1:
            log.warning(
                "protocol %s: one model (%s) on all %d folds. Cross-validated numbers need one export per fold "
                "(model.path=[fold0,fold1,...]); a model trained on this dataset has seen the other folds' "
                "test subjects.",
                self.name,
                path or "the default model",
                len(folds),
            )
        return [path] * len(folds)

    def info(self) -> dict[str, Any]:
        """What metrics.json records about the protocol."""
        return {
            "name": self.name,
            "description": self.description,
            "scoring": self.scoring,
            "folds": self.folds,
            "unit": self.unit,
            "expected_samples": self.expected_samples,
            "source": self.source,
        }

    def check_count(self, count: int, limited: bool) -> str | None:
        """A warning when the evaluated split does not have the protocol's published size (None when it does)."""
        if self.expected_samples is None or limited or count == self.expected_samples:
            return None
        message = (
            f"protocol {self.name}: {count} samples, but the published protocol evaluates "
            f"{self.expected_samples}; numbers are not comparable with published ones"
        )
        log.warning(message)
        return message

    def score(
        self,
        samples: Sequence[Sample],
        outputs: Sequence[str],
        *,
        au_subset: Any = None,
        reward: Any = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """``compute_metrics`` (project scoring) or :func:`official_metrics`; metrics name the protocol."""
        if self.scoring == "official":
            metrics, rows = official_metrics(samples, outputs, reward=reward)
        else:
            metrics, rows = compute_metrics(samples, outputs, au_subset=au_subset, reward=reward)
        return {"protocol": self.name, "scoring": self.scoring, **metrics}, rows


# ---- the published evaluation script's scoring ---------------------------------------------------------------------

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_AU_TOKEN = re.compile(r"AU\d+")
_SEPARATORS = re.compile(r"[,;，；\s]+")


def official_aus(output: str) -> list[str]:
    """AUs as the published evaluation reads them: ``AU\\d+`` tokens (case-sensitive, as written: "AU06" is not
    "AU6") inside the first ``<think>...</think>``, or in the whole output when there is no think block."""
    match = _THINK.search(output)
    return sorted(set(_AU_TOKEN.findall(match.group(1) if match else output)), key=lambda a: int(a[2:]))


def official_label(output: str) -> str | None:
    """The first token (split on commas, semicolons, whitespace) of the first ``<answer>``, else of the whole
    output, compared as written (case-sensitive); None for an empty answer (the published script crashes there)."""
    match = _ANSWER.search(output)
    text = match.group(1).strip() if match else output
    tokens = [t for t in _SEPARATORS.split(text) if t.strip()]
    return tokens[0] if tokens else None


def official_metrics(
    samples: Sequence[Sample], outputs: Sequence[str], *, reward: Any = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score like the published Facial-R1 evaluation script (``src/eval/eval_qwen.py`` + ``eval_utils.py``).

    AU F1 is over the AUs that occur in the evaluated samples' gold labels (never a benchmark subset), with AUs read
    by :func:`official_aus` and nothing masked; macro = the mean per-AU F1 over the AUs with a gold positive, micro
    over all of them. Emotion accuracy compares :func:`official_label` with the first gold label exactly. Samples
    without an emotion label are left out of accuracy (the published script assumes every sample has one).
    The project's own numbers for the same outputs are kept under ``metrics["project"]``, side by side and never
    under the same keys. Format and ROUGE-L are the project's; consistency compares the official answer token with
    the emotion the reasoning concludes.
    """
    project, rows = compute_metrics(samples, outputs, au_subset=None, reward=reward)
    outputs = [o if isinstance(o, str) else "" for o in outputs]
    for row, output in zip(rows, outputs, strict=True):
        row["pred_aus"] = official_aus(output)
        row["pred_label"] = official_label(output)
        if row.get("gold_aus") is not None:
            row["masked_aus"] = []
    au_rows = [r for r, s in zip(rows, samples, strict=True) if gold_aus(s) is not None]
    au_list = sort_aus(code for r in au_rows for code in r["gold_aus"])
    emo_rows = [(gold_label(s), r) for r, s in zip(rows, samples, strict=True) if gold_label(s) is not None]
    classes = sorted({gold for gold, _ in emo_rows})
    metrics = dict(project)
    metrics.update(au_metrics([r["gold_aus"] for r in au_rows], [r["pred_aus"] for r in au_rows], au_list))
    metrics.update(emotion_metrics([g for g, _ in emo_rows], [r["pred_label"] for _, r in emo_rows], classes))
    metrics.update({"au_subset": None, "au_labels": au_list, "emotion_classes": classes})
    estimates = point_estimates(counts_from_rows(rows, au_list, classes))
    for key in ("au_hallucination_rate", "consistency_rate"):
        metrics[key] = None if estimates[key] is None else round(estimates[key], 6)
    metrics["rege"] = rege(metrics)
    metrics["project"] = {key: project.get(key) for key in (*HEADLINE_KEYS, "rege")}
    return metrics, rows


def mean_over_folds(per_fold: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """The mean of each headline metric over the folds (None when undefined in any fold)."""
    out: dict[str, float | None] = {}
    for key in HEADLINE_KEYS:
        values = [m.get(key) for m in per_fold]
        out[key] = None if any(v is None for v in values) else round(sum(values) / len(values), 6)
    return out
