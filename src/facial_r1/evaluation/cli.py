"""What ``python evaluate.py`` does: load a model and a split, generate, score, write and log the results.

With a cross-validated ``protocol`` (``protocol=disfa_3fold``) it evaluates each fold (one export per fold, or one
model on all folds), writes each fold's results under ``fold_<k>/`` and the per-fold numbers, their mean and the
95 % interval of the mean into the run folder's ``metrics.json``. Nothing is trained.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from facial_r1.data.schema import DataError
from facial_r1.data.sources import build_source
from facial_r1.data.sources.base import require_records
from facial_r1.evaluation.affect_metrics import AFFECT_HEADLINE_KEYS
from facial_r1.evaluation.generate import generate_outputs
from facial_r1.evaluation.metrics import HEADLINE_KEYS
from facial_r1.evaluation.protocols import Protocol, mean_over_folds
from facial_r1.evaluation.report import write_evaluation
from facial_r1.evaluation.uncertainty import (
    CI_KEY,
    bootstrap_info,
    bootstrap_intervals,
    counts_from_rows,
    with_intervals,
)
from facial_r1.files import write_json_atomic
from facial_r1.models.adapter import SamplingParams

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from facial_r1.runtime import load_average, machine_record, set_threads
    from facial_r1.tracking.loggers import build_loggers, finish_loggers
    from facial_r1.tracking.media import log_evaluation
    from facial_r1.tracking.naming import run_identity

    set_threads(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    started, load_at_start = time.time(), load_average()
    protocol: Protocol = instantiate(cfg.protocol)
    folds = protocol.fold_ids()
    path = cfg.model.get("path")
    paths = protocol.model_paths(OmegaConf.to_container(path) if OmegaConf.is_config(path) else path)
    reward = instantiate(cfg.reward)
    prompt = instantiate(cfg.prompt)
    # Every fold's data first: a bad sample or an empty split stops the run before any model is loaded.
    splits = [load_split(cfg, fold) for fold in folds]
    adapters: dict[str, Any] = {}  # one load per distinct export
    results = []
    for fold, path, (source, records) in zip(folds, paths, splits, strict=True):
        if str(path) not in adapters:
            adapter = _load_model(cfg, path)
            adapters[str(path)] = (
                adapter,
                instantiate(cfg.rollout, policy=adapter),
            )  # rollout=hf (default) | vllm
        adapter, engine = adapters[str(path)]
        fold_dir = run_dir if fold is None else run_dir / f"fold_{fold}"
        results.append(
            _evaluate_split(cfg, protocol, fold, source, records, adapter, engine, prompt, reward, fold_dir)
        )
    if len(results) == 1:
        metrics, rows, _ = results[0]
    else:
        metrics, rows = _combine_folds(cfg, protocol, results)
        write_evaluation(run_dir, metrics, rows, metrics.get("emotion_classes"))
    metrics["wall_time_s"] = time.time() - started
    metrics["machine"] = machine_record(load_at_start)
    write_json_atomic(run_dir / "metrics.json", metrics)
    all_records = [r for _, records in splits for r in records]  # in the order of the rows
    figures = {
        n: run_dir / f"{n}.png" for n in ("confusion_matrix", "per_au_f1") if (run_dir / f"{n}.png").is_file()
    }
    loggers = build_loggers(cfg, run_identity(cfg, run_dir=run_dir))
    try:
        for lg in loggers:
            lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        log_evaluation(loggers, metrics, rows, all_records, prefix="eval", step=0, figures=figures)
        if metrics.get("judge_score") is not None:
            for lg in loggers:
                lg.log_metrics({"eval/judge_score": metrics["judge_score"]}, step=0)
    finally:
        finish_loggers(loggers)
    log.info("wrote %s", run_dir / "metrics.json")
    print(json.dumps(_headline(metrics), indent=2))
    return metrics.get("emotion_acc")


def _load_model(cfg: DictConfig, path: Any):
    from hydra.utils import instantiate

    from facial_r1.lineage import resolve_init_from

    model_cfg = OmegaConf.merge(cfg.model, {"path": path})
    init_from = resolve_init_from(model_cfg, str(cfg.paths.output_root))
    adapter = instantiate(model_cfg, init_from=init_from)
    if torch.cuda.is_available():
        adapter.model.to("cuda")
    return adapter


def load_split(cfg: DictConfig, fold: int | None) -> tuple[Any, list[dict[str, Any]]]:
    """The configured dataset's ``cfg.split`` (of fold ``fold``), first ``limit`` samples; empty is an error."""

    source = build_source(cfg.dataset, **({} if fold is None else {"fold": fold}))
    purpose = "evaluate" if fold is None else f"evaluate (fold {fold})"
    records = require_records(source, cfg.split, source.records(cfg.split), purpose)
    if cfg.limit is not None:
        records = records[: int(cfg.limit)]
    return source, records


