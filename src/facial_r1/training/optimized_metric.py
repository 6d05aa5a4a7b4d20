"""The number ``train.py`` returns to a hyper-parameter sweeper: ``optimized_metric`` (lightning-hydra-template's
convention).

``optimized_metric`` names a number of the run's ``metrics.json``, i.e. of the greedy evaluation of the export on
``stage.final_eval.split`` (``emotion_acc``, ``au_f1_micro``, ...; ``rewards.<component>`` for a reward component's
mean). It is checked before any model is loaded, so a typo does not cost a trial. Sweeps should select on ``val``
(``hparams_search=grpo_optuna`` sets ``stage.final_eval.split=val``) and keep ``test`` for the final report.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

# Numbers of evaluation.metrics.compute_metrics (a test keeps the list in step), plus the run's wall time.
OPTIMIZABLE = (
    "emotion_acc",
    "emotion_uar",
    "emotion_invalid_rate",
    "au_f1_macro",
    "au_f1_micro",
    "au_hallucination_rate",
    "format_rate",
    "format_lenient_rate",
    "consistency_rate",
    "rouge_l",
    "rege",
    "wall_time_s",
)


def check_optimized_metric(name: Any) -> None:
    """Raise ValueError unless ``name`` is null, one of :data:`OPTIMIZABLE` or ``rewards.<component>``."""
    if name is None or name in OPTIMIZABLE or (isinstance(name, str) and name.startswith("rewards.")):
        return
    raise ValueError(
        f"optimized_metric={name!r} is not a number train.py reports; use one of {', '.join(OPTIMIZABLE)} or "
        "rewards.<component> (a key of metrics.json), or null"
    )


def optimized_metric_value(metrics: Mapping[str, Any], name: str | None) -> float | None:
    """``metrics[name]`` as a float (dots reach into nested entries: ``rewards.au_f1``); None when ``name`` is
    null, or, with a warning, when the metric is undefined for this data (e.g. AU F1 without AU labels). A name
    the metrics do not have at all raises, naming the numbers they do have."""
    if name is None:
        return None
    value: Any = metrics
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            available = sorted(_numbers(metrics))
            raise ValueError(
                f"optimized_metric={name!r} is not in this run's metrics.json; numbers there: {', '.join(available)}"
            )
        value = value[part]
    if value is None:
        log.warning("optimized_metric=%s is undefined for this data (null in metrics.json)", name)
        return None
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ValueError(f"optimized_metric={name!r} is {value!r} in metrics.json, not a number")
    return float(value)


def _numbers(metrics: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            out += _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            out.append(prefix + key)
    return out
