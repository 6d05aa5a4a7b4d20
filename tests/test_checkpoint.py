"""Checkpoints that fit: trainable weights only, streamed to disk, no end-of-fit save for real checkpoints, and an
exact resume on the tiny model."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_TRAIN_ARGS, run_train
from safetensors.torch import load_file

from facial_r1.training.checkpoint import (
    StreamingCheckpointIO,
    WallClock,
    check_restorable,
    drop_frozen_weights,
)


def test_streaming_checkpoint_io_writes_atomically(tmp_path):
    io = StreamingCheckpointIO()
    state = {"state_dict": {"w": torch.arange(6.0)}, "global_step": 3}
    io.save_checkpoint(state, tmp_path / "ck" / "last.ckpt")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["last.ckpt"]  # no temporary left behind
    loaded = io.load_checkpoint(tmp_path / "ck" / "last.ckpt")
    assert torch.equal(loaded["state_dict"]["w"], state["state_dict"]["w"]) and loaded["global_step"] == 3


def test_wall_clock_adds_the_sessions_before_a_resume():
    killed = WallClock(started=1000.0)
    state = killed.state_dict()  # what a checkpoint written now holds
    assert state["elapsed_s"] > 0
    resumed = WallClock()
    resumed.load_state_dict(state)
    assert resumed.elapsed() >= state["elapsed_s"]
    assert resumed.elapsed() - state["elapsed_s"] < 60  # plus this session's seconds only
    fresh = WallClock()
    fresh.load_state_dict({})  # a checkpoint written before the clock existed
    assert fresh.elapsed() < 60


def test_frozen_weights_are_dropped_and_only_they_may_be_missing():
    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    module[0].requires_grad_(False)
    state = {f"model.{k}": v for k, v in module.state_dict().items()}
    dropped = drop_frozen_weights(state, module, prefix="model.")
    assert sorted(dropped) == ["model.0.bias", "model.0.weight"] and sorted(state) == [
        "model.1.bias",
        "model.1.weight",
    ]
    check_restorable(dropped, module, prefix="model.")
    with pytest.raises(RuntimeError, match=r"lacks 1 trainable weights \(first: model\.1\.weight\)"):
        check_restorable(["model.1.weight"], module, prefix="model.")


LORA_ARGS = [
    *(a for a in TINY_TRAIN_ARGS if not a.startswith(("trainer.max_steps", "stage.eval"))),
    "stage.eval.every_n_steps=0",
    "logger=none",
    "model.lora={r: 4, alpha: 8}",
    "stage.scheduler=constant",  # the schedule then does not depend on trainer.max_steps
    "stage.lr=1e-2",
]


@pytest.mark.slow
def test_lora_checkpoints_hold_the_adapter_and_resume_exactly(tmp_path, subprocess_env, tiny_model_dir):
    root = tmp_path / "outputs"
    env = subprocess_env(root)
    run_train([*LORA_ARGS, "trainer.max_steps=4"], env)  # (the tiny model is built: tiny_model_dir)
    (straight,) = (root / "train").glob("*_sft")
    run_train([*LORA_ARGS, "trainer.max_steps=2"], env)
    (half,) = [p for p in (root / "train").glob("*_sft") if p != straight]
    ckpt = torch.load(half / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert ckpt["global_step"] == 2
    keys = list(ckpt["state_dict"])
    assert keys and all("lora_" in k for k in keys), [k for k in keys if "lora_" not in k][:3]
    run_train([*LORA_ARGS, "trainer.max_steps=4", f"ckpt_path={half / 'checkpoints' / 'last.ckpt'}"], env)
    (resumed,) = [p for p in (root / "train").glob("*_sft") if p not in (straight, half)]
    assert json.loads((resumed / "run_info.json").read_text())["resumed_from"].endswith("last.ckpt")
    # the resumed run's wall time counts the killed session up to its checkpoint, then its own
    counted = next(v["elapsed_s"] for k, v in ckpt["callbacks"].items() if "WallClock" in k)
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["wall_time_s"] == pytest.approx(counted + metrics["session_wall_time_s"])
    assert metrics["session_wall_time_s"] > 0 and counted > 0
    a, b = (
        load_file(straight / "model" / "model.safetensors"),
        load_file(resumed / "model" / "model.safetensors"),
    )
    assert a.keys() == b.keys()
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert not changed, changed[:3]
