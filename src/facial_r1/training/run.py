"""What ``python train.py`` does: compose -> validate -> instantiate -> fit -> export -> evaluate the export.

Outputs, all in the Hydra run folder:
``model/`` (Hugging Face export + ``facial_r1_export.json``), ``metrics.json``, ``predictions.jsonl``, plots,
``checkpoints/`` (for resuming within the stage), ``run_info.json``, ``.hydra/`` (the resolved config), logger files.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from facial_r1.files import write_json_atomic
from facial_r1.lineage import (
    EXPORT_CARD,
    RUN_INFO,
    base_model_id,
    read_card,
    resolve_ckpt_path,
    resolve_init_from,
)
from facial_r1.runtime import load_average, machine_record, set_threads
from facial_r1.tracking.loggers import build_loggers, finish_loggers
from facial_r1.tracking.naming import run_identity
from facial_r1.training.checkpoint import StreamingCheckpointIO, WallClock
from facial_r1.training.checks import check_train_config
from facial_r1.training.optimized_metric import check_optimized_metric, optimized_metric_value

log = logging.getLogger(__name__)


def run_dir_from_hydra() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def build_callbacks(cfg: DictConfig, has_logger: bool = True, clock: WallClock | None = None) -> list:
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar

    confs = (cfg.get("callbacks") or {}).values()
    callbacks = [instantiate(conf) for conf in confs if conf and "_target_" in conf]
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a bar callback when bars are off
        callbacks = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
    if not has_logger:  # logger=none: Lightning refuses an LR monitor with nothing to log to
        callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
    return [*callbacks, clock] if clock is not None else callbacks


def load_splits(source, stage_name: str) -> dict[str, list[dict[str, Any]]]:
    from facial_r1.data.sources.base import require_records

    splits = {split: source.records(split) for split in ("train", "val", "test")}
    require_records(
        source, "train", splits["train"], f"train on ({stage_name})"
    )  # before any model is loaded
    return splits


def train(cfg: DictConfig) -> float | None:
    """Run one stage end to end; returns the metric named by ``optimized_metric`` (for sweepers), or None."""
    import lightning as L
    from hydra.utils import instantiate

    from facial_r1.data.sources import build_source

    check_train_config(cfg)
    check_optimized_metric(cfg.get("optimized_metric"))
    set_threads(cfg)
    started, load_at_start = time.time(), load_average()
    run_dir = run_dir_from_hydra()
    output_root = str(cfg.paths.output_root)
    stage = cfg.stage
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_root, stage.name)
    resumed_info = _read_json(Path(ckpt_path).parent.parent / RUN_INFO) if ckpt_path else {}
    # A resumed run continues from the export it started from ("latest_sft" may name a newer one by now); its
    # checkpoints hold only trainable weights, the frozen rest is reloaded from that folder.
    init_from = resumed_info.get("init_from") or resolve_init_from(cfg.model, output_root)
    base_model = read_card(init_from).get("base_model") if init_from else None
    base_model = base_model or base_model_id(cfg.model)
    info = {
        "stage": stage.name,
        "seed": int(cfg.seed),
        "init_from": init_from,
        "resumed_from": ckpt_path,
        "base_model": base_model,
        "run_dir": str(run_dir),
        "started": started,
    }
    write_json_atomic(run_dir / RUN_INFO, info)
    L.seed_everything(int(cfg.seed), workers=True)

    source = build_source(cfg.dataset)
    prompt = instantiate(cfg.prompt)
    reward = instantiate(cfg.reward)
    splits = load_splits(source, stage.name)
    adapter = instantiate(cfg.model, init_from=init_from)
    module, data = _build_stage(cfg, adapter, prompt, reward, splits)

    identity = run_identity(cfg, resumed_info, run_dir=run_dir)  # a resumed run continues its W&B id and name
    info.update(identity.run_info())
    write_json_atomic(run_dir / RUN_INFO, info)
    loggers = build_loggers(cfg, identity)
    trainer_kwargs: dict[str, Any] = validation_schedule(cfg, len(data.val_records))
    if stage.name == "sft":  # automatic optimisation: Lightning accumulates and clips
        trainer_kwargs.update(
            accumulate_grad_batches=int(stage.accumulate_grad_batches),
            gradient_clip_val=float(stage.max_grad_norm) or None,
        )
    if str(cfg.trainer.get("strategy", "auto")) in (
        "auto",
        "ddp",
        "ddp_spawn",
    ):  # sharded ones save their own way
        trainer_kwargs["plugins"] = [StreamingCheckpointIO()]
    clock = WallClock(started)  # wall_time_s counts the sessions before a resume too
    trainer = instantiate(
        cfg.trainer,
        callbacks=build_callbacks(cfg, has_logger=bool(loggers), clock=clock),
        logger=loggers or False,
        **trainer_kwargs,
    )
    lineage = {k: info[k] for k in ("init_from", "base_model", "resumed_from")}
    lineage["export_dir"] = str(run_dir / "model")
    for lg in loggers:
        lg.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), "lineage": lineage})
    try:
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
        adapter.consolidate()  # sharded (FSDP2) weights -> one plain model on rank 0; every rank takes part
        if not trainer.is_global_zero:
            return None
        export_dir = adapter.export(
            run_dir / "model",
            extra_files={
                EXPORT_CARD: {
                    **info,
                    "global_step": int(trainer.global_step),
                    "time": time.time(),
                    "prompt_version": getattr(prompt, "version", None),
                    "synth_round": getattr(
                        source, "data_round", None
                    ),  # set when trained on synthesised rounds
                }
            },
        )
        log.info("exported %s", export_dir)
        metrics = final_evaluation(cfg, adapter, prompt, reward, splits, run_dir, loggers, trainer)
        metrics["wall_time_s"] = clock.elapsed()
        metrics["session_wall_time_s"] = metrics["wall_time_s"] - clock.before  # this process's share
        metrics["global_step"] = int(trainer.global_step)
        metrics["machine"] = machine_record(load_at_start)
        write_json_atomic(run_dir / "metrics.json", metrics)
        write_json_atomic(
            run_dir / RUN_INFO, {**info, "finished": time.time(), "wall_time_s": metrics["wall_time_s"]}
        )
        return optimized_metric_value(metrics, cfg.get("optimized_metric"))
    finally:
        finish_loggers(loggers)


def _build_stage(cfg, adapter, prompt, reward, splits):
    """The stage's LightningModule (``stage.module``, a ``_partial_`` whose nested ``optimizer`` / ``lr_scheduler``
    are built from config too) and its data: the SFT set written by the teacher, or GRPO's labelled prompts."""
    from hydra.utils import instantiate

    from facial_r1.training.data import StageData

    stage = cfg.stage
    module_factory = instantiate(stage.module)
    common = {
        "adapter": adapter,
        "prompt": prompt,
        "stage": stage,
        "reward": reward,
        "au_subset": cfg.eval_au_subset,
    }
    if stage.name == "sft":
        from facial_r1.data.teachers.template import build_sft_records

        teacher = instantiate(cfg.teacher)
        n = stage.num_samples if stage.num_samples == "all" else int(stage.num_samples)
        train_records = build_sft_records(
            splits["train"],
            n,
            seed=int(stage.seed),
            teacher=teacher,
            instruction_rows=stage.get("instruction_rows"),
        )
        module = module_factory(**common)
        batch_size = int(stage.batch_size)
    else:
        # GRPO needs only labels (no reference reasoning): every train sample with a label of either kind.
        train_records = [r for r in splits["train"] if r.get("labels") or r.get("AUs") is not None]
        module = module_factory(
            **common,
            resample_records=train_records,
            engine=instantiate(cfg.rollout, policy=adapter),  # rollout=hf (default) | vllm
        )
        batch_size = int(stage.prompts_per_step)
    if hasattr(reward, "prepare"):  # dataset-level statistics (reward=official_paper's AU-frequency weights)
        reward.prepare(train_records)
    log.info("%s: %d training records", stage.name, len(train_records))
    data = StageData(
        train_records,
        splits["val"][: int(stage.eval.num_samples)],
        splits["test"],
        batch_size=batch_size,
        seed=int(stage.seed),
        accumulate=int(stage.accumulate_grad_batches),
        val_batch_size=int(stage.eval.batch_size),
    )
    return module, data


