"""A short GRPO run that learns through the vLLM engine: ``train.py stage=grpo rollout=vllm`` on the tiny model.

A 60-step SFT export (greedy format rate 0.375 on the 8 test faces; at T = 1 about a third of the samples are well
formed) is trained with ``reward=format_only`` for 30 GRPO steps, every rollout sampled by the colocated vLLM engine.
Checked:

- the reward goes up: the last six steps' mean beats the first six's by >= 0.2 (measured 0.40 -> 0.77), and the
  greedy test format rate of the export does not fall below the SFT export's (measured 0.375 -> 1.0 before the SFT
  recipe gained instruction rows; since then the SFT export can already be at 1.0);
- the engine follows the policy after every optimizer step: each step's ``train/rollout/mismatch_kl`` (the k3 KL
  between the engine's sampling log-probs and the trainer's pre-update policy, both float32) stays below
  ``MISMATCH_KL_TOL``; measured 5e-14 - 1.3e-13. Control: an engine left at the SFT weights gives 0.6 (computed
  below from the two exports), so the bound can fail;
- after the run, the engine's greedy outputs (the run's final evaluation goes through it) equal the exported policy's
  greedy outputs under the ``hf`` engine (``evaluate.py rollout=hf``).

Run in the vLLM environment (docs/vllm.md); ~75 s of CPU, 2.5 min wall on 2 cores shared with other jobs.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("vllm")

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MISMATCH_KL_TOL = 1e-9  # float32 engine vs float32 trainer: ~1e-13 measured; a stale engine: 0.6
GRPO_STEPS = 30

COMMON = (
    "dataset.n_train=64",
    "dataset.n_val=8",
    "dataset.n_test=16",
    "dataset.progress=false",
    "model.tiny.warm_start_steps=0",
    "logger=csv",
)
TRAIN = (
    *COMMON,
    "trainer.enable_progress_bar=false",
    "stage.eval.every_n_steps=0",
    "stage.final_eval.limit=8",
)
# A high SFT learning rate and no warm-up: the format is half learnt after 60 steps, leaving GRPO a signal.
SFT_ARGS = (
    "stage=sft",
    *TRAIN,
    "stage.num_samples=48",
    "stage.batch_size=16",
    "stage.warmup_steps=0",
    "stage.lr=2e-3",
    "trainer.max_steps=60",
)
GRPO_ARGS = (
    "stage=grpo",
    "rollout=vllm",
    "rollout.kv_cache_gib=0.25",
    "rollout.max_model_len=2048",
    "reward=format_only",
    *TRAIN,
    "stage.prompts_per_step=4",
    "stage.objective.num_generations=8",
    "stage.objective.max_completion_length=96",
    "stage.objective.beta=0",  # no reference pass: the format signal needs no anchor over 30 steps
    "stage.lr=5e-4",  # the tiny recipe's 5e-5 needs hundreds of steps; 1e-3 collapsed
    f"trainer.max_steps={GRPO_STEPS}",
    "trainer.log_every_n_steps=1",
    "stage.final_eval.max_new_tokens=96",
)


def _run(script: str, args: list[str], env: dict[str, str], timeout: float = 600) -> None:
    proc = subprocess.run(
        [sys.executable, script, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )


def _only(paths: list[Path]) -> Path:
    assert len(paths) == 1, paths
    return paths[0]


def _step_rows(run_dir: Path) -> list[dict[str, float]]:
    """The CSV logger's per-step training rows (the ones with a reward), in step order."""
    with _only(sorted(run_dir.glob("csv/**/metrics.csv"))).open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/reward/total")]
    return [{k: float(v) for k, v in r.items() if v != ""} for r in rows]


def _outputs(run_dir: Path) -> dict[str, str]:
    with (run_dir / "predictions.jsonl").open() as f:
        return {row["id"]: row["output"] for row in map(json.loads, f)}


