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


@pytest.fixture(scope="module")
def sft_start(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, subprocess_env) -> Path:
    """An SFT export of the tiny model that writes the format and names AUs, so GRPO rewards vary inside groups and
    the updates below are not all zero (a random-init model scores 0 everywhere: every comparison would be moot)."""
    out = tmp_path_factory.mktemp("grpo_start")
    args = [
        "dataset.n_train=400",
        "dataset.n_val=8",
        "dataset.n_test=8",
        "dataset.progress=false",
        "model.tiny.warm_start_steps=0",
        "stage.num_samples=all",
        "stage.batch_size=16",
        "trainer.max_steps=120",
        "stage.eval.every_n_steps=0",
        "stage.final_eval.limit=4",
        "stage.final_eval.max_new_tokens=16",
        "trainer.enable_progress_bar=false",
        "logger=csv",
    ]
    run_train(args, subprocess_env(out), timeout=420)
    (run,) = (out / "train").glob("*_sft")
    return run / "model"


# 4 prompts x G 4 per step in one process, or 2 prompts per rank on 2 ranks: the same global rollout batch.
EQUIVALENCE_ARGS = (
    *GRPO_ARGS,
    "dataset.n_train=400",
    "stage.objective.num_generations=4",
    "stage.objective.max_completion_length=48",
    "stage.objective.zero_std=mask",  # per-rank masked counts differ: the loss must be normalised globally
    "trainer.max_steps=3",
    "trainer.log_every_n_steps=1",
    "callbacks.model_checkpoint.every_n_train_steps=0",
)
# Means over ranks of per-rank means equal the global means for these (equal counts per rank, sequence-weighted loss);
# a token mean such as the KL metric is weighted differently across ranks, so it is compared only within one process.
COMPARED = (
    "train/reward/total",
    "train/completion/length",
    "train/policy/zero_std_frac",
    "train/policy/loss",
)


def _step_rows(run: Path, keys: tuple[str, ...] = COMPARED) -> dict[int, dict[str, float]]:
    rows = {}
    for row in _metrics_rows(run):
        if row.get("train/reward/total"):
            rows[int(row["step"])] = {k: float(row[k]) for k in keys}
    return rows


def _val_rows(run: Path) -> dict[int, dict[str, str]]:
    """``{logged step: {val/* key: value}}`` of the rows the validation loop wrote."""
    return {
        int(row["step"]): {k: v for k, v in row.items() if k.startswith("val/")}
        for row in _metrics_rows(run)
        if row.get("val/format_rate")
    }


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


@pytest.fixture(scope="module")
def single_process_grpo(tmp_path_factory: pytest.TempPathFactory, sft_start: Path, subprocess_env) -> Path:
    out = tmp_path_factory.mktemp("grpo_single")
    run_train(
        [*EQUIVALENCE_ARGS, "stage.prompts_per_step=4", f"model.init_from={sft_start}"], subprocess_env(out)
    )
    (run,) = (out / "train").iterdir()
    return run


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["ddp_cpu", "fsdp_cpu"])
def test_grpo_on_two_processes_matches_one_process(
    trainer: str, tmp_path: Path, sft_start: Path, single_process_grpo: Path, subprocess_env
) -> None:
    """2 gloo processes (DDP, or FSDP2 with sharded parameters and synced decoding) with 2 prompts each reproduce the
    single-process run with 4 prompts: the same rollouts, reduced metrics, the same updates, the same export."""
    out = tmp_path / "out"
    args = [
        *EQUIVALENCE_ARGS,
        f"trainer={trainer}",
        "stage.prompts_per_step=2",
        f"model.init_from={sft_start}",
    ]
    run_train(args, subprocess_env(out), timeout=420)
    runs = list((out / "train").iterdir())
    assert len(runs) == 1, runs  # Lightning re-launches train.py for rank 1 inside the same Hydra run folder
    run = runs[0]
    assert json.loads((run / "metrics.json").read_text())["global_step"] == 3

    single, multi = _step_rows(single_process_grpo), _step_rows(run)
    assert sorted(single) == sorted(multi) == [0, 1, 2]
    assert any(single[s]["train/policy/zero_std_frac"] < 1 for s in single), (
        "all groups flat: nothing compared"
    )
    for step in single:
        for key in COMPARED:
            assert multi[step][key] == pytest.approx(single[step][key], rel=1e-4, abs=1e-6), (step, key)

    start, want, got = _weights(sft_start), _weights(single_process_grpo / "model"), _weights(run / "model")
    assert max((want[k] - start[k]).abs().max().item() for k in want) > 1e-5, "the single run did not update"
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-4, atol=1e-6, msg=name)
    held_out = [json.loads((r / "metrics.json").read_text()) for r in (single_process_grpo, run)]
    assert held_out[0]["emotion_acc"] == held_out[1]["emotion_acc"]


@pytest.mark.slow
def test_grpo_resume_after_kill(tmp_path: Path, sft_start: Path, subprocess_env) -> None:
    """Kill a GRPO run after a checkpoint; ``ckpt_path=last`` continues it exactly: every later step logs the reward
    and KL of an uninterrupted run (same rollouts, optimizer state, data position, and the KL still measured
    against the starting export, not the restored weights), Lightning's validation loop logs the same ``val/*`` at the
    same steps, and both end with the same weights."""
    args = [
        *EQUIVALENCE_ARGS,
        "stage.prompts_per_step=4",
        "trainer.max_steps=6",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        "stage.eval.every_n_steps=2",  # validation right after each checkpoint (manual optimisation + val loop)
        "stage.eval.num_samples=4",
        "stage.eval.max_new_tokens=32",
        f"model.init_from={sft_start}",
    ]
    run_train(args, subprocess_env(tmp_path / "whole"))
    (whole,) = (tmp_path / "whole" / "train").iterdir()

    out = tmp_path / "out"
    env = subprocess_env(out)
    proc = subprocess.Popen(
        [sys.executable, "train.py", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    ckpt, step = None, 0
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
            time.sleep(0.05)
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

    keys = (*COMPARED, "train/policy/kl")  # KL: against the starting export, also after the restore
    expected, got = _step_rows(whole, keys), _step_rows(resumed, keys)
    assert sorted(got) == list(range(step, 6))
    for s in got:
        for key in keys:
            assert got[s][key] == pytest.approx(expected[s][key], rel=1e-4, abs=1e-6), (s, key)
    # val/* at steps 2, 4, 6 (logged at step index 1, 3, 5); the resumed run logs those after its restored step.
    val_whole, val_resumed = _val_rows(whole), _val_rows(resumed)
    assert sorted(val_whole) == [1, 3, 5] and "val/format_rate" in val_whole[1]
    assert val_resumed == {s: row for s, row in val_whole.items() if s >= step}
    want = _weights(whole / "model")
    for name, tensor in _weights(resumed / "model").items():
        torch.testing.assert_close(tensor, want[name], rtol=1e-4, atol=1e-6, msg=name)