def validation_schedule(cfg: DictConfig, num_val_records: int) -> dict[str, Any]:
    """Trainer arguments that run Lightning's validation loop every ``stage.eval.every_n_steps`` optimizer steps.

    ``val_check_interval`` counts training batches: ``every_n_steps x stage.accumulate_grad_batches``. A
    ``trainer.val_check_interval`` set in the config wins (Lightning's meaning). No val records, or
    ``every_n_steps: 0`` without a ``trainer.val_check_interval``: no validation.
    """
    every = int(cfg.stage.eval.every_n_steps)
    if num_val_records == 0 or (every <= 0 and cfg.trainer.get("val_check_interval") is None):
        return {"limit_val_batches": 0}
    if cfg.trainer.get("val_check_interval") is not None:
        return {}
    return {"val_check_interval": every * int(cfg.stage.accumulate_grad_batches)}


def final_evaluation(cfg, adapter, prompt, reward, splits, run_dir: Path, loggers, trainer) -> dict[str, Any]:
    """Greedy evaluation of the trained weights on the held-out split -> metrics.json, predictions, plots, and the
    loggers (``<split>/*``: W&B run summary, predictions table with faces)."""
    from facial_r1.evaluation.report import write_evaluation
    from facial_r1.evaluation.runner import evaluate_records, headline_metrics
    from facial_r1.tracking.media import log_evaluation

    final = cfg.stage.final_eval
    records = splits[final.split]
    if final.limit is not None:
        records = records[: int(final.limit)]
    metrics, rows = evaluate_records(
        adapter,
        records,
        prompt,
        reward=reward,
        au_subset=cfg.eval_au_subset,
        batch_size=int(final.batch_size),
        max_new_tokens=int(final.max_new_tokens),
        desc=f"final eval ({final.split})",
        engine=getattr(
            trainer.lightning_module, "engine", None
        ),  # GRPO's rollout engine, synced to the weights
    )
    metrics["split"] = final.split
    if cfg.get("bootstrap"):  # 95 % intervals of the headline metrics, as evaluate.py writes them
        from facial_r1.evaluation.uncertainty import with_intervals

        metrics = with_intervals(
            metrics, rows, resamples=int(cfg.bootstrap.resamples), seed=int(cfg.bootstrap.seed)
        )
    label_set = sorted({label for r in records for label in r.get("label_set", [])})
    paths = write_evaluation(run_dir, metrics, rows, label_set)
    figures = {k: p for k, p in paths.items() if p.suffix == ".png"}
    # Held-out numbers under <split>/ (test/emotion_acc): the W&B run summary, a predictions table with the faces.
    log_evaluation(
        loggers, metrics, rows, records, prefix=final.split, step=int(trainer.global_step), figures=figures
    )
    scalars = headline_metrics(metrics, final.split)
    log.info("final %s metrics: %s", final.split, {k: round(v, 4) for k, v in scalars.items()})
    return metrics


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}
