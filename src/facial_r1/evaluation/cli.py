"""What ``python evaluate.py`` does: load a model and a split, generate, score, write and log the results."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from facial_r1.evaluation.affect_metrics import AFFECT_HEADLINE_KEYS
from facial_r1.evaluation.generate import generate_outputs
from facial_r1.evaluation.metrics import HEADLINE_KEYS, compute_metrics
from facial_r1.evaluation.report import write_evaluation
from facial_r1.models.adapter import SamplingParams

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from facial_r1.lineage import resolve_init_from
    from facial_r1.runtime import set_threads
    from facial_r1.tracking.loggers import build_loggers, finish_loggers
    from facial_r1.tracking.media import log_evaluation
    from facial_r1.tracking.naming import run_identity

    set_threads(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    started = time.time()
    source = instantiate(cfg.dataset)
    records = source.records(cfg.split)
    if cfg.limit is not None:
        records = records[: int(cfg.limit)]
    init_from = resolve_init_from(cfg.model, str(cfg.paths.output_root))
    adapter = instantiate(cfg.model, init_from=init_from)
    if torch.cuda.is_available():
        adapter.model.to("cuda")
    engine = instantiate(cfg.rollout, policy=adapter)  # rollout=hf (default) | vllm
    prompt = instantiate(cfg.prompt)
    reward = instantiate(cfg.reward)
    params = SamplingParams(
        max_new_tokens=int(cfg.max_new_tokens),
        do_sample=bool(cfg.sampling.do_sample),
        temperature=float(cfg.sampling.temperature),
        top_p=float(cfg.sampling.top_p),
        seed=int(cfg.seed),
    )
    outputs = generate_outputs(
        adapter,
        records,
        prompt.user_text,
        batch_size=int(cfg.batch_size),
        params=params,
        desc=f"evaluate {cfg.split}",
        engine=engine,
    )
    metrics, rows = compute_metrics(records, outputs, au_subset=cfg.au_subset, reward=reward)
    if cfg.get("judge"):
        judge_metrics, scores = instantiate(cfg.judge).score(records, outputs)
        metrics.update(judge_metrics)
        rows = [{**row, "judge_score": score} for row, score in zip(rows, scores, strict=True)]
    metrics.update(
        {
            "split": cfg.split,
            "model": str(adapter.folder),
            "dataset": type(source).__name__,
            "wall_time_s": time.time() - started,
        }
    )
    label_set = sorted({label for r in records for label in r.get("label_set", [])})
    paths = write_evaluation(run_dir, metrics, rows, label_set)
    loggers = build_loggers(cfg, run_identity(cfg, run_dir=run_dir))
    try:
        for lg in loggers:
            lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        figures = {k: p for k, p in paths.items() if p.suffix == ".png"}
        log_evaluation(loggers, metrics, rows, records, prefix="eval", step=0, figures=figures)
        if metrics.get("judge_score") is not None:
            for lg in loggers:
                lg.log_metrics({"eval/judge_score": metrics["judge_score"]}, step=0)
    finally:
        finish_loggers(loggers)
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    print(json.dumps(_headline(metrics), indent=2))
    return metrics.get("emotion_acc")


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The numbers printed at the end: the same headline keys that are logged, plus sample count and REGE (the
    affect keys only where this data defines them)."""
    judged = ("judge_score", "judge_score_ci") if "judge" in metrics else ()
    affect = {k: metrics[k] for k in AFFECT_HEADLINE_KEYS if metrics.get(k) is not None}
    return {k: metrics.get(k) for k in ("num_samples", *HEADLINE_KEYS, "rege", *judged)} | affect
