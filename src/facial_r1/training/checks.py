"""Config validation that runs before any heavy work: wrong values fail with the key and the allowed values.

Hydra already rejects unknown keys (struct mode) and unknown group options (listing the available ones); this adds
the value and combination checks that a YAML schema cannot express.
"""

from __future__ import annotations

from omegaconf import DictConfig

from facial_r1.facs import AU_EVAL_SUBSET

STAGES = ("sft", "grpo")
# Keys only one stage file defines. Stage files are `@package _global_` overlays, so an experiment that sets GRPO
# keys without `override /stage: grpo` composes cleanly into an SFT run: these sets make that an error instead.
STAGE_ONLY_KEYS = {
    "sft": frozenset({"num_samples", "batch_size", "max_grad_norm"}),
    "grpo": frozenset({"objective", "prompts_per_step", "micro_batch_size", "log_completions_every_n_steps"}),
}


class ConfigError(ValueError):
    pass


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _check_built_from_config(stage: DictConfig) -> None:
    """``stage.module`` with its ``optimizer`` and ``lr_scheduler`` builds (imports its targets) - a typo in a
    ``_target_`` fails here, not after the model has loaded."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    for key in ("module", "optimizer", "lr_scheduler"):
        _need(key in stage and "_target_" in stage[key], f"stage.{key}: needs a _target_ (see conf/stage/)")
    try:
        instantiate(stage.module)
    except InstantiationException as err:
        raise ConfigError(f"stage.module / stage.optimizer / stage.lr_scheduler: {err}") from err


def check_train_config(cfg: DictConfig) -> None:
    """Validate a composed ``train.yaml``; raises :class:`ConfigError` naming the key."""
    stage = cfg.stage
    _need(stage.name in STAGES, f"stage.name={stage.name!r}: allowed values are {', '.join(STAGES)}")
    for other in STAGES:
        stray = sorted(STAGE_ONLY_KEYS[other] & set(stage)) if other != stage.name else []
        _need(
            not stray,
            f"stage.{', stage.'.join(stray)}: {other.upper()} settings in a stage={stage.name} run. An experiment "
            f"that configures {other.upper()} must name its stage (`- override /stage: {other}` in its defaults); "
            f"on the command line use stage={other}",
        )
    _need(
        int(cfg.trainer.max_steps) > 0,
        f"trainer.max_steps={cfg.trainer.max_steps}: must be > 0 (training is counted in steps)",
    )
    from facial_r1.training.optim import SCHEDULES

    _need(
        stage.scheduler in SCHEDULES,
        f"stage.scheduler={stage.scheduler!r}: allowed values are {', '.join(SCHEDULES)}",
    )
    _need(float(stage.lr) > 0, f"stage.lr={stage.lr}: must be > 0")
    _check_built_from_config(stage)
    _need(int(stage.accumulate_grad_batches) >= 1, "stage.accumulate_grad_batches must be >= 1")
    if stage.name == "sft":
        n = stage.num_samples
        _need(
            n == "all" or (isinstance(n, int) and n > 0),
            f"stage.num_samples={n!r}: allowed values are a positive integer or 'all'",
        )
        _need(int(stage.batch_size) > 0, f"stage.batch_size={stage.batch_size}: must be > 0")
    else:
        from facial_r1.grpo.config import GRPOConfig

        try:
            GRPOConfig(**dict(stage.objective))
        except (TypeError, ValueError) as err:  # TypeError = unknown key in stage.objective
            raise ConfigError(f"stage.objective: {err}") from err
        _need(
            int(stage.prompts_per_step) > 0, f"stage.prompts_per_step={stage.prompts_per_step}: must be > 0"
        )
        _need(
            int(stage.accumulate_grad_batches) == 1,
            "stage.accumulate_grad_batches must be 1 for GRPO: accumulate inside a rollout batch with "
            "stage.micro_batch_size (dapo needs the whole batch's token count at generation time)",
        )
    subset = cfg.get("eval_au_subset")
    _need(
        subset is None or subset in AU_EVAL_SUBSET,
        f"eval_au_subset={subset!r}: allowed values are null, {', '.join(AU_EVAL_SUBSET)}",
    )
    model = cfg.model
    _need(
        model.reference in ("auto", "lora_disabled", "frozen_copy"),
        f"model.reference={model.reference!r}: allowed values are auto, lora_disabled, frozen_copy",
    )
    _need(
        not (model.reference == "lora_disabled" and not model.lora),
        "model.reference=lora_disabled needs model.lora (full fine-tuning has no adapter to disable); use frozen_copy",
    )
    _need(
        model.dtype in ("auto", "float32", "bfloat16", "float16"),
        f"model.dtype={model.dtype!r}: allowed values are auto, float32, bfloat16, float16",
    )
    _need(
        bool(model.path or model.init_from or model.tiny),
        "model: set model.path (a local Qwen2.5-VL folder), model.init_from, or use model=tiny",
    )
