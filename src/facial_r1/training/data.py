"""Data for the stages: records from a source, images decoded lazily, batches indexed by step for exact resume.

Training samplers are infinite and indexed by the global batch number: the batch at position k is a pure function of
(seed, k). A resumed run asks for batches from the restored position on, so no sample is repeated or skipped -
without depending on Lightning's mid-epoch loader state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from facial_r1.data.images import load_image

log = logging.getLogger(__name__)


class RecordDataset(Dataset):
    """Records with their image decoded on access (the record's ``image`` is a path)."""

    def __init__(self, records: list[dict[str, Any]]):
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        return {"record": record, "image": load_image(record)}


class StepBatches(IterableDataset):
    """Infinite stream of batches of ``batch_size`` records: epoch e is a seeded permutation, batch k = slice k.

    ``start_batch`` is the restored position (optimizer steps x accumulation) when a run resumes. Under data
    parallelism every rank draws the same global batch of ``batch_size x world_size`` records and keeps its own
    slice, so the union over ranks equals a single process's batch of that size (and GRPO groups never cross ranks).
    """

    def __init__(
        self,
        dataset: RecordDataset,
        batch_size: int,
        seed: int,
        start_batch: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if len(dataset) == 0:
            raise ValueError("the training split is empty: nothing to train on")
        self.dataset, self.seed, self.start_batch = dataset, seed, start_batch
        self.local_batch_size, self.rank = batch_size, rank
        self.batch_size = batch_size * world_size  # the global batch

    def indices(self, batch: int) -> list[int]:
        n = len(self.dataset)
        per_epoch = max(1, n // self.batch_size) if n >= self.batch_size else 1
        epoch, offset = divmod(batch, per_epoch)
        perm = torch.randperm(
            n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        ).tolist()
        if n < self.batch_size:  # tiny sets: sample with wrap-around
            return [perm[(offset * self.batch_size + i) % n] for i in range(self.batch_size)]
        return perm[offset * self.batch_size : (offset + 1) * self.batch_size]

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        batch = self.start_batch
        lo = self.rank * self.local_batch_size
        while True:
            local = self.indices(batch)[lo : lo + self.local_batch_size]
            yield [self.dataset[i] for i in local]
            batch += 1


class RecordBatches(IterableDataset):
    """``records`` in order, ``batch_size`` at a time, as lists of ``{"record"}`` items (images are decoded by the
    generation call). Iterable, so Lightning gives every rank the whole list instead of a distributed slice:
    validation metrics are computed over all of it, and sharded models decode in step on every rank."""

    def __init__(self, records: list[dict[str, Any]], batch_size: int):
        self.records, self.batch_size = records, max(1, int(batch_size))

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        for start in range(0, len(self.records), self.batch_size):
            yield [{"record": r} for r in self.records[start : start + self.batch_size]]


def collate_samples(items: list[dict[str, Any]]) -> dict[str, list]:
    """Keep records and PIL images as lists: the model adapter does the family-specific encoding."""
    return {"records": [it["record"] for it in items], "images": [it.get("image") for it in items]}


def _collate_prebatched(batches: list[list[dict[str, Any]]]) -> dict[str, list]:
    return collate_samples(batches[0])


class StageData(L.LightningDataModule):
    """Train/val/test records for one stage. ``train_records`` is what the stage trains on (SFT set or prompts);
    ``val_records`` are validated in batches of ``val_batch_size`` (the caller keeps the first stage.eval.num_samples).
    """

    def __init__(
        self,
        train_records: list[dict[str, Any]],
        val_records: list[dict[str, Any]],
        test_records: list[dict[str, Any]],
        batch_size: int,
        seed: int,
        num_workers: int = 0,
        accumulate: int = 1,
        val_batch_size: int = 64,
    ):
        super().__init__()
        self.train_records, self.val_records, self.test_records = train_records, val_records, test_records
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.accumulate, self.val_batch_size = accumulate, val_batch_size

    def train_dataloader(self) -> DataLoader:
        # Lightning restores the checkpoint before building this loader, so global_step is already the resumed one.
        trainer = self.trainer
        start = trainer.global_step * self.accumulate if trainer is not None else 0
        rank, world = getattr(trainer, "global_rank", 0), getattr(trainer, "world_size", 1)
        stream = StepBatches(
            RecordDataset(self.train_records), self.batch_size, self.seed, start, rank, world
        )
        return DataLoader(stream, batch_size=1, collate_fn=_collate_prebatched, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        stream = RecordBatches(self.val_records, self.val_batch_size)
        return DataLoader(stream, batch_size=1, collate_fn=_collate_prebatched)
