"""What both stage modules share: the model registration, the config-built optimizer and schedule, and greedy
generation-based validation run by Lightning's validation loop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import lightning as L

from facial_r1.evaluation.generate import generate_outputs
from facial_r1.evaluation.metrics import compute_metrics
from facial_r1.evaluation.runner import headline_metrics
from facial_r1.models.adapter import SamplingParams
from facial_r1.training.checkpoint import check_restorable, drop_frozen_weights
from facial_r1.training.optim import configure_optimizers

log = logging.getLogger(__name__)


class StageModule(L.LightningModule):
    """Holds the adapter (its ``model`` registered so Lightning moves, checkpoints and optimises it).

    Built from ``stage.module`` (a ``_partial_`` of the stage's class, see conf/stage/); ``optimizer`` and
    ``lr_scheduler`` are the ``stage.optimizer`` / ``stage.lr_scheduler`` partials: ``optimizer(params)``,
    ``lr_scheduler(optimizer=...)``.
    """

    def __init__(
        self,
        adapter,
        prompt,
        stage,
        reward=None,
        au_subset=None,
        optimizer: Callable | None = None,
        lr_scheduler: Callable | None = None,
    ):
        super().__init__()
        if optimizer is None:
            raise ValueError(
                "stage.optimizer: a stage module needs an optimizer factory (see conf/optimizer/)"
            )
        self.adapter = adapter
        self.model = adapter.model
        self.model.train()  # from_pretrained returns eval mode; Lightning keeps whatever mode it finds
        self.prompt, self.stage, self.reward, self.au_subset = prompt, stage, reward, au_subset
        self.optimizer_factory, self.lr_scheduler_factory = optimizer, lr_scheduler
        self._val_records: list[dict[str, Any]] = []
        self._val_outputs: list[str] = []
        # Checkpoints hold trainable weights only (training/checkpoint.py); the frozen rest is already loaded.
        self.strict_loading = False

    def configure_optimizers(self):
        return configure_optimizers(self.model, self.optimizer_factory, self.lr_scheduler_factory)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        drop_frozen_weights(checkpoint["state_dict"], self.model, prefix="model.")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "state_dict" not in checkpoint:
            # A sharded strategy (trainer=fsdp: Lightning's ModelParallelStrategy) loaded the weights into the
            # sharded module itself and took them out of the checkpoint before this hook runs.
            return
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

    # ------------------------------------------------------------------ validation (Lightning's loop)
    # Every ``trainer.val_check_interval`` training batches (run.py derives it from stage.eval.every_n_steps) the
    # val batches (StageData.val_dataloader: the first stage.eval.num_samples val records, the same on every rank,
    # so sharded models decode in step) are generated greedily; the metrics are computed once over all of them.
    def on_validation_epoch_start(self) -> None:
        self._val_records, self._val_outputs = [], []

    def validation_step(self, batch: dict[str, list], batch_idx: int) -> None:
        records = batch["records"]
        self._val_outputs += generate_outputs(
            self.adapter,
            records,
            self.prompt.user_text,
            batch_size=len(records),
            params=SamplingParams.greedy(int(self.stage.eval.max_new_tokens)),
            progress=False,
            desc="val",
        )
        self._val_records += records

    def on_validation_epoch_end(self) -> None:
        """Logs ``val/*`` (accuracy, UAR, AU F1, format, consistency...) of the greedy outputs on the val batches."""
        if not self._val_records:
            return
        metrics, _ = compute_metrics(
            self._val_records, self._val_outputs, au_subset=self.au_subset, reward=self.reward
        )
        scalars = headline_metrics(metrics, "val")
        if scalars:
            self.log_dict(scalars, batch_size=len(self._val_records), sync_dist=True)
        log.info("step %d val: %s", self.trainer.global_step, {k: round(v, 3) for k, v in scalars.items()})
        self._val_records, self._val_outputs = [], []
