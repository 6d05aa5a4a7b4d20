"""Hyper-parameter search: the metric train.py returns (``optimized_metric``) and ``hparams_search=grpo_optuna``
(Hydra's Optuna sweeper) running a 2-trial sweep on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_train
from hydra import compose, initialize_config_dir

from facial_r1.evaluation.metrics import compute_metrics
from facial_r1.rewards import CompositeReward, EmotionAccuracyReward
from facial_r1.training.optimized_metric import (
    OPTIMIZABLE,
    check_optimized_metric,
    optimized_metric_value,
)

CONF = REPO / "conf"


def test_check_optimized_metric() -> None:
    for name in (None, "emotion_acc", "au_f1_micro", "rewards.au_f1"):
        check_optimized_metric(name)
    with pytest.raises(ValueError, match="optimized_metric='emotion_accuracy'.*emotion_acc"):
        check_optimized_metric("emotion_accuracy")
    with pytest.raises(ValueError, match="optimized_metric='val/emotion_acc'"):
        check_optimized_metric("val/emotion_acc")


def test_optimized_metric_value(caplog) -> None:
    metrics = {"emotion_acc": 0.5, "au_f1_micro": None, "split": "val", "rewards": {"au_f1": 0.25}}
    assert optimized_metric_value(metrics, "emotion_acc") == 0.5
    assert optimized_metric_value(metrics, "rewards.au_f1") == 0.25
    assert optimized_metric_value(metrics, None) is None
    assert optimized_metric_value(metrics, "au_f1_micro") is None and "undefined" in caplog.text
    with pytest.raises(ValueError, match="numbers there: emotion_acc, rewards.au_f1"):
        optimized_metric_value(metrics, "rewards.format")
    with pytest.raises(ValueError, match="not a number"):
        optimized_metric_value(metrics, "split")


def test_optimizable_names_are_numbers_the_evaluation_reports() -> None:
    """OPTIMIZABLE stays in step with compute_metrics (train.py adds wall_time_s itself)."""
    samples = [
        {"id": "a", "AUs": ["AU6", "AU12"], "labels": ["happiness"], "label_set": ["happiness", "sadness"],
         "description": "<think>AU6 AU12</think><answer>happiness</answer>"},
        {"id": "b", "AUs": ["AU1"], "labels": ["sadness"], "label_set": ["happiness", "sadness"]},
    ]  # fmt: skip
    outputs = ["<think>Cheeks raise (AU6).</think><answer>happiness</answer>", "<answer>sadness</answer>"]
    reward = CompositeReward({"emotion_accuracy": EmotionAccuracyReward()})
    metrics, _ = compute_metrics(samples, outputs, reward=reward)
    for name in OPTIMIZABLE:
        if name != "wall_time_s":
            assert isinstance(metrics[name], float), name
    assert optimized_metric_value(metrics, "rewards.emotion_accuracy") == 1.0


def test_train_returns_emotion_acc_by_default_and_the_preset_composes(monkeypatch) -> None:
    monkeypatch.setenv("FACIAL_R1_CACHE", "/tmp/facial_r1_test_cache")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        assert compose("train").optimized_metric == "emotion_acc"
        cfg = compose("train", overrides=["hparams_search=grpo_optuna"], return_hydra_config=True)
    assert cfg.stage.name == "grpo" and cfg.stage.final_eval.split == "val"
    assert cfg.hydra.mode.name == "MULTIRUN" and cfg.hydra.sweeper.direction == "maximize"
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert set(cfg.hydra.sweeper.params) == {
        "stage.lr",
        "stage.objective.beta",
        "stage.objective.num_generations",
        "stage.prompts_per_step",
    }
    for key in cfg.hydra.sweeper.params:  # every swept key exists in the GRPO config
        node = cfg
        for part in key.split("."):
            node = node[part]


@pytest.mark.slow
def test_two_trial_optuna_sweep_on_the_tiny_model(
    tmp_path: Path, tiny_model_dir: Path, subprocess_env
) -> None:
    """Two GRPO trials (debug=fast) through Hydra's Optuna sweeper. optimized_metric=wall_time_s because it differs
    between trials (accuracy of a random tiny model is 0 in both): the best value must be the larger trial's
    metrics.json number, and the best parameters that trial's sampled lr and beta."""
    args = [
        "hparams_search=grpo_optuna",
        "debug=fast",
        "hydra.sweeper.n_trials=2",
        "optimized_metric=wall_time_s",
        "model.init_from=null",  # the tiny base model: no SFT export needed
        "model.tiny.warm_start_steps=0",
        "dataset.n_train=16",
        "dataset.n_val=8",
        "dataset.n_test=8",
        "dataset.progress=false",
        # fixed on the command line: the sweeper leaves them out of the search space
        "stage.prompts_per_step=2",
        "stage.objective.num_generations=2",
        "stage.objective.max_completion_length=16",
        "stage.final_eval.max_new_tokens=16",
        "stage.eval.every_n_steps=100",
        "trainer.enable_progress_bar=false",
        "logger=csv",
    ]
    run_train(args, subprocess_env(tmp_path), timeout=600)
    (sweep,) = (tmp_path / "train" / "multirun").iterdir()
    trials = sorted(sweep.glob("trial_*"))
    assert [t.name for t in trials] == ["trial_0", "trial_1"]
    metrics = [json.loads((t / "metrics.json").read_text()) for t in trials]
    assert all(m["split"] == "val" and m["global_step"] == 3 for m in metrics)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    values = [m["wall_time_s"] for m in metrics]
    assert best["best_value"] == max(values)
    winner = trials[values.index(max(values))]
    sampled = dict(
        o.split("=", 1) for o in yaml.safe_load((winner / ".hydra" / "overrides.yaml").read_text())
    )
    assert set(best["best_params"]) == {"stage.lr", "stage.objective.beta"}
    assert float(sampled["stage.lr"]) == best["best_params"]["stage.lr"]
    assert 1e-6 <= best["best_params"]["stage.lr"] <= 3e-4
