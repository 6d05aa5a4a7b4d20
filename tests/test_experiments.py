"""Every experiment file runs, for two steps, the stage it names - not merely composes.

An experiment that sets GRPO keys without ``override /stage: grpo`` composes into an SFT run (stage files are
``@package _global_`` overlays); the config check refuses that, and these runs prove each file trains the stage in
the table below, from the checkpoint that stage needs. The real-checkpoint presets run with the tiny model's folder
as ``model.path`` (the same adapter loads both), on the CPU trainer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_train
from test_synthesis import synth_rows

from facial_r1.training.checks import ConfigError, check_train_config

EXPERIMENTS = REPO / "conf" / "experiment"
# experiment -> the stage it must train (evaluate = an evaluate.py experiment)
EXPECTED_STAGE = {
    "sft_300": "sft",
    "sft_all": "sft",
    "sft_all_noisy": "sft",
    "sft_300_llm_like": "sft",
    "sft_all_llm_like": "sft",
    "sft_qwen2_5_vl_7b": "sft",
    "pipeline_round2_sft": "sft",
    "sft300_grpo": "grpo",
    "sft300_grpo_synth": "grpo",
    "reward_ablation": "grpo",
    "grpo_sweep": "grpo",
    "grpo_qwen2_5_vl_7b": "grpo",
    "zero_shot": "evaluate",
    "sft300_affect": "sft",
    "sft300_affect_grpo": "grpo",
}
# Two optimizer steps of anything, no periodic validation, a 2-image final evaluation.
BUDGET = [
    "dataset.n_train=64",
    "dataset.n_val=8",
    "dataset.n_test=8",
    "dataset.progress=false",
    "trainer.max_steps=2",
    "trainer.max_time=null",
    "trainer.enable_progress_bar=false",
    "stage.eval.every_n_steps=0",
    "stage.final_eval.limit=2",
    "stage.final_eval.max_new_tokens=16",
    "logger=none",
]
SFT_BUDGET = ["stage.num_samples=8", "stage.batch_size=4", "stage.accumulate_grad_batches=1"]
GRPO_BUDGET = [
    "stage.prompts_per_step=2",
    "stage.objective.num_generations=2",
    "stage.objective.max_completion_length=16",
]


def test_the_table_names_every_experiment_file():
    assert set(EXPECTED_STAGE) == {p.stem for p in EXPERIMENTS.glob("*.yaml")}


def test_grpo_keys_in_an_sft_run_are_refused(cfg_for_train):
    """What the 7B GRPO preset did before it named its stage: GRPO keys merged silently into stage=sft."""
    cfg = cfg_for_train("+stage.objective={beta: 0.1}", "+stage.prompts_per_step=2")
    with pytest.raises(
        ConfigError, match=r"stage\.objective, stage\.prompts_per_step: GRPO settings in a stage=sft"
    ):
        check_train_config(cfg)


@pytest.fixture
def cfg_for_train(tmp_path):
    from test_config import compose_train

    return lambda *overrides: compose_train(list(overrides), tmp_path / "run")


def _runs(root: Path, task: str) -> dict[str, Path]:
    return {p.name: p for p in sorted((root / task).glob("*"), key=lambda p: p.stat().st_mtime)}


def _new_run(root: Path, before: dict[str, Path], task: str = "train") -> Path:
    new = [p for name, p in _runs(root, task).items() if name not in before]
    assert len(new) == 1, new
    return new[0]


def _info(run: Path) -> dict:
    return json.loads((run / "run_info.json").read_text())


@pytest.mark.slow
def test_every_experiment_trains_the_stage_it_names(tmp_path, tiny_model_dir, subprocess_env):
    """Runs all experiment files in dependency order in one output root (GRPO finds the SFT exports it needs)."""
    root = tmp_path / "outputs"
    env = subprocess_env(root)
    tiny = ["model.tiny.warm_start_steps=0"]
    real = [f"model.path={tiny_model_dir}", "trainer=default", "model.dtype=float32"]
    ran: dict[str, Path] = {}

    def train(name: str, *extra: str, multirun: bool = False) -> Path:
        before = _runs(root, "train/multirun" if multirun else "train")
        expected = EXPECTED_STAGE[name]
        budget = [*BUDGET, *(SFT_BUDGET if expected == "sft" else GRPO_BUDGET)]
        if name == "pipeline_round2_sft":  # dataset=synth: the held-out splits come from its eval_source
            budget = [a.replace("dataset.", "dataset.eval_source.") for a in budget]
        args = [f"experiment={name}", *budget, *extra]
        run_train(["-m", *args] if multirun else args, env)
        if multirun:
            sweep = _new_run(root, before, "train/multirun")
            runs = [p for p in sweep.iterdir() if (p / "run_info.json").is_file()]
            assert len(runs) == 1, runs
            run = runs[0]
        else:
            run = _new_run(root, before)
        info = _info(run)
        assert info["stage"] == expected, (name, info["stage"])
        assert run.name.endswith(f"_{expected}") or multirun
        card = json.loads((run / "model" / "facial_r1_export.json").read_text())
        assert card["stage"] == expected
        # the published recipe skips the end-of-fit checkpoint (the export follows); the tiny one keeps it
        assert (run / "checkpoints" / "last.ckpt").is_file() == ("qwen" not in name), name
        if expected == "grpo":  # GRPO starts from an SFT export, never from the base model
            assert info["init_from"] and Path(info["init_from"]).name == "model", (name, info["init_from"])
        ran[name] = run
        return run

    train("sft_300", *tiny)
    train("sft_all", *tiny)
    train("sft_all_noisy", *tiny)
    train("sft_300_llm_like", *tiny)
    train("sft_all_llm_like", *tiny)
    train("sft300_grpo", *tiny)
    train("reward_ablation", *tiny, "reward=format_only", "seed=0", multirun=True)
    sweep_run = train("grpo_sweep", *tiny, "grpo_variant=beta_0", "seed=0", multirun=True)
    assert sweep_run.name == "0_beta_0_seed0"
    accepted = synth_rows(tmp_path, "accepted.jsonl", ["a", "b", "c", "d"], 1)
    train(
        "pipeline_round2_sft",
        *tiny,
        f"model.init_from={ran['sft300_grpo'] / 'model'}",
        "dataset.runs=[]",
        f"dataset.files=[{accepted}]",
        "stage.num_samples=all",
        "dataset.keep_sft=8",  # SFT-300's teacher rows at this budget's size (SFT_BUDGET)
    )
    train("sft300_grpo_synth", *tiny, f"model.init_from={ran['pipeline_round2_sft'] / 'model'}")
    affect = train("sft300_affect", *tiny)
    train("sft300_affect_grpo", *tiny, f"model.init_from={affect / 'model'}")
    sft7b = train("sft_qwen2_5_vl_7b", *real)
    grpo7b = train("grpo_qwen2_5_vl_7b", *real)
    assert Path(_info(grpo7b)["init_from"]) == sft7b / "model"  # latest_sft of the same base model

    before = _runs(root, "evaluate")
    proc = subprocess.run(
        [sys.executable, "evaluate.py", "+experiment=zero_shot", *tiny, "limit=2", "max_new_tokens=8",
         "logger=none", "dataset.n_train=64", "dataset.n_val=8", "dataset.n_test=8", "dataset.progress=false"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = _new_run(root, before, "evaluate")
    assert json.loads((run / "metrics.json").read_text())["num_samples"] == 2


@pytest.mark.parametrize("size", ["3b", "7b"])
def test_a_real_checkpoint_preset_alone_gets_the_published_settings(cfg_for_train, size):
    """``model=qwen2_5_vl_7b model.path=...`` and nothing else: the published run's sizes, not the tiny model's."""
    model = [f"model=qwen2_5_vl_{size}", "model.path=/models/any"]
    sft = cfg_for_train(*model).stage
    assert (float(sft.lr), sft.batch_size * sft.accumulate_grad_batches, sft.warmup_steps) == (5e-6, 32, 0)
    assert (sft.scheduler, sft.final_eval.max_new_tokens) == ("linear", 1024)
    grpo_cfg = cfg_for_train(*model, "stage=grpo")
    grpo = grpo_cfg.stage
    assert (float(grpo.lr), grpo.objective.max_completion_length, grpo_cfg.trainer.max_time) == (
        1e-6,
        2048,
        None,
    )
    assert grpo.micro_batch_size == 2 and grpo.eval.max_new_tokens == 1024
    assert cfg_for_train(*model).model.activation_checkpointing is True
    tiny = cfg_for_train().stage  # the tiny defaults stay with the tiny model
    assert (float(tiny.lr), tiny.batch_size) == (1e-3, 32)


def test_grpo_module_reads_the_recipe_through_interpolations(cfg_for_train, make_adapter):
    """stage.objective.max_completion_length is `${recipe.grpo...}`: the module must resolve it, not keep the string."""
    from hydra.utils import instantiate

    from facial_r1.training.grpo import GRPOModule

    cfg = cfg_for_train("stage=grpo", "model.tiny.warm_start_steps=0")
    module = instantiate(cfg.stage.module)(
        adapter=make_adapter(), prompt=object(), stage=cfg.stage, reward=object()
    )
    assert isinstance(module, GRPOModule)  # stage.module builds the stage's class
    assert module.cfg.max_completion_length == 96 and module.micro_batch_size is None


# grpo_variant file -> (key, value) pairs it must set in the composed GRPO config (what its comment promises)
VARIANTS = {
    "default": {},
    "lr_1e-4": {"stage.lr": 1e-4},
    "lr_2e-5": {"stage.lr": 2e-5},
    "lr_1e-4_cosine": {
        "stage.lr": 1e-4,
        "stage.scheduler": "cosine",
        "stage.warmup_steps": 20,
        "stage.min_lr_ratio": 0.1,
    },  # fmt: skip
    "beta_0": {"stage.objective.beta": 0.0},
    "g4_b8": {"stage.prompts_per_step": 8, "stage.objective.num_generations": 4},
    "g16_b2": {"stage.prompts_per_step": 2, "stage.objective.num_generations": 16},
    "b8": {"stage.prompts_per_step": 8},
    "dr_grpo": {"stage.objective.loss_aggregation": "dr_grpo", "stage.objective.advantage_scale": "none"},
    "dapo": {
        "stage.objective.loss_aggregation": "dapo",
        "stage.objective.eps_high": 0.28,
        "stage.objective.zero_std": "resample",
    },  # fmt: skip
    "zero_std_resample": {"stage.objective.zero_std": "resample"},
    "consistency": {"reward.components.consistency.weight": 1.0},
}


def test_the_grpo_sweep_runs_every_variant_file_over_three_seeds():
    import yaml

    params = yaml.safe_load((EXPERIMENTS / "grpo_sweep.yaml").read_text())["hydra"]["sweeper"]["params"]
    files = {p.stem for p in (REPO / "conf" / "grpo_variant").glob("*.yaml")}
    assert set(params["grpo_variant"].split(",")) == files == set(VARIANTS)
    assert params["seed"] == "0,1,2"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_grpo_variant_changes_what_it_names_and_nothing_else(cfg_for_train, variant):
    from omegaconf import OmegaConf

    base = cfg_for_train("experiment=grpo_sweep", "grpo_variant=default")
    cfg = cfg_for_train("experiment=grpo_sweep", f"grpo_variant={variant}")
    for key, value in VARIANTS[variant].items():
        assert OmegaConf.select(cfg, key) == value, key
    # outside what the file names (and the reward group the consistency variant swaps), the run is the baseline
    keep = ("hydra", "reward") if variant == "consistency" else ("hydra",)
    flat = lambda c: {k: v for k, v in _flatten(OmegaConf.to_container(c, resolve=False)).items()  # noqa: E731
                      if not k.startswith(keep)}  # fmt: skip
    changed = {k for k in flat(cfg).keys() | flat(base).keys() if flat(cfg).get(k) != flat(base).get(k)}
    assert changed == set(VARIANTS[variant]) - {k for k in VARIANTS[variant] if k.startswith("reward.")}


def _flatten(node, prefix=""):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}