@pytest.fixture(scope="module")
def grpo_run(tmp_path_factory, subprocess_env) -> tuple[Path, Path, dict[str, str]]:
    """(SFT export, GRPO run folder, env): SFT in one subprocess, then GRPO through vLLM from its export."""
    out = tmp_path_factory.mktemp("vllm_grpo")
    env = subprocess_env(out)
    _run("train.py", list(SFT_ARGS), env)
    sft_export = _only(sorted((out / "train").glob("*_sft"))) / "model"
    _run("train.py", [*GRPO_ARGS, f"model.init_from={sft_export}"], env)
    return sft_export, _only(sorted((out / "train").glob("*_grpo"))), env


def test_grpo_through_vllm_raises_the_reward(grpo_run):
    sft_export, run_dir, _ = grpo_run
    rows = _step_rows(run_dir)
    assert [int(r["step"]) for r in rows] == list(range(GRPO_STEPS))
    rewards = [r["train/reward/total"] for r in rows]
    first, last = sum(rewards[:6]) / 6, sum(rewards[-6:]) / 6
    assert last >= first + 0.2, f"format reward {first:.3f} -> {last:.3f} over {GRPO_STEPS} steps: {rewards}"
    greedy = [
        json.loads((d / "metrics.json").read_text())["format_rate"] for d in (sft_export.parent, run_dir)
    ]
    # (the SFT export's greedy rate can already be 1.0 - the sampled reward above is what must rise)
    assert greedy[1] >= greedy[0], f"greedy test format rate SFT -> GRPO: {greedy}"


def test_the_engine_follows_the_policy_after_every_step(grpo_run):
    sft_export, run_dir, _ = grpo_run
    rows = _step_rows(run_dir)
    # rollout_correction=auto is on for vLLM: every step logs the mismatch, and with synced weights nothing is capped.
    kls = [r["train/rollout/mismatch_kl"] for r in rows]
    assert max(kls) < MISMATCH_KL_TOL, f"engine and policy disagree at some step: {kls}"
    assert all(r["train/rollout/tis_capped_frac"] == 0 for r in rows)
    assert all(abs(r["train/rollout/tis_weight_mean"] - 1) < 1e-4 for r in rows)

    # Control: the same statistic for an engine that kept the SFT weights is far above the bound.
    from facial_r1.data.prompts import load_prompts
    from facial_r1.data.synthfaces import render_sample
    from facial_r1.grpo.tis import truncated_importance_weights
    from facial_r1.models.adapter import SamplingParams
    from facial_r1.models.qwen2_5_vl import Qwen25VLAdapter

    stale = Qwen25VLAdapter(path=str(sft_export), dtype="float32")
    trained = Qwen25VLAdapter(path=str(run_dir / "model"), dtype="float32")
    samples = [render_sample(i, "train", 0) for i in range(4)]
    prompt = load_prompts()["compact_v1"]
    batch = stale.encode_prompts([im for im, _ in samples], [prompt.user_text(r) for _, r in samples])
    ro = stale.generate(batch, SamplingParams(max_new_tokens=48, temperature=1.0, num_samples=8, seed=0))
    with torch.no_grad():
        logp, _ = trained.completion_logprobs(batch, ro.completion_ids, ro.prompt_index, temperature=1.0)
    _, stats = truncated_importance_weights(logp, ro.logprobs, ro.completion_mask)
    assert float(stats.mismatch_kl) > 1e3 * MISMATCH_KL_TOL, float(stats.mismatch_kl)


def test_after_the_run_the_engine_greedy_equals_the_policy(grpo_run):
    _, run_dir, env = grpo_run
    # The run's final evaluation generated through the synced vLLM engine; evaluate.py re-generates with the exported
    # weights and the hf engine.
    eval_root = run_dir.parent.parent / "eval_hf"
    _run(
        "evaluate.py",
        [
            *COMMON,
            f"model.path={run_dir / 'model'}",
            "rollout=hf",
            "split=test",
            "limit=8",
            "max_new_tokens=96",
            "reward=format_only",
        ],
        {**env, "FACIAL_R1_OUTPUT_ROOT": str(eval_root)},
    )
    engine_outputs = _outputs(run_dir)
    policy_outputs = _outputs(_only(sorted(eval_root.glob("evaluate/*_eval"))))
    assert len(engine_outputs) == 8 and engine_outputs == policy_outputs
