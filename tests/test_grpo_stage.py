"""GRPO stage: data sharding across ranks, a DDP run on 2 CPU processes (gloo), and a resumed GRPO run.

The objective math is unit-tested in test_grpo_objective.py; these tests check the stage around it.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_train

from facial_r1.training.data import RecordDataset, StepBatches

# A few GRPO steps on the tiny model: 2 prompts x G 2, short completions.
GRPO_ARGS = (
    "stage=grpo",
    "dataset.n_train=64",
    "dataset.n_val=8",
    "dataset.n_test=8",
    "dataset.progress=false",
    "model.tiny.warm_start_steps=0",
    "stage.prompts_per_step=2",
    "stage.objective.num_generations=2",
    "stage.objective.max_completion_length=16",
    "stage.eval.every_n_steps=0",
    "stage.final_eval.limit=4",
    "stage.final_eval.max_new_tokens=16",
    "trainer.enable_progress_bar=false",
    "logger=csv",
)


class _FakeDataset(RecordDataset):
    def __getitem__(self, index: int):  # no image decoding: the sharding is what is tested
        return {"record": self.records[index], "image": None}


def test_ranks_split_the_global_batch() -> None:
    """Every rank takes its own slice of the same global batch: the union equals a single process's batch."""
    data = _FakeDataset([{"id": str(i)} for i in range(40)])
    single = StepBatches(data, batch_size=4, seed=3)
    ranks = [StepBatches(data, batch_size=2, seed=3, rank=r, world_size=2) for r in (0, 1)]
    single_it, rank_its = iter(single), [iter(r) for r in ranks]
    for _step in range(12):  # crosses an epoch boundary (40 // 4 = 10 batches per epoch)
        whole = [item["record"]["id"] for item in next(single_it)]
        parts = [[item["record"]["id"] for item in next(it)] for it in rank_its]
        assert parts[0] + parts[1] == whole
        assert not set(parts[0]) & set(parts[1])


def _metrics_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "csv" / "version_0" / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_grpo_ddp_two_cpu_processes(tmp_path: Path, tiny_model_dir: Path, subprocess_env) -> None:
    """trainer=ddp_cpu: 2 gloo processes, one run folder, reduced metrics, an export and held-out metrics."""
    out = tmp_path / "out"
    args = [*GRPO_ARGS, "trainer=ddp_cpu", "trainer.max_steps=2", f"model.init_from={tiny_model_dir}"]
    run_train(args, subprocess_env(out), timeout=420)
    runs = list((out / "train").iterdir())
    assert len(runs) == 1, runs  # Lightning re-launches train.py for rank 1 inside the same Hydra run folder
    run = runs[0]
    assert (run / "model" / "config.json").is_file()
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 2
    rows = [r for r in _metrics_rows(run) if r.get("train/reward/total")]
    assert rows and all(0.0 <= float(r["train/policy/zero_std_frac"]) <= 1.0 for r in rows)


@pytest.mark.slow
def test_grpo_resume_after_kill(tmp_path: Path, tiny_model_dir: Path, subprocess_env) -> None:
    """Kill a GRPO run after its step-2 checkpoint; ckpt_path=last finishes it at step 6 from that checkpoint."""
    out = tmp_path / "out"
    args = [
        *GRPO_ARGS,
        "trainer.max_steps=6",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        f"model.init_from={tiny_model_dir}",
        # Slow each step down so the kill lands between checkpoints (rollouts of 64 tokens).
        "stage.objective.max_completion_length=64",
    ]
    env = subprocess_env(out)
    proc = subprocess.Popen(
        [sys.executable, "train.py", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    ckpt = None
    try:
        while time.time() < deadline and proc.poll() is None:
            found = list((out / "train").glob("*/checkpoints/last.ckpt")) if (out / "train").exists() else []
            if found:
                try:
                    step = torch.load(found[0], map_location="cpu", weights_only=False)["global_step"]
                except Exception:  # written right now; try again
                    step = 0
                if 2 <= step < 6:
                    ckpt = found[0]
                    break
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    if ckpt is None:
        pytest.skip("the run finished before it could be killed between checkpoints (machine too fast)")
    run_train([*args, "ckpt_path=last"], env, timeout=300)
    resumed = sorted((out / "train").iterdir())[-1]
    info = json.loads((resumed / "run_info.json").read_text())
    assert info["resumed_from"] == str(ckpt)
    assert json.loads((resumed / "metrics.json").read_text())["global_step"] == 6
