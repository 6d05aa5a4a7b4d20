"""What both stage modules share: the model registration and periodic generation-based validation."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L

from facial_r1.evaluation.runner import evaluate_records, headline_metrics
from facial_r1.training.checkpoint import check_restorable, drop_frozen_weights

log = logging.getLogger(__name__)


class StageModule(L.LightningModule):
    """Holds the adapter (its ``model`` registered so Lightning moves, checkpoints and optimises it)."""

    def __init__(self, adapter, prompt, stage, reward=None, val_records=None, au_subset=None):
        super().__init__()
        self.adapter = adapter
        self.model = adapter.model
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps whatever mode it finds
        self.prompt, self.stage, self.reward, self.au_subset = prompt, stage, reward, au_subset
        self.val_records = list(val_records or [])[: int(stage.eval.num_samples)]
        self._last_eval_step = -1
        # Checkpoints hold trainable weights only (training/checkpoint.py); the frozen rest is already loaded.
        self.strict_loading = False

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        drop_frozen_weights(checkpoint["state_dict"], self.model, prefix="model.")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        expected = {f"model.{name}" for name, _ in self.model.named_parameters()}
        check_restorable(sorted(expected - set(checkpoint["state_dict"])), self.model, prefix="model.")

    def configure_model(self) -> None:
        """Prepare the model for a parameter-sharding strategy; runs before the optimizer is built and before a
        checkpoint is restored.

        - Lightning's ``ModelParallelStrategy`` (trainer=fsdp / fsdp_cpu): shard with FSDP2 over all ranks, one group
          per decoder layer and vision block (the adapter names them); tensor parallelism is not used.
        - DeepSpeed ZeRO-3 (trainer=deepspeed_zero3) partitions the parameters itself, later; generation only has
          to decode in step across ranks, like under FSDP.
        """
        from lightning.pytorch.strategies import DeepSpeedStrategy, ModelParallelStrategy

        strategy = self.trainer.strategy
        if isinstance(strategy, ModelParallelStrategy):
            from torch.distributed.device_mesh import init_device_mesh

            self.adapter.shard(init_device_mesh(self.device.type, (self.trainer.world_size,)))
        elif isinstance(strategy, DeepSpeedStrategy) and strategy.zero_stage_3:
            from facial_r1.models.sharding import all_ranks_done

            self.adapter.decode_sync = all_ranks_done

    def maybe_validate(self) -> None:
        """Greedy validation every ``stage.eval.every_n_steps`` optimizer steps (rank 0 generates, all log)."""
        every = int(self.stage.eval.every_n_steps)
        step = self.trainer.global_step
        if every > 0 and self.val_records and step > 0 and step % every == 0 and self._last_eval_step != step:
            self._last_eval_step = step
            self.validate_generation()

    def validate_generation(self) -> dict[str, Any]:
        """Greedy generation on the val split; logs ``val/*`` (accuracy, UAR, AU F1, format, consistency...)."""
        metrics, _ = evaluate_records(
            self.adapter,
            self.val_records,
            self.prompt,
            reward=self.reward,
            au_subset=self.au_subset,
            batch_size=int(self.stage.eval.batch_size),
            max_new_tokens=int(self.stage.eval.max_new_tokens),
            progress=False,
            desc="val",
        )
        scalars = headline_metrics(metrics, "val")
        if scalars:
            self.log_dict(scalars, batch_size=len(self.val_records), sync_dist=True)
        log.info("step %d val: %s", self.trainer.global_step, {k: round(v, 3) for k, v in scalars.items()})
        return metrics