def _evaluate_split(
    cfg, protocol: Protocol, fold, source, records, adapter, engine, prompt, reward, out_dir: Path
):
    started = time.time()
    params = SamplingParams(
        max_new_tokens=int(cfg.max_new_tokens),
        do_sample=bool(cfg.sampling.do_sample),
        temperature=float(cfg.sampling.temperature),
        top_p=float(cfg.sampling.top_p),
        seed=int(cfg.seed),
    )
    desc = f"evaluate {cfg.split}" + ("" if fold is None else f" fold {fold}")
    outputs = generate_outputs(
        adapter,
        records,
        prompt.user_text,
        batch_size=int(cfg.batch_size),
        params=params,
        desc=desc,
        engine=engine,
    )
    if hasattr(
        reward, "prepare"
    ):  # reward=official_paper: per-row rewards weighted over the evaluated records
        reward.prepare(records)
    metrics, rows = protocol.score(records, outputs, au_subset=cfg.au_subset, reward=reward)
    groups = _units(protocol, records)
    metrics = with_intervals(
        metrics,
        rows,
        resamples=int(cfg.bootstrap.resamples),
        seed=int(cfg.bootstrap.seed),
        groups=groups,
        unit=protocol.unit,
    )
    if cfg.get("judge"):
        from hydra.utils import instantiate

        judge_metrics, scores = instantiate(cfg.judge).score(records, outputs)
        metrics.update(judge_metrics)
        rows = [{**row, "judge_score": score} for row, score in zip(rows, scores, strict=True)]
    warning = protocol.check_count(len(records), limited=cfg.limit is not None)
    metrics.update(
        {
            "protocol_info": protocol.info(),
            **({"protocol_warning": warning} if warning else {}),
            **({} if fold is None else {"fold": fold}),
            "split": cfg.split,
            "model": str(adapter.folder),
            "dataset": type(source).__name__,
            "wall_time_s": time.time() - started,
        }
    )
    for row, group in zip(rows, groups or [None] * len(rows), strict=True):
        if group is not None:
            row["subject"] = group
    write_evaluation(out_dir, metrics, rows, sorted({x for r in records for x in r.get("label_set", [])}))
    return metrics, rows, groups


def _units(protocol: Protocol, records: list[dict[str, Any]]) -> list[Any] | None:
    """Subject ids for subject-level resampling (None: resample samples)."""
    if protocol.unit != "subject":
        return None
    subjects = [(r.get("meta_info") or {}).get("subject") for r in records]
    missing = sum(s is None for s in subjects)
    if missing:
        raise DataError(
            f"protocol {protocol.name} resamples subjects, but {missing} of {len(records)} samples have no "
            "meta_info.subject"
        )
    return subjects


def _combine_folds(cfg, protocol: Protocol, results) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per-fold metrics, their mean and the interval of the mean (folds resampled independently)."""
    per_fold = [m for m, _, _ in results]
    counts = [
        counts_from_rows(rows, m.get("au_labels") or [], m.get("emotion_classes") or [])
        for m, rows, _ in results
    ]
    resamples, seed = int(cfg.bootstrap.resamples), int(cfg.bootstrap.seed)
    intervals = bootstrap_intervals(counts, [g for _, _, g in results], resamples, seed)
    units = [u for _, _, g in results if g is not None for u in g]
    warnings = [m["protocol_warning"] for m in per_fold if m.get("protocol_warning")]
    metrics: dict[str, Any] = {
        "protocol": protocol.name,
        "scoring": protocol.scoring,
        "protocol_info": protocol.info(),
        "split": cfg.split,
        "num_samples": sum(m["num_samples"] for m in per_fold),
        **mean_over_folds(per_fold),
        CI_KEY: intervals,
        "bootstrap": bootstrap_info(resamples, seed, protocol.unit, units or None),
        "au_labels": per_fold[0].get("au_labels"),
        "emotion_classes": per_fold[0].get("emotion_classes"),
        "au_f1_per_au": _mean_per_au(per_fold),
        "per_fold": [
            {"fold": m["fold"], "model": m["model"], "num_samples": m["num_samples"]}
            | {k: m.get(k) for k in HEADLINE_KEYS}
            | {CI_KEY: m.get(CI_KEY)}
            for m in per_fold
        ],
        "model": [m["model"] for m in per_fold],
        "dataset": per_fold[0]["dataset"],
        **({"protocol_warning": "; ".join(warnings)} if warnings else {}),
    }
    rows = [{**row, "fold": m["fold"]} for m, fold_rows, _ in results for row in fold_rows]
    return metrics, rows


def _mean_per_au(per_fold: list[dict[str, Any]]) -> dict[str, float | None]:
    """Each AU's F1 averaged over the folds where it is defined (the per-AU table of a cross-validated paper)."""
    out: dict[str, float | None] = {}
    for au in per_fold[0].get("au_labels") or []:
        values = [
            m["au_f1_per_au"].get(au) for m in per_fold if m.get("au_f1_per_au", {}).get(au) is not None
        ]
        out[au] = round(sum(values) / len(values), 6) if values else None
    return out


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The numbers printed at the end: the headline keys that are logged, their intervals, sample count, REGE (the
    affect keys only where this data defines them)."""
    judged = ("judge_score", "judge_score_ci") if "judge" in metrics else ()
    out = {k: metrics.get(k) for k in ("protocol", "num_samples", *HEADLINE_KEYS, "rege", *judged)}
    out |= {k: metrics[k] for k in AFFECT_HEADLINE_KEYS if metrics.get(k) is not None}
    out[CI_KEY] = {k: v for k, v in (metrics.get(CI_KEY) or {}).items() if v is not None}
    if metrics.get("per_fold"):
        out["per_fold"] = [
            {k: f.get(k) for k in ("fold", "num_samples", *HEADLINE_KEYS)} for f in metrics["per_fold"]
        ]
    return out
