"""A real-width smoke: the published Qwen2.5-VL-3B widths at reduced depth, through the real-checkpoint preset.

What the tiny model hides - a 151,936-row vocabulary, 2048-wide text and 1280-wide windowed vision, bf16 shards in
the published folder layout, the `published` recipe - goes through ``evaluate.py`` and ``train.py`` (SFT and GRPO,
LoRA) exactly as a user with a checkpoint folder would run them, on CPU. The folder is built at test time from the
architecture file in the repository (``facial_r1.models.reduced``); nothing is downloaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_train

pytestmark = pytest.mark.slow

DATA = ["dataset.n_train=32", "dataset.n_val=4", "dataset.n_test=4", "dataset.progress=false"]


@pytest.fixture(scope="module")
def reduced_3b(tmp_path_factory, tiny_model_dir) -> Path:
    from facial_r1.models.reduced import build_reduced_model

    return build_reduced_model(
        tmp_path_factory.mktemp("reduced") / "qwen2_5_vl_3b", tokenizer_dir=tiny_model_dir
    )


def test_the_folder_has_the_published_layout_and_widths(reduced_3b):
    config = json.loads((reduced_3b / "config.json").read_text())
    text, vision = config["text_config"], config["vision_config"]
    assert (text["hidden_size"], text["vocab_size"], vision["hidden_size"]) == (2048, 151936, 1280)
    assert vision["fullatt_block_indexes"] and vision["depth"] > len(
        vision["fullatt_block_indexes"]
    )  # windowed too
    index = json.loads((reduced_3b / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # sharded
    assert config["dtype"] == "bfloat16"
    for name in (
        "tokenizer.json",
        "preprocessor_config.json",
        "chat_template.jinja",
        "generation_config.json",
    ):
        assert (reduced_3b / name).is_file(), name


def test_evaluate_sft_and_grpo_with_lora_run_through_the_real_preset(reduced_3b, tmp_path, subprocess_env):
    root = tmp_path / "outputs"
    env = subprocess_env(root)
    model = [
        "model=qwen2_5_vl_3b",
        f"model.path={reduced_3b}",
        "prompt=compact_v1",  # the published prompt is ~700 tokens: the same code path, 5x the CPU time
        "logger=none",
        "trainer.enable_progress_bar=false",
    ]
    evaluate = subprocess.run(
        [sys.executable, "evaluate.py", *model[:-1], *DATA, "limit=2", "batch_size=2", "max_new_tokens=8"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    (eval_run,) = (root / "evaluate").glob("*")
    assert json.loads((eval_run / "metrics.json").read_text())["num_samples"] == 2

    lora = ["model.lora={r: 8, alpha: 16}"]
    budget = ["trainer.max_steps=2", "stage.eval.every_n_steps=0", "stage.final_eval.limit=2",
              "stage.final_eval.max_new_tokens=8", "stage.final_eval.batch_size=2"]  # fmt: skip
    run_train([*model, *lora, *DATA, *budget, "stage.num_samples=4", "stage.batch_size=2",
               "stage.accumulate_grad_batches=1"], env, timeout=900)  # fmt: skip
    (sft_run,) = (root / "train").glob("*_sft")
    sft_info = json.loads((sft_run / "run_info.json").read_text())
    assert (
        sft_info["stage"] == "sft" and json.loads((sft_run / "metrics.json").read_text())["global_step"] == 2
    )

    run_train([*model, *lora, *DATA, *budget, "stage=grpo", "trainer.max_steps=1", "stage.prompts_per_step=2",
               "stage.objective.num_generations=2", "stage.objective.max_completion_length=8"], env, timeout=900)  # fmt: skip
    (grpo_run,) = (root / "train").glob("*_grpo")
    info = json.loads((grpo_run / "run_info.json").read_text())
    assert Path(info["init_from"]) == sft_run / "model"  # the published recipe's GRPO, from the SFT export
    export = json.loads((grpo_run / "model" / "config.json").read_text())
    assert export["text_config"]["vocab_size"] == 151936
