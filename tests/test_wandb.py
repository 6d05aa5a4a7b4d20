"""W&B: the default ``logger=wandb`` writes an offline run (no key, no network) that ``wandb sync`` can upload later.

Reuses the tiny end-to-end SFT run of conftest.py (``tiny_sft_run``, started with ``logger=wandb``).
"""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_offline_wandb_run_folder(tiny_sft_run):
    runs = sorted((tiny_sft_run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, f"expected one offline run folder, found {runs}"
    run = runs[0]
    records = list(run.glob("*.wandb"))
    assert len(records) == 1 and records[0].stat().st_size > 0, "the run's .wandb record file is missing"
    # The record holds the run's config and the train/val metrics (protobuf keeps these strings as plain bytes).
    data = records[0].read_bytes()
    for key in (b"train/loss", b"val/emotion_acc", b"n_train"):
        assert key in data, key
    # The CSV copy that logger=wandb keeps beside it.
    assert list((tiny_sft_run / "csv").glob("version_*/metrics.csv"))
